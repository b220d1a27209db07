"""The data side of the local Salesforce org: sObjects with typed fields, records, and the rules a
real org applies to each record of an upsert or a delete (lengths, restricted picklists, required
fields, numeric ranges, writable fields, external ID matching). Both wire formats end here: JSON
values from sObject Collections and CSV cells from Bulk API 2.0, each parsed as strictly as
Salesforce parses them, so a client that sends a wrong format gets an error, not a silent value."""

from __future__ import annotations

import datetime as dt
import itertools
import re
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

TEXT = {"string", "textarea", "email", "phone", "url", "picklist", "multipicklist"}
NUMBER = {"double", "currency", "percent"}
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
DATETIME = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d{1,3})?(Z|[+-]\d{2}:?\d{2})$")
INTEGER = re.compile(r"^-?\d+$")
DECIMAL = re.compile(r"^-?\d+(\.\d+)?$")
DOUBLE = re.compile(r"^-?\d+(\.\d+)?([eE][+-]?\d+)?$")


class RequestError(Exception):
    """The whole request is refused (HTTP 4xx with Salesforce's [{errorCode, message}] body)."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


@dataclass(frozen=True)
class RecordError:
    """One record's error, as Collections ({statusCode, message, fields}) and Bulk (sf__Error) show it."""

    code: str
    message: str
    fields: tuple[str, ...] = ()

    def json(self) -> dict[str, Any]:
        return {"statusCode": self.code, "message": self.message, "fields": list(self.fields)}

    def csv(self) -> str:
        return f"{self.code}:{self.message}:{','.join(self.fields)} --"


class BadValue(Exception):
    """A value of the wrong format: a whole-request JSON_PARSER_ERROR in JSON, a row error in CSV."""


