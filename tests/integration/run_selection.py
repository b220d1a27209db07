"""Run the `activate` job for some sync assets in a process of its own, on $DAGSTER_HOME's instance,
tagged so a test finds the run while it is going:
`python -m tests.integration.run_selection <tag> a/facilities b/facilities`."""

from __future__ import annotations

import sys

import dagster as dg

from activation.cli.common import activate_job

TAG = "activation-test/run"


def main(tag: str, keys: list[str]) -> int:
    selection = [dg.AssetKey.from_user_string(k) for k in keys]
    with dg.execute_job(
        dg.reconstructable(activate_job),
        instance=dg.DagsterInstance.get(),
        asset_selection=selection,
        tags={TAG: tag},
    ) as result:
        return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
