"""Benchmark: a 1M-row report (engine/report.py) to CSV and to Parquet against psql's
`\\copy (query) TO` of the same query to a CSV file, side by side in one run (the figures
of issue 12; target <= 1.5x for CSV), with each writer's peak memory at two sizes (flat:
the result streams, a batch at a time).

    python benchmarks/report.py [--rows 1000000] [--small-rows 100000]

Each report runs in a process of its own (its peak RSS is that process's ru_maxrss). A
throw-away PostgreSQL server with the tests' settings holds the table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dms_orchestration.db.ddl import init_schema  # noqa: E402
from dms_orchestration.metadata.authoring import import_mapping_file  # noqa: E402
from dms_orchestration.metadata.mapping_file import parse_mapping_file  # noqa: E402
from dms_orchestration_tests.pg_server import PostgresServer  # noqa: E402

TARGET_RATIO = 1.5
HEADER = "      rows   format  \\copy s  report s  ratio <=1.5x     MB peak RSS MB"
QUERY = "SELECT ID, NAME, CITY, JOINED, AMOUNT FROM BENCH_REPORT_ROWS WHERE ID <= :p1 ORDER BY ID"
DEFINITIONS = f"""
sql:
  - {{code: Q_BENCH_REPORT, sql: "{QUERY}"}}
reports:
  - {{ref: BENCH_CSV, sql: Q_BENCH_REPORT, format: CSV, path: "out/{{RPRTREF}}_{{PRCID}}"}}
  - {{ref: BENCH_PARQUET, sql: Q_BENCH_REPORT, format: PARQUET, path: "out/{{RPRTREF}}_{{PRCID}}"}}
"""
RUN = """
import resource, sys, time
from dms_orchestration.db.connect import metadata_engine
from dms_orchestration.engine.report import run_report
from dms_orchestration.metadata.catalog import load_reports
from dms_orchestration.settings import load_settings
settings = load_settings()
report = load_reports(metadata_engine(settings))[sys.argv[1]]
t0 = time.perf_counter()
done = run_report(report, {"PARAM1": sys.argv[2]}, settings=settings)
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(time.perf_counter() - t0, done.rows, done.bytes, rss)
"""


def fill(url: str, rows: int) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE BENCH_REPORT_ROWS AS SELECT g AS ID, 'customer number ' || g AS NAME,"
                " (ARRAY['Paris','Oslo','Bern','Lyon'])[1 + g % 4] AS CITY,"
                " DATE '2020-01-01' + (g % 2000) AS JOINED,"
                " round((g % 100000) / 7.0, 2)::NUMERIC(12,2) AS AMOUNT"
                f" FROM generate_series(1, {rows}) g"
            )
        )
        conn.exec_driver_sql("ANALYZE BENCH_REPORT_ROWS")
    engine.dispose()


def psql_copy(server: PostgresServer, url: str, rows: int, path: Path) -> float:
    query = QUERY.replace(":p1", str(rows))
    t0 = time.perf_counter()
    copy = f"\\copy ({query}) TO '{path}' WITH (FORMAT csv, HEADER)"
    server.psql(sa.make_url(url).database, copy)
    return time.perf_counter() - t0


def report(url: str, home: Path, ref: str, rows: int) -> tuple[float, int, int, int]:
    env = {**os.environ, "DMS_DATABASE_URL": url, "DMS_HOME": str(home)}
    done = subprocess.run(
        [sys.executable, "-c", RUN, ref, str(rows)], env=env, capture_output=True, text=True
    )
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    seconds, written, size, rss = done.stdout.split()
    return float(seconds), int(written), int(size), int(rss)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--small-rows", type=int, default=100_000)
    args = ap.parse_args()
    server = PostgresServer().start()
    root = Path(tempfile.mkdtemp(prefix="dms-bench-report-"))
    try:
        url = server.create_database("bench_report")
        engine = sa.create_engine(url)
        init_schema(engine)
        import_mapping_file(engine, parse_mapping_file(DEFINITIONS))
        engine.dispose()
        fill(url, args.rows)
        print(HEADER)
        for rows in (args.small_rows, args.rows):
            copy_s = psql_copy(server, url, rows, root / "copy.csv")
            for ref, fmt in (("BENCH_CSV", "CSV"), ("BENCH_PARQUET", "PARQUET")):
                seconds, written, size, rss = report(url, root / "home", ref, rows)
                assert written == rows, (written, rows)
                ratio = seconds / copy_s
                verdict = ("PASS" if ratio <= TARGET_RATIO else "MISS") if fmt == "CSV" else ""
                print(
                    f"{rows:>10,} {fmt:>8} {copy_s:>8.2f} {seconds:>9.2f} {ratio:>5.2f}x "
                    f"{verdict:>6} {size / 1e6:>6.1f} {rss / 1024:>11.0f}",
                    flush=True,
                )
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