@dataclass(frozen=True)
class Field:
    name: str
    type: (
        str  # Salesforce's own: id string textarea email url picklist int double currency percent boolean date datetime
    )
    length: int = 0
    precision: int = 0
    scale: int = 0
    nillable: bool = True
    createable: bool = True
    updateable: bool = True
    defaulted: bool = False
    external_id: bool = False
    unique: bool = False
    picklist: tuple[str, ...] = ()
    restricted: bool = False
    case_sensitive: bool = False  # Salesforce's default for an external ID text field
    reference_to: str = ""  # a lookup ("reference"): the object it points at
    relationship: str = ""  # its relationship name (Account for AccountId)
    cascade_delete: bool = False  # deleting the parent deletes this record (Contact.AccountId)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.name.removesuffix("__c").replace("_", " "),
            "type": self.type,
            "length": self.length,
            "precision": self.precision if self.type in NUMBER else 0,
            "scale": self.scale if self.type in NUMBER else 0,
            "digits": self.precision if self.type == "int" else 0,
            "nillable": self.nillable,
            "createable": self.createable,
            "updateable": self.updateable,
            "defaultedOnCreate": self.defaulted,
            "externalId": self.external_id,
            "unique": self.unique,
            "caseSensitive": self.case_sensitive if self.type in TEXT else False,
            "idLookup": self.external_id or self.type == "id",
            "calculated": not (self.createable or self.updateable) and self.type != "id",
            "restrictedPicklist": self.restricted,
            "picklistValues": [{"value": v, "label": v, "active": True, "defaultValue": False} for v in self.picklist],
            "referenceTo": [self.reference_to] if self.reference_to else [],
            "relationshipName": self.relationship or None,
        }

    def from_json(self, value: Any) -> Any:
        if value is None or value == "" and self.type in TEXT:
            return None
        if self.type == "reference":  # an Id; by a parent's external ID only through the relationship
            if not isinstance(value, str):
                raise BadValue(f"Cannot deserialize instance of reference from value {value!r}")
            return value
        if self.type in TEXT:
            if not isinstance(value, str):
                raise BadValue(f"Cannot deserialize instance of string from {type(value).__name__} value {value}")
            return value
        if self.type == "boolean":
            if not isinstance(value, bool):
                raise BadValue(f"Cannot deserialize instance of boolean from value {value!r}")
            return value
        if self.type in NUMBER | {"int"}:
            if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
                raise BadValue(f"Cannot deserialize instance of {self.type} from value {value!r}")
            return self.from_text(str(value))
        if self.type in ("date", "datetime"):
            if not isinstance(value, str):
                raise BadValue(f"Cannot deserialize instance of {self.type} from value {value!r}")
            return self.from_text(value)
        raise BadValue(f"Cannot deserialize instance of {self.type} from value {value!r}")

    def from_text(self, text: str) -> Any:
        """A CSV cell (also a JSON string or number): exactly the formats Salesforce documents."""
        if self.type in TEXT or self.type == "reference":
            return text
        if self.type == "boolean":
            if text.lower() not in ("true", "false"):
                raise BadValue(f"'{text}' is not a valid value for the type xsd:boolean")
            return text.lower() == "true"
        if self.type == "int":
            if not INTEGER.match(text):
                raise BadValue(f"'{text}' is not a valid value for the type xsd:int")
            return int(text)
        if self.type in NUMBER:
            if not (DOUBLE if self.type == "double" else DECIMAL).match(text):
                raise BadValue(f"'{text}' is not a valid value for the type xsd:double")
            return Decimal(text)
        if self.type == "date":
            try:
                if not DATE.match(text):
                    raise ValueError
                return dt.date.fromisoformat(text)
            except ValueError:
                raise BadValue(f"'{text}' is not a valid value for the type xsd:date") from None
        if self.type == "datetime":
            match = DATETIME.match(text)
            try:
                if not match:
                    raise ValueError
                zone = match.group(3).replace("Z", "+00:00")
                value = dt.datetime.fromisoformat(match.group(1) + (match.group(2) or "") + zone)
                return value.astimezone(dt.UTC)
            except ValueError:
                raise BadValue(f"'{text}' is not a valid value for the type xsd:dateTime") from None
        raise BadValue(f"'{text}' cannot be written to a field of type {self.type}")

    def check(self, value: Any) -> tuple[Any, RecordError | None]:
        """A parsed value against the field's limits: what is stored, or the record's error."""
        label = self.name.removesuffix("__c").replace("_", " ")
        if value is None:
            return (False if self.type == "boolean" else None), None
        if self.type in TEXT and len(value) > self.length:
            shown = value if len(value) <= 40 else value[:37] + "(...)"
            message = f"{label}: data value too large: {shown} (max length={self.length})"
            return None, RecordError("STRING_TOO_LONG", message, (self.name,))
        if self.type == "multipicklist" and self.restricted:
            bad = [item for item in value.split(";") if item not in self.picklist]
            if bad:
                message = f"{label}: bad value for restricted picklist field: {bad[0]}"
                return None, RecordError("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", message, (self.name,))
        if self.type == "picklist" and self.restricted and value not in self.picklist:
            message = f"{label}: bad value for restricted picklist field: {value}"
            return None, RecordError("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", message, (self.name,))
        if self.type in NUMBER | {"int"}:
            scale = self.scale if self.type in NUMBER else 0
            try:
                value = Decimal(value).quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP)
            except InvalidOperation:
                value = None
            digits = self.precision - scale
            if value is None or abs(value) >= Decimal(10) ** digits:
                message = f"{label}: value outside of valid range on numeric field: {value}"
                return None, RecordError("NUMBER_OUTSIDE_VALID_RANGE", message, (self.name,))
            return (int(value) if self.type == "int" else value), None
        return value, None


