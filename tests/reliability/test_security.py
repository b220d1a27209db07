"""Secrets stay out of logs, metadata and errors; values and names reach the destination only as bound
parameters or quoted identifiers."""

from __future__ import annotations

import traceback
import uuid

import dagster as dg
import duckdb
import pydantic
import pytest
import sqlalchemy as sa

from activation.destinations.sql import SqlDestination, create_engine
from activation.destinations.urls import masked_url
from activation.orchestration.assets import build_sync_assets
from activation.orchestration.resources import DuckDBWarehouse, SQLDestination
from activation.orchestration.translator import Mart, SyncTranslator, sync_asset_key
from activation.syncs.model import MartRelation
from activation.syncs.results import SyncError
from activation.syncs.spec import SyncConfig
from activation.warehouses.duckdb import DuckDB
from tests.databases import MYSQL_SERVER_URL, destination_database, mariadb_server
from tests.reliability.support import Log, dest_rows, make_mart, mart_rows
from tests.syncs.test_load import engine_for, items_config, items_spec

# -- credentials -------------------------------------------------------------------------------


@pytest.fixture
def app_user(mariadb_url):
    """A MariaDB user with a password, allowed into the test database only, and not allowed to DELETE."""
    user, secret = f"act_{uuid.uuid4().hex[:8]}", f"Sekr1t{uuid.uuid4().hex}"
    database = sa.engine.make_url(mariadb_url).database
    admin = sa.create_engine(MYSQL_SERVER_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{secret}'"))
        conn.execute(
            sa.text(
                "GRANT SELECT, INSERT, UPDATE, CREATE, DROP, ALTER, INDEX, REFERENCES, CREATE TEMPORARY TABLES "
                f"ON `{database}`.* TO '{user}'@'%'"
            )
        )
    try:
        url = sa.engine.make_url(mariadb_url).set(username=user, password=secret)
        yield url.render_as_string(hide_password=False), user, secret
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP USER IF EXISTS '{user}'@'%'"))
        admin.dispose()


def exception_texts(exc: BaseException) -> str:
    """str, repr and the formatted traceback of an exception and everything chained to it."""
    out, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        out += [str(exc), repr(exc)]
        exc = exc.__cause__ or exc.__context__
    return "\n".join(out)


def full_exception_text(exc: BaseException) -> str:
    return exception_texts(exc) + "\n" + "".join(traceback.format_exception(exc))


def materialize(duck, monkeypatch, url: str) -> tuple[dg.ExecuteInProcessResult, str]:
    """Run the sync asset the way Dagster does, the URL in the environment as in production; return the
    result and everything the run recorded (events, logs, metadata, errors, run config) as text."""
    monkeypatch.setenv("ACTIVATION_TEST_SECRET_URL", url)
    config = items_config(url_env="ACTIVATION_TEST_SECRET_URL")
    marts = {"items": Mart(dg.AssetKey(["items"]), MartRelation("main", "items"))}
    destination = SQLDestination(url=dg.EnvVar("ACTIVATION_TEST_SECRET_URL"))
    assets = build_sync_assets(SyncTranslator(config, marts, {"app": destination}))
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        assets,
        resources={
            "app_db": destination,
            "warehouse": DuckDBWarehouse(path=str(duck)),
        },
        instance=instance,
        raise_on_error=False,
        selection=[sync_asset_key(config.syncs["items"])],
    )
    recorded = [dg.serialize_value(entry) for entry in instance.all_logs(result.run_id)]
    run = instance.get_run_by_id(result.run_id)
    recorded.append(dg.serialize_value(run))
    return result, "\n".join(recorded)


def test_credentials_never_reach_dagster_events_logs_metadata_or_errors(app_user, tmp_path, monkeypatch):
    url, user, secret = app_user
    duck = tmp_path / "w.duckdb"
    make_mart(duck, 500)

    # 1. A successful sync: the metadata names the destination without its password.
    ok, recorded = materialize(duck, monkeypatch, url)
    assert ok.success
    [mat] = ok.asset_materializations_for_node("sync_app")
    assert mat.metadata["destination"].value == masked_url(url)
    assert "***" in masked_url(url) and user in masked_url(url)
    assert "syncing ['items'] into" in recorded and user in recorded
    assert secret not in recorded

    # 2. The server refuses a write (no DELETE grant): the step fails, naming the user, not the password.
    with duckdb.connect(str(duck)) as con:
        con.execute("DELETE FROM items WHERE id < 10")
    refused, recorded = materialize(duck, monkeypatch, url)
    assert not refused.success
    [failure] = refused.get_step_failure_events()
    error_text = str(failure.event_specific_data.error.to_string())
    assert "DELETE command denied" in error_text and user in error_text
    assert secret not in recorded and secret not in error_text

    # 3. A wrong password: refused at connect; the error names user and host, not the password tried.
    wrong_secret = f"Wr0ng{uuid.uuid4().hex}"
    wrong = sa.engine.make_url(url).set(password=wrong_secret).render_as_string(hide_password=False)
    denied, recorded = materialize(duck, monkeypatch, wrong)
    assert not denied.success
    [failure] = denied.get_step_failure_events()
    error_text = str(failure.event_specific_data.error.to_string())
    assert f"Access denied for user '{user}'@" in error_text
    for text in (recorded, error_text):
        assert wrong_secret not in text and secret not in text


