"""The demo lake: deterministic, Salesforce-shaped, referentially consistent, and changing by the day."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import duckdb
import pytest

from activation.demo import (
    KEY_PREFIX,
    RAW_SCHEMA,
    TABLES,
    apply_day_of_changes,
    generate_lake,
    salesforce_id_checksum,
)

SCALE = 0.002
S = RAW_SCHEMA

# Each query returns the rows that break one rule; every rule must return none.
CONSISTENCY_RULES = {
    "facility parent is a corporation": f"""
        SELECT f.id FROM {S}.account f LEFT JOIN {S}.account c ON c.id = f.parent_id
        WHERE f.parent_id IS NOT NULL AND (c.id IS NULL OR c.type <> 'Corporation')""",
    "corporations have no parent and no facility type": f"""
        SELECT id FROM {S}.account
        WHERE type = 'Corporation' AND (parent_id IS NOT NULL OR facility_type__c IS NOT NULL)""",
    "posting belongs to a facility": f"""
        SELECT j.id FROM {S}.job_posting__c j LEFT JOIN {S}.account a ON a.id = j.account__c
        WHERE a.id IS NULL OR a.type <> 'Medical Facility'""",
    "application candidate exists": f"""
        SELECT a.id FROM {S}.application__c a ANTI JOIN {S}.contact c ON c.id = a.candidate__c""",
    "application posting exists": f"""
        SELECT a.id FROM {S}.application__c a ANTI JOIN {S}.job_posting__c j ON j.id = a.job_posting__c""",
    "candidate applies once per posting": f"""
        SELECT candidate__c FROM {S}.application__c GROUP BY candidate__c, job_posting__c HAVING count(*) > 1""",
    "history parent is an application": f"""
        SELECT h.id FROM {S}.application__history h ANTI JOIN {S}.application__c a ON a.id = h.parent_id""",
    "event who is a contact": f"""
        SELECT e.id FROM {S}.event e ANTI JOIN {S}.contact c ON c.id = e.who_id""",
    "event what is a posting or an application": f"""
        SELECT e.id FROM {S}.event e
        WHERE e.what_id NOT IN (SELECT id FROM {S}.job_posting__c UNION ALL SELECT id FROM {S}.application__c)""",
    "live posting has a live facility": f"""
        SELECT j.id FROM {S}.job_posting__c j JOIN {S}.account a ON a.id = j.account__c
        WHERE NOT j.is_deleted AND a.is_deleted""",
    "live application has a live posting": f"""
        SELECT a.id FROM {S}.application__c a JOIN {S}.job_posting__c j ON j.id = a.job_posting__c
        WHERE NOT a.is_deleted AND j.is_deleted""",
    "live history has a live application": f"""
        SELECT h.id FROM {S}.application__history h JOIN {S}.application__c a ON a.id = h.parent_id
        WHERE NOT h.is_deleted AND a.is_deleted""",
    "live event is about a live record": f"""
        SELECT e.id FROM {S}.event e
        JOIN (SELECT id, is_deleted FROM {S}.job_posting__c UNION ALL
              SELECT id, is_deleted FROM {S}.application__c) w ON w.id = e.what_id
        WHERE NOT e.is_deleted AND w.is_deleted""",
    "salary max is at least min": f"""
        SELECT id FROM {S}.job_posting__c WHERE salary_max__c < salary_min__c""",
    "only drafts are unpublished": f"""
        SELECT id FROM {S}.job_posting__c WHERE (status__c = 'Draft') <> (published_at__c IS NULL)""",
    "application status is known": f"""
        SELECT id FROM {S}.application__c WHERE status__c NOT IN
            ('Applied', 'Screening', 'Interview', 'Offer', 'Hired', 'Rejected', 'Withdrawn')""",
    "current status matches the last history row": f"""
        SELECT a.id FROM {S}.application__c a
        JOIN (SELECT parent_id, arg_max(new_value, created_date) AS last_value
              FROM {S}.application__history GROUP BY parent_id) h ON h.parent_id = a.id
        WHERE h.last_value <> a.status__c""",
    "modstamps never precede creation": " UNION ALL ".join(
        f"SELECT id FROM {S}.{t} WHERE system_modstamp < created_date OR last_modified_date < created_date"
        for t in TABLES
    ),
}


def violations(path: Path) -> dict[str, int]:
    with duckdb.connect(str(path), read_only=True) as con:
        found = {rule: len(con.execute(sql).fetchall()) for rule, sql in CONSISTENCY_RULES.items()}
    return {rule: n for rule, n in found.items() if n}


def fingerprints(path: Path) -> dict[str, tuple[int, str]]:
    """Row count and a digest of every row (in id order) per raw table."""
    with duckdb.connect(str(path), read_only=True) as con:
        return {
            t: con.execute(f"SELECT count(*), md5(string_agg(r::VARCHAR, '|' ORDER BY id)) FROM {S}.{t} r").fetchall()[
                0
            ]
            for t in TABLES
        }


def snapshot(path: Path) -> dict[str, dict[str, tuple[bool, object]]]:
    with duckdb.connect(str(path), read_only=True) as con:
        return {
            t: {
                row[0]: (row[1], row[2])
                for row in con.execute(f"SELECT id, is_deleted, system_modstamp FROM {S}.{t}").fetchall()
            }
            for t in TABLES
        }


@pytest.fixture(scope="module")
def lake_template(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("lake") / "lake.duckdb"
    generate_lake(path, scale=SCALE, seed=42)
    return path


@pytest.fixture
def lake(lake_template, tmp_path) -> Path:
    """A private copy of the generated lake, free to change."""
    path = tmp_path / "lake.duckdb"
    shutil.copy(lake_template, path)
    return path


def test_checksum_reference_matches_salesforce():
    # Published example of a 15-character id and its 18-character form.
    assert salesforce_id_checksum("a0D30000001n7Pi") == "EAI"
    assert salesforce_id_checksum("000000000000000") == "AAA"
    assert salesforce_id_checksum("ZZZZZZZZZZZZZZZ") == "555"
    with pytest.raises(ValueError):
        salesforce_id_checksum("tooshort")


def test_every_table_is_populated_even_at_tiny_scale(tmp_path):
    counts = generate_lake(tmp_path / "tiny.duckdb", scale=0.0001, seed=7)
    assert set(counts) == set(TABLES)
    assert all(n >= 5 for n in counts.values()), counts
    assert counts["application__c"] >= 36 and counts["event"] >= 36, counts


def test_ids_are_salesforce_ids_with_the_right_checksum(lake):
    with duckdb.connect(str(lake), read_only=True) as con:
        for table in TABLES:
            ids = [r[0] for r in con.execute(f"SELECT id FROM {S}.{table}").fetchall()]
            assert ids and len(ids) == len(set(ids)), table
            for sf_id in ids:
                assert re.fullmatch(r"[0-9A-Za-z]{18}", sf_id), sf_id
                assert sf_id.startswith(KEY_PREFIX[table]), (table, sf_id)
                assert sf_id[15:] == salesforce_id_checksum(sf_id[:15]), sf_id


def test_same_seed_gives_identical_tables(lake_template, tmp_path):
    again = tmp_path / "again.duckdb"
    counts = generate_lake(again, scale=SCALE, seed=42)
    assert fingerprints(again) == fingerprints(lake_template)
    assert counts == {t: n for t, (n, _) in fingerprints(again).items()}

    other = tmp_path / "other.duckdb"
    generate_lake(other, scale=SCALE, seed=43)
    theirs, ours = fingerprints(other), fingerprints(lake_template)
    assert all(theirs[t][1] != ours[t][1] for t in TABLES)


def test_regenerating_replaces_the_lake(lake):
    apply_day_of_changes(lake)
    generate_lake(lake, scale=SCALE, seed=42)
    with duckdb.connect(str(lake), read_only=True) as con:
        assert con.execute(f"SELECT day FROM {S}._demo_state").fetchall() == [(0,)]


def test_lake_is_consistent_before_and_after_changes(lake):
    assert violations(lake) == {}
    for _ in range(3):
        apply_day_of_changes(lake)
        assert violations(lake) == {}


def test_a_day_of_changes_reports_what_it_did(lake):
    before = snapshot(lake)
    with duckdb.connect(str(lake), read_only=True) as con:
        (last_day,) = con.execute(f"SELECT max(system_modstamp)::DATE FROM {S}.event").fetchall()[0]

    changes = apply_day_of_changes(lake)

    after = snapshot(lake)
    for table in TABLES:
        old, new = before[table], after[table]
        inserted = new.keys() - old.keys()
        deleted = {i for i, (gone, _) in old.items() if not gone and (i not in new or new[i][0])}
        updated = {
            i for i, (gone, stamp) in old.items() if not gone and i in new and not new[i][0] and new[i][1] != stamp
        }
        assert changes[table] == {"inserted": len(inserted), "updated": len(updated), "deleted": len(deleted)}
        assert inserted, table
        # everything that changed happened on the day after the lake's last day
        for i in inserted | updated | deleted:
            if i in new:
                assert (new[i][1].date() - last_day).days == 1, (table, i)

    for table in ("account", "contact", "job_posting__c", "application__c"):
        assert changes[table]["updated"] > 0, table
    for table in ("account", "job_posting__c", "application__c", "event"):
        assert changes[table]["deleted"] > 0, table
    # soft deletes keep the row; a few events are removed outright
    assert any(i not in after["event"] for i in before["event"])
    assert all(i in after["job_posting__c"] for i in before["job_posting__c"])
    # every application that moved wrote one history row
    assert changes["application__history"]["inserted"] == changes["application__c"]["updated"]

    with duckdb.connect(str(lake), read_only=True) as con:
        assert con.execute(f"SELECT day FROM {S}._demo_state").fetchall() == [(1,)]


def test_days_are_deterministic_and_advance(lake, tmp_path):
    twin = tmp_path / "twin.duckdb"
    shutil.copy(lake, twin)
    with duckdb.connect(str(lake), read_only=True) as con:
        (start,) = con.execute(f"SELECT as_of_date FROM {S}._demo_state").fetchall()[0]
    first = [apply_day_of_changes(lake), apply_day_of_changes(lake)]
    second = [apply_day_of_changes(twin), apply_day_of_changes(twin)]
    assert first == second
    assert fingerprints(lake) == fingerprints(twin)
    with duckdb.connect(str(lake), read_only=True) as con:
        state = con.execute(f"SELECT day, as_of_date FROM {S}._demo_state").fetchall()[0]
        latest = con.execute(f"SELECT max(system_modstamp)::DATE FROM {S}.application__c").fetchall()[0][0]
    assert state[0] == 2 and (state[1] - start).days == 2 and latest == state[1]


def test_realistic_japanese_text_and_nulls(lake):
    with duckdb.connect(str(lake), read_only=True) as con:
        one = con.execute(f"""
            SELECT
                (SELECT count(*) FROM {S}.contact WHERE regexp_matches(last_name_kana__c, '^[ァ-ヶー]+$')),
                (SELECT count(*) FROM {S}.contact),
                (SELECT count(*) FROM {S}.contact WHERE mobile_phone IS NULL OR birthdate IS NULL),
                (SELECT count(*) FROM {S}.job_posting__c WHERE length(description__c) > 255),
                (SELECT count(*) FROM {S}.job_posting__c WHERE salary_max__c IS NULL),
                (SELECT count(*) FROM {S}.account WHERE type = 'Medical Facility' AND parent_id IS NULL),
                (SELECT count(*) FROM {S}.account WHERE billing_state IN ('東京都', '大阪府', '神奈川県'))
        """).fetchall()[0]
    kana, contacts, missing, long_text, open_salary, independent, big_cities = one
    assert kana == contacts
    assert missing > 0 and long_text > 0 and open_salary > 0 and independent > 0 and big_cities > 0


def test_emoji_and_quotes_survive_somewhere(tmp_path):
    path = tmp_path / "lake.duckdb"
    generate_lake(path, scale=0.01, seed=42)
    with duckdb.connect(str(path), read_only=True) as con:
        texts = [
            r[0]
            for r in con.execute(
                f"SELECT description__c FROM {S}.job_posting__c UNION ALL SELECT name FROM {S}.account"
            ).fetchall()
        ]
    assert any(any(ord(ch) > 0xFFFF for ch in text) for text in texts)  # 4-byte UTF-8
    assert any("'" in text for text in texts) and any('"' in text for text in texts)
