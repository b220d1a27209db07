"""Progress of a run that executes elsewhere (step processes), read from its events as they arrive.

dbt's models and tests advance one bar; each sync gets a bar of its own, fed by the writer's
log lines ("items: loaded into items 2,184 / 200,000 rows"; an API sync:
"Account: sent to salesforce 200 / 19,000 rows"), with rows per second.
"""

from __future__ import annotations

import re
import threading
from typing import IO

from rich.progress import ProgressColumn, Task
from rich.text import Text

from activation.cli.common import progress

_LOADED = re.compile(r"^(?P<table>[^:]+): (?:loaded into|sent to) \S+ (?P<done>[\d,]+) / (?P<total>[\d,]+) rows$")


class RowsPerSecond(ProgressColumn):
    def render(self, task: Task) -> Text:
        if task.fields.get("unit") != "rows":
            return Text(f"{int(task.completed)}/{int(task.total or 0)}")
        speed = task.finished_speed or task.speed
        of = f"/{int(task.total):,}" if task.total else ""
        return Text(f"{int(task.completed):,}{of} rows" + (f"  {speed:,.0f} rows/s" if speed else ""))


class LiveRun:
    """Follows the run tagged `activation/cli=<tag>` until `stop()`; shows nothing off a terminal."""

    def __init__(self, instance, tag: str, dbt_total: int, sync_assets: list[str], console: IO[str] | None = None):
        self.instance, self.tag = instance, tag
        self.dbt_total, self.sync_assets = dbt_total, sync_assets
        self.display = progress(RowsPerSecond(), file=console)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._follow, daemon=True)

    def __enter__(self) -> LiveRun:
        if not self.display.disable:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        if self._thread.is_alive():
            self._thread.join()

    def _follow(self) -> None:
        import dagster as dg

        with self.display as bars:
            dbt = bars.add_task("dbt build", total=self.dbt_total) if self.dbt_total else None
            syncs: dict[str, int] = {}
            run_id, cursor = None, None
            while not self._done.wait(0.3):
                if run_id is None:
                    runs = self.instance.get_runs(filters=dg.RunsFilter(tags={"activation/cli": self.tag}), limit=1)
                    run_id = runs[0].run_id if runs else None
                    continue
                page = self.instance.get_records_for_run(run_id, cursor=cursor)
                cursor = page.cursor
                for record in page.records:
                    entry = record.event_log_entry
                    event = entry.dagster_event
                    if event is None:
                        found = _LOADED.match(entry.user_message or "")
                        if found:
                            table = found["table"]
                            if table not in syncs:
                                syncs[table] = bars.add_task(f"sync {table}", total=None, unit="rows")
                            done, total = (int(found[k].replace(",", "")) for k in ("done", "total"))
                            bars.update(syncs[table], completed=done, total=total)
                        continue
                    if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
                        key = event.event_specific_data.asset_key
                    elif event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
                        key = event.asset_key
                    else:
                        continue
                    if dbt is not None and key.to_user_string() not in self.sync_assets:
                        bars.advance(dbt)
