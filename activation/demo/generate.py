"""The first load of the demo lake: every object at a given scale, with some history already deleted."""

from __future__ import annotations

from pathlib import Path

import duckdb

from activation.demo.objects import (
    accounts_sql,
    applications_sql,
    contacts_sql,
    events_sql,
    history_sql,
    job_postings_sql,
    soft_delete_cascade,
)
from activation.demo.sql import (
    BASE_ROWS,
    CONTACT_START,
    DAY,
    KEY_PREFIX,
    LAKE_END,
    MIN_ROWS,
    ORG_START,
    POSTING_START,
    RAW_SCHEMA,
    TABLES,
    connect,
    epoch,
    scalar,
    weighted,
)
from activation.demo.vocabulary import GEO

# --------------------------------------------------------------------------- public API


def rows_at_scale(scale: float) -> dict[str, int]:
    return {name: max(MIN_ROWS[name], round(BASE_ROWS[name] * scale)) for name in BASE_ROWS}


def row_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    return {t: scalar(con, f"SELECT count(*) FROM {RAW_SCHEMA}.{t}") for t in TABLES}


def generate_lake(path: str | Path, scale: float = 0.01, seed: int = 42) -> dict[str, int]:
    """(Re)create the raw schema in the DuckDB file at `path`; return row counts per raw table.

    `scale=1.0` is a mid-size staffing agency (1M events); tests use 0.002-0.01, where floors
    keep every table non-empty.
    """
    if scale <= 0:
        raise ValueError("scale must be positive")
    n = rows_at_scale(scale)
    n_corp, n_fac = n["corporation"], n["facility"]
    s, end, day = RAW_SCHEMA, LAKE_END, DAY
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    con = connect(path, seed)
    try:
        con.execute("BEGIN")
        con.execute(f"DROP SCHEMA IF EXISTS {s} CASCADE")
        con.execute(f"CREATE SCHEMA {s}")

        # Accounts: corporations first (seq 1..n_corp), then facilities under them.
        fac_start, fac_span = epoch(2014, 1, 1), epoch(2024, 12, 31) - epoch(2014, 1, 1)
        corp_span = epoch(2022, 12, 31) - ORG_START

        def corp_created(seq: str) -> str:
            return f"({ORG_START} + (u({seq}, 'acc.created') * {corp_span})::BIGINT)"

        accounts_src = f"""
            SELECT seq, is_facility, parent_id, parent_geo_idx, created_e,
                   created_e + (u(seq, 'acc.mod') * ({end} - created_e))::BIGINT AS modified_e
            FROM (
                SELECT seq, is_facility,
                    CASE WHEN has_parent THEN sf_id('{KEY_PREFIX["account"]}', parent_seq) END AS parent_id,
                    CASE WHEN has_parent THEN ix(parent_seq, 'acc.geo', {len(GEO)}) END AS parent_geo_idx,
                    CASE WHEN NOT is_facility THEN {corp_created("seq")}
                         WHEN has_parent THEN greatest({fac_start} + (u(seq, 'acc.created') * {fac_span})::BIGINT,
                                                       {corp_created("parent_seq")} + {day})
                         ELSE {fac_start} + (u(seq, 'acc.created') * {fac_span})::BIGINT END AS created_e
                FROM (
                    SELECT seq, is_facility, ix(seq, 'acc.parent', {n_corp}) AS parent_seq,
                        -- a handful of facilities are independent (always at least one)
                        is_facility AND NOT (seq = {n_corp + 1} OR u(seq, 'acc.orphan') < 0.01) AS has_parent
                    FROM (SELECT range + 1 AS seq, range + 1 > {n_corp} AS is_facility
                          FROM range({n_corp + n_fac}))
                )
            )"""
        con.execute(f"CREATE TABLE {s}.account AS {accounts_sql(accounts_src)} ORDER BY id")

        contact_span = end - CONTACT_START
        contacts_src = f"""
            SELECT seq, created_e, created_e + (u(seq, 'con.mod') * ({end} - created_e))::BIGINT AS modified_e
            FROM (SELECT range + 1 AS seq,
                         {CONTACT_START} + (sqrt(u(range + 1, 'con.created')) * {contact_span})::BIGINT AS created_e
                  FROM range({n["contact"]}))"""
        con.execute(f"CREATE TABLE {s}.contact AS {contacts_sql(contacts_src)} ORDER BY id")

        # About 30% of facilities went quiet some time ago: their postings are closed and
        # nothing happens around them after `until_e` (gives the churn scores something to find).
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE _fac AS
            SELECT *, CASE WHEN u(id, 'fac.dormant') < 0.3
                           THEN least({end}, greatest({end} - ri(id, 'fac.quiet', 30, 900) * {day}, c_e + 60 * {day}))
                           ELSE {end} END AS until_e
            FROM (SELECT id, facility_type__c, billing_city, epoch(created_date)::BIGINT AS c_e,
                         row_number() OVER (ORDER BY id) AS rn
                  FROM {s}.account WHERE type = 'Medical Facility')""")
        postings_src = f"""
            SELECT r.seq, f.id AS facility_id, f.facility_type__c AS facility_type,
                   f.billing_city AS facility_city,
                   greatest({POSTING_START}
                            + (sqrt(u(r.seq, 'jp.created')) * (f.until_e - {POSTING_START}))::BIGINT,
                            f.c_e + {day}) AS created_e,
                   f.until_e AS horizon_e,
                   CASE WHEN f.until_e < {end} THEN 0.0 ELSE 0.08 END AS draft_share,
                   CASE WHEN f.until_e < {end} THEN 1.0 ELSE 0.28 END AS closed_share
            FROM (SELECT range + 1 AS seq FROM range({n["job_posting__c"]})) r
            JOIN _fac f ON f.rn = ix(r.seq, 'jp.fac', {n_fac})"""
        con.execute(f"CREATE TABLE {s}.job_posting__c AS {job_postings_sql(postings_src)} ORDER BY id")
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE _pub AS
            SELECT jp.id, epoch(jp.published_at__c)::BIGINT AS pub_e, f.until_e,
                   row_number() OVER (ORDER BY jp.id) AS rn
            FROM {s}.job_posting__c jp JOIN _fac f ON f.id = jp.account__c
            WHERE jp.published_at__c IS NOT NULL""")

        # Applications: draw (candidate, published posting) pairs, keep the first of each pair.
        n_app = n["application__c"]
        n_pub = scalar(con, "SELECT count(*) FROM _pub")
        rejected = "CASE WHEN u(seq, 'app.rej') < 0.5 THEN ['Applied', 'Screening', 'Rejected'] " + (
            "ELSE ['Applied', 'Screening', 'Interview', 'Rejected'] END"
        )
        status = weighted(
            "seq",
            "app.status",
            [("Applied", 15), ("Screening", 15), ("Interview", 15), ("Offer", 5), ("Hired", 15),
             ("Rejected", 25), ("Withdrawn", 10)],
        )  # fmt: skip
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE _app AS
            WITH c AS (SELECT id, epoch(created_date)::BIGINT AS c_e, row_number() OVER (ORDER BY id) AS rn
                       FROM {s}.contact),
            attempts AS (
                SELECT a.k, c.id AS candidate_id, p.id AS posting_id, greatest(c.c_e, p.pub_e) AS g, p.until_e
                FROM (SELECT range AS k FROM range({int(n_app * 1.5) + 100})) a
                JOIN c ON c.rn = ix(a.k, 'app.cand', {n["contact"]})
                JOIN _pub p ON p.rn = ix(a.k, 'app.post', {n_pub})
                WHERE greatest(c.c_e, p.pub_e) <= p.until_e  -- nobody applies to a quiet facility
            ),
            pairs AS (
                SELECT min(k) AS k, candidate_id, posting_id, min(g) AS g, min(until_e) AS until_e FROM attempts
                GROUP BY candidate_id, posting_id ORDER BY k LIMIT {n_app}
            ),
            statused AS (
                SELECT row_number() OVER (ORDER BY k) AS seq, candidate_id, posting_id, g, until_e FROM pairs
            ),
            pathed AS (
                SELECT *, {status} AS status,
                    g + (pow(u(seq, 'app.applied'), 1.5) * (until_e - g))::BIGINT AS applied_e
                FROM statused
            ),
            stepped AS (
                SELECT *, CASE status
                    WHEN 'Applied' THEN ['Applied']
                    WHEN 'Screening' THEN ['Applied', 'Screening']
                    WHEN 'Interview' THEN ['Applied', 'Screening', 'Interview']
                    WHEN 'Offer' THEN ['Applied', 'Screening', 'Interview', 'Offer']
                    WHEN 'Hired' THEN ['Applied', 'Screening', 'Interview', 'Offer', 'Hired']
                    WHEN 'Rejected' THEN {rejected}
                    ELSE list_concat(['Applied', 'Screening', 'Interview'][1:ri(seq, 'app.wd', 1, 3)], ['Withdrawn'])
                    END AS path
                FROM pathed
            )
            SELECT *, sf_id('{KEY_PREFIX["application__c"]}', seq) AS id,
                least(changed_e + ri(seq, 'app.mod', 0, 3600), until_e) AS modified_e
            FROM (
                -- a process that would run past the end of the lake is squeezed into what is left
                SELECT *, CASE WHEN len(path) = 1 THEN applied_e
                    ELSE applied_e + least((len(path) - 1) * ri(seq, 'app.step', 1, 10) * {day}
                                           + ri(seq, 'app.jitter', 0, {day}),
                                           (u(seq, 'app.squeeze') * (until_e - applied_e))::BIGINT) END AS changed_e
                FROM stepped
            )""")
        con.execute(f"""
            CREATE TABLE {s}.application__c AS {
            applications_sql("SELECT seq, candidate_id, posting_id, status, applied_e, changed_e, modified_e FROM _app")
        } ORDER BY id""")
        con.execute(f"""
            CREATE TABLE {s}.application__history AS {
            history_sql('''
                SELECT row_number() OVER (ORDER BY seq, i) AS seq, id AS parent_id,
                       path[i] AS old_value, path[i + 1] AS new_value,
                       applied_e + ((changed_e - applied_e) * i // (len(path) - 1))::BIGINT AS t_e
                FROM (SELECT *, unnest(range(1, len(path))) AS i FROM _app)''')
        } ORDER BY id""")

        # Events: 70% about an application (the candidate, what = application), the rest
        # introduce a published posting to a candidate (what = job posting).
        events_src = f"""
            WITH e AS (
                SELECT seq, u(seq, 'evt.kind') < 0.7 AS for_app FROM (SELECT range + 1 AS seq FROM range({n["event"]}))
            ),
            c AS (SELECT id, epoch(created_date)::BIGINT AS c_e, row_number() OVER (ORDER BY id) AS rn
                  FROM {s}.contact)
            SELECT e.seq, e.for_app AS for_application,
                coalesce(a.candidate_id, c.id) AS who_id,
                coalesce(a.id, p.id) AS what_id,
                CASE WHEN e.for_app
                     THEN a.applied_e + (u(e.seq, 'evt.t')
                          * (least(a.changed_e + 14 * {day}, a.until_e) - a.applied_e))::BIGINT
                     ELSE least(greatest(c.c_e, p.pub_e), p.until_e)
                          + (u(e.seq, 'evt.t') * greatest(p.until_e - greatest(c.c_e, p.pub_e), 0))::BIGINT
                     END AS t_e,
                coalesce(a.until_e, p.until_e) AS horizon_e
            FROM e
            LEFT JOIN _app a ON a.seq = CASE WHEN e.for_app THEN ix(e.seq, 'evt.app', {n_app}) END
            LEFT JOIN c ON c.rn = CASE WHEN NOT e.for_app THEN ix(e.seq, 'evt.cand', {n["contact"]}) END
            LEFT JOIN _pub p ON p.rn = CASE WHEN NOT e.for_app THEN ix(e.seq, 'evt.post', {n_pub}) END"""
        con.execute(f"CREATE TABLE {s}.event AS {events_sql(events_src)} ORDER BY id")

        # Some history already deleted: ~0.3% of postings and one facility, with their cascade.
        n_del_jp = max(1, round(n["job_posting__c"] * 0.003))
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE _del_seed AS
            SELECT id, kind, greatest(m_e, {end} - ri(id, 'del.when', 0, 90 * {day})) AS del_e FROM (
                (SELECT id, 'posting' AS kind, epoch(system_modstamp)::BIGINT AS m_e FROM {s}.job_posting__c
                 ORDER BY h(id, 'del.jp'), id LIMIT {n_del_jp})
                UNION ALL
                (SELECT id, 'account' AS kind, epoch(system_modstamp)::BIGINT AS m_e FROM {s}.account
                 WHERE type = 'Medical Facility' AND parent_id IS NOT NULL ORDER BY h(id, 'del.acc'), id LIMIT 1)
            )""")
        soft_delete_cascade(con)

        last = {t: scalar(con, f"SELECT count(*) FROM {s}.{t}") for t in TABLES}
        con.execute(f"""
            CREATE TABLE {s}._demo_state AS SELECT
                0 AS day, {int(seed)}::BIGINT AS seed, {float(scale)}::DOUBLE AS scale,
                (SELECT max(system_modstamp)::DATE FROM {s}.event) AS as_of_date,
                {", ".join(f"{last[t]}::BIGINT AS seq_{t}" for t in TABLES)}""")
        con.execute("COMMIT")
        return row_counts(con)
    finally:
        con.close()
