"""Benchmark: what a run through Dagster costs beyond the engine's own work, side by side in
one run (the figures of issue 11):

1. a 1M-row delta in 2 and in 4 chunks: the engine's load() alone, and `dagster job
   execute` of its job: the run's duration as Dagster records it (run start -> success,
   target <= 1.25x load()) and the command's wall time (target <= load() + 3 s), each the
   median of --delta-repeat pairs (load() then the run: a busy spell falls on both), and
   the median of each pair's run - load(),
   with Dagster's storage in SQLite files (the repository's dagster.yaml) and as
   deployed (deploy/dagster.yaml: the pooled PostgreSQL storage, on the same server);
2. a 20-row mapping in a catalog of 4 and of 2,000 mappings: `dms run` of it, and its
   job through `dagster job execute` (wall time) and launched through the webserver's
   GraphQL API (launch -> run SUCCESS): target <= 4x `dms run`, and a run's cost does not
   grow with the catalog (<= 1.3x from 4 to 2,000 mappings);
3. queue latency: a DMS_PRCREQ row inserted -> its run started, median of 10 (target <=
   the queue sensor's interval + 2 s).

    python benchmarks/orchestration_overhead.py [--rows 1000000] [--chunks 2 4]
        [--delta-repeat 3] [--mappings 4 2000] [--repeat 5] [--requests 10]

A throw-away PostgreSQL server holds the DMS metadata and the tables, a database per data
set; Dagster's storage is SQLite under a temporary DAGSTER_HOME with the repository's
dagster.yaml (the pools' limit raised to the chunk count), and in part 1 also the
deployed storage in a database of the same server. The 1M-row data set is
benchmarks/scd_load.py's (DIM_CUSTOMER, version 2 over version 1); the catalogs are
benchmarks/metadata_load.py's 30-column mappings plus the 20-row SMALL_DIM. The webserver
and the daemon are `dagster dev` on 127.0.0.1, one per catalog, stopped at the end.
The code measured is the one this file sits in (its repository root is the working
directory of every command).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import sqlalchemy as sa
import yaml
from dagster_graphql import DagsterGraphQLClient

sys.path.insert(0, str(Path(__file__).resolve().parent))
import metadata_load  # noqa: E402
from scd_load import (  # noqa: E402
    MAPREF,
    generate,
    mapping_file,
    point_view,
    rebuild_v1,
    vacuum,
)

from dms_orchestration.db.connect import create_engine, dispose_all  # noqa: E402
from dms_orchestration.db.ddl import init_schema  # noqa: E402
from dms_orchestration.defs.sensors import QUEUE_INTERVAL_S  # noqa: E402
from dms_orchestration.engine import load  # noqa: E402
from dms_orchestration.metadata.authoring import import_mapping_file  # noqa: E402
from dms_orchestration.metadata.catalog import load_catalog  # noqa: E402
from dms_orchestration.metadata.mapping_file import parse_mapping_file  # noqa: E402
from dms_orchestration.metadata.scheduling import queue_immediate_job  # noqa: E402
from dms_orchestration.settings import load_settings  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MODULE = ["-m", "dms_orchestration.definitions", "-a", "defs"]
SMALL = "SMALL_DIM"
SMALL_JOB = "small_dim_job"
SMALL_ROWS = 20
SMALL_YAML = f"""
sql:
  - {{code: Q_SMALL, sql: "SELECT ID, NAME, CITY FROM SRC_SMALL"}}
mappings:
  - ref: {SMALL}
    description: benchmarks/orchestration_overhead.py, {SMALL_ROWS} rows
    source_system: CRM
    target: {{table: SMALL_DIM, type: DIMENSION}}
    sql: Q_SMALL
    delete_handling: EXPIRE
    columns:
      - {{name: ID, type: INTEGER, key: 1, logic: SRC.ID, order: 1}}
      - {{name: NAME, type: VARCHAR(20), logic: SRC.NAME, scd: 1, order: 2}}
      - {{name: CITY, type: VARCHAR(50), logic: SRC.CITY, scd: 2, order: 3}}
    job:
      description: Load the small dimension
