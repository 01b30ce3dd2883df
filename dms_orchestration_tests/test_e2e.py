"""End to end: `dagster dev` (webserver + daemon + code server) on 127.0.0.1 with
PostgreSQL storage, DMS metadata in PostgreSQL, and everything driven from outside the
way people and other tools do it: GraphQL (DagsterGraphQLClient) and plain SQL rows.

One module-scoped `dagster dev` serves the tests below, which run in order:
listing, a GraphQL launch, an IMMEDIATE request, a STOP of a slow load inside its SQL
statement, a mapping added with plain SQL and picked up by a reload, a REPORT request,
and a file landed before the start, loaded by its file load's sensor.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dagster as dg
import psycopg2
import pytest
import yaml
from dagster import DagsterRunStatus
from dagster_graphql import DagsterGraphQLClient

from dms_orchestration.db.connect import create_engine
from dms_orchestration.db.ddl import init_schema
from dms_orchestration.defs.dagster_internals import WorkerStatus
from dms_orchestration.defs.run_launcher import (
    PID_TAG,
    STARTED_TAG,
    ForkedRunLauncher,
    process_start,
)
from dms_orchestration.metadata.authoring import import_mapping_file
from dms_orchestration.metadata.mapping_file import parse_mapping_file
from dms_orchestration_tests.conftest import REPO_ROOT
from dms_orchestration_tests.services import stop_process as _stop

LOCATION = "dms_orchestration.definitions"
SLOW_ROWS = 3000  # x 5 ms of pg_sleep: ~15 s of SQL in the server

MAPPINGS = f"""
params:
  - {{code: RETRY_MAX, value: "1"}}
  - {{code: RETRY_DELAY_SECONDS, value: "1"}}
sql:
  - code: FAST_SQL
    sql: SELECT ID, NAME FROM E2E_FAST_SRC
  - code: SLOW_SQL
    sql: >-
      SELECT g AS ID, 'v' || g AS VAL FROM generate_series(1, {SLOW_ROWS}) g
      WHERE pg_sleep(0.005) IS NOT NULL
mappings:
  - ref: FAST
    description: A few rows, SCD1
    source_system: E2E
    target: {{schema: public, table: FAST_T}}
    sql: FAST_SQL
    columns:
      - {{name: ID, type: INTEGER, key: 1, logic: SRC.ID}}
      - {{name: NAME, type: VARCHAR(50), logic: SRC.NAME, scd: 1}}
    job: {{}}
  - ref: SLOW
    description: A source query that takes ~15 s
    source_system: E2E
    target: {{schema: public, table: SLOW_T}}
    sql: SLOW_SQL
    columns:
      - {{name: ID, type: INTEGER, key: 1, logic: SRC.ID}}
      - {{name: VAL, type: VARCHAR(50), logic: SRC.VAL, scd: 1}}
    job: {{}}
file_loads:
  - ref: E2E_FILE
    type: CSV
    path: landing/e2e_*.csv
    archive: archive
    target: {{table: E2E_LANDED}}
    load_type: APPEND
    columns:
      - {{name: ID, type: INTEGER, source: ID, required: true}}
      - {{name: NAME, type: VARCHAR(20), source: NAME}}
