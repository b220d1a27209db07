"""Row generators, one per Salesforce object, and the soft-delete cascade.

Each generator takes a SQL source of "slots" (sequence number, references, time window) and returns
the SELECT producing finished raw rows, so the initial load and the daily changes share them."""

from __future__ import annotations

import duckdb

from activation.demo.sql import (
    DAY,
    KEY_PREFIX,
    RAW_SCHEMA,
    USERS,
    mobile,
    phone,
    pick,
    postal,
    sql_list,
    sql_text,
    sql_timestamp,
    street,
    system_columns,
    weighted,
)
from activation.demo.vocabulary import (
    COMPANY_WORDS,
    CORP_WORDS,
    DESCRIPTION_SENTENCES,
    DESIRED_OCCUPATIONS,
    EMAIL_DOMAINS,
    EMOJI,
    GEO,
    GIVEN_NAMES,
    HOOKS,
    LEAD_SOURCES,
    OCCUPATIONS,
    OCCUPATIONS_BY_FACILITY,
    SUBJECTS,
    SURNAMES,
    TOWNS,
    WORDS,
)

# --------------------------------------------------------------------------- row generators
# Each takes a SQL source of "slots" (sequence number, references, time window) and returns
# the SELECT producing finished raw rows, so the initial load and the daily changes share them.