"""
# targets of issue 11
RUN_RATIO, WALL_EXTRA_S, SMALL_RATIO, GROWTH = 1.25, 3.0, 4.0, 1.3
QUEUE_TARGET_S = QUEUE_INTERVAL_S + 2


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def command(args: list[str], env: dict, timeout: float = 900) -> float:
    """Run a command from the repository root; its wall time. A failure stops the benchmark."""
    t0 = time.perf_counter()
    done = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        print(done.stdout[-3000:], done.stderr[-3000:])
        raise SystemExit(f"failed: {' '.join(args)}")
    return seconds


def dagster_home(
    root: Path,
    name: str,
    pool_limit: int | None = None,
    launcher: str = "forked",
    storage_url: str | None = None,
) -> Path:
    """A DAGSTER_HOME with the repository's dagster.yaml, its storage created (as after a
    first run: creating it is not what a run costs); launcher "default": Dagster's
    DefaultRunLauncher instead of ours (the code server spawns each run's worker);
    `storage_url`: the deployed storage (deploy/dagster.yaml's pooled PostgreSQL storage)
    in that database instead of SQLite files."""
    home = root / name
    home.mkdir()
    config = yaml.safe_load((REPO / "dagster.yaml").read_text())
    if pool_limit:
        config["concurrency"]["pools"]["default_limit"] = pool_limit
    if launcher == "default":
        del config["run_launcher"]
    if storage_url:
        config["storage"] = yaml.safe_load((REPO / "deploy" / "dagster.yaml").read_text())[
            "storage"
        ]
        url = sa.make_url(storage_url)
        db = {"hostname": url.host, "port": url.port, "username": url.username}
        config["storage"]["custom"]["config"]["postgres_db"].update(
            db, password="", db_name=url.database
        )
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    with instance_of(home) as instance:
        instance.get_runs(limit=1)
    return home


def environment(url: str, home: Path, dms_home: Path) -> dict:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("DMS_", "DB_", "CDR_"))}
    return {**keep, "DMS_DATABASE_URL": url, "DMS_HOME": str(dms_home), "DAGSTER_HOME": str(home)}


@contextlib.contextmanager
def instance_of(home: Path) -> Iterator[dg.DagsterInstance]:
    old = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(home)
    try:
        with dg.DagsterInstance.get() as instance:
            yield instance
    finally:
        if old is None:
            os.environ.pop("DAGSTER_HOME")
        else:
            os.environ["DAGSTER_HOME"] = old


def run_seconds(home: Path, run_id: str | None = None) -> float:
    """The run's duration as Dagster records it (run start -> success); the last run when
    no id is given. A run that did not succeed stops the benchmark."""
    return run_record(home, run_id)[0]


def run_record(home: Path, run_id: str | None = None) -> tuple[float, dict[str, float]]:
    """The run's duration and where it went: the seconds of each step (start -> success),
    and the run's start and end (epoch seconds)."""
    with instance_of(home) as instance:
        run_id = run_id or instance.get_runs(limit=1)[0].run_id
        record = instance.get_run_record_by_id(run_id)
        if record.dagster_run.status != dg.DagsterRunStatus.SUCCESS:
            raise SystemExit(f"run {run_id} ended {record.dagster_run.status}")
        starts = {}
        steps = {"run start": record.start_time, "run end": record.end_time}
        for entry in instance.all_logs(run_id):
            kind = entry.dagster_event.event_type_value if entry.dagster_event else None
            if kind == "STEP_START":
                starts[entry.step_key] = entry.timestamp
            elif kind == "STEP_SUCCESS" and entry.step_key in starts:
                steps[entry.step_key] = entry.timestamp - starts[entry.step_key]
        return record.end_time - record.start_time, steps


def job_execute(job: str, env: dict, tags: dict | None = None) -> float:
    args = [str(BIN / "dagster"), "job", "execute", *MODULE, "-j", job]
    return command(args + (["--tags", json.dumps(tags)] if tags else []), env)


# ---------------------------------------------------------------------- 1M-row delta


@dataclass
class Delta:
    chunks: int
    engine_s: float
    run_s: float
    wall_s: float
    counts: tuple
    steps: dict[str, float]
    storage: str = "SQLite"  # Dagster's storage: the repository's (SQLite), or deployed
    extra_s: float = 0.0  # run - load() of a pair; of several, the median of the pairs'


def _median_delta(chunks: int, pairs: list[Delta]) -> Delta:
    """The median of each figure over the pairs (the steps: those of the median run)."""
    med = statistics.median
    middle = sorted(pairs, key=lambda d: d.run_s)[len(pairs) // 2]
    return Delta(
        chunks,
        med(d.engine_s for d in pairs),
        med(d.run_s for d in pairs),
        med(d.wall_s for d in pairs),
        middle.counts,
        middle.steps,
        middle.storage,
        med(d.extra_s for d in pairs),
    )


def delta_loads(server, rows: int, chunk_counts: list[int], root: Path, repeat: int) -> list[Delta]:
    """Per chunk count, `repeat` pairs of load() and the run, one after the other (a
    busy spell of the host falls on both), and the median of each figure."""
    url = server.create_database("bench_overhead")
    engine = create_engine(url)
    init_schema(engine)
    generate(engine, rows)
    doc = mapping_file(url, [], {"type": "SQLITE", "database": str(root / "unused.db")})
    import_mapping_file(engine, parse_mapping_file(doc))
    with engine.begin() as conn:  # a job for the mapping, so Dagster has dim_customer_job
        conn.exec_driver_sql(
            "INSERT INTO DMS_JOB (JOBID, MAPREF, STFLG, CURFLG) "
            "VALUES (990001, 'DIM_CUSTOMER', 'A', 'Y')"
        )
    settings = load_settings(url, env={"DMS_HOME": str(root)})
    mapping = load_catalog(engine).mappings[MAPREF]

    def fresh_delta() -> None:  # the target at version 1, the source at version 2
        rebuild_v1(engine, mapping, settings, url)
        point_view(engine, "src_customer_v2")
        vacuum(engine, "dim_customer")

    homes = {
        "SQLite": dagster_home(root, "dagster_delta", pool_limit=max(chunk_counts)),
        "deployed": dagster_home(
            root,
            "dagster_delta_deployed",
            pool_limit=max(chunk_counts),
            storage_url=server.create_database("bench_dagster"),
        ),
    }

    def pair(n: int, storage: str) -> Delta:  # load(), then the run, each on version 1
        home = homes[storage]
        env = environment(url, home, root)
        fresh_delta()
        t0 = time.perf_counter()
        result = load(mapping, chunks=n, full=True, parallel=True, settings=settings, url=url)
        engine_s = time.perf_counter() - t0
        c = result.counts
        fresh_delta()
        began = time.time()
        wall = job_execute("dim_customer_job", env, {"dms/chunks": str(n), "dms/full": "true"})
        with engine.connect() as conn:
            counts = conn.exec_driver_sql(
                "SELECT SRCROWS, INSROWS, UPDROWS, EXPROWS, UNCHROWS FROM DMS_JOBLOG "
                "WHERE CHUNKNO IS NULL ORDER BY JOBLOGID DESC LIMIT 1"
            ).one()
        if tuple(counts) != (c.srcrows, c.insrows, c.updrows, c.exprows, c.unchrows):
            raise SystemExit(f"the Dagster run counted {tuple(counts)}, the engine {c}")
        run_s, steps = run_record(home)
        steps["before the run"] = steps.pop("run start") - began
        steps["after it"] = began + wall - steps.pop("run end")
        return Delta(n, engine_s, run_s, wall, tuple(counts), steps, storage, run_s - engine_s)

    results = []
    for n in chunk_counts:
        pairs = [pair(n, storage) for _ in range(repeat) for storage in homes]
        results += [_median_delta(n, [p for p in pairs if p.storage == s]) for s in homes]
    engine.dispose()
    return results


# ---------------------------------------------------------------------- 20-row mapping


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DagsterDev:
    """`dagster dev` (webserver, daemon, code server) on 127.0.0.1, in a process group of
    its own, stopped by its id."""

    def __init__(self, env: dict, log: Path) -> None:
        self.port, self.log = free_port(), log
        args = ["env", "--default-signal=INT,TERM", str(BIN / "dagster"), "dev"]
        args += ["-w", str(REPO / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(self.port)]
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                args, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self.client = DagsterGraphQLClient("127.0.0.1", port_number=self.port, timeout=300)

    def wait_ready(self, timeout: float = 600) -> None:
        body = json.dumps({"query": "{ version }"}).encode()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"dagster dev exited:\n{self.log.read_text()[-3000:]}")
            with contextlib.suppress(OSError):
                req = urllib.request.Request(
                    f"http://127.0.0.1:{self.port}/graphql",
                    data=body,
                    headers={"Content-Type": "application/json"},
                )
                with urllib.request.urlopen(req, timeout=5) as resp:
                    if json.loads(resp.read()).get("data", {}).get("version"):
                        return
            time.sleep(0.5)
        raise SystemExit(f"dagster dev did not answer:\n{self.log.read_text()[-3000:]}")

    def launch_to_success(self, job: str, timeout: float = 900) -> tuple[float, str, float]:
        """Seconds from the launch to the run's SUCCESS, seen through GraphQL; the run id
        and the launch's time (epoch seconds)."""
        began, t0 = time.time(), time.perf_counter()
        run_id = self.client.submit_job_execution(job)
        wait_until(lambda: self.finished(run_id), timeout, f"run {run_id}")
        return time.perf_counter() - t0, run_id, began

    def finished(self, run_id: str) -> bool:
        status = self.client.get_run_status(run_id)
        if status in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED):
            raise SystemExit(f"run {run_id} ended {status}:\n{self.log.read_text()[-3000:]}")
        return status == dg.DagsterRunStatus.SUCCESS

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


def wait_until(check: Callable[[], object], timeout: float, what: str, poll: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(poll)
    raise SystemExit(f"timed out waiting for {what}")


@dataclass
class Small:
    mappings: int
    dms_run: list[float] = field(default_factory=list)
    job_execute: list[float] = field(default_factory=list)
    graphql: list[float] = field(default_factory=list)
    graphql_run: list[float] = field(default_factory=list)  # as Dagster records the run
    graphql_phases: list[dict[str, float]] = field(default_factory=list)
    # the same launches with Dagster's DefaultRunLauncher (a spawned worker per run)
    spawned: list[float] = field(default_factory=list)
    spawned_phases: list[dict[str, float]] = field(default_factory=list)
    queue: list[float] = field(default_factory=list)
    plan_snapshots: tuple[int, int] = (0, 0)  # execution plan snapshots stored, bytes


def plan_snapshots(home: Path) -> tuple[int, int]:
    """The execution plan snapshots in Dagster's run storage (SQLite under the home), and
    their bytes: each holds the code location's reconstruction metadata."""
    with sqlite3.connect(home / "history" / "runs.db") as conn:
        count, size = conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(snapshot_body)), 0) FROM snapshots "
            "WHERE snapshot_type = 'EXECUTION_PLAN'"
        ).fetchone()
    return int(count), int(size)