def test_credentials_never_reach_sync_logs_or_exception_chains(app_user, tmp_path):
    url, user, secret = app_user
    duck = tmp_path / "w.duckdb"
    make_mart(duck, 500)
    config = items_config(url_env="ACTIVATION_TEST_SECRET_URL")
    spec = config.syncs["items"]
    relations = {"items": MartRelation("main", "items")}

    def sync(target_url: str, log: Log):
        destination = SQLDestination(url=target_url)
        try:
            with duckdb.connect(str(duck), read_only=True) as con:
                planner = DuckDB(con, str(tmp_path / "state.duckdb"), target_url)
                return SqlDestination(destination.engine()).sync(planner, [spec], relations, log=log)
        finally:
            destination.engine().dispose()

    log = Log()
    sync(url, log)
    with duckdb.connect(str(duck)) as con:
        con.execute("DELETE FROM items WHERE id < 10")
        con.execute("UPDATE items SET name = 'secret-looking value' WHERE id = 20")
    with pytest.raises(SyncError, match="DELETE command denied") as refused:
        sync(url, log)
    text = full_exception_text(refused.value)
    assert user in text and secret not in text
    assert "secret-looking value" not in text, "row values stay out of errors (hide_parameters)"

    wrong_secret = f"Wr0ng{uuid.uuid4().hex}"
    wrong = sa.engine.make_url(url).set(password=wrong_secret).render_as_string(hide_password=False)
    with pytest.raises(sa.exc.OperationalError) as denied:
        sync(wrong, log)
    text = full_exception_text(denied.value)
    assert f"Access denied for user '{user}'@'" in text and "(using password: YES)" in text
    assert wrong_secret not in text and secret not in text
    assert log.lines and not [line for line in log.lines if secret in line or wrong_secret in line]
    assert secret not in masked_url(url) and wrong_secret not in masked_url(wrong)


# -- values -------------------------------------------------------------------------------------

NASTY = [
    "'); DROP TABLE items; --",
    '"); DROP TABLE canary; --',
    "%s",
    "%(x)s",
    "%%",
    ":x",
    "?",
    "back\\slash \\' \\\" \\n \\\\",
    'it\'s "quoted" `ticked`',
    "line\nbreak\r\ncrlf\ttab",
    'comma, separated, "csv"',
    "NULL",
    "\\N",
    "",
    " trailing space ",
    "emoji 🛒👩‍👩‍👧 and 漢字",
    "$1 $$ dollar $$",
    "\u00e9 vs e\u0301",
    '{"json": [1, 2]}',
]


@pytest.mark.parametrize("kind", ["mariadb", "postgres", "sqlite"])
def test_values_travel_as_data(kind, tmp_path):
    duck = tmp_path / "w.duckdb"
    with duckdb.connect(str(duck)) as con:
        con.execute("CREATE TABLE items (id INTEGER, v VARCHAR, w VARCHAR)")
        con.executemany(
            "INSERT INTO items VALUES (?, ?, ?)",
            [(i, value, value[::-1]) for i, value in enumerate(NASTY)] + [(len(NASTY), None, "null")],
        )
    config = {
        "destinations": {"app": {"url_env": "X"}},
        "syncs": {
            "items": {"source": "items", "destination": "app", "table": "items", "primary_key": "id", "mode": "mirror"}
        },
    }
    spec = SyncConfig.model_validate(config).syncs["items"]
    with destination_database(kind, tmp_path) as url:
        engine = engine_for(url)
        try:
            with engine.begin() as conn:
                conn.execute(sa.text("CREATE TABLE canary (id INTEGER PRIMARY KEY)"))
            with duckdb.connect(str(duck), read_only=True) as con:
                planner = DuckDB(con, str(tmp_path / f"state_{kind}.duckdb"), url)
                SqlDestination(engine).sync(
                    planner, [spec], {"items": MartRelation("main", "items")}, log=lambda _m: None
                )
            # Changed values go the other path (staging + update) and must survive it too.
            with duckdb.connect(str(duck)) as con:
                con.execute("UPDATE items SET v = w, w = v")
            with duckdb.connect(str(duck), read_only=True) as con:
                planner = DuckDB(con, str(tmp_path / f"state_{kind}.duckdb"), url)
                [result] = SqlDestination(engine).sync(
                    planner, [spec], {"items": MartRelation("main", "items")}, log=lambda _m: None
                )
            assert result.updated == sum(value != value[::-1] for value in NASTY) + 1  # "%%", "?", "" stay
            assert sa.inspect(engine).has_table("canary")
        finally:
            engine.dispose()
        cols = ["id", "v", "w"]
        assert dest_rows(url, "items", cols) == mart_rows(duck, "items", cols)


