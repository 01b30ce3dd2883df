"""PooledPostgresStorage on a real PostgreSQL server: Dagster's storage that keeps its
connections, where dagster-postgres' own opens one per statement; the same tables and
answers; a server restart costs a reconnect, not a failure."""

from __future__ import annotations

import time
import uuid

import dagster as dg
import psycopg2
import pytest
import sqlalchemy as sa
import yaml
from dagster._core.scheduler.instigation import InstigatorType, TickData, TickStatus

from dms_orchestration.defs import pooled_storage
from dms_orchestration.defs.pooled_storage import PooledPostgresStorage
from dms_orchestration.defs.run_worker import without_table_checks
from dms_orchestration_tests.conftest import REPO_ROOT


def _sessions(pg, database: str) -> int:
    """Sessions the server has opened on `database` (not counting this one)."""
    conn = psycopg2.connect(host="127.0.0.1", port=pg.port, user=pg.user, dbname="postgres")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_stat_clear_snapshot()")
            cur.execute("SELECT sessions FROM pg_stat_database WHERE datname = %s", (database,))
            return int(cur.fetchone()[0])
    finally:
        conn.close()


def _instance_yaml(pg, database: str, storage: str) -> dict:
    db = {
        "scheme": "postgresql+psycopg2",
        "username": pg.user,
        "hostname": "127.0.0.1",
        "port": pg.port,
        "db_name": database,
    }
    if storage == "pooled":
        return {
            "storage": {
                "custom": {
                    "module": "dms_orchestration.defs.pooled_storage",
                    "class": "PooledPostgresStorage",
                    "config": {"postgres_db": db},
                }
            }
        }
    return {"storage": {"postgres": {"postgres_db": db}}}


def _runs_written_and_read(instance: dg.DagsterInstance, n: int) -> None:
    for _ in range(n):
        run = dg.DagsterRun(job_name="dim_job", run_id=str(uuid.uuid4()))
        instance.add_run(run)
        instance.report_engine_event("progress", run)
        assert instance.get_run_by_id(run.run_id) is not None


@pytest.fixture
def dagster_db(pg_server):
    name = f"dagster_{uuid.uuid4().hex[:8]}"
    pg_server.create_database(name)
    return name


@pytest.mark.parametrize("storage", ["pooled", "dagster-postgres"])
def test_the_pooled_storage_keeps_its_connections_where_dagsters_opens_one_a_statement(
    pg_server, dagster_db, tmp_path, storage
):
    config = _instance_yaml(pg_server, dagster_db, storage)
    with dg.instance_for_test(overrides=config) as instance:
        _runs_written_and_read(instance, 1)  # tables made, pools started
        before = _sessions(pg_server, dagster_db)
        _runs_written_and_read(instance, 20)
        opened = _sessions(pg_server, dagster_db) - before
    if storage == "pooled":
        assert opened == 0
    else:  # (what the pool saves: 3 statements a run, a connection each)
        assert opened >= 60


def test_the_pooled_storage_answers_as_dagsters_and_survives_a_server_restart(
    pg_server, dagster_db, tmp_path
):
    config = _instance_yaml(pg_server, dagster_db, "pooled")
    with dg.instance_for_test(overrides=config) as instance:
        assert instance.get_ref().storage_data.class_name == "PooledPostgresStorage"  # workers too
        _runs_written_and_read(instance, 1)  # each storage holds a connection now
        pg_server.restart()  # every pooled connection is dead now
        run = dg.DagsterRun(job_name="dim_job", run_id=str(uuid.uuid4()))
        instance.add_run(run)
        assert instance.get_run_by_id(run.run_id).run_id == run.run_id
        instance.report_engine_event("after the restart", run)
        assert [e.message for e in instance.all_logs(run.run_id)] == ["after the restart"]


