"""Benchmark full-extract deltas on the embedded default, SQLite, at two sizes (issue 10
part 7, "The embedded default scales"):

    python benchmarks/sqlite_scale.py [--rows 1000000] [--repeat 3] [--hash-rows 200000]

Everything lives in one SQLite file, DMS_HOME/dms.db of a throw-away DMS_HOME: the
embedded default's metadata database, which a mapping without a connection reads from and
writes to. For each size n of N/4 and N (--rows), the data set of benchmarks/scd_load.py
made with a recursive CTE: SRC_CUSTOMER_V1_<n> holds n customers (CUST_ID 1..n, the
primary key, CUST_NAME, EMAIL, CITY, SEGMENT, CREDIT_LIMIT numeric(12,2), BIRTH_DATE,
STATUS char(1)); SRC_CUSTOMER_V2_<n> is V1 with 10% of the keys changed: 5% in CITY
(SCD2, a new version), 3% in EMAIL (SCD1, in place), 1% absent (EXPIRE), and 1% new
keys. The mapping DIM_CUSTOMER_<n> (key CUST_ID, EMAIL SCD1, the rest SCD2, DELHNDL
EXPIRE) reads `SELECT * FROM SRC_CUSTOMER_<n>`, a view re-pointed at V1 or V2 between
loads (outside the timed part).

Timed, --repeat times each (the median is reported with the range), per size:
- the baseline: `CREATE TABLE ... AS SELECT * FROM SRC_CUSTOMER_V1_<n>` and its commit,
  a plain copy of the source inside the same file (no index);
- the initial load of V1 into an empty target;
- a no-change delta: V1 again over the V1 target;
- a 10%-changes delta: V2 over the V1 target;
each engine load one `load(mapping, full=True, parallel=True)` call (plan, chunks at the
plan's default count, commit), as `dms run --full` runs it; the target is dropped after
each round (initial, no change, 10%). The time of each SQL statement of the N-row loads
is recorded too (SQLAlchemy cursor events), by kind.

Before the engine loads: a micro-benchmark of the SQLite row hash (dms_rowhash, called
by SQLite once per inserted or updated row) over --hash-rows rows of the data set's values
as SQLite hands them over, against the reference db.rowhash.row_hash on the same rows.

The issue's targets: each delta kind grows linearly, delta(N) / delta(N/4) <= 5 (4x the
rows), and delta(N) / CTAS(N) <= 10.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scd_load import StatementTimer, table, verdict  # noqa: E402

COLUMNS = [
    # name, type in the source tables, type in the mapping, scd (None = key)
    ("CUST_ID", "INTEGER PRIMARY KEY", "INTEGER", None),
    ("CUST_NAME", "VARCHAR(100)", "VARCHAR(100)", 2),
    ("EMAIL", "VARCHAR(200)", "VARCHAR(200)", 1),
    ("CITY", "VARCHAR(100)", "VARCHAR(100)", 2),
    ("SEGMENT", "VARCHAR(20)", "VARCHAR(20)", 2),
    ("CREDIT_LIMIT", "NUMERIC(12,2)", "NUMBER(12,2)", 2),
    ("BIRTH_DATE", "DATE", "DATE", 2),
    ("STATUS", "CHAR(1)", "CHAR(1)", 2),
]
COLS = ", ".join(c[0].lower() for c in COLUMNS)
TARGET_GROWTH = 5.0  # delta(N) / delta(N/4)
TARGET_CTAS = 10.0  # delta(N) / CTAS(N)
CITIES = "'Amsterdam','Berlin','Brussels','Copenhagen','Dublin','Lisbon','Madrid','Paris'"
# bucket of a key in version 2: 0-4 CITY changed, 5-7 EMAIL changed, 8 absent
BUCKET = "((cust_id * 37 + 11) % 100)"


# ---------------------------------------------------------------------- data set


def _customers(first: int, last: int) -> str:
    """SELECT customers first..last as version 1 has them (some NULL e-mails and cities)."""
    return f"""
        WITH RECURSIVE g(i) AS (SELECT {int(first)} UNION ALL SELECT i + 1 FROM g
                                WHERE i < {int(last)})
        SELECT i, 'Customer ' || i,
               CASE WHEN i % 101 = 0 THEN NULL ELSE 'customer' || i || '@example.com' END,
               CASE WHEN i % 97 = 0 THEN NULL
                    ELSE json_extract(json_array({CITIES}), '$[' || (i % 8) || ']') END,
               CASE (i / 10) % 4 WHEN 0 THEN 'RETAIL' WHEN 1 THEN 'SMB'
                    WHEN 2 THEN 'CORPORATE' ELSE 'PUBLIC' END,
               ((i * 7919) % 1000000) / 100.0,
               date('1940-01-01', '+' || ((i * 31) % 25000) || ' days'),
               CASE WHEN i % 17 = 0 THEN 'I' ELSE 'A' END
        FROM g"""


def generate(engine: sa.Engine, n: int) -> None:
    cols = ", ".join(f"{name.lower()} {src_type}" for name, src_type, _, _ in COLUMNS)
    with engine.begin() as conn:
        for version in ("v1", "v2"):
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS src_customer_{version}_{n}")
            conn.exec_driver_sql(f"CREATE TABLE src_customer_{version}_{n} ({cols})")
        conn.exec_driver_sql(f"INSERT INTO src_customer_v1_{n} ({COLS}) {_customers(1, n)}")
        conn.exec_driver_sql(
            f"""
            INSERT INTO src_customer_v2_{n} ({COLS})
            SELECT cust_id, cust_name,
                   CASE WHEN {BUCKET} BETWEEN 5 AND 7
                        THEN 'changed.' || cust_id || '@example.org' ELSE email END,
                   CASE WHEN {BUCKET} BETWEEN 0 AND 4
                        THEN 'New ' || COALESCE(city, 'Town') ELSE city END,
                   segment, credit_limit, birth_date, status
            FROM src_customer_v1_{n} WHERE {BUCKET} <> 8
            """
        )
        conn.exec_driver_sql(
            f"INSERT INTO src_customer_v2_{n} ({COLS}) {_customers(n + 1, n + n // 100)}"
        )
        conn.exec_driver_sql(f"DROP VIEW IF EXISTS src_customer_{n}")
        conn.exec_driver_sql(f"CREATE VIEW src_customer_{n} AS SELECT * FROM src_customer_v1_{n}")


def expected(n: int, changed: bool) -> dict[str, int]:
    """The exact counts of a delta over the V1 target (V1 again, or V2)."""
    if not changed:
        return dict(srcrows=n, insrows=0, updrows=0, exprows=0, delrows=0, unchrows=n)
    b = {"V": 0, "U": 0, "D": 0, "N": 0}
    for key in range(1, n + 1):
        bucket = (key * 37 + 11) % 100
        b["V" if bucket < 5 else "U" if bucket < 8 else "D" if bucket == 8 else "N"] += 1
    new = n // 100
    return dict(
        srcrows=n - b["D"] + new,
        insrows=new + b["V"],
        updrows=b["U"],
        exprows=b["V"] + b["D"],
        delrows=0,
        unchrows=b["N"],
    )


def point_view(engine: sa.Engine, n: int, version: str) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP VIEW IF EXISTS src_customer_{n}")
        conn.exec_driver_sql(
            f"CREATE VIEW src_customer_{n} AS SELECT * FROM src_customer_{version}_{n}"
        )


def drop_tables(engine: sa.Engine, *names: str) -> None:
    with engine.begin() as conn:
        for name in names:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")


def mapping_file(sizes: list[int]) -> str:
    columns = [
        {
            "name": name,
            "type": map_type,
            **({"key": 1} if scd is None else {"scd": scd}),
            "logic": f"SRC.{name}",
            "order": i + 1,
        }
        for i, (name, _, map_type, scd) in enumerate(COLUMNS)
    ]
    doc = {
        "sql": [
            {"code": f"BENCH_SRC_{n}", "sql": f"SELECT * FROM SRC_CUSTOMER_{n}"} for n in sizes
        ],
        "mappings": [
            {
                "ref": f"DIM_CUSTOMER_{n}",
                "description": "benchmarks/sqlite_scale.py",
                "target": {"table": f"DIM_CUSTOMER_{n}", "type": "DIMENSION"},
                "sql": f"BENCH_SRC_{n}",
                "delete_handling": "EXPIRE",
                "columns": columns,
            }
            for n in sizes
        ],
    }
    return yaml.safe_dump(doc, sort_keys=False)


# ---------------------------------------------------------------------- timing


_STATEMENT_KINDS = [
    (re.compile(r"^CREATE TABLE \S*dms_a_", re.I), "classify: CREATE work table A"),
    (re.compile(r"^CREATE TABLE \S*dms_s_", re.I), "stage: CREATE staging table"),
    (re.compile(r"^INSERT INTO \S*dms_s_", re.I), "stage: INSERT SELECT"),
    (re.compile(r"HAVING COUNT", re.I), "check: duplicate keys"),
    (re.compile(r"^SELECT COUNT\(\*\), SUM\(dms_srccnt\)", re.I), "counts: staged rows"),
    (re.compile(r"^SELECT COUNT\(\*\) FROM \S*dms_a_", re.I), "check: NULL keys"),
    (
        re.compile(r"^SELECT COUNT\(\*\) FROM \(SELECT \* FROM dim_", re.I),
        "counts: current rows met",
    ),
    (re.compile(r"\) DMS_EST$", re.I), "plan: row estimate (a count)"),
    (re.compile(r"^SELECT dms_act, COUNT", re.I), "action counts"),
    (re.compile(r"^UPDATE \S+ AS T SET CURFLG = 'N'", re.I), "apply: close versions"),
    (re.compile(r"^UPDATE \S+ AS T", re.I), "apply: update in place"),
    (re.compile(r"^INSERT INTO dim_customer", re.I), "apply: insert"),
    (re.compile(r"^(DROP|CREATE) ", re.I), "DDL (target, indexes, work tables)"),
]


@dataclass
class Timing:
    label: str
    seconds: list[float] = field(default_factory=list)
    chunks: int = 0
    counts: dict[str, int] | None = None
    statements: dict[str, list[float]] = field(default_factory=dict)

    @property
    def median(self) -> float:
        s = sorted(self.seconds)
        return s[len(s) // 2]

    def cell(self) -> str:
        s = sorted(self.seconds)
        spread = f" ({s[0]:.2f} .. {s[-1]:.2f})" if len(s) > 1 else ""
        return f"{self.median:.2f}{spread}"


def ctas(engine: sa.Engine, n: int) -> float:
    drop_tables(engine, "copy_target")
    with engine.connect() as conn:
        t0 = time.perf_counter()
        with conn.begin():
            conn.exec_driver_sql(f"CREATE TABLE copy_target AS SELECT * FROM src_customer_v1_{n}")
        seconds = time.perf_counter() - t0
        copied = conn.exec_driver_sql("SELECT COUNT(*) FROM copy_target").scalar()
    drop_tables(engine, "copy_target")
    assert copied == n, f"CTAS copied {copied} rows, expected {n}"
    return seconds


def engine_load(timing: Timing, mapping, settings, want: dict | None, timed: bool) -> None:  # noqa: ANN001
    from dms_orchestration.engine import load

    timer = (
        StatementTimer(_STATEMENT_KINDS, "other (metadata, catalog, log, COMMIT)")
        if timed
        else None
    )
    if timer:
        timer.__enter__()
    try:
        t0 = time.perf_counter()
        result = load(mapping, full=True, parallel=True, settings=settings)
        seconds = time.perf_counter() - t0
    finally:
        if timer:
            timer.__exit__()
    c = result.counts
    counts = dict(
        srcrows=c.srcrows,
        insrows=c.insrows,
        updrows=c.updrows,
        exprows=c.exprows,
        delrows=c.delrows,
        unchrows=c.unchrows,
    )
    if want is not None and counts != want:
        raise SystemExit(f"{timing.label}: counts {counts}, expected {want}")
    timing.seconds.append(seconds)
    timing.chunks, timing.counts = result.chunk_count, counts
    if timer and (not timing.statements or seconds <= timing.median):
        timing.statements = timer.times
    print(f"  {timing.label}: {seconds:.2f} s ({result.chunk_count} chunk(s))", flush=True)


@dataclass
class SizeRun:
    n: int
    ctas: Timing
    initial: Timing
    unchanged: Timing
    changed: Timing


def run_size(engine: sa.Engine, settings, n: int, repeat: int) -> SizeRun:  # noqa: ANN001
    from dms_orchestration.metadata.catalog import load_catalog

    t0 = time.perf_counter()
    generate(engine, n)
    print(f"generated V1 ({n:,} rows) and V2 in {time.perf_counter() - t0:.1f} s", flush=True)
    mapping = load_catalog(engine).mappings[f"DIM_CUSTOMER_{n}"]
    run = SizeRun(
        n,
        Timing(f"CTAS copy of the source, {n:,} rows"),
        Timing(f"initial load, {n:,} rows"),
        Timing(f"no-change delta, {n:,} rows"),
        Timing(f"10%-changes delta, {n:,} rows"),
    )
    target = f"dim_customer_{n}"
    for _ in range(repeat):
        run.ctas.seconds.append(ctas(engine, n))
        print(f"  {run.ctas.label}: {run.ctas.seconds[-1]:.2f} s", flush=True)
        drop_tables(engine, target)
        point_view(engine, n, "v1")
        engine_load(run.initial, mapping, settings, None, True)
        engine_load(run.unchanged, mapping, settings, expected(n, False), True)
        point_view(engine, n, "v2")
        engine_load(run.changed, mapping, settings, expected(n, True), True)
        drop_tables(engine, target)
    drop_tables(engine, f"src_customer_v1_{n}", f"src_customer_v2_{n}")
    return run


# ---------------------------------------------------------------------- the row hash


def hash_benchmark(engine: sa.Engine, rows: int) -> list[list[str]]:
    """dms_rowhash's Python function and the reference row_hash over the same rows."""
    from dms_orchestration.db.rowhash import row_hash, sqlite_row_hash

    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS hash_rows")
        conn.exec_driver_sql(
            f"CREATE TABLE hash_rows ({', '.join(f'{c[0]} {c[1]}' for c in COLUMNS)})"
        )
        conn.exec_driver_sql(f"INSERT INTO hash_rows {_customers(1, rows)}")
        values = [tuple(r[1:]) for r in conn.exec_driver_sql("SELECT * FROM hash_rows")]
        conn.exec_driver_sql("DROP TABLE hash_rows")
    hash_types = [
        ("DECIMAL", 2)
        if c[2].startswith("NUMBER")
        else ("DATE", None)
        if c[2] == "DATE"
        else ("CHAR", None)
        if c[2].startswith("CHAR")
        else ("STRING", None)
        for c in COLUMNS[1:]
    ]
    specs = [f"{f}:{s}" if s is not None else f for f, s in hash_types]
    args = [tuple(x for pair in zip(specs, v, strict=True) for x in pair) for v in values]

    t0 = time.perf_counter()
    ours = [sqlite_row_hash(*a) for a in args]
    fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    reference = [row_hash(v, hash_types) for v in values]
    ref = time.perf_counter() - t0
    assert ours == reference, "dms_rowhash differs from the reference row_hash"
    return [
        ["dms_rowhash (db.rowhash.sqlite_row_hash)", f"{fast:.2f}", f"{fast / rows * 1e6:.1f}"],
        ["reference db.rowhash.row_hash", f"{ref:.2f}", f"{ref / rows * 1e6:.1f}"],
        ["reference / dms_rowhash", f"{ref / fast:.1f}x", ""],
    ]


