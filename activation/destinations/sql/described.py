"""A destination table as last described, as a plain value: kept in the warehouse at each real
sync (`activation.warehouses.destination_schemas`), so a review in CI, which holds no destination
credentials, runs the same pre-write checks (`PreWriteChecks.fits_table`) against it.

A column keeps its SQLAlchemy type class (the reflected one: MySQL's `INTEGER(unsigned=True)`,
`TIMESTAMP`, a `VARCHAR(255)`) and the arguments the checks read, so the table rebuilt from the
description answers the checks as the reflected one did.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

_ARGUMENTS = ("length", "precision", "scale", "unsigned", "timezone", "fsp", "asdecimal")


def describe(target: sa.Table, dialect_name: str, charsets: Mapping[str, str], bind: sa.Dialect) -> dict[str, Any]:
    """The description of a reflected (or just created) table."""
    columns = []
    for column in target.columns:
        type_ = column.type
        try:
            compiled = type_.compile(bind)
        except Exception:  # noqa: BLE001 - a type this dialect cannot spell is still described by class
            compiled = type(type_).__name__
        columns.append(
            {
                "name": column.name,
                "type": compiled,
                "class": f"{type(type_).__module__}:{type(type_).__qualname__}",
                "arguments": {
                    a: getattr(type_, a) for a in _ARGUMENTS if isinstance(getattr(type_, a, None), int | bool)
                },
                "nullable": bool(column.nullable),
                "primary_key": bool(column.primary_key),
                "default": column.server_default is not None,
            }
        )
    return {"table": target.name, "dialect": dialect_name, "columns": columns, "charsets": dict(charsets)}


def _type(column: Mapping[str, Any]) -> sa.types.TypeEngine:
    module, _, name = column["class"].partition(":")
    if not module.startswith("sqlalchemy."):  # only SQLAlchemy's own types are rebuilt
        return sa.types.NullType()
    try:
        cls = getattr(importlib.import_module(module), name)
        accepted = inspect.signature(cls.__init__).parameters
        return cls(**{k: v for k, v in column.get("arguments", {}).items() if k in accepted})
    except Exception:  # noqa: BLE001 - an unknown type is checked as no type (nothing refused for it)
        return sa.types.NullType()


def table(description: Mapping[str, Any]) -> sa.Table:
    """The table the description describes, for the checks (never created anywhere)."""
    columns = [
        sa.Column(
            c["name"],
            _type(c),
            nullable=c["nullable"],
            primary_key=c["primary_key"],
            server_default=sa.text("0") if c.get("default") else None,
        )
        for c in description["columns"]
    ]
    return sa.Table(description["table"], sa.MetaData(), *columns)
