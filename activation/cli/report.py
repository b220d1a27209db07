"""What a person reads after `run` and `sync`: a table per sync, failed checks, refusals with their fix.

Everything is read from the run's events in the Dagster instance (materializations, check
evaluations, step failures), so the summary says what the UI says. A refusal's problems travel
as JSON metadata on the step failure (`activation.syncs.problems`).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import IO

from activation.cli.common import EXIT_CHECK_FAILED, EXIT_FAILED, EXIT_OK, EXIT_REFUSED
from activation.syncs.problems import METADATA_KEY, Problem, from_json

AFTER_WRITE, BEFORE_WRITE = "after the write", "before the write"


@dataclass
class FailedCheck:
    asset: str
    check: str
    description: str
    when: str  # "after the write", "before the write" (blocking), or "dbt test"

    @property
    def after_write(self) -> bool:
        return self.when == AFTER_WRITE


@dataclass
class StepFailure:
    step: str
    message: str
    problems: list[Problem]
    traceback: str


@dataclass
class RunSummary:
    run_id: str
    success: bool
    syncs: dict[str, dict] = field(default_factory=dict)  # asset -> mode, counts, checks, seconds
    dbt: dict[str, int] = field(default_factory=lambda: {"models": 0, "tests passed": 0, "tests failed": 0})
    failed_checks: list[FailedCheck] = field(default_factory=list)
    failures: list[StepFailure] = field(default_factory=list)
    not_written: list[str] = field(default_factory=list)

    @classmethod
    def from_result(cls, result, sync_assets: Sequence[str]) -> RunSummary:
        """Read a finished run (`dg.execute_job`'s result) for the given destination assets."""
        summary = cls(result.run_id, result.success)
        for asset in sync_assets:
            summary.syncs[asset] = {"checks passed": 0, "checks failed": 0}
        for event in result.get_asset_materialization_events():
            mat = event.materialization
            asset = mat.asset_key.to_user_string()
            if asset in summary.syncs:
                summary.syncs[asset].update({k: v.value for k, v in mat.metadata.items()})
                summary.syncs[asset]["written"] = True
            else:
                summary.dbt["models"] += 1
        for evaluation in result.get_asset_check_evaluations():
            asset = evaluation.asset_key.to_user_string()
            ours = asset in summary.syncs
            if ours:
                summary.syncs[asset]["checks passed" if evaluation.passed else "checks failed"] += 1
            else:
                summary.dbt["tests passed" if evaluation.passed else "tests failed"] += 1
            if not evaluation.passed:
                text = evaluation.description or str(evaluation.metadata.get("summary", ""))
                when = "dbt test" if not ours else BEFORE_WRITE if evaluation.blocking else AFTER_WRITE
                summary.failed_checks.append(FailedCheck(asset, evaluation.check_name, text, when))
        for event in result.get_step_failure_events():
            data = event.step_failure_data
            error = data.error
            user = data.user_failure_data
            problems = from_json(user.metadata[METADATA_KEY].value) if user and METADATA_KEY in user.metadata else []
            message = (user.description if user and user.description else None) or (error.message if error else "")
            summary.failures.append(
                StepFailure(event.step_key or "", message.strip(), problems, error.to_string() if error else "")
            )
        summary.not_written = [a for a, s in summary.syncs.items() if not s.get("written")]
        return summary

    @property
    def refused(self) -> bool:
        """Every failure was a refusal before the write (a blocking check, a guard, a bad value)."""
        return bool(self.failures) and all(f.problems for f in self.failures)

    def exit_code(self) -> int:
        if not self.success:
            return EXIT_REFUSED if self.refused else EXIT_FAILED
        if any(c.after_write for c in self.failed_checks):
            return EXIT_CHECK_FAILED
        return EXIT_OK

    def print(self, *, verbose: bool = False, with_dbt: bool = False, out: IO[str] | None = None) -> None:
        out = out or sys.stdout
        if with_dbt:
            d = self.dbt
            print(
                f"dbt build: {d['models']} models built, {d['tests passed']} tests passed, {d['tests failed']} failed",
                file=out,
            )
        if self.syncs:
            print_table(self.syncs, out)
        # A blocking check that failed refused the write: the refusal below says what and why.
        failed = [c for c in self.failed_checks if c.when != BEFORE_WRITE]
        if failed:
            print(f"{len(failed)} check(s) failed:", file=out)
            for c in failed:
                print(f"  {c.asset} {c.check} ({c.when}): {c.description}", file=out)
        for failure in self.failures:
            print_failure(failure, verbose=verbose, out=out)
        if self.failures and self.not_written:
            print(f"not written: {', '.join(self.not_written)} (they hold what they held before)", file=out)
        if self.success and any(c.after_write for c in self.failed_checks):
            outcome = "written, but a check after the write failed"
        elif self.success:
            outcome = "success"
        elif self.refused:
            outcome = "REFUSED before writing"
        else:
            outcome = "FAILED"
        print(f"run {self.run_id}: {outcome}", file=out)


COLUMNS = ("mode", "rows_inserted", "rows_updated", "rows_deleted", "rows_rejected")


def print_table(syncs: dict[str, dict], out: IO[str]) -> None:
    """One row per destination table: what the sync did and what its checks said."""
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    table.add_column("destination")
    table.add_column("mode")
    for name in ("inserted", "updated", "deleted", "rejected", "checks passed", "checks failed", "seconds"):
        table.add_column(name, justify="right")
    for asset, s in syncs.items():
        if not s.get("written"):
            table.add_row(asset, "-", *["-"] * 4, str(s["checks passed"]), str(s["checks failed"]), "not written")
            continue
        table.add_row(
            asset,
            str(s.get("mode", "")),
            *[f"{int(s.get(k, 0)):,}" for k in COLUMNS[1:]],
            str(s["checks passed"]),
            str(s["checks failed"]),
            f"{float(s.get('duration_seconds', 0)):.1f}",
        )
    Console(file=out, width=max(120, Console(file=out).width), soft_wrap=False).print(table)


def print_problems(problems: Iterable[Problem], out: IO[str], indent: str = "  ") -> None:
    """Per table, each problem on one line (column, reason, count, first keys), then how to fix it."""
    by_table: dict[str, list[Problem]] = {}
    for p in problems:
        by_table.setdefault(".".join(x for x in (p.destination, p.table) if x), []).append(p)
    for table, found in by_table.items():
        print(f"{indent}{table}:", file=out)
        for p in found:
            print(f"{indent}  {p}", file=out)
            if p.fix:
                print(f"{indent}    fix: {p.fix}", file=out)


def print_failure(failure: StepFailure, *, verbose: bool, out: IO[str]) -> None:
    if failure.problems:
        print(f"refused before writing ({failure.step}):", file=out)
        print_problems(failure.problems, out)
    else:
        print(f"failed ({failure.step}): {failure.message}", file=out)
    if verbose and failure.traceback:
        print(failure.traceback, file=out)
    elif failure.traceback:
        print("  (run with --verbose for the traceback and Dagster's log)", file=out)