# ---------------------------------------------------------------------- output


def report(n: int, runs: list[SizeRun], hashes: list[list[str]], hash_rows: int) -> None:
    small, large = runs
    print(
        f"\nSQLite scale benchmark: N = {n:,}, one SQLite file (the embedded default), "
        f"SQLite {sqlite_version()}, {os.cpu_count()} CPUs"
    )
    print("seconds: median (min .. max) of the runs; deltas are full=True, EXPIRE\n")
    rows = []
    for r in runs:
        for t in (r.ctas, r.initial, r.unchanged, r.changed):
            rows.append(
                [t.label, t.cell(), str(t.chunks or "-"), f"{t.median / r.ctas.median:.2f}x"]
            )
    table(["step", "seconds", "chunks", "time / CTAS"], rows)

    print(f"\nRow hash: {hash_rows:,} rows of the 7 tracked columns (seconds, us per row)")
    table(["hash", "seconds", "us / row"], hashes)

    for t in (large.initial, large.unchanged, large.changed):
        print(f"\n  statements of '{t.label}' (the median run):")
        for kind, times in sorted(t.statements.items(), key=lambda kv: -sum(kv[1])):
            if sum(times) >= 0.005:
                print(f"    {sum(times):7.2f} s  {len(times):4d}x  {kind}")

    print("\nRatios and the issue's targets")
    rows = []
    for kind in ("unchanged", "changed"):
        a, b = getattr(small, kind), getattr(large, kind)
        name = "no-change" if kind == "unchanged" else "10%-changes"
        growth = b.median / a.median
        rows.append(
            [
                f"{name} delta {large.n:,} / {small.n:,} rows",
                f"{growth:.2f}x",
                f"<= {TARGET_GROWTH:.0f}x",
                verdict(growth, TARGET_GROWTH, True),
            ]
        )
        to_ctas = b.median / large.ctas.median
        rows.append(
            [
                f"{name} delta {large.n:,} rows / CTAS",
                f"{to_ctas:.2f}x",
                f"<= {TARGET_CTAS:.0f}x",
                verdict(to_ctas, TARGET_CTAS, True),
            ]
        )
    growth = large.initial.median / small.initial.median
    rows.append([f"initial load {large.n:,} / {small.n:,} rows", f"{growth:.2f}x", "-", ""])
    table(["ratio", "measured", "target", "result"], rows)


