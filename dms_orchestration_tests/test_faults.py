"""Faults a load meets in production: a `dms run` killed (kill -9, SIGTERM, SIGINT to the
parent alone), a database server restarted, two mappings on one table, a request for
more chunks than allowed. The lock frees itself when its holder is gone, chunk processes
never outlive their parent, and the log stays true to what was applied."""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from dms_orchestration.cli import app
from dms_orchestration.db.connect import create_engine, dispose_all
from dms_orchestration.dmslog.lock import TargetShared
from dms_orchestration.dmslog.writer import LoadLocked
from dms_orchestration.engine.workers import run_in_processes
from dms_orchestration_tests.pg_server import PostgresServer
from dms_orchestration_tests.test_engine import (
    CUST_DDL,
    CUST_SQL,
    Dms,
    counts,
    cust_rows,
    mapping_yaml,
    new_pg_database,
    scd1_columns,
    scd2_columns,
)

runner = CliRunner()
plan_module = importlib.import_module("dms_orchestration.engine.plan")  # (not engine.plan())
chunk_module = importlib.import_module("dms_orchestration.engine.chunk")
writer_module = importlib.import_module("dms_orchestration.dmslog.writer")


@pytest.fixture
def make(tmp_path):
    made: list[Dms] = []

    def make_one(url: str, name: str = "home") -> Dms:
        d = Dms(url, tmp_path / name)
        made.append(d)
        return d

    yield make_one
    for d in made:
        d.engine.dispose()
    dispose_all()


@pytest.fixture
def dms(dms_url, make) -> Dms:
    return make(dms_url)


# ------------------------------------------------------------------ processes


