"""Load test of the deployed layout (deploy/): N mappings, each scheduled every minute,
for M minutes, through the three services as production runs them (code server, daemon,
webserver; Dagster's storage in PostgreSQL; the queued run coordinator of
deploy/dagster.yaml).

Prints: runs expected (mappings x minute ticks in the window) vs created (a run per
schedule tick) vs started vs succeeded (and failed); missed ticks and ticks run twice;
schedule tick lag (scheduled time -> run created, p50 / p95); queue latency (run
created -> started, p50 / p95); run duration; the daemon's and the code server's CPU
(per cent of one core over the window) and memory (peak RSS), the PostgreSQL server's
CPU and the sessions opened on it, and the run workers' CPU. After the window it
waits up to --drain minutes for the queue to empty and says how long that took.

    python benchmarks/scheduler_load.py [--mappings 200] [--minutes 10] [--drain 10]

A throw-away PostgreSQL server (durable settings) holds the DMS metadata, the tables and
Dagster's storage; every mapping is a 10-row SCD1 load into a table of its own. The
code measured is the one this file sits in.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import yaml

from dms_orchestration.db.connect import create_engine
from dms_orchestration.db.ddl import init_schema
from dms_orchestration.metadata.authoring import import_mapping_file
from dms_orchestration.metadata.mapping_file import parse_mapping_file
from dms_orchestration_tests.pg_server import PostgresServer
from dms_orchestration_tests.services import DeployedServices

SCHEDULE_TICK = ".dagster/scheduled_execution_time"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
POOL = "dms_metadata"  # the pool of the chunks writing the metadata database (the targets)


def catalog(mappings: int) -> str:
    columns = [
        {"name": "ID", "type": "INTEGER", "logic": "SRC.ID", "key": True, "order": 1},
        {"name": "NAME", "type": "VARCHAR(100)", "logic": "SRC.NAME", "scd": 1, "order": 2},
        {"name": "CITY", "type": "VARCHAR(50)", "logic": "SRC.CITY", "scd": 1, "order": 3},
    ]
    return yaml.safe_dump(
        {
            "sql": [{"code": "Q_CUST", "sql": "SELECT ID, NAME, CITY FROM SRC_CUST"}],
            "mappings": [
                {
                    "ref": f"LOAD_{i:03d}",
                    "target": {"table": f"T_LOAD_{i:03d}"},
                    "sql": "Q_CUST",
                    "columns": columns,
                    "job": {"schedules": [{"frequency": "ID", "minute": 1}]},
                }
                for i in range(mappings)
            ],
        }
    )


# ------------------------------------------------------------------ processes and /proc


def _stat(pid: int) -> tuple[int, float, float, int] | None:
    """(pgid, own CPU seconds, reaped children's CPU seconds, RSS bytes) of a process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    return (
        int(fields[2]),
        (utime + stime) / CLOCK_TICKS,
        (cutime + cstime) / CLOCK_TICKS,
        int(fields[21]) * PAGE,
    )


def _is_run_worker(pid: int) -> bool:
    """A run's process: a fork of ForkedRunLauncher's forkserver (its command line, whose
    parent has it too), or one the code server spawns with multiprocessing, or
    `dagster api execute_run`."""
    command = _cmdline(pid)
    if "multiprocessing.forkserver" in command:
        return "multiprocessing.forkserver" in _cmdline(_parent(pid))
    return "multiprocessing" in command or "execute_run" in command


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


class Sampler(threading.Thread):
    """Every second: CPU and RSS of each service's process group, run workers apart
    (wherever they are: a forked worker has a session of its own)."""

    def __init__(self, groups: dict[str, int]) -> None:
        super().__init__(daemon=True)
        self.groups = groups  # name -> pgid
        self.peak_rss = {name: 0 for name in groups}
        self.worker_cpu: dict[int, float] = {}  # run worker pid -> last CPU seen
        self.workers_seen = 0
        self.stopped = threading.Event()

    def cpu(self, name: str) -> float:
        """CPU seconds of a service's own processes (not the run workers it started)."""
        return sum(stat[1] for stat in self._own(_processes(), self.groups[name]))

    @staticmethod
    def _own(processes: dict[int, tuple], pgid: int) -> list[tuple]:
        """The stats of a process group's members that are not run workers."""
        return [
            stat for pid, stat in processes.items() if stat[0] == pgid and not _is_run_worker(pid)
        ]

    def run(self) -> None:
        while not self.stopped.wait(1.0):
            processes = _processes()  # one look at /proc a second
            for pid, stat in processes.items():
                if _is_run_worker(pid):
                    if pid not in self.worker_cpu:
                        self.workers_seen += 1
                    self.worker_cpu[pid] = stat[1]
            for name, pgid in self.groups.items():
                rss = sum(stat[3] for stat in self._own(processes, pgid))
                self.peak_rss[name] = max(self.peak_rss[name], rss)