def accounts_sql(src: str) -> str:
    """src: seq, is_facility, parent_id, parent_geo_idx, created_e, modified_e."""
    k = "seq"
    ftype = weighted(
        k,
        "acc.ftype",
        [("病院", 18), ("クリニック", 37), ("介護施設", 25), ("薬局", 12), ("保育園", 8)],
    )
    w = pick(WORDS, k, "acc.w")
    sn = pick([s for s, _, _ in SURNAMES], k, "acc.sn")
    town = pick(TOWNS, k, "acc.street.town")
    names = {
        "病院": [f"{w} || '総合病院'", f"{w} || '病院'", f"{sn} || '記念病院'", f"{w} || '中央病院'"],
        "クリニック": [
            f"{w} || 'クリニック'",
            f"{sn} || '内科クリニック'",
            f"{sn} || '整形外科'",
            f"{w} || 'こどもクリニック'",
            f"{sn} || '皮膚科クリニック'",
            f"{w} || '眼科'",
            f"'Mom''s ' || {w} || 'レディースクリニック'",
        ],
        "介護施設": [
            f"'介護老人保健施設' || {w}",
            f"'特別養護老人ホーム' || {w} || '苑'",
            f"'グループホーム' || {w}",
            f"'デイサービスセンター' || {w}",
            f"'有料老人ホーム' || {w} || 'の杜'",
        ],
        "薬局": [f"{w} || '薬局'", f"{w} || '調剤薬局 ' || {town} || '店'", f"'すこやか薬局 ' || {town} || '店'"],
        "保育園": [f"{w} || '保育園'", f"{w} || 'こども園'", f"'Kid''s ' || {w} || '保育園'"],
    }
    name_cases = " ".join(
        f"WHEN {sql_text(t)} THEN [{', '.join(opts)}][ix({k}, 'acc.nameform', {len(opts)})]"
        for t, opts in names.items()
    )
    cw = pick(CORP_WORDS, k, "acc.cw")
    corp_forms = [
        f"'医療法人社団' || {cw} || '会'",
        f"'医療法人' || {cw} || '会'",
        f"'社会福祉法人' || {cw} || '会'",
        f"'医療法人財団' || {cw} || '会'",
        f"'株式会社' || {pick(COMPANY_WORDS, k, 'acc.co')}",
        f"'株式会社' || {pick(COMPANY_WORDS, k, 'acc.co')} || 'ホールディングス'",
    ]
    corp_name = f"[{', '.join(corp_forms)}][ix({k}, 'acc.corpform', {len(corp_forms)})]"
    beds = f"""CASE b.facility_type
            WHEN '病院' THEN CASE WHEN u({k}, 'acc.beds.null') < 0.1 THEN NULL
                                 ELSE ri({k}, 'acc.beds', 20, 120) * 5 END
            WHEN '介護施設' THEN CASE WHEN u({k}, 'acc.beds.null') < 0.3 THEN NULL
                                 ELSE ri({k}, 'acc.beds', 18, 150) END
            WHEN 'クリニック' THEN CASE WHEN u({k}, 'acc.beds.null') < 0.8 THEN NULL
                                 ELSE ri({k}, 'acc.beds', 0, 19) END
            ELSE NULL END"""
    return f"""
WITH b AS (
    SELECT s.*,
        sf_id('{KEY_PREFIX["account"]}', s.seq) AS id,
        CASE WHEN s.is_facility THEN {ftype} END AS facility_type,
        CASE WHEN s.parent_geo_idx IS NOT NULL AND u({k}, 'acc.geo.inherit') < 0.6 THEN s.parent_geo_idx
             ELSE ix({k}, 'acc.geo', {len(GEO)}) END AS geo_idx
    FROM ({src}) s
)
SELECT
    b.id,
    false AS is_deleted,
    CASE WHEN b.is_facility THEN CASE b.facility_type {name_cases} END ELSE {corp_name} END AS name,
    CASE WHEN b.is_facility THEN 'Medical Facility' ELSE 'Corporation' END AS type,
    b.facility_type AS facility_type__c,
    b.parent_id,
    'Japan' AS billing_country,
    g.pref AS billing_state,
    g.city AS billing_city,
    {street(k, "acc.street")} AS billing_street,
    {postal("g.zip3", k, "acc.zip")} AS billing_postal_code,
    CASE WHEN u({k}, 'acc.phone.null') < CASE WHEN b.is_facility THEN 0.05 ELSE 0.1 END THEN NULL
         ELSE {phone("g.area", k, "acc.phone")} END AS phone,
    ({beds})::INTEGER AS number_of_beds__c,
    (CASE WHEN NOT b.is_facility THEN ri({k}, 'acc.rev', 100, 50000) * 1000000.0
          WHEN u({k}, 'acc.rev.null') < 0.4 THEN NULL
          ELSE ri({k}, 'acc.rev', 30, 20000) * 1000000.0 + ri({k}, 'acc.rev.c', 0, 999) * 1000
     END)::DECIMAL(18, 2) AS annual_revenue,
    round(g.lat + (u({k}, 'acc.lat') - 0.5) * 0.06, 6)::DOUBLE AS latitude,
    round(g.lon + (u({k}, 'acc.lon') - 0.5) * 0.06, 6)::DOUBLE AS longitude,
    sf_id('{KEY_PREFIX["user"]}', ix({k}, 'acc.owner', {USERS})) AS owner_id,
    {system_columns("b.created_e", "b.modified_e", k, "acc")}
FROM b JOIN _geo g USING (geo_idx)
"""


