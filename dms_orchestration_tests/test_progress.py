"""Progress of a running load (issue 11, item 2): chunks write their DMS_JOBLOG rows (IP,
rows so far) while they run and the load's row sums them; `dms run` shows it on stderr;
`dms status` lists running and recent loads; Dagster's chunk steps log it."""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
import threading
import time

import dagster as dg
import pytest
import yaml
from typer.testing import CliRunner

from dms_orchestration.cli import app
from dms_orchestration.db.connect import dispose_all, metadata_engine
from dms_orchestration.defs.resources import DmsLogWriter
from dms_orchestration.engine import commit, run_chunk
from dms_orchestration.engine.load import IncompleteLoad
from dms_orchestration.engine.progress import ChunkReporter
from dms_orchestration.settings import dms_now
from dms_orchestration_tests import test_faults
from dms_orchestration_tests.test_defs import cust_dms, execute
from dms_orchestration_tests.test_engine import (
    CUST_DDL,
    Dms,
    counts,
    mapping_yaml,
    new_pg_database,
    scd1_columns,
    setup_cust,
)
from dms_orchestration_tests.test_faults import SLOW_NAME, SLOW_SQL, _wait_for

runner = CliRunner()
writer_module = importlib.import_module("dms_orchestration.dmslog.writer")

STATUS_FIELDS = {
    "prcid",
    "mapref",
    "status",
    "running",
    "chunks",
    "chunks_done",
    "progress",
    "rows",
    "estimated_rows",
    "rows_per_second",
    "eta_seconds",
    "inserted",
    "updated",
    "expired",
    "deleted",
    "unchanged",
    "started",
    "ended",
    "duration_seconds",
    "run_id",
    "message",
}


# fixtures: a Dms on the test's database, and more on demand
make, dms = test_faults.make, test_faults.dms


def status_json(d: Dms, *args: str) -> list[dict]:
    result = runner.invoke(
        app, ["status", "--json", "--url", d.url, *args], env={"DMS_HOME": str(d.home)}
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def joblog(d: Dms, prcid: int) -> list[tuple]:
    """(CHUNKNO, JOBSTS, SRCROWS) of a load, the load's row first."""
    return d.query(
        "SELECT CHUNKNO, JOBSTS, SRCROWS FROM DMS_JOBLOG WHERE PRCID = :p ORDER BY JOBLOGID",
        p=prcid,
    )


# ------------------------------------------------------- a load watched as it runs

ROWS = 10_000  # ~1 ms a row through slow_name: a load of two chunks of ~5 s each


def _slow_streamed_load(pg_server, make) -> Dms:
    """Metadata and a slow source in one database, the target in another: two chunk
    processes stream batches of 250 rows."""
    meta = make(new_pg_database(pg_server))
    meta.run(
        CUST_DDL,
        SLOW_NAME,
        f"INSERT INTO SRC_CUST (ID, NAME, CITY) SELECT i, 'name' || i, 'city' || (i % 3) "
        f"FROM generate_series(1, {ROWS}) i",
        "ANALYZE SRC_CUST",
    )
    file = yaml.safe_load(
        mapping_yaml(
            "REF",
            SLOW_SQL,
            scd1_columns(),
            table="T_CUST",
            connections=[{"name": "TGT", "type": "POSTGRESQL", "url": new_pg_database(pg_server)}],
            target_conn="TGT",
        )
    )
    file["mappings"][0]["bulk_rows"] = 250
    meta.import_yaml(yaml.safe_dump(file))
    return meta


def _read_lines(stream, into: list) -> None:
    for line in stream:
        into.append((time.monotonic(), line.rstrip("\n")))


@pytest.mark.slow
def test_progress_rows_grow_in_dms_joblog_while_a_load_of_two_chunks_runs(pg_server, make):
    meta = _slow_streamed_load(pg_server, make)
    env = {**os.environ, "DMS_HOME": str(meta.home)}
    env.pop("DAGSTER_HOME", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "dms_orchestration.cli", "run", "REF", "--chunks", "2"]
        + ["--url", meta.url],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,  # not a terminal: plain progress lines
        text=True,
    )
    lines: list[tuple[float, str]] = []
    reader = threading.Thread(target=_read_lines, args=(proc.stderr, lines), daemon=True)
    reader.start()
    try:
        _wait_for(lambda: meta.scalar("SELECT COUNT(*) FROM DMS_PRCLOG") == 1, 60, "the plan")
        prcid = meta.last_prcid()
        seen: list[list[tuple]] = []  # DMS_JOBLOG as another session sees it, over time
        running_status = None
        while True:
            rows = joblog(meta, prcid)
            if meta.prcsts(prcid) != "IP":  # (what was read may be the committed load)
                break
            seen.append(rows)
            if running_status is None and any(r[1] == "IP" and r[2] for r in rows[1:]):
                running_status = status_json(meta)
            time.sleep(0.1)
        committed_at = time.monotonic()
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    reader.join(timeout=10)
    assert proc.returncode == 0, lines
    # the one result line on stdout, as before
    assert out.count("\n") == 1 and out.startswith(f"REF PC PRCID={prcid} CHUNKS=2 ")

    # while it ran: the load's row IP from the plan on, chunks' rows IP as they run, the
    # rows read so far growing in both
    seen = [rows for rows in seen if rows]  # (from the end of the plan on)
    whole = [rows[0] for rows in seen]
    assert all(w[:2] == (None, "IP") for w in whole)
    load_rows = [w[2] for w in whole]
    assert load_rows == sorted(load_rows)  # never back
    assert len({n for n in load_rows if 0 < n < ROWS}) >= 2, load_rows
    for chunk in (0, 1):
        running = [r[2] for rows in seen for r in rows if r[0] == chunk and r[1] == "IP"]
        assert running == sorted(running)
        assert any(0 < n for n in running), running
    # the end: exact counts, every row finished
    final = joblog(meta, prcid)
    final = final[:1] + sorted(final[1:])  # (either chunk process may start first)
    assert [r[:2] for r in final] == [(None, "PC"), (0, "PC"), (1, "PC")]
    assert final[0][2] == ROWS == final[1][2] + final[2][2]
    assert meta.scalar("SELECT COUNT(*) FROM DMS_JOBLOG WHERE ENDDT IS NULL") == 0

    # dms run: progress lines on stderr, the first while the load still ran
    progress = [(t, text) for t, text in lines if text.startswith("REF: ")]
    assert progress and progress[0][0] < committed_at, lines
    assert all(" chunks done, " in text and " elapsed" in text for _, text in progress)
    assert progress[0][1].startswith("REF: 0/2 chunks done, 0%, 0 of ~")

    # dms status --json: the running load, then the finished one
    [running_load] = [s for s in running_status if s["prcid"] == prcid]
    assert set(running_load) == STATUS_FIELDS
    assert running_load["status"] == "IP" and running_load["running"] is True
    assert running_load["mapref"] == "REF" and running_load["chunks"] == 2
    assert running_load["estimated_rows"] > 0 and 0 < running_load["rows"] < ROWS
    assert 0 < running_load["progress"] < 1 and running_load["ended"] is None
    assert running_load["run_id"] is None and running_load["message"].startswith("running:")
    [done] = [s for s in status_json(meta) if s["prcid"] == prcid]
    assert (done["status"], done["running"], done["progress"]) == ("PC", False, 1.0)
    assert (done["rows"], done["inserted"], done["chunks_done"]) == (ROWS, ROWS, 2)
    assert done["eta_seconds"] is None and done["ended"] is not None
    assert done["duration_seconds"] > 0 and done["rows_per_second"] > 0