# -- identifiers --------------------------------------------------------------------------------


def spec_with(**overrides):
    return items_spec(**overrides)


@pytest.mark.parametrize(
    "overrides",
    [
        {"table": 'items"; DROP TABLE canary; --'},
        {"table": "items`; DROP TABLE canary; --"},
        {"table": "items'; DROP TABLE canary; --"},
        {"table": "items\n; DROP TABLE canary"},
        {"table": " items"},
        {"table": "x" * 65},
        {"primary_key": 'id"; --'},
        {"columns": {"id": "id", 'v"; DROP TABLE canary; --': "v"}},
        {"columns": {"id": "id", "v": "v`) FROM x; --"}},
        {"foreign_keys": {"parent_id": "parents`.id"}},
        {"scope": {"tenant'": 1}},
    ],
)
def test_identifiers_with_quotes_are_refused_at_validation(overrides):
    with pytest.raises(pydantic.ValidationError, match="not a usable identifier|at most 64 characters"):
        spec_with(**overrides)


@pytest.mark.parametrize("kind", ["mariadb", "postgres", "sqlite"])
def test_odd_but_allowed_names_are_quoted(kind, tmp_path):
    """Names spec.py allows (keywords, spaces, semicolons) are created and written quoted."""
    columns = {"id": "id", "select": "v1", "first name": "v2", "from": "v3", "a;b --c": "v4", "order by": "v5"}
    sync_odd_names(kind, tmp_path, "items; DROP TABLE canary; --", columns)


@pytest.mark.parametrize("kind", ["mariadb", "postgres", "sqlite"])
def test_percent_signs_in_names_are_quoted(kind, tmp_path):
    """spec.py allows '%' in names; a driver's paramstyle must not turn it into '%%' in the table's DDL
    or in the bulk load statement."""
    columns = {"id": "id", "v1": "v1", "v2": "v2", "rate %": "v3", "%(x)s": "v4", "v5 %s": "v5"}
    sync_odd_names(kind, tmp_path, "items 100%", columns)


def sync_odd_names(kind, tmp_path, table: str, columns: dict[str, str]) -> None:
    spec = spec_with(table=table, columns=columns)
    duck = tmp_path / "w.duckdb"
    with duckdb.connect(str(duck)) as con:
        con.execute(
            "CREATE TABLE items AS SELECT i AS id, 'a' || i AS v1, 'b' || i AS v2, i * 1.5 AS v3, "
            "'%s' || i AS v4, i % 3 = 0 AS v5 FROM range(300) t(i)"
        )
    with destination_database(kind, tmp_path) as url:
        engine = engine_for(url)
        try:
            with engine.begin() as conn:
                conn.execute(sa.text("CREATE TABLE canary (id INTEGER PRIMARY KEY)"))
            for change in (None, "UPDATE items SET v1 = v1 || '!' WHERE id % 2 = 0", "DELETE FROM items WHERE id < 5"):
                if change:
                    with duckdb.connect(str(duck)) as con:
                        con.execute(change)
                with duckdb.connect(str(duck), read_only=True) as con:
                    planner = DuckDB(con, str(tmp_path / "state.duckdb"), url)
                    SqlDestination(engine).sync(
                        planner, [spec], {"items": MartRelation("main", "items")}, log=lambda _m: None
                    )
            inspector = sa.inspect(engine)
            assert inspector.has_table("canary") and inspector.has_table(table)
            assert {c["name"] for c in inspector.get_columns(table)} == set(columns)
        finally:
            engine.dispose()
        dest_cols = list(columns)
        mart_cols = [f'"{c}"' for c in columns.values()]
        have = dest_rows(url, table, dest_cols)
        want = mart_rows(duck, "items", mart_cols)
        assert len(have) == len(want) == 295
        for h, w in zip(have, want, strict=True):
            assert (h[0], h[1], h[2], float(h[3]), h[4], bool(h[5])) == (w[0], w[1], w[2], float(w[3]), w[4], w[5])


def test_mysql_connections_share_one_preferred_tls_context_and_keep_explicit_tls():
    """No TLS option: every connection reuses one PREFERRED-mode context (built once, not per
    connection). An explicit TLS option keeps PyMySQL's own, required TLS: the local server offers
    none, so the connection is refused rather than silently sent in the clear."""
    with mariadb_server():
        engine = create_engine(f"{MYSQL_SERVER_URL}/mysql")
        try:
            first, second = engine.raw_connection(), engine.raw_connection()
            contexts = [c.dbapi_connection.ctx for c in (first, second)]
            assert contexts[0] is contexts[1] and contexts[0].verify_mode.name == "CERT_NONE"
            first.close()
            second.close()
        finally:
            engine.dispose()
        ca = "/etc/ssl/certs/ca-certificates.crt"
        strict = create_engine(f"{MYSQL_SERVER_URL}/mysql?ssl_ca={ca}")
        try:
            with pytest.raises(sa.exc.OperationalError, match="(?i)ssl|tls"):
                strict.connect().close()
        finally:
            strict.dispose()