def contacts_sql(src: str) -> str:
    """src: seq, created_e, modified_e."""
    k = "seq"
    lic = ", ".join(sql_text(o) for o, *_, licensed in OCCUPATIONS if licensed)
    return f"""
WITH b AS (
    SELECT s.*,
        sf_id('{KEY_PREFIX["contact"]}', s.seq) AS id,
        ix({k}, 'con.sn', {len(SURNAMES)}) AS sn,
        ix({k}, 'con.gn', {len(GIVEN_NAMES)}) AS gn,
        ix({k}, 'con.geo', {len(GEO)}) AS geo_idx,
        CASE WHEN u({k}, 'con.birth.null') < 0.06 THEN NULL
             ELSE DATE '1960-07-01' + ri({k}, 'con.birth', 0, 16000)::INTEGER END AS birthdate,
        {pick(DESIRED_OCCUPATIONS, k, "con.occ")} AS occupation
    FROM ({src}) s
)
SELECT
    b.id,
    false AS is_deleted,
    NULL::VARCHAR AS account_id,
    {sql_list([s for s, _, _ in SURNAMES])}[b.sn] AS last_name,
    {sql_list([g for g, _, _ in GIVEN_NAMES])}[b.gn] AS first_name,
    {sql_list([s for s, _, _ in SURNAMES])}[b.sn] || ' ' || {sql_list([g for g, _, _ in GIVEN_NAMES])}[b.gn] AS name,
    {sql_list([kana for _, kana, _ in SURNAMES])}[b.sn] AS last_name_kana__c,
    {sql_list([kana for _, kana, _ in GIVEN_NAMES])}[b.gn] AS first_name_kana__c,
    {sql_list([r for _, _, r in GIVEN_NAMES])}[b.gn] || '.' || {sql_list([r for _, _, r in SURNAMES])}[b.sn]
        || b.seq::VARCHAR || '@' || {pick(EMAIL_DOMAINS, k, "con.dom")} AS email,
    CASE WHEN u({k}, 'con.mobile.null') < 0.08 THEN NULL ELSE {mobile(k, "con.mobile")} END AS mobile_phone,
    b.birthdate,
    'Japan' AS mailing_country,
    g.pref AS mailing_state,
    g.city AS mailing_city,
    {street(k, "con.street")} AS mailing_street,
    {postal("g.zip3", k, "con.zip")} AS mailing_postal_code,
    b.occupation AS desired_occupation__c,
    (CASE WHEN b.birthdate IS NULL THEN ri({k}, 'con.yoe', 0, 20)
          ELSE h({k}, 'con.yoe') % greatest(1, (DATE '2025-06-30' - b.birthdate) // 365 - 20) END
    )::INTEGER AS years_of_experience__c,
    CASE WHEN b.occupation NOT IN ({lic}) OR u({k}, 'con.lic.null') < 0.15 THEN NULL
         ELSE '第' || ri({k}, 'con.lic', 100000, 999999)::VARCHAR || '号' END AS license_number__c,
    u({k}, 'con.active') < 0.85 AS is_active__c,
    {pick(LEAD_SOURCES, k, "con.lead")} AS lead_source,
    sf_id('{KEY_PREFIX["user"]}', ix({k}, 'con.owner', {USERS})) AS owner_id,
    {system_columns("b.created_e", "b.modified_e", k, "con")}
FROM b JOIN _geo g USING (geo_idx)
"""