@dataclass
class SObject:
    name: str
    prefix: str  # the first 3 characters of its Ids (001 for Account)
    fields: dict[str, Field]
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    recycle_bin: dict[str, dict[str, Any]] = field(default_factory=dict)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    # Ids whose deletion fails (related records block it, as open Cases block an Account's)
    protected: set[str] = field(default_factory=set)
    # external ID field -> folded value -> Ids (the org's index, so a 100k-record job stays fast)
    _index: dict[str, dict[Any, set[str]]] = field(default_factory=dict)

    def new_id(self) -> str:
        return f"{self.prefix}5g00000{next(self._ids):08d}"

    def field_or_error(self, name: str) -> Field:
        if name not in self.fields:
            raise RequestError(400, "INVALID_FIELD", f"No such column '{name}' on sobject of type {self.name}")
        return self.fields[name]

    def external_id(self, name: str) -> Field:
        found = self.fields.get(name)
        if found is None:
            message = f"Provided external ID field does not exist or is not accessible: {name}"
            raise RequestError(404, "NOT_FOUND", message)
        if not found.external_id:
            message = f"Field name provided, {name} is not an External ID or indexed field for {self.name}"
            raise RequestError(400, "INVALID_FIELD", message)
        return found

    def lookup(self, relationship: str) -> Field | None:
        """The lookup field set through `relationship` (Account -> AccountId), if the object has one."""
        return next((f for f in self.fields.values() if f.type == "reference" and f.relationship == relationship), None)

    def matching(self, key_field: str, key: Any) -> list[str]:
        """Ids whose external ID equals `key` (text compared without regard to case, as Salesforce does)."""
        return sorted(self._index.get(key_field, {}).get(folded(key), ()))

    def store(self, record: dict[str, Any]) -> str:
        """Put a record in the org as it is (the tests seed with this; upserts end here)."""
        record_id = record.get("Id") or self.new_id()
        self.unstore(record_id)
        self.records[record_id] = {**record, "Id": record_id}
        for name, spec in self.fields.items():
            if spec.external_id and record.get(name) is not None:
                self._index.setdefault(name, {}).setdefault(folded(record[name]), set()).add(record_id)
        return record_id

    def unstore(self, record_id: str) -> dict[str, Any] | None:
        record = self.records.pop(record_id, None)
        for name, index in self._index.items():
            if record is not None and record.get(name) is not None:
                index.get(folded(record[name]), set()).discard(record_id)
        return record

    def upsert(self, key_field: str, values: dict[str, Any]) -> tuple[str | None, bool, list[RecordError]]:
        """One record, its fields already parsed: (Id, created, errors), as the org applies it."""
        key = values.get(key_field)
        if key is None:
            return None, False, [RecordError("MISSING_ARGUMENT", f"{key_field} not specified", (key_field,))]
        errors, checked = [], {}
        for name, value in values.items():
            if isinstance(value, RecordError):  # a lookup by external ID that found no parent
                errors.append(value)
                continue
            spec = self.fields[name]
            if spec.type == "id" or not (spec.createable and spec.updateable):
                message = (
                    f"Unable to create/update fields: {name}. Please check the security settings of this field "
                    f"and verify that it is read/write for your profile or permission set."
                )
                errors.append(RecordError("INVALID_FIELD_FOR_INSERT_UPDATE", message, (name,)))
                continue
            stored, error = spec.check(value)
            if error:
                errors.append(error)
            checked[name] = stored
        if errors:
            return None, False, errors
        ids = self.matching(key_field, checked[key_field])
        if len(ids) > 1:
            message = f"{key_field}: more than one record found for external id field: [{', '.join(ids)}]"
            return None, False, [RecordError("DUPLICATE_EXTERNAL_ID", message, (key_field,))]
        merged = {**(self.records[ids[0]] if ids else {}), **checked}
        missing = [
            f.name
            for f in self.fields.values()
            if not f.nillable and not f.defaulted and f.createable and merged.get(f.name) is None
        ]
        if missing:
            message = f"Required fields are missing: [{', '.join(missing)}]"
            return None, False, [RecordError("REQUIRED_FIELD_MISSING", message, tuple(missing))]
        for f in self.fields.values():
            if f.type == "boolean" and f.name not in merged:
                merged[f.name] = False
        return self.store({**merged, "Id": ids[0] if ids else None}), not ids, []

    def delete(self, record_id: str, *, hard: bool = False) -> RecordError | None:
        if record_id in self.protected:
            name = self.records.get(record_id, {}).get("Name", record_id)
            message = (
                f"Your attempt to delete {name} could not be completed because it is associated with the "
                f"following cases.: 00001026"
            )
            return RecordError("DELETE_FAILED", message)
        if record_id in self.records:
            record = self.unstore(record_id)
            if not hard:
                self.recycle_bin[record_id] = record
            return None
        if record_id in self.recycle_bin:
            if hard:
                del self.recycle_bin[record_id]
                return None
            return RecordError("ENTITY_IS_DELETED", "entity is deleted")
        if not record_id.startswith(self.prefix) or len(record_id) not in (15, 18):
            return RecordError("MALFORMED_ID", f"malformed id {record_id}")
        return RecordError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")