def _children(pid: int) -> list[int]:
    """Live (not zombie) processes whose parent is `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == pid and state != "Z":
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_for(condition, timeout: float = 30, what: str = "a condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _dms_run(d: Dms, *args: str, sigint=signal.SIG_DFL) -> subprocess.Popen:
    """`dms run` as a foreground process starts it (SIGINT as it comes, whatever this
    test process inherited: a shell's background job ignores it), or with `sigint`."""
    env = {**os.environ, "DMS_HOME": str(d.home)}
    env.pop("DAGSTER_HOME", None)
    return subprocess.Popen(
        [sys.executable, "-m", "dms_orchestration.cli", "run", "REF", "--url", d.url, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, sigint),
    )


# a source that takes a moment per row (the function is declared immutable so that the
# plan's key queries, which do not read NAME, never call it)
SLOW_NAME = (
    "CREATE FUNCTION slow_name(t text) RETURNS text IMMUTABLE LANGUAGE plpgsql AS "
    "$$ BEGIN PERFORM pg_sleep(0.001); RETURN t; END $$"
)
SLOW_SQL = "SELECT ID, slow_name(NAME) AS NAME, CITY FROM SRC_CUST"
ROWS = 8_000
MANY_CUST = (
    f"INSERT INTO SRC_CUST (ID, NAME, CITY) SELECT i, 'name' || i, 'city' || (i % 3) "
    f"FROM generate_series(1, {ROWS}) i"
)


def _setup_streamed(pg_server, make) -> tuple[Dms, sa.Engine]:
    """Metadata and source in one PostgreSQL database, the target in another: the chunks
    stream, each in its own process."""
    meta = make(new_pg_database(pg_server))
    target_url = new_pg_database(pg_server)
    meta.run(CUST_DDL, SLOW_NAME, MANY_CUST)
    connections = [{"name": "TGT", "type": "POSTGRESQL", "url": target_url}]
    meta.import_yaml(
        mapping_yaml(
            "REF",
            SLOW_SQL,
            scd1_columns(),
            table="T_CUST",
            connections=connections,
            target_conn="TGT",
        )
    )
    return meta, create_engine(target_url)


def _backends(engine: sa.Engine) -> int:
    """Sessions on the engine's database other than this one."""
    with engine.connect() as conn:
        return conn.execute(
            sa.text(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()"
            )
        ).scalar()


def _target_matches_source(meta: Dms, target: sa.Engine) -> None:
    want = meta.query("SELECT ID, NAME, CITY FROM SRC_CUST ORDER BY ID")
    got = meta.query("SELECT ID, NAME, CITY FROM T_CUST ORDER BY ID", engine=target)
    assert got == want


def _start_mid_load(
    meta: Dms, target: sa.Engine, sigint=signal.SIG_DFL
) -> tuple[subprocess.Popen, list[int]]:
    """A `dms run` of 4 chunk processes, caught while every chunk is writing."""
    proc = _dms_run(meta, "--chunks", "4", sigint=sigint)
    _wait_for(lambda: len(_children(proc.pid)) >= 4, what="4 chunk processes")
    children = _children(proc.pid)
    _wait_for(lambda: _backends(target) >= 4, what="the chunks writing to the target")
    return proc, children


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
@pytest.mark.slow
def test_a_killed_or_stopped_dms_run_leaves_no_chunk_process_and_frees_its_lock(
    pg_server, make, how
):
    meta, target = _setup_streamed(pg_server, make)
    try:
        proc, children = _start_mid_load(meta, target)
        prcid = meta.last_prcid()
        proc.send_signal(how)
        proc.wait(timeout=60)
        # no chunk outlives its parent; their sessions end, their transactions roll back
        _wait_for(lambda: not any(_alive(c) for c in children), 10, "the chunks to die")
        _wait_for(lambda: _backends(target) == 0, 10, "the chunks' sessions to end")
        if how == signal.SIGKILL:
            assert meta.prcsts(prcid) == "IP"  # nobody could write it
        else:
            assert proc.returncode == 130, proc.stderr
            assert meta.prcsts(prcid) == "ST"
            # the stop reached the chunks (they rolled back), and the log is true to what
            # was applied: a chunk that did commit first is named
            chunks = meta.query(
                "SELECT CHUNKNO, JOBSTS FROM DMS_JOBLOG WHERE PRCID = :p AND CHUNKNO IS NOT NULL",
                p=prcid,
            )
            assert "ST" in {status for _chunk, status in chunks}
            message = meta.scalar("SELECT PRCMSG FROM DMS_PRCLOG WHERE PRCID = :p", p=prcid)
            for chunk, status in chunks:
                assert status == "ST" or f"{chunk}" in message.split("stopped", 1)[1]
        # the next load is not refused: it closes a vanished holder's row and loads exactly
        meta.run("UPDATE DMS_MAPRSQL SET MAPRSQL = :sql", sql=CUST_SQL.replace(", UPD", ""))
        again = _dms_run(meta)
        out, err = again.communicate(timeout=120)
        assert again.returncode == 0, err
        assert "REF PC" in out
        if how == signal.SIGKILL:
            assert meta.prcsts(prcid) == "FL"
            message = meta.scalar("SELECT PRCMSG FROM DMS_PRCLOG WHERE PRCID = :p", p=prcid)
            assert message.startswith("holder vanished")
        _target_matches_source(meta, target)
    finally:
        target.dispose()


@pytest.mark.slow
def test_a_sigterm_stops_the_chunks_of_a_dms_run_started_with_sigint_ignored(pg_server, make):
    """`dms run ... &` from a script ignores SIGINT, and so would its chunk processes:
    the stop its SIGTERM becomes, passed on to them as SIGINT, must still reach them."""
    meta, target = _setup_streamed(pg_server, make)
    try:
        proc, children = _start_mid_load(meta, target, sigint=signal.SIG_IGN)
        prcid = meta.last_prcid()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        _wait_for(lambda: not any(_alive(c) for c in children), 10, "the chunks to die")
        assert proc.returncode == 130, proc.stderr
        chunks = meta.query(
            "SELECT JOBSTS FROM DMS_JOBLOG WHERE PRCID = :p AND CHUNKNO IS NOT NULL", p=prcid
        )
        assert "ST" in {status for (status,) in chunks}  # rolled back, not run to the end
    finally:
        target.dispose()


@pytest.mark.slow
def test_a_stopped_load_in_threads_cancels_its_chunks(pg_server, make):
    """Chunks of one database run as threads: Ctrl-C cancels their statements."""
    meta = make(new_pg_database(pg_server))
    meta.run(CUST_DDL, SLOW_NAME, MANY_CUST)
    meta.import_yaml(mapping_yaml("REF", SLOW_SQL, scd1_columns(), table="T_CUST"))
    proc = _dms_run(meta, "--chunks", "4")
    _wait_for(lambda: _backends(meta.engine) >= 5, what="the chunks writing")
    prcid = meta.last_prcid()
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)  # not the ~2 s a chunk would need to finish
    assert proc.returncode == 130
    assert meta.prcsts(prcid) == "ST"
    statuses = meta.query(
        "SELECT JOBSTS FROM DMS_JOBLOG WHERE PRCID = :p AND CHUNKNO IS NOT NULL", p=prcid
    )
    assert "ST" in {s for (s,) in statuses}  # cancelled, rolled back
    assert {s for (s,) in statuses} <= {"ST", "PC"}
    assert _backends(meta.engine) == 0