def job_postings_sql(src: str) -> str:
    """src: seq, facility_id, facility_type, facility_city, created_e, horizon_e, draft_share, closed_share."""
    k = "seq"
    occ_cases = " ".join(
        f"WHEN {sql_text(t)} THEN {pick(opts, k, 'jp.occ')}" for t, opts in OCCUPATIONS_BY_FACILITY.items()
    )
    sentences = sql_list(DESCRIPTION_SENTENCES)
    n_sent = len(DESCRIPTION_SENTENCES)
    return f"""
WITH b AS (
    SELECT s.*,
        sf_id('{KEY_PREFIX["job_posting__c"]}', s.seq) AS id,
        CASE s.facility_type {occ_cases} END AS occupation,
        {weighted(k, "jp.emp", [("常勤", 55), ("非常勤", 25), ("パート", 20)])} AS employment_type,
        CASE WHEN u({k}, 'jp.draft') < s.draft_share THEN 'Draft'
             WHEN u({k}, 'jp.closed') < s.closed_share THEN 'Closed' ELSE 'Open' END AS status
    FROM ({src}) s
), c AS (
    SELECT b.*,
        CASE WHEN employment_type = '常勤' OR (employment_type = '非常勤' AND u({k}, 'jp.unit') < 0.3)
             THEN '月給' ELSE '時給' END AS salary_unit,
        CASE WHEN status = 'Draft' THEN NULL
             ELSE least(created_e + ri({k}, 'jp.pub', 0, 7 * {DAY}), horizon_e) END AS published_e
    FROM b
), d AS (
    SELECT c.*,
        CASE WHEN salary_unit = '月給' THEN ri({k}, 'jp.min', o.m_lo // 5000, o.m_hi // 5000) * 5000
             ELSE ri({k}, 'jp.min', o.h_lo // 10, o.h_hi // 10) * 10 END AS salary_min,
        created_e + (u({k}, 'jp.mod') * (horizon_e - created_e))::BIGINT AS modified_e
    FROM c JOIN _occ o USING (occupation)
)
SELECT
    id,
    false AS is_deleted,
    CASE WHEN u({k}, 'jp.urgent') < 0.01 THEN '🌟急募🌟 ' ELSE '' END
        || '【' || facility_city || '】' || occupation || '（' || employment_type || '）／'
        || {pick(HOOKS, k, "jp.hook")} AS name,
    facility_id AS account__c,
    occupation AS occupation__c,
    employment_type AS employment_type__c,
    salary_min::INTEGER AS salary_min__c,
    (CASE WHEN u({k}, 'jp.max.null') < 0.3 THEN NULL
          WHEN salary_unit = '月給' THEN salary_min + ri({k}, 'jp.max', 1, 30) * 5000
          ELSE salary_min + ri({k}, 'jp.max', 1, 50) * 10 END)::INTEGER AS salary_max__c,
    salary_unit AS salary_unit__c,
    status AS status__c,
    CASE WHEN u({k}, 'jp.emoji') < 0.03 THEN {pick(EMOJI, k, "jp.emoji.which")} || ' ' ELSE '' END
        || array_to_string(
            list_transform(
                range(ri({k}, 'jp.nsent', 1, 14)),
                lambda i: CASE WHEN i > 0 AND u({k}, 'jp.sep') < 0.3 THEN chr(10) ELSE '' END
                          || {sentences}[(1 + h({k} * 64 + i, 'jp.sent') % {n_sent})::BIGINT]),
            '') AS description__c,
    {sql_timestamp("published_e")}::TIMESTAMPTZ AS published_at__c,
    (CASE WHEN salary_unit = '月給' THEN salary_min * 12 * (0.20 + 0.15 * u({k}, 'jp.fee'))
          ELSE ri({k}, 'jp.fee', 1500, 4000) * 100 END * 1.1)::DECIMAL(12, 2) AS placement_fee__c,
    {system_columns("created_e", "greatest(modified_e, coalesce(published_e, created_e))", k, "jp")}
FROM d
"""


def applications_sql(src: str) -> str:
    """src: seq, candidate_id, posting_id, status, applied_e, changed_e, modified_e."""
    return f"""
SELECT
    sf_id('{KEY_PREFIX["application__c"]}', s.seq) AS id,
    false AS is_deleted,
    s.candidate_id AS candidate__c,
    s.posting_id AS job_posting__c,
    s.status AS status__c,
    {sql_timestamp("s.applied_e")}::TIMESTAMPTZ AS applied_at__c,
    {sql_timestamp("s.changed_e")}::TIMESTAMPTZ AS status_changed_at__c,
    {system_columns("s.applied_e", "s.modified_e", "s.seq", "app")}
FROM ({src}) s
"""


def history_sql(src: str) -> str:
    """src: seq, parent_id, old_value, new_value, t_e."""
    return f"""
SELECT
    sf_id('{KEY_PREFIX["application__history"]}', s.seq) AS id,
    false AS is_deleted,
    s.parent_id,
    'Status__c' AS field,
    s.old_value,
    s.new_value,
    {system_columns("s.t_e", "s.t_e", "s.seq", "hist")}
FROM ({src}) s
"""


