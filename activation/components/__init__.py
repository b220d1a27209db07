"""activation's Dagster components, registered for `dg` through the `dagster_dg_cli.registry_modules`
entry point: `dg list components` lists them, `dg scaffold defs activation.components.ActivationSyncs <path>`
writes one."""

from activation.components.syncs import ActivationSyncs

__all__ = ["ActivationSyncs"]
