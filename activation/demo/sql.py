"""Shared pieces of the demo generator: the raw schema, Salesforce ids, time constants, and SQL helpers.

Randomness is `hash(seed, key, tag)` through the macros `connect` installs, never `random()`."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import duckdb

from activation.demo.vocabulary import BUILDINGS, GEO, OCCUPATIONS, TOWNS

RAW_SCHEMA = "raw_salesforce"

TABLES = ("account", "contact", "job_posting__c", "application__c", "application__history", "event")

# Salesforce key prefixes: standard objects keep theirs, custom objects get the a0X range.
KEY_PREFIX = {
    "account": "001",
    "contact": "003",
    "job_posting__c": "a0J",
    "application__c": "a0K",
    "application__history": "017",
    "event": "00U",
    "user": "005",
}

# Rows at scale 1.0 (history is derived from applications: about two status changes each),
# and the floor at any scale, so tiny test lakes still have every table populated.
BASE_ROWS = {
    "corporation": 1_000,
    "facility": 5_000,
    "contact": 100_000,
    "job_posting__c": 30_000,
    "application__c": 200_000,
    "event": 1_000_000,
}
MIN_ROWS = {
    "corporation": 5,
    "facility": 20,
    "contact": 40,
    "job_posting__c": 20,
    "application__c": 60,
    "event": 200,
}

CHECKSUM_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# Ids look like '0015g00000A01bcAAE': key prefix, pod '5g', zeros, then the sequence number in
# base62 offset so its first digit is 'A' (mixed case, so the checksum suffix is exercised).
ID_OFFSET = 10 * 62**4
ID_POD = "5g00000"


def epoch(year: int, month: int, day: int, hour: int = 0) -> int:
    return int(datetime(year, month, day, hour, tzinfo=UTC).timestamp())


LAKE_END = epoch(2025, 6, 30, 23)  # the last instant of the generated history (UTC)
ORG_START = epoch(2012, 4, 1)
CONTACT_START = epoch(2021, 4, 1)
POSTING_START = epoch(2022, 1, 1)
DAY = 86_400
USERS = 25  # owner ids point at these (the user object itself is not part of the demo lake)


def salesforce_id_checksum(id15: str) -> str:
    """Reference for the 3-character case-safe suffix of a 15-character Salesforce id.

    Kept in Python so a test can check the SQL macro that generates every id in the lake.
    """
    if len(id15) != 15:
        raise ValueError(f"expected 15 characters, got {len(id15)}")
    suffix = ""
    for chunk in range(3):
        bits = 0
        for i, char in enumerate(id15[chunk * 5 : chunk * 5 + 5]):
            if "A" <= char <= "Z":
                bits |= 1 << i
        suffix += CHECKSUM_ALPHABET[bits]
    return suffix


# --------------------------------------------------------------------------- SQL helpers


def sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def sql_list(values: list[str]) -> str:
    return "[" + ", ".join(sql_text(v) for v in values) + "]"


def pick(values: list[str], key: str, tag: str) -> str:
    return f"{sql_list(values)}[ix({key}, {sql_text(tag)}, {len(values)})]"


def weighted(key: str, tag: str, choices: list[tuple[str, float]]) -> str:
    """CASE expression drawing one of `choices` with the given weights."""
    total = sum(w for _, w in choices)
    parts, acc = [], 0.0
    for value, weight in choices[:-1]:
        acc += weight / total
        parts.append(f"WHEN u({key}, {sql_text(tag)}) < {acc:.6f} THEN {sql_text(value)}")
    return f"CASE {' '.join(parts)} ELSE {sql_text(choices[-1][0])} END"


def sql_timestamp(epoch_expr: str) -> str:
    return f"to_timestamp({epoch_expr})"


def b62_sql(n: str, digits: int) -> str:
    parts = [f"substr('{BASE62}', (({n}) // {62**k} % 62)::INTEGER + 1, 1)" for k in range(digits - 1, -1, -1)]
    return " || ".join(parts)


def checksum_sql(s: str) -> str:
    chunks = []
    for chunk in range(3):
        bits = " + ".join(
            f"(CASE WHEN ascii(substr({s}, {chunk * 5 + i + 1}, 1)) BETWEEN 65 AND 90 THEN {1 << i} ELSE 0 END)"
            for i in range(5)
        )
        chunks.append(f"substr('{CHECKSUM_ALPHABET}', {bits} + 1, 1)")
    return " || ".join(chunks)


def digit_checksum_sql(n: str) -> str:
    """Checksum character of the last 5-character chunk, from its base62 digits (10..35 = A..Z)."""
    bits = " + ".join(
        f"(CASE WHEN ({n}) // {62 ** (4 - i)} % 62 BETWEEN 10 AND 35 THEN {1 << i} ELSE 0 END)" for i in range(5)
    )
    return f"substr('{CHECKSUM_ALPHABET}', ({bits})::INTEGER + 1, 1)"


def connect(path: str | Path, seed: int) -> duckdb.DuckDBPyConnection:
    """Open the lake with the generator's temp macros and lookup tables installed."""
    seed = int(seed)
    con = duckdb.connect(str(path))
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")
    macros = [
        f"h(k, tag) AS hash({seed}, k, tag)",
        "u(k, tag) AS (h(k, tag) % 1000003)::DOUBLE / 1000003.0",
        "ix(k, tag, n) AS (1 + h(k, tag) % n)::BIGINT",
        "ri(k, tag, lo, hi) AS (lo + (h(k, tag) % (hi - lo + 1))::BIGINT)",
        f"sf_checksum(s) AS {checksum_sql('s')}",
        f"sf_id15(prefix, seq) AS prefix || '{ID_POD}' || {b62_sql(f'seq + {ID_OFFSET}', 5)}",
        # The first ten characters are constant per object (folded once); only the base62
        # sequence digits vary, so the last checksum character is computed from the numbers.
        f"sf_id(prefix, seq) AS sf_id15(prefix, seq) || left(sf_checksum(prefix || '{ID_POD}00000'), 2)"
        f" || {digit_checksum_sql(f'seq + {ID_OFFSET}')}",
        f"business_time(e, k, tag) AS (e // {DAY}) * {DAY} + ri(k, tag, 0, 39) * 900",
    ]
    for macro in macros:
        con.execute(f"CREATE OR REPLACE TEMP MACRO {macro}")
    geo_rows = ", ".join(
        f"({i}, {sql_text(p)}, {sql_text(c)}, {lat}, {lon}, {sql_text(area)}, {sql_text(zip3)})"
        for i, (p, c, lat, lon, area, zip3) in enumerate(GEO, start=1)
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _geo AS SELECT * FROM (VALUES "
        + geo_rows
        + ") t(geo_idx, pref, city, lat, lon, area, zip3)"
    )
    occ_rows = ", ".join(f"({sql_text(o)}, {a}, {b}, {c}, {d}, {lic})" for o, a, b, c, d, lic in OCCUPATIONS)
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _occ AS SELECT * FROM (VALUES "
        + occ_rows
        + ") t(occupation, m_lo, m_hi, h_lo, h_hi, licensed)"
    )
    return con


def phone(area: str, key: str, tag: str) -> str:
    first = (
        f"CASE length({area}) WHEN 2 THEN ri({key}, '{tag}.1', 1000, 9999) "
        f"WHEN 3 THEN ri({key}, '{tag}.1', 100, 999) ELSE ri({key}, '{tag}.1', 10, 99) END"
    )
    return f"{area} || '-' || ({first})::VARCHAR || '-' || lpad(ri({key}, '{tag}.2', 0, 9999)::VARCHAR, 4, '0')"


def mobile(key: str, tag: str) -> str:
    return (
        f"{pick(['090', '080', '070'], key, tag + '.p')} || '-' || ri({key}, '{tag}.1', 1000, 9999)::VARCHAR"
        f" || '-' || lpad(ri({key}, '{tag}.2', 0, 9999)::VARCHAR, 4, '0')"
    )


def street(key: str, tag: str) -> str:
    town = pick(TOWNS, key, tag + ".town")
    chome = (
        f"{town} || ri({key}, '{tag}.c', 1, 6)::VARCHAR || '丁目' || ri({key}, '{tag}.b', 1, 30)::VARCHAR"
        f" || '番' || ri({key}, '{tag}.g', 1, 20)::VARCHAR || '号'"
    )
    banchi = f"{town} || ri({key}, '{tag}.n', 100, 2999)::VARCHAR || '番地'"
    building = (
        f"CASE WHEN u({key}, '{tag}.bl') < 0.15 THEN ' ' || {pick(BUILDINGS, key, tag + '.bn')}"
        f" || ri({key}, '{tag}.f', 1, 9)::VARCHAR || 'F' ELSE '' END"
    )
    return f"(CASE WHEN u({key}, '{tag}.kind') < 0.8 THEN {chome} ELSE {banchi} END) || {building}"


def postal(zip3: str, key: str, tag: str) -> str:
    return f"{zip3} || '-' || lpad(ri({key}, '{tag}', 0, 9999)::VARCHAR, 4, '0')"


SYSTEM_COLUMNS = """
    {ts_created}::TIMESTAMPTZ AS created_date,
    {ts_modified}::TIMESTAMPTZ AS last_modified_date,
    {ts_modified}::TIMESTAMPTZ AS system_modstamp,
    {ts_synced}::TIMESTAMPTZ AS _fivetran_synced"""


def system_columns(created_e: str, modified_e: str, key: str, tag: str) -> str:
    return SYSTEM_COLUMNS.format(
        ts_created=sql_timestamp(created_e),
        ts_modified=sql_timestamp(modified_e),
        ts_synced=sql_timestamp(f"{modified_e} + ri({key}, '{tag}.sync', 120, 900)"),
    )


def scalar(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    # fetchall, not fetchone: duckdb 2 refuses .sql() on a connection with an unfinished result
    return int(con.execute(sql).fetchall()[0][0] or 0)