def catalog(server, mappings: int) -> str:
    """A database with the 20-row SMALL_DIM and mappings - 1 mappings of 30 columns, each
    with a job and a daily schedule (stopped)."""
    url = server.create_database(f"bench_catalog_{mappings}")
    engine = create_engine(url)
    init_schema(engine)
    metadata_load.generate(engine, mappings - 1, 30)
    with engine.begin() as conn:
        # defined, not running: their daily clocks would launch runs during the benchmark
        conn.exec_driver_sql("UPDATE DMS_JOBSCH SET ENABLEFLG = 'N'")
        conn.exec_driver_sql("CREATE TABLE SRC_SMALL (ID INTEGER, NAME VARCHAR(100), CITY TEXT)")
        for i in range(1, SMALL_ROWS + 1):
            conn.exec_driver_sql(f"INSERT INTO SRC_SMALL VALUES ({i}, 'name{i}', 'city{i % 4}')")
    import_mapping_file(engine, parse_mapping_file(SMALL_YAML))
    engine.dispose()
    return url


def launch_phases(home: Path, run_id: str, began: float, seconds: float) -> dict[str, float]:
    """Where a launch's seconds went: the webserver created the run, the daemon took it
    from the queue (RUN_STARTING), the run worker started it, ran it, and GraphQL saw it."""
    with instance_of(home) as instance:
        record = instance.get_run_record_by_id(run_id)
        starting = next(
            e.timestamp
            for e in instance.all_logs(run_id)
            if e.dagster_event and e.dagster_event.event_type_value == "PIPELINE_STARTING"
        )
    created = record.create_timestamp.timestamp()
    return {
        "created": created - began,
        "queued": starting - created,
        "worker start": record.start_time - starting,
        "run": record.end_time - record.start_time,
        "seen": began + seconds - record.end_time,
    }


