"""The Salesforce ObjectClient: describe an sObject, upsert records by an external ID field, delete
them by it, count them. Small change sets go through sObject Collections (200 records a call, one
result per record); from `bulk_threshold` records on, through Bulk API 2.0 ingest jobs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from simple_salesforce import Salesforce

from activation.destinations.api.client import CallStats, FieldInfo, Outcome, Record, Reference
from activation.destinations.api.limits import RateLimiter, Transport
from activation.destinations.salesforce.auth import read_credentials
from activation.destinations.salesforce.bulk import BulkIngest
from activation.destinations.salesforce.describe import fields_of
from activation.destinations.salesforce.rest import (
    api_name,
    delete_collection,
    key_text,
    lookup_ids,
    query_in,
    rest,
    upsert_collection,
)
from activation.destinations.salesforce.session import OrgSession
from activation.destinations.salesforce.settings import COLLECTION_LIMIT, Settings
from activation.destinations.salesforce.wire import (
    NotSendable,
    NullLookalike,
    csv_header,
    csv_row,
    csv_value,
    json_record,
    relationship_name,
    uploads,
)

Log = Callable[[str], None]


def open_client(settings: Settings, limiter: RateLimiter, log: Log = print) -> SalesforceClient:
    """Read the secrets from the environment, log in, and bind a client to the org."""
    credentials = read_credentials(settings)
    stats = CallStats()
    session = OrgSession(settings, credentials, Transport(limiter, stats, log=log), log)
    try:
        return SalesforceClient(settings, session, stats, log)
    except BaseException:
        session.close()
        raise


class SalesforceClient:
    """An ObjectClient bound to one org; its `stats` count every call made through its session."""

    kind = "salesforce"

    def __init__(self, settings: Settings, session: OrgSession, stats: CallStats, log: Log):
        self.settings, self.session, self.stats, self.log = settings, session, stats, log
        token = session.login()
        self.sf = Salesforce(
            instance_url=token.instance_url,
            session_id=token.access_token,  # the session replaces it with the current token on each call
            version=settings.api_version,
            session=session,
        )
        self.bulk = BulkIngest(session, self.sf.base_url, settings, log)
        self.described: dict[str, dict[str, FieldInfo]] = {}
        self.cascading: dict[str, list[tuple[str, str]]] = {}

    @property
    def api_usage(self) -> tuple[int | None, int | None]:
        """(used, limit) of the org's daily API requests, as Salesforce last reported them."""
        return self.session.usage.used, self.session.usage.limit

    def describe(self, object_name: str) -> dict[str, FieldInfo]:
        path = f"sobjects/{api_name(object_name, 'object')}/describe"
        answer = rest(f"describing {object_name}", self.sf.restful, path)
        self.described[object_name] = fields_of(answer)
        self.cascading[object_name] = [
            (c["childSObject"], c["field"]) for c in answer.get("childRelationships") or [] if c.get("cascadeDelete")
        ]
        return self.described[object_name]

    def cascades(self, object_name: str) -> list[tuple[str, str]]:
        """(child object, lookup field) of each lookup whose records Salesforce deletes with a parent
        record of `object_name` (describe childRelationships, cascadeDelete: an Account's Contacts)."""
        if object_name not in self.cascading:
            self.describe(object_name)
        return self.cascading[object_name]

    def referencing(
        self, child: str, lookup: str, child_key: str, parent_key: str, keys: Sequence[Any]
    ) -> list[tuple[Any, str]]:
        """(child's key, parent's key) of the `child` records whose `lookup` points at a parent whose
        `parent_key` is one of `keys`: one SOQL relationship query per URL budget."""
        for name, what in ((child, "object"), (lookup, "lookup field"), (child_key, "key"), (parent_key, "key")):
            api_name(name, what)
        if child not in self.described:
            self.describe(child)
        relationship = relationship_name(lookup, self._relationships(child))
        wanted = {key_text(k).casefold(): key_text(k) for k in keys}
        select = f"SELECT {child_key}, {relationship}.{parent_key} FROM {child}"
        found = query_in(self.sf, select, f"{relationship}.{parent_key}", keys, f"reading {child} records by {lookup}")
        out = []
        for record in found:
            parent = key_text((record.get(relationship) or {}).get(parent_key))
            out.append((record.get(child_key), wanted.get(parent.casefold(), parent)))
        return out

    def _relationships(self, object_name: str) -> dict[str, str]:
        """Lookup field -> relationship name, as the object's describe (made before any write) says."""
        fields = self.described.get(object_name, {})
        return {name: info.relationship for name, info in fields.items() if info.relationship}

    def batch_size(self, changes: int) -> int:
        return self.settings.bulk_job_records if changes >= self.settings.bulk_threshold else COLLECTION_LIMIT

    def count(self, object_name: str, key_field: str | None = None) -> int:
        soql = f"SELECT COUNT() FROM {api_name(object_name, 'object')}"
        if key_field:  # the records a sync keys: others of the object (made in the org) are not its
            soql += f" WHERE {api_name(key_field, 'external ID field')} != null"
        return int(rest(f"counting {object_name}", self.sf.query, soql)["totalSize"])

    def close(self) -> None:
        self.session.close()

    def upsert(self, object_name: str, key_field: str, records: Sequence[Record]) -> list[Outcome]:
        api_name(object_name, "object")
        api_name(key_field, "external ID field")
        for name in {name for record in records for name in record}:
            api_name(name, f"{object_name} field")
        for reference in {v for record in records for v in record.values() if isinstance(v, Reference)}:
            api_name(reference.object, "parent object")
            api_name(reference.field, f"{reference.object} external ID field")
        relationships = self._relationships(object_name)
        done: dict[int, Outcome] = {}
        as_json: list[tuple[int, str]] = []
        as_csv: list[tuple[int, list[str]]] = []
        keys: dict[int, str] = {}
        bulk = len(records) >= self.settings.bulk_threshold
        columns = _columns(key_field, records)
        header = csv_header(columns, records, relationships) if bulk else columns
        for i, record in enumerate(records):
            try:
                if record.get(key_field) in (None, ""):
                    raise NotSendable(f"{key_field} is empty, and {object_name} records are upserted by it")
                if bulk:
                    try:
                        as_csv.append((i, csv_row(record, columns, header)))
                        keys[i] = csv_value(record[key_field])
                        continue
                    except NullLookalike:
                        pass  # '#N/A' or a lookup to clear: CSV cannot say it, JSON can
                as_json.append((i, json_record(object_name, record, relationships)))
            except NotSendable as exc:
                done[i] = Outcome(i, False, error=f"{object_name} {key_field}={record.get(key_field)!r}: {exc}")
        if as_csv:
            packed, oversized = uploads(header, as_csv, self.settings.bulk_max_upload_bytes)
            for i in oversized:
                done[i] = Outcome(i, False, error="the record is larger than one Bulk API 2.0 upload")
            for indices, data in packed:
                job_keys = {i: keys[i] for i in indices}
                for outcome in self.bulk.run(object_name, "upsert", key_field, data, job_keys, key_field):
                    done[outcome.index] = outcome
        for outcome in upsert_collection(self.sf, object_name, key_field, as_json):
            done[outcome.index] = outcome
        return self._noted([done[i] for i in range(len(records))])

    def delete(self, object_name: str, key_field: str, keys: Sequence[Any]) -> list[Outcome]:
        api_name(object_name, "object")
        api_name(key_field, "external ID field")
        if not keys:
            return []
        found = lookup_ids(self.sf, object_name, key_field, keys)
        ids_of = [found.get(key_text(k), []) for k in keys]
        ids = list(dict.fromkeys(record_id for ids in ids_of for record_id in ids))
        if not ids:
            errors: dict[str, str] = {}
        elif self.settings.hard_delete or len(ids) >= self.settings.bulk_threshold:
            errors = self._bulk_delete(object_name, ids)
        else:
            errors = delete_collection(self.sf, object_name, ids)
        outcomes = []
        for i, record_ids in enumerate(ids_of):
            problems = [f"{record_id}: {errors[record_id]}" for record_id in record_ids if errors.get(record_id)]
            outcomes.append(Outcome(i, not problems, error="; ".join(problems)))
        return self._noted(outcomes)

    def _bulk_delete(self, object_name: str, ids: list[str]) -> dict[str, str]:
        operation = "hardDelete" if self.settings.hard_delete else "delete"
        rows = [(j, [record_id]) for j, record_id in enumerate(ids)]
        packed, _ = uploads(["Id"], rows, self.settings.bulk_max_upload_bytes)
        errors: dict[str, str] = {}
        for indices, data in packed:
            for outcome in self.bulk.run(object_name, operation, "Id", data, {j: ids[j] for j in indices}):
                errors[ids[outcome.index]] = outcome.error
        return errors

    def _noted(self, outcomes: list[Outcome]) -> list[Outcome]:
        for outcome in outcomes:
            if not outcome.ok:
                self.stats.note_error(outcome.error)
        return outcomes


def _columns(key_field: str, records: Sequence[Record]) -> list[str]:
    """Every field any record carries, the external ID first."""
    return list(dict.fromkeys([key_field, *(name for record in records for name in record)]))