@pytest.mark.parametrize("storage", ["pooled", "dagster-postgres"])
def test_the_pooled_storage_asks_once_whether_a_migration_added_its_columns(
    pg_server, dagster_db, storage
):
    """Dagster reflects a table (catalog queries) on every run and asset event to see
    whether a migration has added columns; a pooled storage, until they are there."""
    config = _instance_yaml(pg_server, dagster_db, storage)
    catalog_queries = []

    def counted(_conn, _cursor, statement, *_args):
        if "pg_catalog" in statement:
            catalog_queries.append(statement)

    with dg.instance_for_test(overrides=config) as instance:
        _runs_and_assets_reported(instance, 1)  # tables made, the columns found there
        sa.event.listen(sa.Engine, "before_cursor_execute", counted)
        try:
            _runs_and_assets_reported(instance, 10)
        finally:
            sa.event.remove(sa.Engine, "before_cursor_execute", counted)
    if storage == "pooled":
        assert catalog_queries == []
    else:  # (what it saves: reflections on each run created, run event, asset event, tick)
        assert len(catalog_queries) >= 4 * 10  # run created, run event, asset event, tick


def _runs_and_assets_reported(instance: dg.DagsterInstance, n: int) -> None:
    """Runs created and failed, assets materialized, schedule ticks, as the services do."""
    for _ in range(n):
        run = dg.DagsterRun(job_name="dim_job", run_id=str(uuid.uuid4()))
        instance.add_run(run)
        instance.report_run_failed(run)  # a run event
        instance.report_runless_asset_event(dg.AssetMaterialization("dim_customer"))
        tick = instance.create_tick(
            TickData(
                instigator_origin_id="dim_schedule",
                instigator_name="dim_schedule",
                instigator_type=InstigatorType.SCHEDULE,
                status=TickStatus.STARTED,
                timestamp=time.time(),
                selector_id="dim_schedule",
            )
        )
        instance.update_tick(tick.with_status(TickStatus.SKIPPED))
    assert instance.get_latest_materialization_event(dg.AssetKey("dim_customer"))
    assert len(instance.get_ticks("dim_schedule", "dim_schedule")) >= n


def _sessions_opening(pg_server, dagster_db, ref) -> int:
    before = _sessions(pg_server, dagster_db)
    with dg.DagsterInstance.from_ref(ref):
        pass
    return _sessions(pg_server, dagster_db) - before


def test_a_process_looks_for_dagsters_tables_once_per_database(pg_server, dagster_db, monkeypatch):
    """The code server opens the instance anew for each schedule evaluation: the first
    opening looks for (and makes) the tables, the next ones open no session."""
    config = _instance_yaml(pg_server, dagster_db, "pooled")
    with dg.instance_for_test(overrides=config) as service:  # it creates the tables
        ref = service.get_ref()
        monkeypatch.setattr(pooled_storage, "_TABLES_CHECKED", set())  # a new process
        assert _sessions_opening(pg_server, dagster_db, ref) >= 6  # 3 storages, twice
        assert _sessions_opening(pg_server, dagster_db, ref) == 0
        other = f"{dagster_db}_b"
        pg_server.create_database(other)
        with dg.instance_for_test(overrides=_instance_yaml(pg_server, other, "pooled")) as b:
            _runs_written_and_read(b, 1)  # another database: its tables made too


def test_a_run_worker_opens_the_storage_without_a_session_to_inspect_its_tables(
    pg_server, dagster_db, monkeypatch
):
    config = _instance_yaml(pg_server, dagster_db, "pooled")
    config["storage"]["custom"]["config"]["postgres_db"]["password"] = {"env": "DAGSTER_PG_PW"}
    monkeypatch.setenv("DAGSTER_PG_PW", "unused")  # (the test server trusts local logins)
    with dg.instance_for_test(overrides=config) as service:  # it creates the tables
        ref = service.get_ref()
        worker = without_table_checks(ref)
        monkeypatch.setattr(pooled_storage, "_TABLES_CHECKED", set())  # a new process
        assert _sessions_opening(pg_server, dagster_db, worker) == 0
        with dg.DagsterInstance.from_ref(worker) as instance:
            _runs_written_and_read(instance, 1)
    # the password is still read from the environment, not written into the ref
    postgres_db = yaml.safe_load(worker.storage_data.config_yaml)["postgres_db"]
    assert postgres_db["password"] == {"env": "DAGSTER_PG_PW"}


def test_the_deployed_instance_pools_dagsters_storage():
    storage = yaml.safe_load((REPO_ROOT / "deploy" / "dagster.yaml").read_text())["storage"]
    assert storage["custom"]["module"] == "dms_orchestration.defs.pooled_storage"
    assert storage["custom"]["class"] == PooledPostgresStorage.__name__
    assert set(storage["custom"]["config"]["postgres_db"]) >= {"hostname", "db_name"}
