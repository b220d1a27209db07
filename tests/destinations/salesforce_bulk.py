"""Bulk API 2.0 ingest jobs in the local org: the job state machine (Open -> UploadComplete ->
InProgress -> JobComplete | Failed, or Aborted), one CSV upload per job, the upload size limit,
strict CSV parsing (`#N/A` is null, an empty cell leaves the field unchanged), and the three results
CSVs with Salesforce's column names, returned in an order other than the upload's."""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from tests.destinations.salesforce_org import BadValue, RecordError, RequestError, SObject, cascade, resolve

OPERATIONS = ("insert", "update", "upsert", "delete", "hardDelete")
MULTIPLE = (
    "Found multiple contents for job: <{id}>, please 'Close' / 'Abort' / 'Delete' the current Job then "
    "create a new Job and make sure you only do 'PUT' once on a given Job."
)


@dataclass
class Job:
    id: str
    object: SObject
    operation: str
    external_id: str | None
    api_version: str
    created: str
    state: str = "Open"
    uploads: list[bytes] = field(default_factory=list)
    closed_at: float | None = None
    error: str = ""
    header: list[str] = field(default_factory=list)
    successes: list[tuple[str, bool, list[str]]] = field(default_factory=list)
    failures: list[tuple[str, str, list[str]]] = field(default_factory=list)
    unprocessed: list[list[str]] = field(default_factory=list)

    def info(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "operation": self.operation,
            "object": self.object.name,
            "createdById": "0055g00000AAAAAAA1",
            "createdDate": self.created,
            "systemModstamp": self.created,
            "state": self.state,
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": float(self.api_version),
            "jobType": "V2Ingest",
            "lineEnding": "LF",
            "columnDelimiter": "COMMA",
            "numberRecordsProcessed": len(self.successes) + len(self.failures),
            "numberRecordsFailed": len(self.failures),
            "retries": 0,
            "totalProcessingTime": 0,
        }
        if self.external_id:
            body["externalIdFieldName"] = self.external_id
        if self.state == "Open":
            body["contentUrl"] = f"services/data/v{self.api_version}/jobs/ingest/{self.id}/batches"
        if self.error:
            body["errorMessage"] = self.error
        return body