def queue_latency(url: str, home: Path, dev: DagsterDev) -> float:
    """Seconds from a DMS_PRCREQ row for SMALL_DIM to its run's start; waits for its end."""
    engine = create_engine(url)
    try:
        # a request comes at any moment of the sensor's interval, not right after a tick
        # (as it would, queued as soon as the run before it ended)
        time.sleep(random.uniform(0, QUEUE_INTERVAL_S))
        t0 = time.time()
        request = queue_immediate_job(engine, SMALL)

        def run_id() -> str | None:
            with engine.connect() as conn:
                return conn.exec_driver_sql(
                    f"SELECT RUNID FROM DMS_PRCREQ WHERE PRCREQID = {request}"
                ).scalar()

        run = wait_until(run_id, 600, f"a run for request {request}", poll=0.2)
        wait_until(lambda: dev.finished(run), 600, f"run {run}", poll=0.2)
        with instance_of(home) as instance:
            return instance.get_run_record_by_id(run).start_time - t0
    finally:
        engine.dispose()


def graphql_launches(
    env: dict, log: Path, repeat: int, then: Callable[[DagsterDev], None] = lambda dev: None
) -> list[tuple[float, dict[str, float], float]]:
    """`repeat` launches of SMALL_DIM's job through the webserver, after one that warms the
    code server: (launch -> SUCCESS, its phases, the run's own duration) each; then
    `then` with the same `dagster dev`."""
    home = Path(env["DAGSTER_HOME"])
    dev = DagsterDev(env, log)
    try:
        dev.wait_ready()
        dev.launch_to_success(SMALL_JOB)  # not timed
        launches = []
        for _ in range(repeat):
            seconds, run, began = dev.launch_to_success(SMALL_JOB)
            phases = launch_phases(home, run, began, seconds)
            launches.append((seconds, phases, run_seconds(home, run)))
        then(dev)
        return launches
    finally:
        dev.stop()


