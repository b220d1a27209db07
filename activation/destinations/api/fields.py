"""A sync's mapping (API field <- mart column), checked against what the API's describe says, and
the conditions over the mart rows the API would refuse, evaluated in the warehouse before any call.

Which mart types an API field takes (anything else refuses the sync before any call, naming
object, field and both types; cast in the mart to send another):

| API field type                        | mart column types                        |
|---------------------------------------|------------------------------------------|
| string, textarea, picklist, id        | text (JSON and nested columns as JSON text) |
| integer                               | integer, decimal with scale 0            |
| number                                | integer, decimal, float                  |
| boolean                               | boolean                                  |
| date                                  | date                                     |
| datetime                              | timestamp (with or without time zone)    |
| any other type the API names          | any of the above                         |

Values the API would refuse are found with one warehouse scan over the rows to send: NULL (or
empty text) in a required field, text longer than the field, a value outside a restricted
picklist, an item of a multi-select ('a;b') outside its values,
a number over the field's digits or with more decimals than it keeps, NaN or infinity.
"""

from __future__ import annotations

from collections.abc import Mapping

import pyarrow as pa

from activation.destinations.api.client import FieldInfo
from activation.syncs import validate
from activation.syncs.model import Plan, is_json
from activation.syncs.problems import Problem
from activation.syncs.results import SyncError
from activation.syncs.validate import Check, Violation
from activation.warehouses.base import Warehouse

TEXT_TYPES = frozenset({"string", "textarea", "picklist", "id"})


def mart_kind(field: pa.Field) -> str:
    """text | integer | decimal | float | boolean | date | timestamp | binary | other."""
    t = field.type
    if is_json(field) or pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "text"
    if pa.types.is_integer(t):
        return "integer"
    if pa.types.is_decimal(t):
        return "decimal"
    if pa.types.is_floating(t):
        return "float"
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_timestamp(t):
        return "timestamp"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return "binary"
    return "other"


def takes(api_type: str, field: pa.Field) -> bool:
    """Whether an API field of `api_type` takes the values of the mart column `field` as they are."""
    kind = mart_kind(field)
    if kind in ("binary", "other"):
        return False  # bytes and times have no spelling every API reads: encode them in the mart
    if api_type in TEXT_TYPES:
        return kind == "text"
    if api_type == "integer":
        return kind == "integer" or (kind == "decimal" and field.type.scale == 0)
    if api_type == "number":
        return kind in ("integer", "decimal", "float")
    if api_type == "boolean":
        return kind == "boolean"
    if api_type == "date":
        return kind == "date"
    if api_type == "datetime":
        return kind == "timestamp"
    return True


def check_mapping(
    plan: Plan,
    object_name: str,
    fields: Mapping[str, FieldInfo] | None,
    destination: str,
    *,
    associations: bool = False,
) -> list[Problem]:
    """Every mapped field exists, is writable and takes its column's type; the soft-delete field
    exists and is writable; a foreign key is a lookup to its parent object, or (`associations`: the
    client relates records apart from their fields, as HubSpot does) no field at all. Empty when
    the API has no describe (generic HTTP without rules)."""
    spec = plan.spec
    if fields is None:
        return []
    problems = []
    parents = {fk.column: fk.references_table for fk in spec.parsed_foreign_keys}

    def refuse(field: str, reason: str, fix: str) -> None:
        problems.append(Problem(object_name, reason, field, fix=fix, destination=destination))

    by_lower = {name.lower(): name for name in fields}
    wanted = [(d, plan.arrow_schema.field(d)) for d in plan.columns]
    for name, column in wanted:
        info = fields.get(name)
        if name in parents and (info is not None or associations):
            if associations:  # a link the client sets apart from the fields, whatever their names
                continue
            if info is not None and parents[name] not in info.reference_to:
                pointed = f"a lookup to {', '.join(info.reference_to)}" if info.reference_to else f"a {info.type} field"
                refuse(
                    name,
                    f"is {pointed}, not a lookup to {parents[name]} (foreign_keys)",
                    f"map the key of {parents[name]} to a lookup field that points at it",
                )
            elif info is not None and not info.writable:
                refuse(name, f"is read-only in {object_name}", "map the column to a writable lookup field")
            continue  # its value is the parent's key, checked by the parent's sync, not this field's type
        if info is None:
            near = by_lower.get(name.lower())
            hint = f"; did you mean {near!r}?" if near else ""
            refuse(name, f"is not a field of {object_name}{hint}", "map the column to a field the object has")
            continue
        if not info.writable and name not in spec.primary_key:
            refuse(name, f"is read-only in {object_name}", "map the column to a writable field")
        if not takes(info.type, column):
            refuse(
                name,
                f"is a {info.type} field but mart column {dict(plan.pairs)[name]!r} is {column.type}",
                "cast the column in the mart to a type the field takes",
            )
    soft = spec.soft_delete_column
    if soft:
        info = fields.get(soft)
        if info is None:
            refuse(soft, f"(delete: soft) is not a field of {object_name}", "name a field of the object")
        elif not info.writable:
            refuse(soft, f"(delete: soft) is read-only in {object_name}", "name a writable field")
        elif info.type not in ("datetime", "date", "boolean", "other", *TEXT_TYPES):
            refuse(soft, f"(delete: soft) is a {info.type} field", "use a datetime, date or boolean field")
    return problems