"""
LANDED = 'ID,NAME\n1,"Lovelace, Ada"\n2,Grace\n'
REPORT = (
    "INSERT INTO DMS_MAPRSQL (MAPRSQLID, MAPRSQLCD, MAPRSQL, CURFLG) "
    "VALUES (930001, 'E2E_REPORT_SQL', 'SELECT ID, NAME FROM E2E_FAST_SRC ORDER BY ID', 'Y')",
    "INSERT INTO DMS_RPRT (RPRTID, RPRTREF, MAPRSQLCD, OUTFMT, OUTPATH, CURFLG) "
    "VALUES (930001, 'E2E_REPORT', 'E2E_REPORT_SQL', 'CSV', 'reports/{RPRTREF}_{PRCID}', 'Y')",
)

ASSETS_AND_JOBS = """
{
  assetNodes { assetKey { path } }
  repositoriesOrError {
    ... on RepositoryConnection { nodes { name location { name } jobs { name } } }
  }
}
"""

RUN = """
query ($runId: ID!) {
  runOrError(runId: $runId) {
    ... on Run { status creationTime startTime endTime tags { key value } }
  }
}
"""

FINDINGS = """
query ($path: [String!]!) {
  assetNodeOrError(assetKey: {path: $path}) {
    ... on AssetNode { metadataEntries { label ... on MarkdownMetadataEntry { mdStr } } }
  }
}
"""

TIMINGS: dict[str, float] = {}

pytestmark = [
    pytest.mark.e2e,  # the real Dagster processes: webserver, daemon, code location
    pytest.mark.filterwarnings("ignore:Using variable_values:DeprecationWarning"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Dagster:
    """The running `dagster dev` and the DMS database it serves."""

    def __init__(self, port: int, dms_dsn: dict, log: Path, dms_home: Path) -> None:
        self.port = port
        self.dsn = dms_dsn
        self.log = log
        self.dms_home = dms_home
        self.client = DagsterGraphQLClient("127.0.0.1", port_number=port, timeout=60)

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/graphql",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            data = json.loads(resp.read())
        assert "errors" not in data, data
        return data["data"]

    def run(self, run_id: str) -> dict:
        return self.graphql(RUN, {"runId": run_id})["runOrError"]

    def sql(self, statement: str, args: tuple = ()) -> list[tuple]:
        conn = psycopg2.connect(**self.dsn)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(statement, args)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()

    def tail(self, lines: int = 120) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def wait(self, what: str, check, timeout: float, interval: float = 0.5):
        deadline = time.time() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.time() > deadline:
                pytest.fail(
                    f"timed out after {timeout:.0f}s waiting for {what}\n"
                    f"--- dagster dev output (tail) ---\n{self.tail()}"
                )
            time.sleep(interval)

    def wait_run(self, run_id: str, statuses: set[DagsterRunStatus], timeout: float):
        final = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}

        def check():
            status = self.client.get_run_status(run_id)
            if status in final and status not in statuses:
                wanted = sorted(s.value for s in statuses)
                pytest.fail(
                    f"run {run_id} ended {status.value}, expected {wanted}"
                    f"\n--- dagster dev output (tail) ---\n{self.tail()}"
                )
            return status if status in statuses else None

        return self.wait(f"run {run_id} in {statuses}", check, timeout)

    def prclog(self, run_id: str) -> list[tuple]:
        return self.sql(
            "SELECT PRCSTS, MAPREF, PRCMSG FROM DMS_PRCLOG WHERE RUNID = %s ORDER BY PRCID",
            (run_id,),
        )

    def served(self, prcreqid: int, reqtyp: str, mapref: str) -> str:
        """Insert a DMS_PRCREQ row and wait for the queue sensor to serve it: claimed with
        a run, the run a SUCCESS, the request DONE; the run id."""
        self.sql(
            "INSERT INTO DMS_PRCREQ (PRCREQID, REQTYP, MAPREF) VALUES (%s, %s, %s)",
            (prcreqid, reqtyp, mapref),
        )
        # the sensor claims it and launches a run within its interval (5 s) plus daemon latency
        run_id = self.wait(
            f"the {reqtyp} request CLAIMED with a RUNID",
            lambda: self.request(prcreqid)[1],
            timeout=60,
        )
        self.wait_run(run_id, {DagsterRunStatus.SUCCESS}, timeout=120)
        # DONE on the sensor's next tick after the run ended
        assert self.wait(
            f"the {reqtyp} request DONE",
            lambda: (r := self.request(prcreqid))[0] not in ("NEW", "CLAIMED") and r,
            timeout=30,
        ) == ("DONE", run_id, None)
        return run_id

    def request(self, prcreqid: int) -> tuple:
        rows = self.sql(
            "SELECT REQSTS, RUNID, ERRMSG FROM DMS_PRCREQ WHERE PRCREQID = %s", (prcreqid,)
        )
        return rows[0]


def _wait_for_graphql(port: int, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    body = json.dumps({"query": "{ version }"}).encode()
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"dagster dev exited with {proc.returncode}:\n{log.read_text(errors='replace')}"
            )
        try:
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}/graphql",
                data=body,
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(req, timeout=5) as resp:
                if json.loads(resp.read()).get("data", {}).get("version"):
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"GraphQL did not answer within {timeout:.0f}s:\n{log.read_text()[-5000:]}")


@pytest.fixture(scope="module")
def dagster(pg_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    storage_db = "e2e_dagster"
    dms_db = "e2e_dms"
    pg_server.create_database(storage_db)
    dms_url = pg_server.create_database(dms_db)

    home = tmp / "dagster_home"
    home.mkdir()
    postgres_db = {
        "scheme": "postgresql+psycopg2",
        "hostname": "127.0.0.1",
        "port": pg_server.port,
        "username": pg_server.user,  # the test server trusts it without a password
        "db_name": storage_db,
    }
    storage = yaml.safe_dump({"storage": {"postgres": {"postgres_db": postgres_db}}})
    (home / "dagster.yaml").write_text(f"{(REPO_ROOT / 'dagster.yaml').read_text()}\n{storage}")

    engine = create_engine(dms_url)
    init_schema(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE E2E_FAST_SRC (ID INTEGER PRIMARY KEY, NAME VARCHAR(50))")
        conn.exec_driver_sql("INSERT INTO E2E_FAST_SRC VALUES (1, 'one'), (2, 'two'), (3, 'three')")
    import_mapping_file(engine, parse_mapping_file(MAPPINGS))
    with engine.begin() as conn:
        for statement in REPORT:
            conn.exec_driver_sql(statement)
    engine.dispose()
    # a file landed (and settled) before the services start: the file load's sensor finds it
    landed = tmp / "dms_home" / "landing" / "e2e_1.csv"
    landed.parent.mkdir(parents=True)
    landed.write_text(LANDED, encoding="utf-8")
    os.utime(landed, (time.time() - 60, time.time() - 60))

    port = _free_port()
    log = tmp / "dagster-dev.log"
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "DMS_DATABASE_URL": dms_url,
        "DMS_HOME": str(tmp / "dms_home"),
    }
    for name in ("DMS_SCHEMA", "CDR_SCHEMA", "DB_TYPE", "DMS_TIMEZONE"):
        env.pop(name, None)
    dagster_bin = str(Path(sys.executable).parent / "dagster")
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                "env",
                "--default-signal=INT,TERM",
                dagster_bin,
                "dev",
                "-w",
                str(REPO_ROOT / "workspace.yaml"),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        started = time.time()
        _wait_for_graphql(port, proc, log, timeout=90)
        print(f"\n[e2e] dagster dev answers GraphQL after {time.time() - started:.1f}s")
        dsn = dict(host="127.0.0.1", port=pg_server.port, user=pg_server.user, dbname=dms_db)
        print(f"[e2e] dagster dev output: {log}")
        yield Dagster(port, dsn, log, tmp / "dms_home")
    finally:
        _stop(proc)
        if TIMINGS:
            print("\n[e2e] timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in TIMINGS.items()))


@pytest.fixture(autouse=True)
def _dagster_output_on_failure(request, dagster):
    failed = request.session.testsfailed
    yield
    if request.session.testsfailed > failed:
        print(f"--- dagster dev output (tail) ---\n{dagster.tail()}")


def _assets_and_jobs(dagster: Dagster) -> tuple[set[tuple[str, ...]], dict[str, set[str]]]:
    data = dagster.graphql(ASSETS_AND_JOBS)
    assets = {tuple(n["assetKey"]["path"]) for n in data["assetNodes"]}
    jobs: dict[str, set[str]] = {}
    for repo in data["repositoriesOrError"]["nodes"]:
        jobs.setdefault(repo["location"]["name"], set()).update(j["name"] for j in repo["jobs"])
    return assets, jobs


def test_graphql_lists_assets_and_jobs(dagster):
    assets, jobs = _assets_and_jobs(dagster)
    assert {("public", "fast_t"), ("public", "slow_t")} <= assets
    assert LOCATION in jobs, jobs
    assert {"fast_job", "slow_job"} <= jobs[LOCATION]


def test_job_launched_over_graphql_succeeds_and_logs_pc(dagster):
    run_id = dagster.client.submit_job_execution("fast_job")
    dagster.wait_run(run_id, {DagsterRunStatus.SUCCESS}, timeout=120)
    assert [r[0] for r in dagster.prclog(run_id)] == ["PC"]
    assert dagster.sql("SELECT ID, NAME FROM FAST_T ORDER BY ID") == [
        (1, "one"),
        (2, "two"),
        (3, "three"),
    ]


def test_immediate_request_row_runs_the_job(dagster):
    inserted = time.time()
    run_id = dagster.served(910001, "IMMEDIATE", "FAST")
    run = dagster.run(run_id)
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert tags.get("dms/prcreqid") == "910001"
    TIMINGS["IMMEDIATE insert -> run started"] = run["startTime"] - inserted
    TIMINGS["IMMEDIATE insert -> run created"] = run["creationTime"] - inserted
    print(
        f"\n[e2e] IMMEDIATE insert -> run created {run['creationTime'] - inserted:.1f}s, "
        f"started {run['startTime'] - inserted:.1f}s, ended {run['endTime'] - inserted:.1f}s"
    )
    assert [r[0] for r in dagster.prclog(run_id)] == ["PC"]


def _sleeping(dagster: Dagster) -> list[tuple]:
    return dagster.sql(
        "SELECT pid, query_start FROM pg_stat_activity "
        "WHERE state = 'active' AND query ILIKE '%%pg_sleep%%' AND pid <> pg_backend_pid()"
    )


def test_stop_request_cancels_a_slow_load_inside_its_sql(dagster, pg_server):
    run_id = dagster.client.submit_job_execution("slow_job")
    dagster.wait(
        "the SLOW load IP with its SQL running",
        lambda: [r[0] for r in dagster.prclog(run_id)] == ["IP"] and _sleeping(dagster),
        timeout=120,
    )
    time.sleep(3)  # well inside the ~15 s statement
    assert _sleeping(dagster), "the slow statement ended before the STOP"
    server_log = pg_server.tmp / "server.log"
    log_offset = server_log.stat().st_size
    inserted = time.time()
    dagster.sql(
        "INSERT INTO DMS_PRCREQ (PRCREQID, REQTYP, MAPREF) VALUES (%s, 'STOP', 'SLOW')",
        (910002,),
    )
    dagster.wait_run(run_id, {DagsterRunStatus.CANCELED}, timeout=60)
    stopped = time.time() - inserted
    TIMINGS["STOP insert -> run CANCELED"] = stopped
    print(f"\n[e2e] STOP insert -> run CANCELED {stopped:.1f}s")
    assert not _sleeping(dagster), "the statement still runs in the server"
    with open(server_log, "rb") as f:
        f.seek(log_offset)
        assert b"canceling statement due to user request" in f.read()
    dagster.wait(
        "DMS_PRCLOG ST", lambda: [r[0] for r in dagster.prclog(run_id)] == ["ST"], timeout=30
    )
    assert dagster.sql("SELECT COUNT(*) FROM SLOW_T") == [(0,)]
    assert dagster.request(910002) == ("DONE", run_id, None)


LOGS = """
query Logs($runId: ID!) {
  logsForRun(runId: $runId) {
    ... on EventConnection { events { ... on MessageEvent { message } } }
  }
}
"""


def _run_messages(dagster: Dagster, run_id: str) -> list[str]:
    events = dagster.graphql(LOGS, {"runId": run_id})["logsForRun"]["events"]
    return [e["message"] for e in events if e.get("message")]


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_a_run_worker_is_a_fork_of_the_daemons_preloaded_server_in_a_session_of_its_own(
    dagster,
):
    run_id = dagster.client.submit_job_execution("slow_job")
    dagster.wait(
        "the SLOW load IP",
        lambda: [r[0] for r in dagster.prclog(run_id)] == ["IP"],
        timeout=120,
    )
    tags = {t["key"]: t["value"] for t in dagster.run(run_id)["tags"]}
    pid = int(tags[PID_TAG])
    assert tags[STARTED_TAG] == process_start(pid)
    # Dagster's "Started process for run (pid: N)" names the same process
    [started] = [
        m for m in _run_messages(dagster, run_id) if m.startswith("Started process for run")
    ]
    assert started == f"Started process for run (pid: {pid})."
    server = _parent(pid)
    assert "multiprocessing.forkserver" in _cmdline(server)
    assert _cmdline(pid) == _cmdline(server)  # forked, not a new interpreter
    assert "dagster._daemon" in _cmdline(_parent(server))  # the daemon's forkserver
    assert os.getsid(pid) == pid  # a kill of the daemon's process group leaves it
    run = dg.DagsterRun("slow_job", run_id, tags=tags)
    health = ForkedRunLauncher().check_run_worker_health(run)
    assert health.status == WorkerStatus.RUNNING
    # a STOP request interrupts it (test_stop_request_cancels_a_slow_load_inside_its_sql)
    dagster.sql("INSERT INTO DMS_PRCREQ (PRCREQID, REQTYP, MAPREF) VALUES (910010, 'STOP', 'SLOW')")
    dagster.wait_run(run_id, {DagsterRunStatus.CANCELED}, timeout=60)
    dagster.wait("the worker to end", lambda: process_start(pid) is None, timeout=30)


def test_mapping_added_with_plain_sql_appears_after_a_reload(dagster):
    statements = [
        "INSERT INTO DMS_MAPRSQL (MAPRSQLID, MAPRSQLCD, MAPRSQL, CURFLG) "
        "VALUES (920001, 'NEW_SQL', 'SELECT ID, NAME FROM E2E_FAST_SRC', 'Y')",
        "INSERT INTO DMS_MAPR (MAPID, MAPREF, MAPDESC, SRCSYS, TRGTBNM, TRGTBTYP, TRGSCHM, "
        "MAPRSQLCD, CURFLG) VALUES (920001, 'NEWMAP', 'Added with plain SQL', 'E2E', "
        "'NEW_T', 'DIMENSION', 'public', 'NEW_SQL', 'Y')",
        "INSERT INTO DMS_MAPRDTL (MAPDTLID, MAPREF, TRGCLNM, TRGCLDTYP, TRGKEYFLG, TRGKEYSEQ, "
        "MAPLOGIC, SCDTYP, EXCSEQ, CURFLG) VALUES "
        "(920001, 'NEWMAP', 'ID', 'INTEGER', 'Y', 1, 'SRC.ID', NULL, 1, 'Y'), "
        "(920002, 'NEWMAP', 'NAME', 'VARCHAR(50)', 'N', NULL, 'SRC.NAME', '1', 2, 'Y')",
        "INSERT INTO DMS_JOB (JOBID, MAPREF, JOBDESC, STFLG, CURFLG) "
        "VALUES (920001, 'NEWMAP', 'Load NEWMAP', 'A', 'Y')",
    ]
    for statement in statements:
        dagster.sql(statement)
    assets, _ = _assets_and_jobs(dagster)
    assert ("public", "new_t") not in assets
    info = dagster.client.reload_repository_location(LOCATION)
    assert info.status.value == "SUCCESS", info
    assets, jobs = _assets_and_jobs(dagster)
    assert ("public", "new_t") in assets
    assert "newmap_job" in jobs[LOCATION]
    node = dagster.graphql(FINDINGS, {"path": ["public", "new_t"]})["assetNodeOrError"]
    entries = {e["label"]: e.get("mdStr") for e in node["metadataEntries"]}
    assert entries["dms/findings"] == "no findings"


def test_a_report_request_runs_the_report_through_the_queue(dagster):
    run_id = dagster.served(910003, "REPORT", "E2E_REPORT")
    [(status, prcid)] = dagster.sql(
        "SELECT PRCSTS, PRCID FROM DMS_PRCLOG WHERE RUNID = %s AND MAPREF = 'E2E_REPORT'",
        (run_id,),
    )
    assert status == "PC"
    written = dagster.dms_home / "reports" / f"E2E_REPORT_{prcid}.csv"
    assert written.read_text().splitlines() == ["id,name", "1,one", "2,two", "3,three"]


def test_a_landed_file_is_loaded_by_its_sensor_running_by_default(dagster):
    """The file landed before the services started: the file load's sensor (RUNNING by
    default, every 30 s) adds its partition and runs it; the file moves to the archive."""

    def loaded():
        rows = dagster.sql("SELECT PRCSTS, RUNID FROM DMS_PRCLOG WHERE MAPREF = 'E2E_FILE'")
        return rows if rows and rows[0][0] != "IP" else None

    [(status, run_id)] = dagster.wait("the landed file's load", loaded, timeout=120)
    assert status == "PC"
    assert dagster.sql("SELECT ID, NAME FROM E2E_LANDED ORDER BY ID") == [
        (1, "Lovelace, Ada"),
        (2, "Grace"),
    ]
    tags = {t["key"]: t["value"] for t in dagster.run(run_id)["tags"]}
    assert tags["dagster/partition"].startswith("e2e_1.csv@")
    assert not (dagster.dms_home / "landing" / "e2e_1.csv").exists()
    assert (dagster.dms_home / "archive" / "e2e_1.csv").read_text() == LANDED