def small_runs(server, mappings: int, repeat: int, requests: int, root: Path) -> Small:
    url = catalog(server, mappings)
    home = dagster_home(root, f"dagster_catalog_{mappings}")
    env = environment(url, home, root / f"dms_catalog_{mappings}")
    small = Small(mappings)
    dms = [str(BIN / "dms"), "run", SMALL]
    command(dms, env)  # the first load creates the target: not timed
    for _ in range(repeat):
        small.dms_run.append(command(dms, env))
        small.job_execute.append(job_execute(SMALL_JOB, env))

    def queue(dev: DagsterDev) -> None:
        small.queue.extend(queue_latency(url, home, dev) for _ in range(requests))

    for seconds, phases, run in graphql_launches(
        env, root / f"dagster_dev_{mappings}.log", repeat, queue
    ):
        small.graphql.append(seconds)
        small.graphql_phases.append(phases)
        small.graphql_run.append(run)
    small.plan_snapshots = plan_snapshots(home)
    spawning = dagster_home(root, f"dagster_spawned_{mappings}", launcher="default")
    env = {**env, "DAGSTER_HOME": str(spawning)}
    for seconds, phases, _ in graphql_launches(env, root / f"spawned_{mappings}.log", repeat):
        small.spawned.append(seconds)
        small.spawned_phases.append(phases)
    return small


# ---------------------------------------------------------------------- report


