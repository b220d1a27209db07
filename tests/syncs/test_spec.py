"""The sync config fails loudly, naming the file and the field."""

from __future__ import annotations

import textwrap

import pytest

from activation.settings import PROJECT_ROOT
from activation.syncs.options import Mode
from activation.syncs.spec import SyncConfigError, SyncSpec, load_sync_config

BASE = """
destinations:
  app: {url_env: APP_URL, default_url: "sqlite:///app.sqlite"}
syncs:
  parents: {source: m_parents, destination: app, table: parents, primary_key: id, mode: replace}
  children:
    source: m_children
    destination: app
    table: children
    primary_key: [id]
    foreign_keys: {parent_id: parents.id}
"""


def write(tmp_path, text: str):
    path = tmp_path / "syncs.yml"
    path.write_text(textwrap.dedent(text))
    return path


def test_shipped_config_loads_with_parents_first():
    config = load_sync_config(PROJECT_ROOT / "syncs.yml")
    order = [s.table for s in config.load_order() if s.destination == "app"]
    assert order.index("facilities") < order.index("job_postings") < order.index("applications")
    assert order.index("candidates") < order.index("applications")


def test_valid_config(tmp_path):
    config = load_sync_config(write(tmp_path, BASE))
    assert [s.name for s in config.load_order()] == ["parents", "children"]
    assert config.syncs["children"].mode is Mode.UPSERT
    assert config.syncs["parents"].primary_key == ["id"]


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "mode: replace",
            "mode: mirrorr",
            r"syncs\.parents\.mode: Input should be 'insert', 'update', 'upsert', 'mirror', 'replace' or "
            "'truncate_insert'",
        ),
        ("destination: app, table", "destination: nope, table", r"syncs\.parents\.destination: 'nope' is not one of"),
        ("parent_id: parents.id", "parent_id: nowhere.id", r"no sync writes table 'nowhere'"),
        ("parent_id: parents.id", "parent_id: parents", r"syncs\.children\.foreign_keys: .*must be 'table\.column'"),
        ("primary_key: id,", "primary_key: [],", r"syncs\.parents\.primary_key: .*needs a primary key"),
        ("table: parents", "table: 'par`ents'", r"syncs\.parents\.table: .*not a usable identifier"),
        ("table: children", "table: parents", r"'parents' is already written by sync 'parents'"),
        (
            '"sqlite:///app.sqlite"',
            '"mysql://u:secret@h/db"',
            r"destinations\.app\.default_url: .*must not carry a password",
        ),
        ("mode: replace}", "mode: replace, colour: red}", r"syncs\.parents\.colour: Extra inputs are not permitted"),
    ],
)
def test_errors_name_the_file_and_field(tmp_path, old, new, message):
    assert old in BASE
    path = write(tmp_path, BASE.replace(old, new))
    with pytest.raises(SyncConfigError, match=message) as err:
        load_sync_config(path)
    assert str(path) in str(err.value)


def test_foreign_key_cycle_is_refused(tmp_path):
    text = BASE.replace("mode: replace}", "mode: replace, foreign_keys: {child_id: children.id}}")
    with pytest.raises(SyncConfigError, match="foreign keys form a cycle"):
        load_sync_config(write(tmp_path, text))


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(SyncConfigError, match="not found"):
        load_sync_config(tmp_path / "absent.yml")
    with pytest.raises(SyncConfigError, match="not valid YAML"):
        load_sync_config(write(tmp_path, "syncs: [unclosed"))


def test_freshness_checks_and_partition_settings(tmp_path):
    text = BASE.replace(
        "mode: replace}",
        "mode: replace, freshness: {fail_after: 2d, warn_after: 36h}, checks: {max_rejected: '1%', checksum: false}}",
    )
    parents = load_sync_config(write(tmp_path, text)).syncs["parents"]
    assert parents.freshness.fail_after.total_seconds() == 2 * 86400
    assert parents.freshness.warn_after.total_seconds() == 36 * 3600
    assert parents.checks.max_rejected.percent == 1.0 and not parents.checks.checksum
    assert SyncSpec.model_validate_json(parents.model_dump_json()) == parents, "a spec survives JSON (crash tests)"
    children = load_sync_config(write(tmp_path, BASE)).syncs["children"]
    assert children.freshness.fail_after.total_seconds() == 26 * 3600, "a default for every sync"
    assert children.checks.max_rejected.rows == 0


@pytest.mark.parametrize(
    ("fragment", "message"),
    [
        ("freshness: {fail_after: soon}", "not a duration"),
        ("freshness: {fail_after: 1h, warn_after: 2h}", "warn_after must be shorter"),
        ("partition: {column: event_date}", "use mode: mirror"),
    ],
)
def test_bad_freshness_or_partition_is_named(tmp_path, fragment, message):
    text = BASE.replace("mode: replace}", f"mode: replace, {fragment}}}")
    with pytest.raises(SyncConfigError, match=message):
        load_sync_config(write(tmp_path, text))