def value_checks(wh: Warehouse, plan: Plan, object_name: str, fields: Mapping[str, FieldInfo] | None) -> list[Check]:
    f = wh.flavour
    found: list[Check] = []
    foreign = set(plan.spec.foreign_keys)
    for name in plan.columns:
        column, info = plan.arrow_schema.field(name), (fields or {}).get(name)
        kind, c = mart_kind(column), f.quote(name)
        if kind == "float":  # JSON has no NaN or infinity; APIs refuse them
            nan, inf = f.value_checks["nan"].format(c=c), f.value_checks["inf"].format(c=c)
            found.append(Check(name, f"({nan} OR {inf})", "hold NaN or infinity, which an API cannot take"))
        if info is None or name in foreign:
            continue  # a foreign key holds the parent's key: checked as the parent's (plan.py: missing parents)
        where = f"{object_name}.{name}"
        if info.required and name not in plan.spec.primary_key:
            empty = f"{c} IS NULL" + (f" OR {c} = ''" if kind == "text" else "")
            found.append(Check(name, f"({empty})", f"are empty but {where} is required"))
        if kind == "text" and info.length:
            reason = f"are longer than {where}'s {info.length} characters"
            found.append(Check(name, wh.longer_than(name, info.length), reason))
        if kind == "text" and info.picklist is not None and info.multi:
            allowed = ", ".join(f.text_literal(v) for v in info.picklist) or "NULL"
            shown = ", ".join(info.picklist[:8]) + (", ..." if len(info.picklist) > 8 else "")
            outside = f.value_checks["items_outside"].format(c=c, allowed=allowed)
            found.append(
                Check(
                    name,
                    f"({c} IS NOT NULL AND {c} <> '' AND {outside})",
                    f"hold an item (between ';') that is not among the values of the multi-select {where} ({shown})",
                )
            )
        elif kind == "text" and info.picklist is not None:
            allowed = ", ".join(f.text_literal(v) for v in info.picklist) or "NULL"
            shown = ", ".join(info.picklist[:8]) + (", ..." if len(info.picklist) > 8 else "")
            found.append(
                Check(
                    name,
                    f"({c} IS NOT NULL AND {c} <> '' AND {c} NOT IN ({allowed}))",
                    f"are not among the values of the picklist {where} ({shown})",
                )
            )
        if kind in ("integer", "decimal", "float") and info.precision:
            scale = info.scale or 0
            limit = f"1e{info.precision - scale}"
            double = f.value_checks["double"].format(c=c)
            finite = ""
            if kind == "float":
                nan, inf = f.value_checks["nan"].format(c=c), f.value_checks["inf"].format(c=c)
                finite = f"NOT {nan} AND NOT {inf} AND "
            found.append(
                Check(
                    name,
                    f"({finite}abs({double}) >= {limit})",
                    f"exceed {where}'s {info.precision} digits ({scale} after the point)",
                )
            )
        if kind == "decimal" and info.scale is not None and column.type.scale > info.scale:
            found.append(
                Check(
                    name,
                    f"({c} <> round({c}, {info.scale}))",
                    f"have more than {info.scale} decimal places, which {where} would round",
                )
            )
    return found


def find_problems(wh: Warehouse, plan: Plan, checks: list[Check]) -> list[tuple[Violation, Problem]]:
    """Every check in one scan of the rows to send (syncs/validate.py), each named as a Problem."""
    fix = "fix the values in the mart, or widen the field in the API"
    return [(v, v.as_problem(plan.spec, fix)) for v in validate.violations(wh, plan, checks)]


def refuse_or_set_aside(wh: Warehouse, plan: Plan, object_name: str, found: list[tuple[Violation, Problem]]) -> int:
    """Without `max_rejects`, any value problem refuses the sync (SyncError, nothing sent). With it,
    the rows are set aside as rejects while their count stays within the limit; returns the count."""
    spec = plan.spec
    if not found:
        return 0
    if spec.max_rejects is None:
        problems = [p for _, p in found]
        raise SyncError(
            f"{spec.source} -> {object_name}: {len(problems)} problem(s) in the rows to send that the API would "
            "refuse; nothing was sent:\n" + "\n".join(f"- {p}" for p in problems),
            problems,
        )
    for violation, _ in found:
        wh.rejects.add(plan, violation.column, violation.problem, violation.condition)
    return wh.rejects.verdict(plan, "fix them in the mart", [p for _, p in found])
