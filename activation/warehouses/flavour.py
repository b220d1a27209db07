"""What differs between warehouses in SQL, and the small values the warehouse seam returns.

`base.Warehouse` writes every query once over a `SqlFlavour`; DuckDB and BigQuery each supply one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa

JSON, TEXT, VALUE = "json", "text", "value"  # how a mart column travels (MartColumn.travels)


class SqlFlavour(ABC):
    """The SQL that differs between warehouses; every query is otherwise written once, below."""

    name: str  # "duckdb", "bigquery"
    engine: str  # part of the state's signature: another hash function makes old hashes meaningless
    types: dict[str, str]  # portable kind (text, integer, float, timestamp) -> this warehouse's type
    value_checks: dict[str, str]  # templates for destinations' value checks; {c} is the quoted column

    @abstractmethod
    def quote(self, name: str) -> str: ...

    @abstractmethod
    def row_hash(self, columns: Sequence[str]) -> str:
        """An expression hashing the (quoted) value columns of a row; a constant when there are none."""

    @abstractmethod
    def json_text(self, expression: str) -> str: ...

    @abstractmethod
    def sha256_hex(self, text: str) -> str: ...

    @abstractmethod
    def length(self, text: str) -> str:
        """Characters, not bytes."""

    @abstractmethod
    def count_if(self, condition: str) -> str: ...

    def cast(self, expression: str, kind: str) -> str:
        return f"CAST({expression} AS {self.types[kind]})"

    def text_literal(self, value: str) -> str:
        """A string constant (standard SQL: a quote is doubled)."""
        return "'" + value.replace("'", "''") + "'"


@dataclass(frozen=True)
class MartColumn:
    type: pa.DataType  # as the warehouse reads it into Arrow
    travels: str = VALUE  # JSON: as JSON text (nested, JSON); TEXT: as its text form; VALUE: as is


@dataclass(frozen=True)
class KeyReport:
    """The mart's key, counted: the evidence behind `null_and_duplicate_keys`."""

    rows: int
    null_rows: int
    duplicates: list[tuple[str, int]]  # (key as text, rows), most repeated first
