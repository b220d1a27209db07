"""`review_pull_request`: `activation plan --against` as a Dagster job, for teams that look in the UI.

Its run records, on each destination asset, an `AssetObservation` carrying the sync's part of the
review (markdown, counts, refused or not, against which build): the asset page shows the effect of
the pending change beside its materializations, and nothing claims a write. An asset check was the
alternative, but a check result is a verdict on the asset's current materialization (production
data) and a failed blocking one gates automation; a pull request's effect is about a build that is
not production. The run fails when a sync would be refused or a guard would trip (the command's
exit 3), after every observation is recorded.
"""

from collections.abc import Mapping
from pathlib import Path

import dagster as dg

REVIEW_JOB = "review_pull_request"
REVIEW_OP = "review_build"  # its one op (a job and its op cannot share a name in a repository)


class ReviewConfig(dg.Config):
    against: str  # the pull request build's dbt target folder (its manifest.json)
    against_warehouse: str | None = None  # DuckDB: the file the pull request's build wrote
    base_manifest: str | None = None  # production's dbt target (default: the project's manifest)
    syncs: list[str] = []  # default: every sync
    sample: int = 3


def build_review_job(asset_keys: Mapping[str, dg.AssetKey]) -> dg.JobDefinition:
    """The job, observing each sync's asset under its key as the definitions name it (a component's
    translation may rename it): `asset_keys` maps a sync's name to that key."""

    @dg.op(name=REVIEW_OP, description="Review a pull request's dbt build against the production sync state.")
    def review_build_op(context: dg.OpExecutionContext, config: ReviewConfig) -> None:
        review = _review(config)
        for s in review.syncs:
            context.log_event(
                dg.AssetObservation(
                    asset_key=asset_keys[s.sync],
                    description="effect of the pending change",
                    metadata=_metadata(s, review.generated_at, config.against),
                )
            )
        if review.refused:
            raise dg.Failure(
                f"would be refused: {', '.join(s.sync for s in review.refused)}",
                metadata={"review": dg.MetadataValue.md(review.markdown())},
            )

    @dg.job(name=REVIEW_JOB, description="What a pull request's dbt build would do to every destination.")
    def review_pull_request() -> None:
        review_build_op()

    return review_pull_request


def _review(config: ReviewConfig):
    from activation.orchestration.build_review import review_build
    from activation.sync_project import load_project

    project = load_project()
    return review_build(
        project,
        project.select(config.syncs),
        Path(config.against),
        against_warehouse=Path(config.against_warehouse) if config.against_warehouse else None,
        base_manifest=Path(config.base_manifest) if config.base_manifest else None,
        sample=config.sample,
    )


def _metadata(s, now, against: str) -> dict:
    from activation.syncs.review import sync_markdown

    e = s.effect
    metadata = {
        "pending_change": dg.MetadataValue.md(sync_markdown(s, now)),
        "pending_against": against,
        "pending_refused": s.refused,
        "pending_changed_models": ", ".join(s.models),
    }
    if e is not None:
        metadata |= {"pending_rows_inserted": e.insert, "pending_rows_deleted": e.delete}
        if e.update is not None:
            metadata["pending_rows_updated"] = e.update
    return metadata
