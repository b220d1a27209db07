"""A simulated day of changes in the demo lake: new, edited and deleted records, as Fivetran would land them."""

from __future__ import annotations

from pathlib import Path

from activation.demo.objects import (
    accounts_sql,
    applications_sql,
    contacts_sql,
    events_sql,
    history_sql,
    job_postings_sql,
    soft_delete_cascade,
)
from activation.demo.sql import DAY, RAW_SCHEMA, TABLES, connect, mobile, phone, pick, scalar, sql_text, weighted
from activation.demo.vocabulary import DESCRIPTION_SENTENCES, GEO


def apply_day_of_changes(path: str | Path, seed: int = 42) -> dict[str, dict[str, int]]:
    """Apply the next simulated day of changes (new, edited, deleted records).

    Returns {table: {"inserted": n, "updated": n, "deleted": n}}, measured by diffing the tables
    against a snapshot taken before the changes, so the counts are what a sync should see.
    The day follows the lake's latest modstamp; the day counter lives in `_demo_state`.
    Deletes are soft (is_deleted, cascaded like Salesforce), except a few hard-deleted events.
    """
    s, day_s = RAW_SCHEMA, DAY
    con = connect(path, seed)
    try:
        rel = con.execute(f"SELECT * FROM {s}._demo_state")
        columns = [d[0] for d in rel.description]
        state = dict(zip(columns, rel.fetchall()[0], strict=True))
        day = int(state["day"]) + 1
        latest = scalar(
            con,
            "SELECT max(m) FROM ("
            + " UNION ALL ".join(f"SELECT max(epoch(system_modstamp))::BIGINT AS m FROM {s}.{t}" for t in TABLES)
            + ")",
        )
        start = (latest // day_s + 1) * day_s
        horizon = start + day_s - 1
        tag = f"day{day}"

        def t(name: str) -> str:  # a hash tag unique to this day
            return sql_text(f"{tag}.{name}")

        def when(key: str, name: str) -> str:  # an instant inside the day
            return f"({start} + ri({key}, {t(name)}, 0, {day_s - 1}))"

        def live(table: str, extra: str = "") -> int:
            return scalar(con, f"SELECT count(*) FROM {s}.{table} WHERE NOT is_deleted {extra}")

        con.execute("BEGIN")
        for table in TABLES:
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE _before_{table} AS "
                f"SELECT id, is_deleted, system_modstamp FROM {s}.{table}"
            )
        old = f"created_date < to_timestamp({start})"  # rows that existed before today

        # 1. Deletes: a few facilities and ~0.5% of postings, cascaded; a few events vanish for good.
        n_fac = max(1, round(live("account", "AND type = 'Medical Facility'") * 0.0006))
        n_jp = max(1, round(live("job_posting__c") * 0.005))
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE _del_seed AS
            SELECT id, kind, {when("id", "del.t")} AS del_e FROM (
                (SELECT id, 'account' AS kind FROM {s}.account
                 WHERE NOT is_deleted AND type = 'Medical Facility'
                 ORDER BY h(id, {t("del.acc")}), id LIMIT {n_fac})
                UNION ALL
                (SELECT id, 'posting' AS kind FROM {s}.job_posting__c WHERE NOT is_deleted
                 ORDER BY h(id, {t("del.jp")}), id LIMIT {n_jp})
            )""")
        soft_delete_cascade(con)
        n_gone = max(2, round(live("event") * 0.00001))
        con.execute(f"""
            DELETE FROM {s}.event WHERE id IN (
                SELECT id FROM {s}.event WHERE NOT is_deleted ORDER BY h(id, {t("evt.hard")}), id LIMIT {n_gone})""")

        # 2. Inserts (~1% of each object; events and history for one business day).
        seq = {table: int(state[f"seq_{table}"]) for table in TABLES}

        def slots(table: str, n: int) -> str:
            return f"(SELECT {seq[table]} + range + 1 AS seq FROM range({n}))"

        n_corp_live = live("account", "AND type = 'Corporation'")
        n_acc = max(1, round(live("account") * 0.01))
        con.execute(f"""
            INSERT INTO {s}.account BY NAME {
            accounts_sql(f'''
                WITH corp AS (
                    SELECT id, billing_state, billing_city, row_number() OVER (ORDER BY id) AS rn
                    FROM {s}.account WHERE NOT is_deleted AND type = 'Corporation'
                ), n AS (
                    SELECT seq, u(seq, {t("acc.kind")}) < 0.85 AS is_facility,
                           u(seq, {t("acc.orphan")}) < 0.02 AS orphan, {when("seq", "acc.t")} AS created_e
                    FROM {slots("account", n_acc)}
                )
                SELECT n.seq, n.is_facility,
                    CASE WHEN n.is_facility AND NOT n.orphan THEN corp.id END AS parent_id,
                    CASE WHEN n.is_facility AND NOT n.orphan THEN g.geo_idx END AS parent_geo_idx,
                    n.created_e, n.created_e AS modified_e
                FROM n
                LEFT JOIN corp ON corp.rn = ix(n.seq, {t("acc.parent")}, {max(1, n_corp_live)})
                LEFT JOIN _geo g ON g.pref = corp.billing_state AND g.city = corp.billing_city''')
        }""")

        n_con = max(1, round(live("contact") * 0.01))
        con.execute(f"""
            INSERT INTO {s}.contact BY NAME {
            contacts_sql(
                f"SELECT seq, {when('seq', 'con.t')} AS created_e, {when('seq', 'con.t')} AS modified_e "
                f"FROM {slots('contact', n_con)}"
            )
        }""")

        n_fac_live = live("account", "AND type = 'Medical Facility'")
        n_new_jp = max(1, round(live("job_posting__c") * 0.01))
        con.execute(f"""
            INSERT INTO {s}.job_posting__c BY NAME {
            job_postings_sql(f'''
                WITH f AS (
                    SELECT id, facility_type__c, billing_city, row_number() OVER (ORDER BY id) AS rn
                    FROM {s}.account WHERE NOT is_deleted AND type = 'Medical Facility'
                )
                SELECT r.seq, f.id AS facility_id, f.facility_type__c AS facility_type,
                       f.billing_city AS facility_city, {when("r.seq", "jp.t")} AS created_e,
                       {horizon} AS horizon_e, 0.2 AS draft_share, 0.0 AS closed_share
                FROM {slots("job_posting__c", n_new_jp)} r
                JOIN f ON f.rn = ix(r.seq, {t("jp.fac")}, {n_fac_live})''')
        }""")

        n_con_live = live("contact")
        n_open = live("job_posting__c", "AND status__c = 'Open'")
        n_new_app = max(1, round(live("application__c") * 0.01))
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE _new_app AS
            WITH c AS (SELECT id, epoch(created_date)::BIGINT AS c_e, row_number() OVER (ORDER BY id) AS rn
                       FROM {s}.contact WHERE NOT is_deleted),
            p AS (SELECT id, epoch(published_at__c)::BIGINT AS pub_e, row_number() OVER (ORDER BY id) AS rn
                  FROM {s}.job_posting__c WHERE NOT is_deleted AND status__c = 'Open'),
            attempts AS (
                SELECT a.k, c.id AS candidate_id, p.id AS posting_id, greatest(c.c_e, p.pub_e) + 60 AS g
                FROM (SELECT range AS k FROM range({3 * n_new_app + 20})) a
                JOIN c ON c.rn = ix(a.k, {t("app.cand")}, {max(1, n_con_live)})
                JOIN p ON p.rn = ix(a.k, {t("app.post")}, {max(1, n_open)})
                ANTI JOIN {s}.application__c x
                    ON x.candidate__c = c.id AND x.job_posting__c = p.id
            ),
            pairs AS (
                SELECT min(k) AS k, candidate_id, posting_id, min(g) AS g FROM attempts
                GROUP BY candidate_id, posting_id ORDER BY k LIMIT {n_new_app}
            )
            SELECT {seq["application__c"]} + row_number() OVER (ORDER BY k) AS seq, candidate_id, posting_id,
                   least(greatest({start} + ri(k, {t("app.t")}, 0, {day_s - 1}), g), {horizon}) AS applied_e
            FROM pairs""")
        con.execute(f"""
            INSERT INTO {s}.application__c BY NAME {
            applications_sql(
                "SELECT seq, candidate_id, posting_id, 'Applied' AS status, applied_e, "
                "applied_e AS changed_e, applied_e AS modified_e FROM _new_app"
            )
        }""")

        n_evt = max(5, round(live("event") * 0.001))
        n_app_live = live("application__c")
        n_open = live("job_posting__c", "AND status__c = 'Open'")
        con.execute(f"""
            INSERT INTO {s}.event BY NAME {
            events_sql(f'''
                WITH e AS (SELECT seq, u(seq, {t("evt.kind")}) < 0.7 AS for_app FROM {slots("event", n_evt)}),
                a AS (SELECT id, candidate__c, row_number() OVER (ORDER BY id) AS rn
                      FROM {s}.application__c WHERE NOT is_deleted),
                c AS (SELECT id, row_number() OVER (ORDER BY id) AS rn FROM {s}.contact WHERE NOT is_deleted),
                p AS (SELECT id, row_number() OVER (ORDER BY id) AS rn
                      FROM {s}.job_posting__c WHERE NOT is_deleted AND status__c = 'Open')
                SELECT e.seq, e.for_app AS for_application,
                       coalesce(a.candidate__c, c.id) AS who_id, coalesce(a.id, p.id) AS what_id,
                       {start} AS t_e, {horizon} AS horizon_e
                FROM e
                LEFT JOIN a ON a.rn = CASE WHEN e.for_app THEN ix(e.seq, {t("evt.app")}, {max(1, n_app_live)}) END
                LEFT JOIN c ON c.rn = CASE WHEN NOT e.for_app THEN ix(e.seq, {t("evt.cand")}, {n_con_live}) END
                LEFT JOIN p ON p.rn = CASE WHEN NOT e.for_app THEN ix(e.seq, {t("evt.post")}, {max(1, n_open)}) END
                WHERE coalesce(a.id, p.id) IS NOT NULL''')
        }""")

        # 3. Edits of rows that existed before today and survived the deletes.
        stamp = """last_modified_date = to_timestamp(x.t_e), system_modstamp = to_timestamp(x.t_e),
            _fivetran_synced = to_timestamp(x.t_e + 300)"""
        n_upd = max(1, round(live("job_posting__c") * 0.04))
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE _upd AS
            SELECT id, {weighted("id", f"{tag}.jp.kind", [("status", 4), ("salary", 3), ("description", 3)])} AS kind,
                   {when("id", "jp.upd.t")} AS t_e
            FROM {s}.job_posting__c WHERE NOT is_deleted AND {old}
            ORDER BY h(id, {t("jp.upd")}), id LIMIT {n_upd}""")
        con.execute(f"""
            UPDATE {s}.job_posting__c AS j SET
                status__c = CASE WHEN x.kind <> 'status' THEN j.status__c
                                 WHEN j.status__c = 'Open' THEN 'Closed' ELSE 'Open' END,
                published_at__c = CASE WHEN x.kind = 'status' AND j.status__c = 'Draft' THEN to_timestamp(x.t_e)
                                       ELSE j.published_at__c END,
                salary_min__c = j.salary_min__c + CASE WHEN x.kind <> 'salary' THEN 0
                                                       WHEN j.salary_unit__c = '月給' THEN 5000 ELSE 50 END,
                salary_max__c = j.salary_max__c + CASE WHEN x.kind <> 'salary' THEN 0
                                                       WHEN j.salary_unit__c = '月給' THEN 10000 ELSE 100 END,
                description__c = CASE WHEN x.kind <> 'description' THEN j.description__c
                    ELSE j.description__c || chr(10) || '【' || strftime(to_timestamp(x.t_e), '%-m/%-d')
                         || '更新】' || {pick(DESCRIPTION_SENTENCES, "j.id", f"{tag}.jp.desc")} END,
                {stamp}
            FROM _upd x WHERE j.id = x.id""")

        n_upd = max(1, round(live("contact") * 0.02))
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE _upd AS
            SELECT c.id, {weighted("c.id", f"{tag}.con.kind", [("phone", 3), ("active", 3), ("move", 2), ("exp", 2)])}
                       AS kind,
                   {when("c.id", "con.upd.t")} AS t_e, g.pref, g.city, {mobile("c.id", f"{tag}.con.mobile")} AS mobile
            FROM {s}.contact c JOIN _geo g ON g.geo_idx = ix(c.id, {t("con.geo")}, {len(GEO)})
            WHERE NOT c.is_deleted AND c.{old}
            ORDER BY h(c.id, {t("con.upd")}), c.id LIMIT {n_upd}""")
        con.execute(f"""
            UPDATE {s}.contact AS c SET
                mobile_phone = CASE WHEN x.kind = 'phone' THEN x.mobile ELSE c.mobile_phone END,
                is_active__c = CASE WHEN x.kind = 'active' THEN NOT c.is_active__c ELSE c.is_active__c END,
                mailing_state = CASE WHEN x.kind = 'move' THEN x.pref ELSE c.mailing_state END,
                mailing_city = CASE WHEN x.kind = 'move' THEN x.city ELSE c.mailing_city END,
                years_of_experience__c = c.years_of_experience__c + CASE WHEN x.kind = 'exp' THEN 1 ELSE 0 END,
                {stamp}
            FROM _upd x WHERE c.id = x.id""")

        n_upd = max(1, round(live("account") * 0.005))
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE _upd AS
            SELECT a.id, {when("a.id", "acc.upd.t")} AS t_e, {phone("g.area", "a.id", f"{tag}.acc.phone")} AS phone
            FROM {s}.account a JOIN _geo g ON g.pref = a.billing_state AND g.city = a.billing_city
            WHERE NOT a.is_deleted AND a.{old}
            ORDER BY h(a.id, {t("acc.upd")}), a.id LIMIT {n_upd}""")
        con.execute(f"""
            UPDATE {s}.account AS a SET
                phone = x.phone,
                number_of_beds__c = CASE WHEN a.number_of_beds__c >= 20 THEN a.number_of_beds__c + 5
                                         ELSE a.number_of_beds__c END,
                {stamp}
            FROM _upd x WHERE a.id = x.id""")

        # Applications move one step forward; each move writes its field-history row.
        n_upd = max(1, round(live("application__c") * 0.02))
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE _upd AS
            SELECT id, status__c AS old_value,
                CASE status__c
                    WHEN 'Applied' THEN CASE WHEN u(id, {t("app.next")}) < 0.85 THEN 'Screening' ELSE 'Withdrawn' END
                    WHEN 'Screening' THEN CASE WHEN u(id, {t("app.next")}) < 0.7 THEN 'Interview' ELSE 'Rejected' END
                    WHEN 'Interview' THEN CASE WHEN u(id, {t("app.next")}) < 0.5 THEN 'Offer' ELSE 'Rejected' END
                    ELSE CASE WHEN u(id, {t("app.next")}) < 0.8 THEN 'Hired' ELSE 'Withdrawn' END
                END AS new_value,
                {when("id", "app.upd.t")} AS t_e
            FROM {s}.application__c
            WHERE NOT is_deleted AND {old} AND status__c IN ('Applied', 'Screening', 'Interview', 'Offer')
            ORDER BY h(id, {t("app.upd")}), id LIMIT {n_upd}""")
        con.execute(f"""
            UPDATE {s}.application__c AS a SET
                status__c = x.new_value, status_changed_at__c = to_timestamp(x.t_e), {stamp}
            FROM _upd x WHERE a.id = x.id""")
        con.execute(f"""
            INSERT INTO {s}.application__history BY NAME {
            history_sql(
                f"SELECT {seq['application__history']} + row_number() OVER (ORDER BY id) AS seq, "
                "id AS parent_id, old_value, new_value, t_e FROM _upd"
            )
        }""")

        # 4. Measure what changed, then advance the day counter and the id sequences.
        result: dict[str, dict[str, int]] = {}
        for table in TABLES:
            b = f"_before_{table}"
            result[table] = {
                "inserted": scalar(con, f"SELECT count(*) FROM {s}.{table} ANTI JOIN {b} USING (id)"),
                "updated": scalar(
                    con,
                    f"SELECT count(*) FROM {b} b JOIN {s}.{table} a USING (id) "
                    "WHERE NOT b.is_deleted AND NOT a.is_deleted AND a.system_modstamp <> b.system_modstamp",
                ),
                "deleted": scalar(
                    con,
                    f"SELECT count(*) FROM {b} b LEFT JOIN {s}.{table} a USING (id) "
                    "WHERE NOT b.is_deleted AND (a.id IS NULL OR a.is_deleted)",
                ),
            }
            seq[table] += result[table]["inserted"]
        con.execute(
            f"UPDATE {s}._demo_state SET day = {day}, as_of_date = to_timestamp({start})::DATE, "
            + ", ".join(f"seq_{table} = {seq[table]}" for table in TABLES)
        )
        con.execute("COMMIT")
        return result
    finally:
        con.close()