def sqlite_version() -> str:
    import sqlite3

    return sqlite3.sqlite_version


# ---------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="N, the larger size")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each step (median)")
    ap.add_argument("--hash-rows", type=int, default=200_000)
    args = ap.parse_args()

    from dms_orchestration.db.connect import create_engine
    from dms_orchestration.db.ddl import init_schema
    from dms_orchestration.metadata.authoring import import_mapping_file
    from dms_orchestration.metadata.mapping_file import parse_mapping_file
    from dms_orchestration.settings import load_settings

    n = args.rows
    sizes = [n // 4, n]
    home = Path(tempfile.mkdtemp(prefix="dms-bench-sqlite-"))
    # chunk processes read their settings from the environment: make it ours
    for name in ("DMS_DATABASE_URL", "DB_TYPE", "DMS_SCHEMA", "CDR_SCHEMA", "DMS_TIMEZONE"):
        os.environ.pop(name, None)
    os.environ["DMS_HOME"] = str(home)
    settings = load_settings(env={"DMS_HOME": str(home)})
    engine = create_engine(settings.database_url)
    try:
        init_schema(engine)
        import_mapping_file(engine, parse_mapping_file(mapping_file(sizes)))
        hashes = hash_benchmark(engine, args.hash_rows)
        print(f"row hash: {hashes[0][2]} us per row (reference {hashes[1][2]})", flush=True)
        runs = [run_size(engine, settings, size, args.repeat) for size in sizes]
        report(n, runs, hashes, args.hash_rows)
    finally:
        engine.dispose()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