def _pid_after_a_moment(index: int) -> int:
    time.sleep(0.2)
    return os.getpid()


@pytest.mark.slow
def test_no_more_chunk_processes_run_at_once_than_allowed():
    pids = run_in_processes(_pid_after_a_moment, (), 6, 2)
    assert len(pids) == 6 and len(set(pids)) <= 2


@pytest.mark.slow
def test_a_request_for_more_chunks_than_max_chunks_is_refused(dms):
    dms.run(CUST_DDL)
    dms.insert("SRC_CUST", cust_rows(5))
    dms.import_yaml(mapping_yaml("REF", CUST_SQL, scd1_columns(), table="T_CUST"))
    env = {"DMS_HOME": str(dms.home)}
    result = runner.invoke(app, ["run", "REF", "--chunks", "100000", "--url", dms.url], env=env)
    assert result.exit_code == 1
    assert "100000 chunks" in result.stderr and "MAX_CHUNKS" in result.stderr
    assert dms.scalar("SELECT COUNT(*) FROM DMS_PRCLOG") == 0
    dms.run("INSERT INTO DMS_PARAMS (PRTYP, PRCD, PRVAL) VALUES ('DMSCONFIG', 'MAX_CHUNKS', '3')")
    allowed = runner.invoke(app, ["run", "REF", "--chunks", "3", "--url", dms.url], env=env)
    assert allowed.exit_code == 0, allowed.output
    refused = runner.invoke(app, ["run", "REF", "--chunks", "4", "--url", dms.url], env=env)
    assert refused.exit_code == 1 and "MAX_CHUNKS" in refused.stderr


def test_chunks_run_at_most_max_parallel_chunks_at_once(dms):
    dms.run(CUST_DDL)
    dms.insert("SRC_CUST", cust_rows(30))
    dms.import_yaml(mapping_yaml("REF", CUST_SQL, scd1_columns(), table="T_CUST"))
    dms.run(
        "INSERT INTO DMS_PARAMS (PRTYP, PRCD, PRVAL) "
        "VALUES ('DMSCONFIG', 'MAX_PARALLEL_CHUNKS', '2')"
    )
    p = dms.plan(chunks=5)
    assert p.chunk_count == 5 and p.parallel_limit == 2
    dms.engine.dispose()


# ------------------------------------------------------------------ the lock


HOLD_A_LOAD = """
import sys, time
from dms_orchestration.engine import plan
from dms_orchestration.metadata.catalog import load_catalog
from dms_orchestration.db.connect import metadata_engine
from dms_orchestration.settings import load_settings
settings = load_settings(sys.argv[1])
p = plan(load_catalog(metadata_engine(settings)).mappings["REF"], settings=settings)
print(p.prcid, flush=True)
time.sleep(600)
"""


def _hold_a_load(d: Dms) -> tuple[subprocess.Popen, int]:
    """A process in the middle of a load of REF (planned, its chunks not yet run)."""
    env = {**os.environ, "DMS_HOME": str(d.home)}
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_A_LOAD, d.url], env=env, stdout=subprocess.PIPE, text=True
    )
    return proc, int(proc.stdout.readline())