def resolve(objects: dict[str, SObject], lookup: Field, parent_field: str, key: Any) -> str | RecordError | None:
    """The Id a lookup set by its parent's external ID gets, or the record's error, as Salesforce
    answers an upsert whose parent is missing. The external ID field must be one (else the whole
    request is refused)."""
    parent = objects[lookup.reference_to]
    spec = parent.external_id(parent_field)
    value = spec.from_text(key) if isinstance(key, str) and spec.type not in TEXT else key
    if value is None or value == "":
        return None
    ids = parent.matching(parent_field, value)
    if not ids:
        message = f"Foreign key external ID: {key} not found for field {parent_field} in entity {parent.name}"
        return RecordError("INVALID_FIELD", message, (lookup.name,))
    if len(ids) > 1:
        message = f"Foreign key external ID: {key} matches more than one record for field {parent_field}"
        return RecordError("INVALID_FIELD", message, (lookup.name,))
    return ids[0]


def cascade(objects: dict[str, SObject], parent: SObject, record_id: str) -> None:
    """Deleting a parent deletes the records whose cascading lookup points at it (an Account's
    Contacts), as Salesforce does, into the Recycle Bin with it."""
    for child in objects.values():
        for lookup in child.fields.values():
            if lookup.type == "reference" and lookup.reference_to == parent.name and lookup.cascade_delete:
                for child_id in [i for i, r in child.records.items() if r.get(lookup.name) == record_id]:
                    child.delete(child_id)


def child_relationships(objects: dict[str, SObject], parent: SObject) -> list[dict[str, Any]]:
    """The describe's childRelationships of `parent`: which lookups point at it, and which cascade."""
    return [
        {
            "childSObject": child.name,
            "field": lookup.name,
            "cascadeDelete": lookup.cascade_delete,
            "relationshipName": f"{child.name}s",
        }
        for child in objects.values()
        for lookup in child.fields.values()
        if lookup.type == "reference" and lookup.reference_to == parent.name
    ]


def folded(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else value


def account() -> SObject:
    """Account with a field of every kind the client converts (the tests' default object)."""
    fields = [
        Field("Id", "id", length=18, nillable=False, createable=False, updateable=False, defaulted=True),
        Field("Name", "string", length=255, nillable=False),
        Field("Customer_Id__c", "string", length=40, external_id=True, unique=True),
        Field("Legacy_Key__c", "string", length=40, external_id=True),  # not unique: duplicates can exist
        Field("Segment__c", "picklist", length=255, picklist=("Enterprise", "Mid-Market", "SMB"), restricted=True),
        Field("Source__c", "picklist", length=40, picklist=("Web", "Partner")),  # unrestricted
        Field("Regions__c", "multipicklist", length=4099, picklist=("EMEA", "APAC", "AMER"), restricted=True),
        Field("Lifetime_Value__c", "currency", precision=16, scale=2),
        Field("Churn_Risk__c", "percent", precision=5, scale=2),
        Field("Score__c", "double", precision=18, scale=6),
        Field("Seats__c", "int", precision=9),
        Field("Is_Active__c", "boolean", nillable=False, defaulted=True),
        Field("First_Order__c", "date"),
        Field("Last_Seen__c", "datetime"),
        Field("Notes__c", "textarea", length=1000),
        Field("Website", "url", length=255),
        Field("Health__c", "string", length=20, createable=False, updateable=False),  # a formula
    ]
    return SObject("Account", "001", {f.name: f for f in fields})


def contact() -> SObject:
    """Contact keyed by an External ID of its own, with the standard AccountId lookup (deleting the
    Account deletes its Contacts)."""
    fields = [
        Field("Id", "id", length=18, nillable=False, createable=False, updateable=False, defaulted=True),
        Field("LastName", "string", length=80, nillable=False),
        Field("Email", "email", length=80),
        Field("Activation_Key__c", "string", length=40, external_id=True, unique=True),
        Field("AccountId", "reference", length=18, reference_to="Account", relationship="Account", cascade_delete=True),
    ]
    return SObject("Contact", "003", {f.name: f for f in fields})
