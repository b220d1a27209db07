"""Bulk API 2.0 ingest jobs: create, upload the CSV, UploadComplete, poll with backoff until the job
ends, then read its successful, failed and unprocessed results and give every record its outcome.

Written over the org's session rather than with simple-salesforce's Bulk 2.0 helper, which writes
None as an empty cell (Bulk reads that as "leave unchanged", so nulls would never be written),
raises on a Failed job without its id (losing the records that did succeed), and returns counts,
not per-record results. Results are matched back by the key column (the external ID, or Id for
deletes): Salesforce does not keep the upload's order in them."""

from __future__ import annotations

import csv
import io
import time
from collections import defaultdict, deque
from collections.abc import Callable
from typing import Any

import requests

from activation.destinations.api.client import Outcome
from activation.destinations.salesforce.auth import SalesforceError, refusal
from activation.destinations.salesforce.rest import ALREADY_DONE
from activation.destinations.salesforce.settings import Settings

Log = Callable[[str], None]
TERMINAL = ("JobComplete", "Failed", "Aborted")


def api_error(response: requests.Response) -> str:
    """Salesforce's error list ([{"errorCode", "message"}]) as one line."""
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}: {response.text[:300]}"
    if isinstance(body, list):
        return "; ".join(f"{e.get('errorCode', '?')}: {e.get('message', '')}" for e in body if isinstance(e, dict))
    return f"HTTP {response.status_code}: {body}"


