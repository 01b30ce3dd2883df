"""Benchmark the run metrics (`dms stats`, the operations dashboard asset) over a large
log, on the embedded SQLite default and on PostgreSQL, side by side with a baseline:

    python benchmarks/stats.py [--loads 1000000] [--mappings 200]

The log holds --loads loads (DMS_PRCLOG rows, 90% PC, 8% FL, 2% ST, with their
whole-load DMS_JOBLOG rows) of --mappings mappings over 30 days. Timed: the baseline, a
plain fetch of the rows the metrics read (MAPREF, PRCSTS, STRTDT, ENDDT and the load's
SRCROWS, one join), and `load_stats()` over the whole 30 days (the same read, then the
tallies per day and per mapping with their percentiles); then the 24-hour window the
dashboard asset computes every hour. Peak RSS of this process is printed with each.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
import yaml

from dms_orchestration.db.connect import create_engine
from dms_orchestration.db.ddl import init_schema
from dms_orchestration.dmslog.stats import load_stats
from dms_orchestration.metadata.authoring import import_mapping_file
from dms_orchestration.metadata.mapping_file import parse_mapping_file
from dms_orchestration_tests.pg_server import PostgresServer

END = datetime(2026, 12, 1)
DAYS = 30


def catalog(mappings: int) -> str:
    column = {"name": "ID", "type": "INTEGER", "logic": "SRC.ID", "key": True, "order": 1}
    return yaml.safe_dump(
        {
            "sql": [{"code": "Q", "sql": "SELECT 1 AS ID"}],
            "mappings": [
                {"ref": f"M_{i:04d}", "target": {"table": f"T_{i:04d}"}, "sql": "Q",
                 "columns": [column]}
                for i in range(mappings)
            ],
        }
    )  # fmt: skip


def fill(engine: sa.Engine, loads: int, mappings: int) -> None:
    """The log, by one INSERT ... SELECT per table over the numbers 1..loads."""
    start = END - timedelta(days=DAYS)
    seconds = DAYS * 86400
    pg = engine.dialect.name == "postgresql"
    mod = (lambda n: f"MOD(N, {n})") if pg else (lambda n: f"(N % {n})")  # noqa: E731
    if pg:
        numbers = f"SELECT i AS N FROM generate_series(1, {loads}) i"
        at = "(TIMESTAMP '{s}' + ((N - 1) * {step}) * INTERVAL '1 second')"
        plus = "({t} + (" + mod(97) + " + 1) * INTERVAL '1 second')"
        mapref = f"'M_' || LPAD(CAST({mod(mappings)} AS TEXT), 4, '0')"
    else:
        numbers = (
            f"WITH RECURSIVE R(N) AS (SELECT 1 UNION ALL SELECT N + 1 FROM R WHERE N < {loads}) "
            "SELECT N FROM R"
        )
        # (as SQLAlchemy writes a date-time to SQLite: with microseconds)
        at = "datetime('{s}', '+' || CAST((N - 1) * {step} AS INTEGER) || ' seconds') || '.000000'"
        plus = "datetime({t}, '+' || (" + mod(97) + " + 1) || ' seconds') || '.000000'"
        mapref = f"'M_' || substr('0000' || {mod(mappings)}, -4)"
    t = at.format(s=f"{start:%Y-%m-%d %H:%M:%S}", step=seconds / loads)
    status = f"CASE WHEN {mod(50)} = 0 THEN 'ST' WHEN {mod(12)} = 0 THEN 'FL' ELSE 'PC' END"
    with engine.begin() as conn:
        conn.exec_driver_sql(
            f"INSERT INTO DMS_PRCLOG (PRCID, MAPREF, PRCSTS, STRTDT, ENDDT) "
            f"SELECT N, {mapref}, {status}, {t}, {plus.format(t=t)} FROM ({numbers}) S"
        )
        conn.exec_driver_sql(
            "INSERT INTO DMS_JOBLOG (JOBLOGID, PRCID, MAPREF, JOBSTS, STRTDT, SRCROWS) "
            f"SELECT N, N, {mapref}, {status}, {t}, {mod(1000)} FROM ({numbers}) S"
        )
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("ANALYZE DMS_PRCLOG")
            conn.exec_driver_sql("ANALYZE DMS_JOBLOG")


def baseline(engine: sa.Engine, since: datetime) -> int:
    """The rows the metrics read, fetched plainly."""
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT P.MAPREF, P.PRCSTS, P.STRTDT, P.ENDDT, J.SRCROWS FROM DMS_PRCLOG P "
            "LEFT JOIN DMS_JOBLOG J ON J.PRCID = P.PRCID AND J.CHUNKNO IS NULL "
            "WHERE P.STRTDT >= ?"
            if engine.dialect.name == "sqlite"
            else "SELECT P.MAPREF, P.PRCSTS, P.STRTDT, P.ENDDT, J.SRCROWS FROM DMS_PRCLOG P "
            "LEFT JOIN DMS_JOBLOG J ON J.PRCID = P.PRCID AND J.CHUNKNO IS NULL "
            "WHERE P.STRTDT >= %(s)s",
            (since,) if engine.dialect.name == "sqlite" else {"s": since},
        ).all()
    return len(rows)


def timed(fn):
    began = time.perf_counter()
    value = fn()
    return time.perf_counter() - began, value


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(name: str, url: str, loads: int, mappings: int) -> None:
    engine = create_engine(url)
    init_schema(engine)
    import_mapping_file(engine, parse_mapping_file(catalog(mappings)))
    fill(engine, loads, mappings)
    since = END - timedelta(days=DAYS)
    base_s, n = timed(lambda: baseline(engine, since))
    stats_s, stats = timed(lambda: load_stats(engine, since, END))
    assert stats.total.loads == n == loads, (stats.total.loads, n, loads)
    day_s, day = timed(lambda: load_stats(engine, END - timedelta(hours=24), END))
    print(
        f"{name:<11}{loads:>10,}{base_s:>11.2f}{stats_s:>10.2f}{stats_s / base_s:>7.2f}x"
        f"{day_s:>10.2f}{day.total.loads:>9,}{rss_mb():>9.0f}",
        flush=True,
    )
    engine.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--loads", type=int, default=1_000_000)
    ap.add_argument("--mappings", type=int, default=200)
    args = ap.parse_args()
    print(f"{'database':<11}{'loads':>10}{'fetch s':>11}{'stats s':>10}{'ratio':>8}"
          f"{'24 h s':>10}{'24 h n':>9}{'RSS MB':>9}")  # fmt: skip
    root = Path(tempfile.mkdtemp(prefix="dms-bench-stats-"))
    server = PostgresServer().start()
    try:
        run("sqlite", f"sqlite:///{root / 'dms.db'}", args.loads, args.mappings)
        run("postgresql", server.create_database("bench_stats"), args.loads, args.mappings)
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
