"""Benchmark: a landed CSV file into PostgreSQL through a file load (engine/file_load.py,
APPEND) against psql's `\\copy` of the same file into a table of the same types, side by
side in one run (the figures of issue 12; target <= 1.5x), and the loader's peak memory
at two file sizes (flat: the same for 100 MB and 1 GB). Two definitions of the same
file: its columns as they are (`straight`: COPY into the target, checked by a second
session) and with a TRNSFRM column besides (`staged`: through a staging table). At
`--small-rows` the same loads into SQLite, the embedded default, against the plain load
a Python user would write (the csv module and executemany into a table of the same
types, no checks): SQLite has no COPY, the records go through the Python reader. At
`--small-rows` on both databases, a third definition loads the file by UPSERT (ID the
key) twice: every key new, then every key present.

    python benchmarks/file_load.py [--rows 10000000] [--small-rows 1000000]

Each load runs in a process of its own (its peak RSS is that process's ru_maxrss); the
files are written to a temporary folder first (~105 bytes a row: 10M rows ~ 1 GB). A
throw-away PostgreSQL server with the tests' settings holds the tables.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dms_orchestration.db.ddl import init_schema  # noqa: E402
from dms_orchestration.metadata.authoring import import_mapping_file  # noqa: E402
from dms_orchestration.metadata.mapping_file import parse_mapping_file  # noqa: E402
from dms_orchestration_tests.pg_server import PostgresServer  # noqa: E402

TARGET_RATIO = 1.5
HEADER = "     path       rows      MB  \\copy s   load s  ratio <=1.5x     rows/s peak RSS MB"
# the file's columns as they are (COPY straight into the target, checked side by side),
# and the same with a TRNSFRM column (COPY into a staging table, checked as it is applied)
LOADS = (("straight", "BENCH_FILE", "BENCH_LOADED"), ("staged", "BENCH_FILE_T", "BENCH_LOADED_T"))
COLUMNS = (
    "ID BIGINT, NAME VARCHAR(40), CITY VARCHAR(30), JOINED DATE, AMOUNT NUMERIC(12,2), NOTE TEXT"
)
# the file's columns as they are (BENCH_FILE); BENCH_FILE_T adds a TRNSFRM column,
# BENCH_UPSERT makes ID its key
FILE_COLUMNS = [
    {"name": "ID", "type": "BIGINT", "source": "ID", "required": True},
    {"name": "NAME", "type": "VARCHAR(40)", "source": "NAME"},
    {"name": "CITY", "type": "VARCHAR(30)", "source": "CITY"},
    {"name": "JOINED", "type": "DATE", "source": "JOINED"},
    {"name": "AMOUNT", "type": "NUMBER(12,2)", "source": "AMOUNT"},
    {"name": "NOTE", "type": "TEXT", "source": "NOTE"},
]
CITY_UPPER = {"name": "CITY_UPPER", "type": "VARCHAR(30)", "transform": "UPPER(SRC.CITY)"}


def _file_load(ref: str, table: str, load_type: str, columns: list[dict]) -> dict:
    return {
        "ref": ref,
        "type": "CSV",
        "path": f"landing_{ref.lower()}/*.csv",
        "target": {"table": table},
        "load_type": load_type,
        "columns": columns,
    }


DEFINITION = yaml.safe_dump(
    {
        "file_loads": [
            _file_load("BENCH_FILE", "BENCH_LOADED", "APPEND", FILE_COLUMNS),
            _file_load(
                "BENCH_FILE_T",
                "BENCH_LOADED_T",
                "APPEND",
                [*FILE_COLUMNS[:3], CITY_UPPER, *FILE_COLUMNS[3:]],
            ),
            _file_load(
                "BENCH_UPSERT",
                "BENCH_UPSERTED",
                "UPSERT",
                [{**FILE_COLUMNS[0], "key": True}, *FILE_COLUMNS[1:]],
            ),
        ]
    }
)
# one load in a process of its own: seconds and peak RSS (KiB) on stdout
LOAD = """
import resource, sys, time
from pathlib import Path
from dms_orchestration.engine.file_load import load_file
from dms_orchestration.metadata.catalog import load_file_loads
from dms_orchestration.settings import load_settings
settings = load_settings()
from dms_orchestration.db.connect import metadata_engine
fl = load_file_loads(metadata_engine(settings))[sys.argv[2]]
t0 = time.perf_counter()
done = load_file(fl, Path(sys.argv[1]), settings=settings)
seconds = time.perf_counter() - t0
assert done.status == "PC", done.message
print(seconds, done.rows, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def write_csv(path: Path, rows: int) -> int:
    cities = ["Paris", "New York", "Rotterdam", "Manchester", "Oslo", "Bern", "Lyon", "Kyiv"]
    rng = random.Random(7)
    with path.open("w", encoding="utf-8") as f:
        f.write("ID,NAME,CITY,JOINED,AMOUNT,NOTE\n")
        for start in range(1, rows + 1, 100_000):
            lines = []
            for i in range(start, min(start + 100_000, rows + 1)):
                day = f"20{10 + i % 15}-{1 + i % 12:02d}-{1 + i % 28:02d}"
                note = f'"quoted, with a comma {i}"' if i % 10 == 0 else f"note {i} {'x' * 20}"
                lines.append(
                    f"{i},customer number {i},{cities[i % 8]},{day},"
                    f"{rng.randint(0, 99999999) / 100:.2f},{note}\n"
                )
            f.write("".join(lines))
    return path.stat().st_size


# the plain load of the same file into SQLite: Python's csv module and executemany into a
# table of the same types, one transaction, no checks (seconds and peak RSS on stdout)
PLAIN_SQLITE = """
import csv, resource, sqlite3, sys, time
t0 = time.perf_counter()
con = sqlite3.connect(sys.argv[2])
con.execute("CREATE TABLE BENCH_COPY (" + sys.argv[3] + ")")
with open(sys.argv[1], newline="", encoding="utf-8") as f, con:
    rows = csv.reader(f)
    next(rows)
    con.executemany("INSERT INTO BENCH_COPY VALUES (?, ?, ?, ?, ?, ?)", rows)
con.close()
print(time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def plain_sqlite(path: Path, database: Path) -> tuple[float, int]:
    done = subprocess.run(
        [sys.executable, "-c", PLAIN_SQLITE, str(path), str(database), COLUMNS],
        capture_output=True,
        text=True,
        check=True,
    )
    seconds, rss = done.stdout.split()
    return float(seconds), int(rss)


def sqlite_loads(root: Path, path: Path, rows: int, size: int) -> None:
    """The same two file loads into SQLite (metadata and target in one file) against the
    plain load of the file into SQLite."""
    root.mkdir()
    url = f"sqlite:///{root / 'dms.db'}"
    engine = sa.create_engine(url)
    init_schema(engine)
    import_mapping_file(engine, parse_mapping_file(DEFINITION))
    engine.dispose()
    plain_s, plain_rss = plain_sqlite(path, root / "plain.db")
    print(f"{'sqlite':>9} {'plain':>10} {'':>7} {plain_s:>8.2f} (csv + executemany, no checks)")
    for label, ref, table in LOADS:
        seconds, loaded, rss = our_load(url, root / "home", path, ref, table)
        assert loaded == rows, (loaded, rows)
        print(
            f"{label:>9} {rows:>10,} {size / 1e6:>7.0f} {plain_s:>8.2f} {seconds:>8.2f} "
            f"{seconds / plain_s:>5.2f}x {'':>6} {rows / seconds:>10,.0f} {rss / 1024:>11.0f}",
            flush=True,
        )
    upserts(url, root / "home", path, rows, size, plain_s)


def upserts(url: str, home: Path, path: Path, rows: int, size: int, baseline: float) -> None:
    """The file by UPSERT twice: every key new, then every key present (all updates)."""
    for label, again in (("upsert", False), ("upsert 2", True)):
        seconds, loaded, rss = our_load(url, home, path, "BENCH_UPSERT", "BENCH_UPSERTED", again)
        assert loaded == rows, (loaded, rows)
        print(
            f"{label:>9} {rows:>10,} {size / 1e6:>7.0f} {baseline:>8.2f} {seconds:>8.2f} "
            f"{seconds / baseline:>5.2f}x {'':>6} {rows / seconds:>10,.0f} {rss / 1024:>11.0f}",
            flush=True,
        )


def settle(url: str) -> None:
    """Before a timed PostgreSQL step: a checkpoint, and no autovacuum worker running (the
    last step's dead rows are vacuumed while the next one runs, on the same two cores)."""
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        conn.exec_driver_sql("CHECKPOINT")
        busy = "SELECT COUNT(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'"
        deadline = time.monotonic() + 120
        while conn.exec_driver_sql(busy).scalar() and time.monotonic() < deadline:
            time.sleep(0.5)
    engine.dispose()


def psql_copy(server: PostgresServer, url: str, path: Path) -> float:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS BENCH_COPY")
        conn.exec_driver_sql(f"CREATE TABLE BENCH_COPY ({COLUMNS})")
    engine.dispose()
    settle(url)
    t0 = time.perf_counter()
    copy = f"\\copy BENCH_COPY FROM '{path}' WITH (FORMAT csv, HEADER)"
    server.psql(sa.make_url(url).database, copy)
    return time.perf_counter() - t0


def our_load(
    url: str, home: Path, path: Path, ref: str, table: str, again: bool = False
) -> tuple[float, int, int]:
    """One load in a process of its own; `again`: into the table as the last load left it."""
    if not again:
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
        engine.dispose()
    if url.startswith("postgresql"):
        settle(url)
    env = {**os.environ, "DMS_DATABASE_URL": url, "DMS_HOME": str(home)}
    done = subprocess.run(
        [sys.executable, "-c", LOAD, str(path), ref], env=env, capture_output=True, text=True
    )
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    seconds, rows, rss = done.stdout.split()
    return float(seconds), int(rows), int(rss)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--small-rows", type=int, default=1_000_000)
    args = ap.parse_args()
    server = PostgresServer().start()
    root = Path(tempfile.mkdtemp(prefix="dms-bench-files-"))
    try:
        url = server.create_database("bench_files")
        engine = sa.create_engine(url)
        init_schema(engine)
        import_mapping_file(engine, parse_mapping_file(DEFINITION))
        engine.dispose()
        print(HEADER)
        for rows in (args.small_rows, args.rows):
            path = root / f"bench_{rows}.csv"
            size = write_csv(path, rows)
            copy_s = psql_copy(server, url, path)
            for label, ref, table in LOADS:
                seconds, loaded, rss = our_load(url, root / "home", path, ref, table)
                assert loaded == rows, (loaded, rows)
                ratio = seconds / copy_s
                print(
                    f"{label:>9} {rows:>10,} {size / 1e6:>7.0f} {copy_s:>8.2f} {seconds:>8.2f} "
                    f"{ratio:>5.2f}x {'PASS' if ratio <= TARGET_RATIO else 'MISS':>6} "
                    f"{rows / seconds:>10,.0f} {rss / 1024:>11.0f}",
                    flush=True,
                )
            if rows == args.small_rows:
                upserts(url, root / "home", path, rows, size, copy_s)
                print(f"SQLite, the embedded default, at {rows:,} rows: against the plain load")
                sqlite_loads(root / "sqlite", path, rows, size)
                print(HEADER)
            path.unlink()
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