class BulkIngest:
    """Runs ingest jobs for one org through its session (and so through its Transport)."""

    def __init__(self, session: requests.Session, data_url: str, settings: Settings, log: Log):
        self.session, self.settings, self.log = session, settings, log
        self.jobs_url = data_url.rstrip("/") + "/jobs/ingest"
        self.instance = data_url.split("/services/")[0]

    def run(
        self,
        object_name: str,
        operation: str,
        key_column: str,
        upload: bytes,
        keys: dict[int, str],
        external_id_field: str | None = None,
    ) -> list[Outcome]:
        """One upload as one job; `keys` maps each row's index to its text in `key_column`. A job that
        fails before processing any row (a transient fault) is run once more in a new job."""
        for attempt in (1, 2):
            job = self._create(object_name, operation, external_id_field)
            info = self._load_and_wait(job, object_name, upload)
            untouched = info["state"] != "JobComplete" and not int(info.get("numberRecordsProcessed") or 0)
            if not untouched or attempt == 2:
                return self._outcomes(info, key_column, keys)
            self.log(
                f"Salesforce Bulk API 2.0 job {info['id']} on {object_name} ended {info['state']} "
                f"before processing a record ({info.get('errorMessage', '')}); running it again in a new job"
            )
        raise AssertionError("unreachable")

    def _call(self, method: str, url: str, what: str, **kwargs: Any) -> requests.Response:
        response = self.session.request(method, url, **kwargs)
        if response.status_code >= 300:
            reason = api_error(response)
            raise refusal(f"Salesforce Bulk API 2.0: {what} failed: {reason}", response.status_code, reason)
        return response

    def _create(self, object_name: str, operation: str, external_id_field: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "object": object_name,
            "operation": operation,
            "contentType": "CSV",
            "columnDelimiter": "COMMA",
            "lineEnding": "LF",
        }
        if external_id_field:
            body["externalIdFieldName"] = external_id_field
        what = f"creating a {operation} job on {object_name}"
        return self._call("POST", self.jobs_url, what, json=body).json()

    def _load_and_wait(self, job: dict[str, Any], object_name: str, upload: bytes) -> dict[str, Any]:
        job_url = f"{self.jobs_url}/{job['id']}"
        content_url = job.get("contentUrl") or f"{job_url}/batches"
        if not content_url.startswith("https://"):
            content_url = f"{self.instance}/{content_url.lstrip('/')}"
        try:
            self._call(
                "PUT",
                content_url,
                f"uploading {len(upload):,} bytes to job {job['id']} on {object_name}",
                data=upload,
                headers={"Content-Type": "text/csv"},
            )
            self._close(job_url, job["id"])
            return self._wait(job_url, job["id"], object_name)
        except BaseException:
            self._abort(job_url)
            raise

    def _close(self, job_url: str, job_id: str) -> None:
        response = self.session.request("PATCH", job_url, json={"state": "UploadComplete"})
        if response.status_code < 300:
            return
        # A retried PATCH (the first answer lost on the way back) finds the job already closed.
        state = self._call("GET", job_url, f"reading job {job_id}").json().get("state")
        if state in ("UploadComplete", "InProgress", *TERMINAL) and state != "Aborted":
            return
        raise SalesforceError(f"Salesforce Bulk API 2.0: closing job {job_id} failed: {api_error(response)}")

    def _wait(self, job_url: str, job_id: str, object_name: str) -> dict[str, Any]:
        pause, deadline = self.settings.bulk_poll_seconds, time.monotonic() + self.settings.bulk_timeout_seconds
        while True:
            time.sleep(pause)
            info = self._call("GET", job_url, f"reading job {job_id}").json()
            if info.get("state") in TERMINAL:
                return info
            if time.monotonic() > deadline:
                raise SalesforceError(
                    f"Salesforce Bulk API 2.0 job {job_id} on {object_name} still {info.get('state')} after "
                    f"{self.settings.bulk_timeout_seconds:g}s (bulk_timeout_seconds); it was aborted and its "
                    f"records will be sent again"
                )
            pause = min(pause * 1.5, self.settings.bulk_poll_max_seconds)

    def _abort(self, job_url: str) -> None:
        try:
            self.session.request("PATCH", job_url, json={"state": "Aborted"})
        except Exception as exc:  # the original error matters more than a failed clean-up
            self.log(f"Salesforce: could not abort {job_url}: {exc}")

    def _results(self, job_url: str, kind: str) -> list[dict[str, str]]:
        url, what = f"{job_url}/{kind}/", f"reading {kind} of {job_url}"
        response = self._call("GET", url, what, headers={"Accept": "text/csv"})
        return list(csv.DictReader(io.StringIO(response.content.decode("utf-8"), newline="")))

    def _outcomes(self, info: dict[str, Any], key_column: str, keys: dict[int, str]) -> list[Outcome]:
        job_url = f"{self.jobs_url}/{info['id']}"
        waiting: dict[str, deque[int]] = defaultdict(deque)
        for index, key in keys.items():
            waiting[key].append(index)
        found: dict[int, Outcome] = {}

        def take(row: dict[str, str]) -> int | None:
            queue = waiting.get(row.get(key_column, ""))
            return queue.popleft() if queue else None

        processed, failed = int(info.get("numberRecordsProcessed") or 0), int(info.get("numberRecordsFailed") or 0)
        if processed > failed:
            for row in self._results(job_url, "successfulResults"):
                if (i := take(row)) is not None:
                    created = row.get("sf__Created")
                    found[i] = Outcome(i, True, record_id=row.get("sf__Id") or None, created=_flag(created))
        if failed:
            for row in self._results(job_url, "failedResults"):
                if (i := take(row)) is not None:
                    error = row.get("sf__Error", "")
                    done = error.startswith(ALREADY_DONE)
                    found[i] = Outcome(i, done, error="" if done else error, record_id=row.get("sf__Id") or None)
        if info["state"] != "JobComplete":
            reason = f"not processed: job {info['id']} ended {info['state']}: {info.get('errorMessage') or 'no reason'}"
            for row in self._results(job_url, "unprocessedrecords"):
                if (i := take(row)) is not None:
                    found[i] = Outcome(i, False, error=reason)
        missing = f"missing from the results of job {info['id']} ({info['state']})"
        return [found.get(i) or Outcome(i, False, error=missing) for i in keys]


def _flag(value: str | None) -> bool | None:
    return {"true": True, "false": False}.get((value or "").lower())