def report(
    deltas: list[Delta], smalls: list[Small], rows: int, repeat: int, n: int, pairs: int
) -> None:
    print(
        f"\n1. delta load of {rows:,} rows on PostgreSQL: load() vs `dagster job execute`, "
        f"median of {pairs} pairs"
    )
    print(
        f"{'chunks':>6}{'storage':>10}{'load()':>9}{'run':>9}{'run/load':>10}{'<=1.25x':>9}"
        f"{'run-load':>10}{'wall':>9}{'wall-load':>11}{'<=+3s':>7}  counts (SRC/INS/UPD/EXP/UNCH)"
    )
    for d in deltas:
        ratio, extra = d.run_s / d.engine_s, d.wall_s - d.engine_s
        print(
            f"{d.chunks:>6}{d.storage:>10}{d.engine_s:>9.2f}{d.run_s:>9.2f}{ratio:>9.2f}x"
            f"{verdict(ratio <= RUN_RATIO):>9}{d.extra_s:>+9.2f}s{d.wall_s:>9.2f}{extra:>+10.2f}s"
            f"{verdict(extra <= WALL_EXTRA_S):>7}  {'/'.join(map(str, d.counts))}"
        )
    print(
        "   run = its duration as Dagster records it (run start -> success); run-load = the "
        "median of each pair's difference (what the run adds: steadier than the ratio of "
        "medians, whose load() times move by ~0.5 s between pairs on a busy host); wall = the "
        "command's wall time; storage = Dagster's: SQLite files (the repository's "
        "dagster.yaml) or deployed (deploy/dagster.yaml's pooled PostgreSQL storage)"
    )
    for d in deltas:
        steps = ", ".join(f"{k} {v:.2f} s" for k, v in d.steps.items())
        print(f"   {d.chunks} chunks, {d.storage}, the median run's command: {steps}")
    print(f"\n2. a {SMALL_ROWS}-row mapping, median of {repeat} (seconds; x = / `dms run`)")
    print(
        f"{'mappings':>8}{'dms run':>9}{'job execute':>13}{'x':>7}{'<=4x':>6}"
        f"{'GraphQL':>9}{'x':>7}{'<=4x':>6}{'(run)':>8}"
    )
    med = statistics.median
    for s in smalls:
        base, cli, web = med(s.dms_run), med(s.job_execute), med(s.graphql)
        print(
            f"{s.mappings:>8}{base:>9.2f}{cli:>13.2f}{cli / base:>6.1f}x"
            f"{verdict(cli / base <= SMALL_RATIO):>6}{web:>9.2f}{web / base:>6.1f}x"
            f"{verdict(web / base <= SMALL_RATIO):>6}{med(s.graphql_run):>8.2f}"
        )
    print(
        "   GraphQL = launch (submitJobExecution) -> SUCCESS seen through GraphQL; "
        "(run) = the run's own duration"
    )

    def phases(launches: list[dict[str, float]]) -> str:
        return ", ".join(f"{k} {med([p[k] for p in launches]):.2f}" for k in launches[0])

    for s in smalls:
        print(f"   {s.mappings} mappings, a launch (median s): {phases(s.graphql_phases)}")
    print(
        "   the same launches with Dagster's DefaultRunLauncher (the code server spawns a "
        "worker per run) instead of ForkedRunLauncher (a fork of a preloaded server):"
    )
    for s in smalls:
        spawned, forked = med(s.spawned), med(s.graphql)
        print(
            f"   {s.mappings} mappings: {spawned:.2f} s, forked {forked:.2f} s = "
            f"{forked / spawned:.2f}x; spawned (median s): {phases(s.spawned_phases)}"
        )
    for s in smalls:
        count, size = s.plan_snapshots
        print(
            f"   {s.mappings} mappings, Dagster's run storage: {count} execution plan "
            f"snapshots, {size / max(count, 1) / 1e6:.2f} MB each (each holds the "
            "reconstruction metadata: one per job and code location load)"
        )
    if len(smalls) > 1:
        first, last = smalls[0], smalls[-1]
        print(f"   growth from {first.mappings} to {last.mappings} mappings (<= {GROWTH}x):")
        for label, attr in [
            ("dms run", "dms_run"),
            ("job execute", "job_execute"),
            ("GraphQL", "graphql"),
        ]:
            g = med(getattr(last, attr)) / med(getattr(first, attr))
            print(
                f"     {label:<12}{g:>6.2f}x  {verdict(g <= GROWTH) if attr != 'dms_run' else ''}"
            )
    print(
        f"\n3. queue latency: DMS_PRCREQ insert -> run started, median of {n} "
        f"(target <= {QUEUE_TARGET_S} s: the sensor every {QUEUE_INTERVAL_S} s + 2 s)"
    )
    for s in (s for s in smalls if s.queue):  # (--requests 0: none measured)
        q = med(s.queue)
        print(
            f"{s.mappings:>8} mappings{q:>7.2f} s  {verdict(q <= QUEUE_TARGET_S)}  "
            f"(min {min(s.queue):.2f}, max {max(s.queue):.2f})"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="0: no delta load")
    ap.add_argument("--chunks", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--mappings", type=int, nargs="*", default=[4, 2000])
    ap.add_argument("--delta-repeat", type=int, default=3, help="pairs per chunk count")
    ap.add_argument("--repeat", type=int, default=5)  # a launch varies by ~1 s (the 1 s dequeue)
    ap.add_argument("--requests", type=int, default=10)
    args = ap.parse_args()
    from dms_orchestration_tests.pg_server import PostgresServer

    server = PostgresServer().start()
    root = Path(tempfile.mkdtemp(prefix="dms-bench-"))
    try:
        deltas = (
            delta_loads(server, args.rows, args.chunks, root, args.delta_repeat)
            if args.rows
            else []
        )
        dispose_all()
        smalls = [small_runs(server, n, args.repeat, args.requests, root) for n in args.mappings]
        report(deltas, smalls, args.rows, args.repeat, args.requests, args.delta_repeat)
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
