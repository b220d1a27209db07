"""`review_pull_request`: `activation plan --against` as a Dagster job, for teams that look in the UI.

Its run records, on each destination asset, an `AssetObservation` carrying the sync's part of the
review (markdown, counts, refused or not, against which build): the asset page shows the effect of
the pending change beside its materializations, and nothing claims a write. An asset check was the
alternative, but a check result is a verdict on the asset's current materialization (production
data) and a failed blocking one gates automation; a pull request's effect is about a build that is
not production. The run fails when a sync would be refused or a guard would trip (the command's
exit 3), after every observation is recorded.
"""

import dagster as dg

from activation.orchestration.translator import sync_asset_key

REVIEW_JOB = "review_pull_request"
REVIEW_OP = "review_build"  # its one op (a job and its op cannot share a name in a repository)


class ReviewConfig(dg.Config):
    against: str  # the pull request build's dbt target folder (its manifest.json)
    against_warehouse: str | None = None  # DuckDB: the file the pull request's build wrote
    base_manifest: str | None = None  # production's dbt target (default: the project's manifest)
    syncs: list[str] = []  # default: every sync
    sample: int = 3


@dg.op(name=REVIEW_OP, description="Review a pull request's dbt build against the production sync state.")
def review_pull_request_op(context: dg.OpExecutionContext, config: ReviewConfig) -> None:
    from pathlib import Path

    from activation.cli.common import load_project
    from activation.cli.review import review_build
    from activation.syncs.review import sync_markdown

    project = load_project()
    review = review_build(
        project,
        project.select(config.syncs),
        Path(config.against),
        against_warehouse=Path(config.against_warehouse) if config.against_warehouse else None,
        base_manifest=Path(config.base_manifest) if config.base_manifest else None,
        sample=config.sample,
    )
    for s in review.syncs:
        e = s.effect
        metadata = {
            "pending_change": dg.MetadataValue.md(sync_markdown(s, review.generated_at)),
            "pending_against": config.against,
            "pending_refused": s.refused,
            "pending_changed_models": ", ".join(s.models),
        }
        if e is not None:
            metadata |= {"pending_rows_inserted": e.insert, "pending_rows_deleted": e.delete}
            if e.update is not None:
                metadata["pending_rows_updated"] = e.update
        spec = project.config.syncs[s.sync]
        context.log_event(
            dg.AssetObservation(
                asset_key=sync_asset_key(spec), description="effect of the pending change", metadata=metadata
            )
        )
    if review.refused:
        raise dg.Failure(
            f"would be refused: {', '.join(s.sync for s in review.refused)}",
            metadata={"review": dg.MetadataValue.md(review.markdown())},
        )


@dg.job(name=REVIEW_JOB, description="What a pull request's dbt build would do to every destination (writes nothing).")
def review_pull_request_job() -> None:
    review_pull_request_op()