def _setup_cust(d: Dms) -> None:
    d.run(CUST_DDL)
    d.insert("SRC_CUST", cust_rows(5))
    d.import_yaml(mapping_yaml("REF", CUST_SQL, scd1_columns(), table="T_CUST"))


@pytest.mark.slow
def test_a_live_holder_refuses_and_a_killed_one_frees_the_lock(dms):
    _setup_cust(dms)
    proc, prcid = _hold_a_load(dms)
    try:
        with pytest.raises(LoadLocked, match=rf"already being loaded by process {prcid}\b"):
            dms.load()
        proc.kill()
        proc.wait()
        assert dms.prcsts(prcid) == "IP"
        assert counts(dms.load()) == (5, 5, 0, 0, 0, 0)
        assert dms.prcsts(prcid) == "FL"
        message = dms.scalar("SELECT PRCMSG FROM DMS_PRCLOG WHERE PRCID = :p", p=prcid)
        assert message.startswith("holder vanished") and "dms run" in message
    finally:
        proc.kill()


@pytest.mark.slow
def test_a_server_restart_frees_the_lock_of_a_load_that_lost_its_session(make):
    server = PostgresServer().start()
    try:
        d = make(server.create_database("restart"))
        _setup_cust(d)
        proc, prcid = _hold_a_load(d)
        try:
            server.restart()  # the holder's process lives on; its session does not
            d.engine.dispose()
            dispose_all()
            assert counts(d.load()) == (5, 5, 0, 0, 0, 0)
            assert d.prcsts(prcid) == "FL"
        finally:
            proc.kill()
            proc.wait()
    finally:
        d.engine.dispose()
        dispose_all()
        server.stop()


@pytest.mark.slow
def test_an_ended_dagster_run_frees_the_lock_of_its_load(dms):
    _setup_cust(dms)
    held = dms.plan(runid="run-1")
    with pytest.raises(LoadLocked, match="the run is still active"):
        dms.load(run_alive=lambda runid: True)
    with pytest.raises(LoadLocked, match="cannot be checked from here"):
        dms.load()  # no Dagster instance to ask
    assert counts(dms.load(run_alive=lambda runid: runid != "run-1")) == (5, 5, 0, 0, 0, 0)
    assert dms.prcsts(held.prcid) == "FL"


def test_two_mappings_writing_one_table_never_load(dms):
    _setup_cust(dms)
    dms.import_yaml(mapping_yaml("OTHER", CUST_SQL, scd1_columns(), table="T_CUST"))
    with pytest.raises(TargetShared, match="mapping OTHER also writes target table T_CUST"):
        dms.load()
    with pytest.raises(TargetShared, match="mapping REF also writes"):
        dms.load("OTHER")
    result = runner.invoke(app, ["run", "OTHER", "--url", dms.url], env={"DMS_HOME": str(dms.home)})
    assert result.exit_code == 1 and "one table, one mapping" in result.stderr
    assert dms.scalar("SELECT COUNT(*) FROM DMS_PRCLOG") == 0
    assert not sa.inspect(dms.engine).has_table("t_cust")


# ------------------------------------------------------------------ versions in time


def _ts(value) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


@pytest.mark.slow
def test_loads_within_one_clock_tick_never_write_a_zero_length_version(dms, monkeypatch):
    dms.run(CUST_DDL)
    dms.insert("SRC_CUST", cust_rows(3))
    dms.import_yaml(mapping_yaml("REF", CUST_SQL, scd2_columns(), table="T_CUST"))
    tick = datetime(2026, 1, 1, 12, 0, 0, 123456)
    for module in (plan_module, chunk_module, writer_module):
        monkeypatch.setattr(module, "dms_now", lambda: tick)  # a clock that stands still
    for i in range(4):
        dms.load()
        dms.run("UPDATE SRC_CUST SET CITY = :c WHERE ID = 1", c=f"moved{i}")
    versions = dms.query("SELECT VLDFRM, VLDTO FROM T_CUST WHERE ID = 1 ORDER BY SKEY")
    starts = [_ts(start) for start, _end in versions]
    # one version per load, each opened a microsecond after the last (the database keeps
    # the microseconds), each closed when the next opened: none has zero length
    assert starts == [tick + timedelta(microseconds=i) for i in range(4)]
    for (start, end), following in zip(versions, starts[1:], strict=False):
        assert _ts(end) == following and _ts(end) > _ts(start)