def _processes() -> dict[int, tuple[int, float, float, int]]:
    """`_stat` of every process of the host."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _stat(int(entry))):
            found[int(entry)] = stat
    return found


def server_cpu(pg: PostgresServer) -> float:
    """CPU seconds of the PostgreSQL server: its postmaster, the backends that have ended
    (reaped by it) and those that run."""
    postmaster = int((pg.datadir / "postmaster.pid").read_text().split()[0])
    own = _stat(postmaster)
    total = own[1] + own[2] if own else 0.0
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _parent(int(entry)) == postmaster and (stat := _stat(int(entry))):
            total += stat[1]
    return total


def host_busy() -> tuple[float, float]:
    """(busy, all) CPU seconds of the host since boot, every core (/proc/stat)."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return (sum(ticks) - idle) / CLOCK_TICKS, sum(ticks) / CLOCK_TICKS


def sessions(url: str) -> int:
    """Sessions the PostgreSQL server has opened (all databases, since its start)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.exec_driver_sql("SELECT SUM(sessions) FROM pg_stat_database").scalar())
    finally:
        engine.dispose()


# ------------------------------------------------------------------ the figures


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def fmt(value: float | None, unit: str = "s") -> str:
    return "n/a" if value is None else f"{value:.2f} {unit}"


def _tick(record) -> float:
    """When a schedule run was due (its ISO tag), as a timestamp."""
    return datetime.fromisoformat(record.dagster_run.tags[SCHEDULE_TICK]).timestamp()


def measure(instance: dg.DagsterInstance, window: tuple[float, float], mappings: int) -> dict:
    """The schedule runs of ticks inside the window."""
    start, end = window
    runs = [r for r in instance.get_run_records() if SCHEDULE_TICK in r.dagster_run.tags]
    tick_of = {r.dagster_run.run_id: _tick(r) for r in runs}
    by_tick: dict[tuple[str, float], list] = {}
    for r in runs:
        tick = tick_of[r.dagster_run.run_id]
        if start <= tick < end:
            key = (r.dagster_run.tags.get("dagster/schedule_name", "?"), tick)
            by_tick.setdefault(key, []).append(r)
    ticks = sorted({tick for _, tick in by_tick})
    first = math.ceil(start / 60) * 60
    minutes = [m for m in range(first, math.ceil(end) + 1, 60) if m < end]
    expected = mappings * len(minutes)
    created = sum(len(v) for v in by_tick.values())
    duplicated = sum(len(v) - 1 for v in by_tick.values() if len(v) > 1)
    chosen = [v[0] for v in by_tick.values()]
    started = [r for r in chosen if r.start_time]
    succeeded = [r for r in chosen if r.dagster_run.status == dg.DagsterRunStatus.SUCCESS]
    failed = [r for r in chosen if r.dagster_run.status == dg.DagsterRunStatus.FAILURE]
    lag = [r.create_timestamp.timestamp() - tick_of[r.dagster_run.run_id] for r in chosen]
    queued = [r.start_time - r.create_timestamp.timestamp() for r in started]
    took = [r.end_time - r.start_time for r in started if r.end_time]
    return {
        "minute ticks": len(minutes),
        "ticks seen": len(ticks),
        "expected": expected,
        "created": created,
        "started": len(started),
        "succeeded": len(succeeded),
        "failed": len(failed),  # (the rest of those started were still running)
        "missed": expected - len(by_tick),
        "duplicated": duplicated,
        "lag": lag,
        "queued": queued,
        "took": took,
    }


def seen_all(instance: dg.DagsterInstance, schedules: int, timeout: float) -> None:
    """Wait until the daemon has evaluated each schedule once (its state is stored)."""
    deadline = time.time() + timeout
    while True:
        states = instance.all_instigator_state()
        seen = sum(1 for s in states if s.instigator_type.value == "SCHEDULE")
        if seen >= schedules:
            return
        if time.time() > deadline:
            raise SystemExit(f"the daemon saw {seen} of {schedules} schedules in {timeout:g} s")
        time.sleep(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--mappings", type=int, default=200)
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--drain", type=float, default=10, help="minutes to wait for the queue")
    ap.add_argument("--keep", action="store_true", help="keep the services' logs")
    ap.add_argument(
        "--pool-limit",
        type=int,
        help=f"chunks writing to the target database at once (pool {POOL}; "
        "default: deploy/dagster.yaml's default_limit)",
    )
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="dms-load-"))
    pg = PostgresServer(durable=True).start()
    services = None
    try:
        meta_url = pg.create_database("dms")
        pg.create_database("dagster")
        engine = create_engine(meta_url)
        init_schema(engine)
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "CREATE TABLE SRC_CUST (ID INTEGER, NAME VARCHAR(100), CITY VARCHAR(50))"
            )
            conn.exec_driver_sql(
                "INSERT INTO SRC_CUST SELECT i, 'name' || i, 'city' || mod(i, 3) "
                "FROM generate_series(1, 10) i"
            )
        import_mapping_file(engine, parse_mapping_file(catalog(args.mappings)))
        services = DeployedServices(pg, work, meta_url, "dagster")
        services.start_all()
        if args.pool_limit is not None:
            with services.instance() as instance:
                instance.event_log_storage.set_concurrency_slots(POOL, args.pool_limit)
        sampler = Sampler({name: p.pid for name, p in services.procs.items()})
        sampler.start()
        print(
            f"{args.mappings} mappings, each every minute, for {args.minutes:g} min "
            f"(services starting; logs in {services.logs})",
            flush=True,
        )
        # the window opens once the daemon has seen every schedule: a schedule's first
        # evaluation is its start, and Dagster runs no tick due before it
        with services.instance() as instance:
            seen_all(instance, args.mappings, timeout=600)
        window_start = time.time()
        cpu0 = {name: sampler.cpu(name) for name in ("daemon", "code_server")}
        pg_cpu0, sessions0, host0 = server_cpu(pg), sessions(meta_url), host_busy()
        time.sleep(args.minutes * 60)
        window_end = time.time()
        cpu1 = {name: sampler.cpu(name) for name in ("daemon", "code_server")}
        pg_cpu1, sessions1, host1 = server_cpu(pg), sessions(meta_url), host_busy()
        with services.instance() as instance:
            at_end = measure(instance, (window_start, window_end), args.mappings)
            drained_after = None
            deadline = time.time() + args.drain * 60
            while time.time() < deadline:
                busy = instance.get_runs_count(
                    filters=dg.RunsFilter(
                        statuses=[
                            dg.DagsterRunStatus.QUEUED,
                            dg.DagsterRunStatus.NOT_STARTED,
                            dg.DagsterRunStatus.STARTING,
                            dg.DagsterRunStatus.STARTED,
                        ]
                    )
                )
                if busy == 0:
                    drained_after = time.time() - window_end
                    break
                time.sleep(5)
            final = measure(instance, (window_start, window_end), args.mappings)
        sampler.stopped.set()
        wall = window_end - window_start
        print(
            f"\nwindow {wall:.0f} s, {at_end['minute ticks']} minute ticks, "
            f"{at_end['ticks seen']} seen"
        )
        print(f"{'':28}{'at window end':>16}{'after drain':>14}")
        for key in (
            "expected",
            "created",
            "started",
            "succeeded",
            "failed",
            "missed",
            "duplicated",
        ):
            print(f"runs {key:23}{at_end[key]:>16}{final[key]:>14}")
        drained = f"{drained_after:.0f} s" if drained_after is not None else f"> {args.drain:g} min"
        print(f"queue empty after the window: {drained}")
        print(
            f"schedule tick lag (tick -> run created): p50 {fmt(pct(final['lag'], 0.5))}, "
            f"p95 {fmt(pct(final['lag'], 0.95))}"
        )
        print(
            f"queue latency (created -> started): p50 {fmt(pct(final['queued'], 0.5))}, "
            f"p95 {fmt(pct(final['queued'], 0.95))}"
        )
        took = final["took"]
        print(
            f"run duration (start -> end): p50 {fmt(pct(took, 0.5))}, p95 {fmt(pct(took, 0.95))}"
            + (f", mean {statistics.mean(took):.2f} s" if took else "")
        )
        for name in ("daemon", "code_server"):
            used = cpu1[name] - cpu0[name]
            print(
                f"{name}: CPU {100 * used / wall:.0f}% of a core over the window, "
                f"peak RSS {sampler.peak_rss[name] / 2**20:.0f} MB"
            )
        opened = sessions1 - sessions0
        print(
            f"postgresql: CPU {100 * (pg_cpu1 - pg_cpu0) / wall:.0f}% of a core over the window "
            f"(backends included), {opened} sessions opened, "
            f"{opened / max(1, at_end['started']):.1f} a run started"
        )
        print(
            f"run workers seen: {sampler.workers_seen}; their CPU (last seen): "
            f"{sum(sampler.worker_cpu.values()):.0f} s, "
            f"{sum(sampler.worker_cpu.values()) / max(1, sampler.workers_seen):.2f} s a run"
        )
        busy, every = host1[0] - host0[0], host1[1] - host0[1]
        limit = "as deployed" if args.pool_limit is None else f"{args.pool_limit} (--pool-limit)"
        print(
            f"host: {100 * busy / max(every, 1e-9):.0f}% of its {os.cpu_count()} cores busy "
            f"over the window; pool {POOL}: {limit}"
        )
        print(
            f"machine: {os.cpu_count()} cores; measured at {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
        )
    finally:
        if services is not None:
            services.stop()
        pg.stop()
        if args.keep:
            print(f"logs kept in {work / 'logs'}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