# ------------------------------------------------------- every report, in process


@pytest.fixture
def every_report(monkeypatch):
    """Write every progress report (not at most one per PROGRESS_INTERVAL_S)."""
    monkeypatch.setattr(writer_module, "PROGRESS_INTERVAL_S", 0.0)


@pytest.mark.slow
def test_each_report_reaches_the_chunk_row_and_the_load_row(dms, every_report):
    """On PostgreSQL every report is written as it is made; on SQLite, where the chunk's
    own transaction holds the file that is also the metadata database, a report made
    inside it is dropped at once rather than waited for, and the load goes on."""
    setup_cust(dms, scd1_columns(), n=30)
    dms.load()
    dms.run("UPDATE SRC_CUST SET NAME = 'renamed' WHERE ID > 20")
    p = dms.plan(chunks=2)
    seen = []

    def hook(progress) -> None:
        rows = {r[0]: r[1:] for r in joblog(dms, p.prcid)}
        seen.append((progress.step, progress.index, progress.counts.srcrows, rows))

    results = [run_chunk(p, i, dms.settings, on_progress=hook) for i in range(2)]
    assert counts(commit(p, results, dms.settings)) == (30, 0, 10, 0, 0, 20)
    steps = [s[0] for s in seen]
    assert steps[0] == "started" and steps[-1] == "done"
    assert {"classified", "applied"} <= set(steps)
    for step, index, reported, rows in seen:
        if step == "classified" or (step == "applied" and dms.dialect == "postgresql"):
            assert rows[index] == ("IP", reported)  # the chunk's own row, as reported
            assert rows[None][0] == "IP"
        if step == "done":
            assert rows[index] == ("PC", reported)
    # the load's row summed its chunks as they went
    second_classified = [s for s in seen if s[0] == "classified" and s[1] == 1][0]
    first_rows = results[0].counts.srcrows
    assert second_classified[3][None] == ("IP", first_rows + second_classified[2])
    assert [r[:2] for r in joblog(dms, p.prcid)] == [(None, "PC"), (0, "PC"), (1, "PC")]