def events_sql(src: str) -> str:
    """src: seq, who_id, what_id, for_application, t_e (a day inside the window), horizon_e."""
    k = "seq"
    etype_app = weighted(k, "evt.type", [("Call", 35), ("Email", 30), ("Meeting", 15), ("Interview", 20)])
    etype_other = weighted(k, "evt.type", [("Call", 45), ("Email", 45), ("Meeting", 10)])
    subject_cases = " ".join(f"WHEN {sql_text(t)} THEN {pick(opts, k, 'evt.subject')}" for t, opts in SUBJECTS.items())
    return f"""
WITH b AS (
    SELECT s.*,
        sf_id('{KEY_PREFIX["event"]}', s.seq) AS id,
        CASE WHEN s.for_application THEN {etype_app} ELSE {etype_other} END AS type,
        least(business_time(s.t_e, {k}, 'evt.time'), s.horizon_e) AS at_e
    FROM ({src}) s
), c AS (
    SELECT b.*,
        CASE WHEN type IN ('Meeting', 'Interview') THEN at_e - ri({k}, 'evt.sched', 0, 5 * {DAY})
             ELSE at_e END AS created_e
    FROM b
)
SELECT
    id,
    false AS is_deleted,
    who_id,
    what_id,
    type,
    CASE type {subject_cases} END
        || CASE WHEN u({k}, 'evt.emoji') < 0.002 THEN ' 📞' ELSE '' END AS subject,
    {sql_timestamp("at_e")}::TIMESTAMPTZ AS activity_date_time,
    (CASE type
        WHEN 'Call' THEN CASE WHEN u({k}, 'evt.dur.null') < 0.1 THEN NULL ELSE ri({k}, 'evt.dur', 3, 30) END
        WHEN 'Email' THEN NULL
        WHEN 'Meeting' THEN [30, 45, 60, 90][ix({k}, 'evt.dur', 4)]
        ELSE [30, 45, 60][ix({k}, 'evt.dur', 3)] END)::INTEGER AS duration_in_minutes,
    {system_columns("created_e", "at_e", k, "evt")}
FROM c
"""


# --------------------------------------------------------------------------- deletes


def soft_delete_cascade(con: duckdb.DuckDBPyConnection) -> None:
    """Soft-delete the rows in temp table _del_seed(id, kind, del_e) and everything under them.

    Salesforce cascades master-detail deletes: a facility takes its job postings with it, a
    posting its applications (and their field history), and deleted records take the events
    whose WhatId points at them. Every touched row gets the delete time as its modstamp.
    """
    s = RAW_SCHEMA
    con.execute("CREATE OR REPLACE TEMP TABLE _del_acc AS SELECT id, del_e FROM _del_seed WHERE kind = 'account'")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _del_jp AS
        SELECT id, min(del_e) AS del_e FROM (
            SELECT id, del_e FROM _del_seed WHERE kind = 'posting'
            UNION ALL
            SELECT jp.id, d.del_e FROM {s}.job_posting__c jp JOIN _del_acc d ON jp.account__c = d.id
            WHERE NOT jp.is_deleted
        ) GROUP BY id""")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _del_app AS
        SELECT a.id, d.del_e FROM {s}.application__c a JOIN _del_jp d ON a.job_posting__c = d.id
        WHERE NOT a.is_deleted""")
    stamp = """SET is_deleted = true,
        last_modified_date = to_timestamp(greatest(epoch(t.last_modified_date)::BIGINT, d.del_e)),
        system_modstamp = to_timestamp(greatest(epoch(t.system_modstamp)::BIGINT, d.del_e)),
        _fivetran_synced = to_timestamp(greatest(epoch(t.system_modstamp)::BIGINT, d.del_e) + 300)"""
    for table, deleted, column in [
        ("account", "_del_acc", "id"),
        ("job_posting__c", "_del_jp", "id"),
        ("application__c", "_del_app", "id"),
        ("application__history", "_del_app", "parent_id"),
        ("event", "(SELECT * FROM _del_jp UNION ALL SELECT * FROM _del_app)", "what_id"),
    ]:
        con.execute(f"UPDATE {s}.{table} AS t {stamp} FROM {deleted} d WHERE t.{column} = d.id AND NOT t.is_deleted")