class BulkJobs:
    def __init__(self, objects: dict[str, SObject], max_upload_bytes: int, processing_seconds: float):
        self.objects, self.max_upload_bytes, self.processing_seconds = objects, max_upload_bytes, processing_seconds
        self.jobs: dict[str, Job] = {}
        self.fail_next: deque[tuple[int, str]] = deque()  # (rows processed first, errorMessage)
        self._ids = itertools.count(1)

    def create(self, body: Any, api_version: str) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise RequestError(400, "JSON_PARSER_ERROR", "the job must be a JSON object")
        unknown = set(body) - {"object", "operation", "externalIdFieldName", "contentType", "lineEnding",
                               "columnDelimiter", "assignmentRuleId"}  # fmt: skip
        if unknown:
            raise RequestError(400, "JSON_PARSER_ERROR", f'Unrecognized field "{sorted(unknown)[0]}"')
        sobject = self.objects.get(body.get("object", ""))
        if sobject is None:
            raise RequestError(400, "INVALIDJOB", f"Unable to find object: {body.get('object')}")
        operation = body.get("operation")
        if operation not in OPERATIONS:
            raise RequestError(400, "INVALIDJOB", f"InvalidJob : Invalid operation: {operation}")
        if body.get("contentType", "CSV") != "CSV" or body.get("columnDelimiter", "COMMA") != "COMMA":
            raise RequestError(400, "INVALIDJOB", "this org takes CSV jobs with COMMA delimiters only")
        if body.get("lineEnding", "LF") != "LF":
            raise RequestError(400, "INVALIDJOB", "this org takes LF line endings only")
        external_id = body.get("externalIdFieldName")
        if operation == "upsert":
            if not external_id:
                message = f"External ID was blank for {sobject.name}. An External ID must be specified for upsert."
                raise RequestError(400, "INVALIDJOB", message)
            sobject.external_id(external_id)
        job_id = f"7505g00000{next(self._ids):08d}"
        created = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")
        job = Job(job_id, sobject, operation, external_id, api_version, created)
        self.jobs[job_id] = job
        return job.info()

    def job(self, job_id: str) -> Job:
        if job_id not in self.jobs:
            raise RequestError(404, "NOT_FOUND", "The requested resource does not exist")
        return self.jobs[job_id]

    def upload(self, job_id: str, data: bytes) -> None:
        job = self.job(job_id)
        if job.state != "Open":
            raise RequestError(409, "INVALIDJOBSTATE", f"Job {job_id} is not open for upload: {job.state}")
        if len(data) > self.max_upload_bytes:
            raise RequestError(400, "CLIENTINPUTERROR", f"Exceeded max size limit of {self.max_upload_bytes}")
        job.uploads.append(data)

    def set_state(self, job_id: str, state: Any) -> dict[str, Any]:
        job = self.job(job_id)
        if state == "UploadComplete" and job.state == "Open":
            job.state, job.closed_at = "UploadComplete", time.monotonic()
        elif state == "Aborted" and job.state in ("Open", "UploadComplete", "InProgress"):
            job.state, job.error = "Aborted", ""
            job.header, rows = self._rows(job) if job.uploads else ([], [])
            job.unprocessed = rows
        else:
            message = f"Invalid job state transition from {job.state} to {state}"
            raise RequestError(400, "INVALIDJOBSTATE", message)
        return job.info()

    def info(self, job_id: str) -> dict[str, Any]:
        job = self.job(job_id)
        if job.state in ("UploadComplete", "InProgress") and job.closed_at is not None:
            elapsed = time.monotonic() - job.closed_at
            if elapsed >= self.processing_seconds:
                self._process(job)
            elif elapsed >= self.processing_seconds / 2:
                job.state = "InProgress"
        return job.info()

    def results(self, job_id: str, kind: str) -> str:
        job = self.job(job_id)
        if job.state not in ("JobComplete", "Failed", "Aborted"):
            raise RequestError(400, "INVALIDJOBSTATE", f"Job {job_id} is not finished: {job.state}")
        out = io.StringIO()
        writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n")
        # Salesforce does not keep the upload's order in results; neither does this org.
        if kind == "successfulResults":
            writer.writerow(["sf__Id", "sf__Created", *job.header])
            writer.writerows([i, str(c).lower(), *cells] for i, c, cells in reversed(job.successes))
        elif kind == "failedResults":
            writer.writerow(["sf__Id", "sf__Error", *job.header])
            writer.writerows([i, e, *cells] for i, e, cells in reversed(job.failures))
        elif kind == "unprocessedrecords":
            writer.writerow(job.header)
            writer.writerows(reversed(job.unprocessed))
        else:
            raise RequestError(404, "NOT_FOUND", "The requested resource does not exist")
        return out.getvalue()

    def _rows(self, job: Job) -> tuple[list[str], list[list[str]]]:
        text = job.uploads[0].decode("utf-8")
        table = list(csv.reader(io.StringIO(text, newline=""), strict=True))
        return (table[0], table[1:]) if table else ([], [])

    def _fail(self, job: Job, message: str, rows: list[list[str]]) -> None:
        job.state, job.error, job.unprocessed = "Failed", message, rows

    def _process(self, job: Job) -> None:
        try:
            job.header, rows = self._rows(job)
        except (UnicodeDecodeError, csv.Error) as exc:
            return self._fail(job, f"ClientInputError : {exc}", [])
        if len(job.uploads) > 1:
            return self._fail(job, MULTIPLE.format(id=job.id), rows)
        if not job.header or not rows:
            return self._fail(job, "InvalidBatch : the job has no records", rows)
        for name in job.header:
            relationship, dot, parent_field = name.partition(".")
            lookup = job.object.lookup(relationship) if dot else None
            if lookup is not None:  # Account.Customer_Id__c: the lookup set by the parent's external ID
                parent = self.objects[lookup.reference_to].fields.get(parent_field)
                if parent is None or not parent.external_id:
                    return self._fail(job, f"InvalidBatch : Field name not found : {name}", rows)
            elif name not in job.object.fields:
                return self._fail(job, f"InvalidBatch : Field name not found : {name}", rows)
        if job.operation in ("delete", "hardDelete") and job.header != ["Id"]:
            return self._fail(job, f"InvalidBatch : The '{job.operation}' batch must contain only 'Id' column", rows)
        if job.operation == "upsert" and job.external_id not in job.header:
            return self._fail(job, f"InvalidBatch : External ID field {job.external_id} is missing", rows)
        for number, row in enumerate(rows, start=2):
            if len(row) != len(job.header):
                message = f"InvalidBatch : line {number} has {len(row)} columns, the header {len(job.header)}"
                return self._fail(job, message, rows)
        after, message = self.fail_next.popleft() if self.fail_next else (len(rows), "")
        key_at = job.header.index(job.external_id) if job.operation == "upsert" else 0
        seen = Counter(row[key_at].casefold() for row in rows if job.operation == "upsert")
        for row in rows[:after]:
            if job.operation == "upsert":
                self._upsert_row(job, row, key_at, seen)
            elif job.operation in ("delete", "hardDelete"):
                error = job.object.delete(row[0], hard=job.operation == "hardDelete")
                if not error:
                    cascade(self.objects, job.object, row[0])
                if error:
                    job.failures.append((row[0], error.csv(), row))
                else:
                    job.successes.append((row[0], False, row))
            else:
                job.failures.append(("", RecordError("INVALID_OPERATION", "not implemented here").csv(), row))
        if after < len(rows):
            return self._fail(job, message, rows[after:])
        job.state = "JobComplete"

    def _upsert_row(self, job: Job, row: list[str], key_at: int, seen: Counter[str]) -> None:
        key = row[key_at]
        if seen[key.casefold()] > 1 and key not in ("", "#N/A"):
            job.failures.append(
                ("", RecordError("DUPLICATE_VALUE", f"Duplicate external id specified: {key}").csv(), row)
            )
            return
        values: dict[str, Any] = {}
        for column, (name, cell) in enumerate(zip(job.header, row, strict=True), start=1):
            if cell == "":
                continue  # an empty cell leaves the field as it is
            relationship, dot, parent_field = name.partition(".")
            if dot:
                lookup = job.object.lookup(relationship)
                values[lookup.name] = resolve(self.objects, lookup, parent_field, cell)
                continue
            try:
                values[name] = None if cell == "#N/A" else job.object.fields[name].from_text(cell)
            except BadValue as exc:
                error = RecordError(
                    "INVALID_FIELD", f"Failed to deserialize field at col {column}. Due to, {exc}", (name,)
                )
                job.failures.append(("", error.csv(), row))
                return
        record_id, created, errors = job.object.upsert(job.external_id or "", values)
        if errors:
            job.failures.append((record_id or "", " ".join(e.csv() for e in errors), row))
        else:
            job.successes.append((record_id or "", created, row))