@pytest.mark.slow
def test_a_param_that_makes_the_load_partial_says_so_in_the_output_and_the_log(dms):
    dms.run(CUST_DDL)
    dms.insert("SRC_CUST", cust_rows(6))
    sql = "SELECT ID, NAME, CITY FROM SRC_CUST WHERE :p1 IS NULL OR CITY <> :p1"
    dms.import_yaml(mapping_yaml("REF", sql, scd2_columns(), table="T_CUST", delete="EXPIRE"))
    env = {"DMS_HOME": str(dms.home)}
    full = runner.invoke(app, ["run", "REF", "--url", dms.url], env=env)
    assert full.exit_code == 0 and "partial" not in full.output
    args = ["run", "REF", "--param", "PARAM1=city0", "--url", dms.url]
    partial = runner.invoke(app, args, env=env)
    assert partial.exit_code == 0, partial.output
    assert "EXPROWS=0" in partial.stdout  # the city0 keys are absent, but not expired
    assert "partial extract (PARAM1 given)" in partial.stderr and "not expired" in partial.stderr
    message = dms.scalar("SELECT PRCMSG FROM DMS_PRCLOG WHERE PRCID = :p", p=dms.last_prcid())
    assert "partial extract (PARAM1 given)" in message


@pytest.mark.slow
def test_concurrent_runs_of_two_mappings_on_one_table_both_refuse(pg_url, make):
    d = make(pg_url)
    _setup_cust(d)
    d.import_yaml(mapping_yaml("OTHER", CUST_SQL, scd1_columns(), table="T_CUST"))
    env = {**os.environ, "DMS_HOME": str(d.home)}
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "dms_orchestration.cli", "run", ref, "--url", d.url],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for ref in ("REF", "OTHER")
    ]
    errors = [run.communicate(timeout=120)[1] for run in runs]
    assert [run.returncode for run in runs] == [1, 1]
    assert "mapping OTHER also writes target table T_CUST" in errors[0]
    assert "mapping REF also writes target table T_CUST" in errors[1]
    assert d.scalar("SELECT COUNT(*) FROM DMS_PRCLOG") == 0
    assert not sa.inspect(d.engine).has_table("t_cust")


@pytest.mark.slow
def test_a_mapping_moved_onto_a_table_being_loaded_is_refused(dms):
    _setup_cust(dms)
    dms.import_yaml(mapping_yaml("OTHER", CUST_SQL, scd1_columns(), table="T_ELSEWHERE"))
    other = dms.mapping("OTHER")  # as a code location read it before the move
    running = dms.plan()
    dms.run("UPDATE DMS_MAPR SET TRGTBNM = 'T_CUST' WHERE MAPREF = 'OTHER'")
    with pytest.raises(TargetShared, match="mapping REF also writes target table T_CUST"):
        dms.load("OTHER")
    with pytest.raises(TargetShared):  # the stale definition of OTHER is refused as well
        plan_module.plan(other.model_copy(update={"target_table": "T_CUST"}), settings=dms.settings)
    assert dms.prcsts(running.prcid) == "IP"


@pytest.mark.slow
def test_a_column_added_while_the_target_is_still_empty_loads(dms):
    dms.run(CUST_DDL)
    dms.import_yaml(mapping_yaml("REF", CUST_SQL, scd2_columns(), table="T_CUST"))
    assert counts(dms.load()) == (0, 0, 0, 0, 0, 0)  # the table is made, still empty
    dms.insert("SRC_CUST", cust_rows(3))
    columns = [*scd2_columns(), {"name": "UPD", "type": "TIMESTAMP", "logic": "SRC.UPD"}]
    dms.import_yaml(mapping_yaml("REF", CUST_SQL, columns, table="T_CUST"))
    assert counts(dms.load()) == (3, 3, 0, 0, 0, 0)