@pytest.mark.slow
def test_a_chunk_that_died_is_closed_with_its_load(dms):
    """A chunk row left IP (its process killed) is FL once the load is over."""
    setup_cust(dms, scd1_columns(), n=6)
    p = dms.plan(chunks=2)
    first = run_chunk(p, 0, dms.settings)
    dead = ChunkReporter(metadata_engine(dms.settings), p, 1, dms_now())
    dead.open()
    dead.report("streamed", srcrows=2)
    assert status_json(dms)[0]["chunks_done"] == 1
    with pytest.raises(IncompleteLoad):
        commit(p, [first], dms.settings)
    rows = first.counts.srcrows
    assert joblog(dms, p.prcid) == [(None, "FL", rows), (0, "PC", rows), (1, "FL", 0)]


# ------------------------------------------------------------------ dms status


@pytest.mark.slow
def test_dms_status_lists_a_running_and_a_finished_load(dms):
    setup_cust(dms, scd1_columns(), n=5)
    dms.import_yaml(mapping_yaml("OTHER", "SELECT ID, NAME, CITY FROM SRC_CUST", scd1_columns()))
    done = dms.load("OTHER")
    running = dms.plan(chunks=2, runid="run-42")
    first, second = status_json(dms)
    assert set(first) == set(second) == STATUS_FIELDS
    assert (first["prcid"], first["mapref"], first["status"]) == (running.prcid, "REF", "IP")
    assert (first["running"], first["chunks"], first["chunks_done"]) == (True, 2, 0)
    assert (first["rows"], first["run_id"], first["ended"]) == (0, "run-42", None)
    assert first["estimated_rows"] == running.estimated_rows and first["progress"] == 0.0
    assert (second["prcid"], second["mapref"], second["status"]) == (done.prcid, "OTHER", "PC")
    assert (second["rows"], second["inserted"], second["progress"]) == (5, 5, 1.0)
    assert second["message"].startswith("5 source rows")

    # the table; a mapping named; a window that leaves the finished load out
    env = {"DMS_HOME": str(dms.home), "COLUMNS": "200"}
    table = runner.invoke(app, ["status", "--url", dms.url], env=env)
    assert table.exit_code == 0, table.output
    assert "REF" in table.stdout and "OTHER" in table.stdout and "run-42" in table.stdout
    assert [s["mapref"] for s in status_json(dms, "OTHER")] == ["OTHER"]
    dms.run("UPDATE DMS_PRCLOG SET STRTDT = :t WHERE PRCID = :p", t="2000-01-01", p=done.prcid)
    assert [s["prcid"] for s in status_json(dms, "--since", "1h")] == [running.prcid]
    assert len(status_json(dms, "--since", "1999-12-31")) == 2
    bad = runner.invoke(app, ["status", "--since", "lately", "--url", dms.url], env=env)
    assert bad.exit_code == 1 and "--since 'lately'" in bad.stderr


@pytest.mark.slow
def test_dms_run_is_quiet_with_no_progress(dms):
    setup_cust(dms, scd1_columns(), n=5)
    env = {"DMS_HOME": str(dms.home)}
    shown = runner.invoke(app, ["run", "REF", "--url", dms.url], env=env)
    assert shown.exit_code == 0
    first_line = r"REF: 0/1 chunks done, 0%, 0 of ~[\d,]+ rows read, [\d.]+ s elapsed\n"
    assert re.match(first_line, shown.stderr)
    quiet = runner.invoke(app, ["run", "REF", "--no-progress", "--url", dms.url], env=env)
    assert quiet.exit_code == 0 and quiet.stderr == ""
    assert quiet.stdout.startswith("REF PC PRCID=")


# ------------------------------------------------------------------ Dagster


@pytest.mark.slow
def test_a_dagster_load_step_logs_its_chunks_and_the_loads_progress(
    sqlite_url, tmp_path, monkeypatch
):
    """Each chunk's start, rows so far and end, and the load's progress as DMS_JOBLOG tells
    it, as events of the run."""
    cust = cust_dms(sqlite_url, tmp_path, monkeypatch)
    # the log writer's resource: every report written and passed on (no throttling)
    defs = cust.defs(dms_log=DmsLogWriter(progress_interval_seconds=0))
    instance = dg.DagsterInstance.ephemeral()
    try:
        assert execute(defs, "cust_dim_job", instance).success  # the initial load
        # a delta: its chunks classify and apply, and say so as they go
        result = execute(defs, "cust_dim_job", instance, dms__chunks="2")
        assert result.success
        messages = [e.user_message for e in instance.all_logs(result.run_id)]
    finally:
        dispose_all()
    for chunk in (1, 2):
        assert f"chunk {chunk}/2 started" in messages, messages
        running = [m for m in messages if m.startswith(f"CUST_DIM chunk {chunk}/2: ")]
        assert running and all(" source rows, " in m and " rows/s" in m for m in running), messages
        done = [m for m in messages if m.startswith(f"chunk {chunk}/2 done in ")]
        assert len(done) == 1 and " source rows, " in done[0], messages
    load = [m for m in messages if re.match(r"CUST_DIM: \d+/2 chunks done, ", m)]
    assert load and re.match(r"CUST_DIM: 0/2 chunks done, 0%, 0 of ~30 rows read", load[0])
