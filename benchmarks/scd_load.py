"""Benchmark the SCD load engine on PostgreSQL against COPY and the legacy row-by-row loop
(issue 3, "Benchmark"):

    python benchmarks/scd_load.py [--url URL] [--rows 1000000] [--legacy-rows 100000]
                                  [--repeat 3] [--rss-rows 1000000,4000000] [--skip-rss]
                                  [--rss-target postgresql|sqlite]

Without --url a throw-away PostgreSQL server is started with PostgreSQL's default
settings (the tests' server turns fsync, synchronous commit and full-page writes off; this
one does not: the issue's figures are for default settings); with --url give an empty
scratch database: the DMS schema, the benchmark mappings and tables go into it.

The data set, generated in the database with generate_series: SRC_CUSTOMER_V1 holds N
customers (CUST_ID 1..N, CUST_NAME, EMAIL, CITY, SEGMENT, CREDIT_LIMIT numeric(12,2),
BIRTH_DATE, STATUS char(1)); SRC_CUSTOMER_V2 is V1 with 10% of the keys changed in CITY or
SEGMENT (SCD2), another 5% changed only in EMAIL (SCD1), 1% of the keys absent and 2% new
keys (N+1..). The mapping DIM_CUSTOMER (key CUST_ID, EMAIL SCD1, the rest SCD2, DELHNDL
EXPIRE) reads `SELECT * FROM SRC_CUSTOMER`, a view re-pointed at V1 or V2 between loads
(outside the timed part).

Timed, each --repeat times (default 3; the median is reported with the range: this
machine varies by 10-25% from run to run):
- initial load of V1 into a fresh target, 1 chunk, then 2 chunks in parallel (threads of
  load(), each chunk on its own connection: its own PostgreSQL backend process);
- delta load of V2 (full=True, so EXPIRE applies) over a target holding V1, with 1, 2 and
  4 chunks, and with 2 chunks each in its own process (forked by load() on Linux, with
  the start of a process each); before each, untimed: the V1 target is rebuilt
  by dropping it and loading V1 again, then CHECKPOINT + VACUUM ANALYZE + CHECKPOINT (a
  table loaded the night before);
- COPY FROM of the N V1 rows into an empty table from Python (psycopg2 copy_expert from an
  in-memory buffer made by COPY TO; only the COPY FROM and its commit are timed), each
  time into a fresh table, once before the engine loads, once between the initial and
  the delta loads and once after them (this VM drifts within a run): the median is the
  limit every ratio divides by;
- the legacy loop over the first --legacy-rows keys of V2: per source row a SELECT of the
  current target row, an MD5 (db.rowhash) in Python, then UPDATE / INSERT; one connection,
  autocommit off, one commit at the end;
- peak RSS of the cross-database path at each of --rss-rows: a PostgreSQL source table and
  a target in a second PostgreSQL database on the same server (or, --rss-target sqlite, a
  SQLite file), the mapping's SQL on its own connection, so rows stream in batches of
  BLKPRCROWS; each load (initial, 1 chunk) in a fresh process (`--rss-child`), which reads
  its peak from /proc/self/status VmHWM (getrusage's ru_maxrss would also count the
  benchmark process it was forked from, before the exec).
An engine load is timed as one load() call (plan, chunks, commit; parallel chunks include
the start of their processes). For 1-chunk loads, which run in this process, the
time of each SQL statement is recorded too (SQLAlchemy cursor events).
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
import yaml

MAPREF = "DIM_CUSTOMER"
COLUMNS = [
    # name, type in the source tables, type in the mapping, scd (None = key)
    ("CUST_ID", "integer NOT NULL", "INTEGER", None),
    ("CUST_NAME", "varchar(100)", "VARCHAR(100)", 2),
    ("EMAIL", "varchar(200)", "VARCHAR(200)", 1),
    ("CITY", "varchar(100)", "VARCHAR(100)", 2),
    ("SEGMENT", "varchar(20)", "VARCHAR(20)", 2),
    ("CREDIT_LIMIT", "numeric(12,2)", "NUMBER(12,2)", 2),
    ("BIRTH_DATE", "date", "DATE", 2),
    ("STATUS", "char(1)", "CHAR(1)", 2),
]
COLS = ", ".join(c[0].lower() for c in COLUMNS)
TABLES = ["src_customer_v1", "src_customer_v2", "copy_target", "legacy_dim_customer"]

# targets of the issue: (ratio name, comparison, bound)
TARGET_INITIAL = 2.5
TARGET_DELTA_1 = 2.5
TARGET_DELTA_2 = 2.0
TARGET_LEGACY = 20.0
RSS_TOLERANCE = 1.10  # "the same": peak RSS at the larger size within 10% of the smaller


# ---------------------------------------------------------------------- data set


def _create_source(conn: sa.Connection, table: str) -> None:
    cols = ", ".join(f"{name.lower()} {src_type}" for name, src_type, _, _ in COLUMNS)
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table} CASCADE")
    conn.exec_driver_sql(f"CREATE TABLE {table} ({cols})")


def _insert_customers(conn: sa.Connection, table: str, first: int, last: int) -> None:
    """Customers first..last as version 1 has them (some NULL e-mails and cities)."""
    conn.execute(
        sa.text(
            f"""
        INSERT INTO {table} ({COLS})
        SELECT g,
               'Customer ' || g,
               CASE WHEN g % 101 = 0 THEN NULL ELSE 'customer' || g || '@example.com' END,
               CASE WHEN g % 97 = 0 THEN NULL ELSE (ARRAY['Amsterdam', 'Berlin', 'Brussels',
                 'Copenhagen', 'Dublin', 'Lisbon', 'Madrid', 'Paris', 'Rome', 'Vienna'])
                 [1 + g % 10] END,
               (ARRAY['RETAIL', 'SMB', 'CORPORATE', 'PUBLIC'])[1 + (g / 10) % 4],
               ((g::bigint * 7919) % 1000000) / 100.0,
               DATE '1940-01-01' + ((g::bigint * 31) % 25000)::int,
               CASE WHEN g % 17 = 0 THEN 'I' ELSE 'A' END
        FROM generate_series({int(first)}, {int(last)}) g
        """
        )
    )


# bucket of a key in version 2: 0-4 CITY changed, 5-9 SEGMENT changed (SCD2), 10-14 EMAIL
# changed (SCD1 only), 15 absent, 16-99 unchanged
BUCKET = "((cust_id::bigint * 37 + 11) % 100)"


def generate(engine: sa.Engine, n: int) -> None:
    new_keys = n * 2 // 100
    with engine.begin() as conn:
        _create_source(conn, "src_customer_v1")
        _insert_customers(conn, "src_customer_v1", 1, n)
        conn.exec_driver_sql("ALTER TABLE src_customer_v1 ADD PRIMARY KEY (cust_id)")
        _create_source(conn, "src_customer_v2")
        conn.execute(
            sa.text(
                f"""
            INSERT INTO src_customer_v2 ({COLS})
            SELECT cust_id, cust_name,
                   CASE WHEN {BUCKET} BETWEEN 10 AND 14
                        THEN 'changed.' || cust_id || '@example.org' ELSE email END,
                   CASE WHEN {BUCKET} BETWEEN 0 AND 4
                        THEN 'New ' || COALESCE(city, 'Town') ELSE city END,
                   CASE WHEN {BUCKET} BETWEEN 5 AND 9
                        THEN CASE WHEN segment = 'RETAIL' THEN 'SMB' ELSE 'RETAIL' END
                        ELSE segment END,
                   credit_limit, birth_date, status
            FROM src_customer_v1 WHERE {BUCKET} <> 15
            """
            )
        )
        _insert_customers(conn, "src_customer_v2", n + 1, n + new_keys)
        conn.exec_driver_sql("ALTER TABLE src_customer_v2 ADD PRIMARY KEY (cust_id)")
        conn.exec_driver_sql("CREATE VIEW src_customer AS SELECT * FROM src_customer_v1")
    vacuum(engine, "src_customer_v1", "src_customer_v2")


def expected_delta(n: int) -> dict[str, int]:
    """The exact counts of the delta load, from the buckets of keys 1..n."""
    counts = {"V": 0, "U": 0, "D": 0, "N": 0}
    for key in range(1, n + 1):
        bucket = (key * 37 + 11) % 100
        counts["V" if bucket < 10 else "U" if bucket < 15 else "D" if bucket == 15 else "N"] += 1
    new = n * 2 // 100
    return {
        "srcrows": n - counts["D"] + new,
        "insrows": new + counts["V"],
        "updrows": counts["U"],
        "exprows": counts["V"] + counts["D"],
        "delrows": 0,
        "unchrows": counts["N"],
    }


def point_view(engine: sa.Engine, version: str) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE OR REPLACE VIEW src_customer AS SELECT * FROM {version}")


def vacuum(engine: sa.Engine, *tables: str) -> None:
    """CHECKPOINT, VACUUM ANALYZE, CHECKPOINT, and no autovacuum worker busy: a quiet
    start. The first CHECKPOINT flushes the WAL: on a server that commits asynchronously,
    until a commit record is flushed VACUUM may neither set the hint bits of its rows nor
    mark their pages all-visible (the next load would then rewrite every page of the target
    to set them, which a table loaded the night before has not). The last one makes the
    load's first change of each page write a full-page image, as after any checkpoint."""
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.exec_driver_sql("CHECKPOINT")
        for table in tables:
            conn.exec_driver_sql(f"VACUUM ANALYZE {table}")
        conn.exec_driver_sql("CHECKPOINT")
    quiesce(engine)


def quiesce(engine: sa.Engine, timeout: float = 120) -> None:
    """Wait (a while) until no autovacuum worker runs: it would compete for 2 cores."""
    deadline = time.monotonic() + timeout
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        while time.monotonic() < deadline:
            busy = conn.exec_driver_sql(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'"
            ).scalar()
            if not busy:
                return
            time.sleep(0.5)


def drop_target(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS dim_customer")
        conn.exec_driver_sql("DROP SEQUENCE IF EXISTS dim_customer_seq")


# ---------------------------------------------------------------------- metadata


def mapping_file(dburl: str, rss_rows: list[int], rss_target: dict) -> str:
    """DIM_CUSTOMER (same database) and DIM_CUSTOMER_X<n> (cross-database, streamed)."""
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

    def mapping(ref: str, sql: str, table: str, connection: str | None) -> dict:
        target = {"table": table, "type": "DIMENSION"}
        if connection:
            target["connection"] = connection
        return {
            "ref": ref,
            "description": "benchmarks/scd_load.py",
            "target": target,
            "sql": sql,
            "delete_handling": "EXPIRE",
            "columns": columns,
        }

    doc = {
        "connections": [
            {"name": "BENCH_PG_SRC", "type": "POSTGRESQL", "url": dburl},
            {"name": "BENCH_RSS_TARGET", **rss_target},
        ],
        "sql": [{"code": "BENCH_SRC_CUSTOMER", "sql": "SELECT * FROM SRC_CUSTOMER"}],
        "mappings": [mapping(MAPREF, "BENCH_SRC_CUSTOMER", "DIM_CUSTOMER", None)],
    }
    for n in rss_rows:
        doc["sql"].append(
            {
                "code": f"BENCH_RSS_SRC_{n}",
                "connection": "BENCH_PG_SRC",
                "sql": f"SELECT * FROM RSS_SRC_{n}",
            }
        )
        doc["mappings"].append(
            mapping(
                f"{MAPREF}_X{n}", f"BENCH_RSS_SRC_{n}", f"DIM_CUSTOMER_X{n}", "BENCH_RSS_TARGET"
            )
        )
    return yaml.safe_dump(doc, sort_keys=False)


def connection_url(url: str) -> str:
    """The source connection's DBURL: a password, if any, stays in the environment."""
    u = sa.make_url(url)
    if not u.password:
        return u.render_as_string(hide_password=False)
    os.environ["DMS_BENCH_PGPASSWORD"] = str(u.password)
    marker = "DMSBENCHPASSWORDMARKER"
    return (
        u.set(password=marker)
        .render_as_string(hide_password=False)
        .replace(marker, "${DMS_BENCH_PGPASSWORD}")
    )


# ---------------------------------------------------------------------- engine loads


@dataclass
class Run:
    label: str
    seconds: float
    rows: int
    counts: dict[str, int] | None = None
    plan_s: float = 0.0
    chunks_s: float = 0.0
    chunk_s: list[float] = field(default_factory=list)
    statements: dict[str, list[float]] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds else float("inf")


_STATEMENT_KINDS = [
    (re.compile(r"^EXPLAIN", re.I), "plan: row estimate (EXPLAIN)"),
    (re.compile(r"NTILE\(", re.I), "plan: key boundaries (NTILE)"),
    (re.compile(r"^SELECT MIN\(k\), MAX\(k\)", re.I), "plan: key range, NULL / duplicate keys"),
    (re.compile(r"^CREATE UNLOGGED TABLE \S*dms_a_", re.I), "classify: CREATE work table A"),
    (re.compile(r"HAVING COUNT", re.I), "check: duplicate keys"),
    (re.compile(r"^SELECT COUNT\(\*\), SUM\(dms_srccnt\)", re.I), "counts: staged rows"),
    (
        re.compile(r"^SELECT COUNT\(\*\) FROM \(SELECT \* FROM \S*dim_customer", re.I),
        "counts: current rows met",
    ),
    (re.compile(r"^SELECT COUNT\(\*\) FROM \S*dms_a_", re.I), "check: NULL keys"),
    (re.compile(r"^SELECT dms_act, COUNT", re.I), "action counts"),
    (
        re.compile(r"^UPDATE \S*dim_customer AS T SET CURFLG = 'N'", re.I),
        "apply: close versions (UPDATE FROM)",
    ),
    (re.compile(r"^UPDATE \S*dim_customer AS T", re.I), "apply: update in place (UPDATE FROM)"),
    (re.compile(r"^INSERT INTO \S*dim_customer ", re.I), "apply: insert (INSERT SELECT)"),
    (re.compile(r"^(DROP|CREATE) ", re.I), "DDL (target, work tables)"),
]


def statement_kind(sql: str, kinds=_STATEMENT_KINDS, other="other (metadata, catalog, log)") -> str:
    text = " ".join(sql.split())
    for pattern, kind in kinds:
        if pattern.search(text):
            return kind
    return other


class StatementTimer:
    """Time of each statement run in this process, by kind (the first of `kinds` whose
    pattern the statement matches, else `other`)."""

    def __init__(self, kinds=_STATEMENT_KINDS, other="other (metadata, catalog, log)") -> None:
        self.times: dict[str, list[float]] = {}
        self.kinds, self.other = kinds, other

    def _before(self, conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        conn.info.setdefault("bench_t0", []).append(time.perf_counter())

    def _after(self, conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        t0 = conn.info["bench_t0"].pop()
        kind = statement_kind(statement, self.kinds, self.other)
        self.times.setdefault(kind, []).append(time.perf_counter() - t0)

    def __enter__(self) -> StatementTimer:
        sa.event.listen(sa.engine.Engine, "before_cursor_execute", self._before)
        sa.event.listen(sa.engine.Engine, "after_cursor_execute", self._after)
        return self

    def __exit__(self, *exc) -> None:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", self._before)
        sa.event.remove(sa.engine.Engine, "after_cursor_execute", self._after)


def engine_load(
    label: str, mapping, settings, url: str, chunks: int, rows: int, processes: bool = False
) -> Run:
    """One load() call, timed; plan and run_chunks are wrapped to see where time goes."""
    # the module, not the function of the same name that the package exports
    load_module = importlib.import_module("dms_orchestration.engine.load")

    timing: dict = {}
    real_plan, real_run_chunks = load_module.plan, load_module.run_chunks

    def timed_plan(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return real_plan(*args, **kwargs)
        finally:
            timing["plan"] = time.perf_counter() - t0

    def timed_run_chunks(*args, **kwargs):
        t0 = time.perf_counter()
        results = real_run_chunks(*args, **kwargs)
        timing["chunks"] = time.perf_counter() - t0
        timing["chunk"] = [r.seconds for r in sorted(results, key=lambda r: r.index)]
        return results

    load_module.plan, load_module.run_chunks = timed_plan, timed_run_chunks
    try:
        with StatementTimer() as timer:
            t0 = time.perf_counter()
            result = load_module.load(
                mapping,
                chunks=chunks,
                full=True,
                parallel=True,
                processes=processes,
                settings=settings,
                url=url,
            )
            seconds = time.perf_counter() - t0
    finally:
        load_module.plan, load_module.run_chunks = real_plan, real_run_chunks
    c = result.counts
    counts = dict(
        srcrows=c.srcrows,
        insrows=c.insrows,
        updrows=c.updrows,
        exprows=c.exprows,
        delrows=c.delrows,
        unchrows=c.unchrows,
    )
    return Run(
        label,
        seconds,
        rows,
        counts,
        timing.get("plan", 0.0),
        timing.get("chunks", 0.0),
        timing.get("chunk", []),
        timer.times,
    )


def rebuild_v1(engine: sa.Engine, mapping, settings, url: str) -> None:
    """A target holding version 1, as after last night's load (untimed)."""
    from dms_orchestration.engine import load

    drop_target(engine)
    point_view(engine, "src_customer_v1")
    load(mapping, chunks=1, full=True, settings=settings, url=url)


def delta_run(label, engine, mapping, settings, url, chunks, rows, processes=False) -> Run:
    rebuild_v1(engine, mapping, settings, url)
    point_view(engine, "src_customer_v2")
    vacuum(engine, "dim_customer")
    return engine_load(label, mapping, settings, url, chunks, rows, processes)


def initial_run(label, engine, mapping, settings, url, chunks, rows) -> Run:
    drop_target(engine)
    point_view(engine, "src_customer_v1")
    vacuum(engine, "src_customer_v1")
    return engine_load(label, mapping, settings, url, chunks, rows)


# ---------------------------------------------------------------------- the limit: COPY


def _copy_once(engine: sa.Engine, buffer: io.BytesIO, n: int) -> float:
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("DROP TABLE IF EXISTS copy_target")
        cur.execute("CREATE TABLE copy_target (LIKE src_customer_v1)")  # no index, no PK
        raw.commit()
        cur.execute("CHECKPOINT")
        raw.commit()
        quiesce(engine)
        buffer.seek(0)
        t0 = time.perf_counter()
        cur.copy_expert(f"COPY copy_target ({COLS}) FROM STDIN", buffer)
        raw.commit()
        seconds = time.perf_counter() - t0
        cur.execute("SELECT COUNT(*) FROM copy_target")
        copied = cur.fetchone()[0]
        cur.close()
    finally:
        raw.close()
    assert copied == n, f"COPY wrote {copied} rows, expected {n}"
    return seconds


class CopyLimit:
    """COPY FROM into an empty table, sampled at several moments of the run (before the
    engine loads, between the initial and the delta loads, after them): this VM drifts
    by 10-30% within a run, and a limit measured at one moment would tilt every ratio.
    The limit is the median of the samples."""

    def __init__(self, engine: sa.Engine, n: int) -> None:
        self.engine, self.n = engine, n
        self.buffer = io.BytesIO()
        self.times: list[float] = []
        raw = engine.raw_connection()
        try:
            cur = raw.cursor()
            cur.copy_expert(f"COPY src_customer_v1 ({COLS}) TO STDOUT", self.buffer)
            cur.close()
        finally:
            raw.close()

    def sample(self) -> None:
        self.times.append(_copy_once(self.engine, self.buffer, self.n))

    def run(self) -> Run:
        """The limit, after the last sample (the N rows of text are let go)."""
        self.buffer = io.BytesIO()
        times = sorted(self.times)
        label = (
            f"COPY FROM of the {self.n:,} V1 rows (the limit; median of {len(times)} "
            f"through the run: {times[0]:.2f} .. {times[-1]:.2f} s)"
        )
        return Run(label, times[len(times) // 2], self.n)


# ---------------------------------------------------------------------- the legacy loop


def make_legacy_target(engine: sa.Engine, keys: int) -> None:
    """The first `keys` keys of the V1 target (just rebuilt) in a table of their own."""
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS legacy_dim_customer")
        conn.exec_driver_sql("DROP SEQUENCE IF EXISTS legacy_dim_customer_seq")
        conn.exec_driver_sql(
            "CREATE TABLE legacy_dim_customer WITH (fillfactor = 90) AS "
            f"SELECT * FROM dim_customer WHERE cust_id <= {int(keys)}"
        )
        conn.exec_driver_sql("ALTER TABLE legacy_dim_customer ADD PRIMARY KEY (skey)")
        conn.exec_driver_sql(
            "CREATE UNIQUE INDEX legacy_dim_customer_cur ON legacy_dim_customer (cust_id) "
            "WHERE curflg = 'Y'"
        )
        start = conn.exec_driver_sql("SELECT MAX(skey) FROM dim_customer").scalar() + 1
        conn.exec_driver_sql(f"CREATE SEQUENCE legacy_dim_customer_seq START WITH {int(start)}")
    vacuum(engine, "legacy_dim_customer")


def legacy_run(engine: sa.Engine, keys: int, hash_types: list[tuple[str, int | None]]) -> Run:
    """The old algorithm: row by row, a SELECT and a Python MD5 per source row."""
    import psycopg2

    from dms_orchestration.db.rowhash import row_hash

    u = engine.url
    conn = psycopg2.connect(
        host=u.host or "127.0.0.1",
        port=u.port or 5432,
        user=u.username,
        password=u.password,
        dbname=u.database,
    )
    conn.autocommit = False
    cur = conn.cursor()
    counts = dict(srcrows=0, insrows=0, updrows=0, exprows=0, delrows=0, unchrows=0)
    scd2 = [i for i, c in enumerate(COLUMNS[1:]) if c[3] == 2]
    tracked = ", ".join(c[0].lower() for c in COLUMNS[1:])
    now = datetime.now().replace(microsecond=0)
    t0 = time.perf_counter()
    cur.execute(f"SELECT {COLS} FROM src_customer_v2 WHERE cust_id <= %s ORDER BY cust_id", (keys,))
    source = cur.fetchall()
    insert = (
        f"INSERT INTO legacy_dim_customer (skey, {COLS}, rwhkey, reccrdt, recupdt, curflg, "
        f"vldfrm, vldto) VALUES (nextval('legacy_dim_customer_seq'), "
        f"{', '.join(['%s'] * len(COLUMNS))}, %s, %s, %s, 'Y', %s, NULL)"
    )
    for row in source:
        counts["srcrows"] += 1
        key, values = row[0], row[1:]
        new_hash = row_hash(values, hash_types)
        cur.execute(
            f"SELECT skey, rwhkey, {tracked} FROM legacy_dim_customer "
            "WHERE cust_id = %s AND curflg = 'Y'",
            (key,),
        )
        current = cur.fetchone()
        if current is None:
            cur.execute(insert, (*row, new_hash, now, now, now))
            counts["insrows"] += 1
        elif current[1] == new_hash:
            counts["unchrows"] += 1
        elif any(values[i] != current[2 + i] for i in scd2):
            cur.execute(
                "UPDATE legacy_dim_customer SET curflg = 'N', vldto = %s, recupdt = %s "
                "WHERE skey = %s",
                (now, now, current[0]),
            )
            cur.execute(insert, (*row, new_hash, now, now, now))
            counts["exprows"] += 1
            counts["insrows"] += 1
        else:
            sets = ", ".join(f"{c[0].lower()} = %s" for c in COLUMNS[1:] if c[3] == 1)
            scd1 = [values[i] for i, c in enumerate(COLUMNS[1:]) if c[3] == 1]
            cur.execute(
                f"UPDATE legacy_dim_customer SET {sets}, rwhkey = %s, recupdt = %s WHERE skey = %s",
                (*scd1, new_hash, now, current[0]),
            )
            counts["updrows"] += 1
    conn.commit()
    seconds = time.perf_counter() - t0
    conn.close()
    return Run(
        f"legacy row-by-row loop, first {keys:,} keys of V2 ({u.host})",
        seconds,
        counts["srcrows"],
        counts,
    )


# ---------------------------------------------------------------------- peak RSS


def _vm_kb(field: str) -> int:
    """A memory figure of this process from /proc/self/status (VmRSS now, VmHWM peak)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_child(url: str, mapref: str) -> None:
    """Run in a fresh process: one cross-database load; print peak RSS as JSON."""
    from dms_orchestration.db.connect import create_engine
    from dms_orchestration.engine import load
    from dms_orchestration.metadata.catalog import load_catalog
    from dms_orchestration.settings import load_settings

    settings = load_settings(url)
    engine = create_engine(url)
    mapping = load_catalog(engine).mappings[mapref]
    engine.dispose()
    before = _vm_kb("VmRSS")
    t0 = time.perf_counter()
    result = load(mapping, chunks=1, full=True, settings=settings, url=url)
    seconds = time.perf_counter() - t0
    # the peak of this process's own memory since its exec: getrusage's ru_maxrss also
    # keeps the forked parent's (the benchmark's) size from before the exec
    peak = _vm_kb("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "peak_kb": peak,
                "before_kb": before,
                "seconds": seconds,
                "insrows": result.counts.insrows,
            }
        )
    )


@dataclass
class RssResult:
    rows: int
    peak_kb: int = 0
    before_kb: int = 0
    seconds: float = 0.0
    loaded: int = 0
    error: str | None = None


class RssTarget:
    """Where the cross-database loads write: a second PostgreSQL database on the same
    server (default) or a SQLite file."""

    def __init__(self, kind: str, engine: sa.Engine, home: Path, server) -> None:  # noqa: ANN001
        self.kind = kind
        self.home = home
        self.engine: sa.Engine | None = None
        self.created_db: str | None = None
        if kind == "sqlite":
            self.connection = {"type": "SQLITE", "database": str(home / "rss_target.db")}
            return
        name = f"{engine.url.database}_rss_target"
        if server is not None:
            url = server.create_database(name)
        else:
            with engine.connect() as conn:
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
            url = engine.url.set(database=name).render_as_string(hide_password=False)
            self.created_db = name
        from dms_orchestration.db.connect import create_engine

        self.engine = create_engine(url)
        self.connection = {"type": "POSTGRESQL", "url": connection_url(url)}

    @property
    def description(self) -> str:
        if self.kind == "sqlite":
            return "a SQLite file"
        return f"PostgreSQL database {self.engine.url.database} on the same server"

    def reset(self, n: int) -> None:
        if self.kind == "sqlite":
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.home / 'rss_target.db'}{suffix}").unlink(missing_ok=True)
            (self.home / "rss_target.db").touch()  # an empty database: a target must exist
            return
        with self.engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS dim_customer_x{n}")
            conn.exec_driver_sql(f"DROP SEQUENCE IF EXISTS dim_customer_x{n}_seq")

    def close(self, source: sa.Engine) -> None:
        if self.engine is not None:
            self.engine.dispose()
        if self.created_db:
            with source.connect() as conn:
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{self.created_db}"')


def rss_run(engine: sa.Engine, url: str, target: RssTarget, n: int) -> RssResult:
    table = f"rss_src_{n}"
    with engine.begin() as conn:
        _create_source(conn, table)
        _insert_customers(conn, table, 1, n)
        conn.exec_driver_sql(f"ALTER TABLE {table} ADD PRIMARY KEY (cust_id)")
    vacuum(engine, table)
    target.reset(n)
    try:
        out = subprocess.run(
            [sys.executable, __file__, "--rss-child", f"{MAPREF}_X{n}", "--url", url],
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode != 0:
            lines = [line for line in out.stderr.strip().splitlines() if line.strip()]
            error = next(
                (ln for ln in reversed(lines) if "Error" in ln), lines[-1] if lines else ""
            )
            return RssResult(n, error=f"child exited {out.returncode}: {error.strip()[:300]}")
        data = json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
        target.reset(n)
    return RssResult(n, data["peak_kb"], data["before_kb"], data["seconds"], data["insrows"])


# ---------------------------------------------------------------------- output


def table(headers: list[str], rows: list[list[str]], left: int = 1) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i < left else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    print(line(headers))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(line(r))


def verdict(value: float, bound: float, at_most: bool) -> str:
    ok = value <= bound if at_most else value >= bound
    return "PASS" if ok else "MISS"


def report(
    n: int,
    server_info: str,
    initial: list[Run],
    delta: list[Run],
    copy: Run,
    legacy: Run,
    rss: list[RssResult],
    rss_target: str,
    expected: dict[str, int],
) -> None:
    print(f"\nSCD load benchmark: DIM_CUSTOMER, N = {n:,} rows, {server_info}")
    print(
        "delta = V2 over a V1 target: 10% SCD2 changes, 5% SCD1-only, 2% new keys, "
        "1% absent (EXPIRE), full=True\n"
    )
    rows = []
    for r in [*initial, *delta, copy, legacy]:
        rows.append(
            [
                r.label,
                f"{r.rows:,}",
                f"{r.seconds:.2f}",
                f"{r.rate:,.0f}",
                f"{r.seconds / copy.seconds:.2f}x" if r is not legacy else "-",
            ]
        )
    table(["load", "source rows", "seconds", "rows/s", "time / COPY"], rows)

    print(
        "\nCounts (expected for the delta: "
        + ", ".join(f"{k[:-4].upper()} {v:,}" for k, v in expected.items())
        + ")"
    )
    rows = []
    for r in [*initial, *delta, legacy]:
        c = r.counts
        ok = ""
        if r in delta:
            ok = "exact" if c == expected else "DIFFERS"
        rows.append(
            [r.label]
            + [
                f"{c[k]:,}"
                for k in ("srcrows", "insrows", "updrows", "exprows", "delrows", "unchrows")
            ]
            + [ok]
        )
    table(["load", "SRC", "INS", "UPD", "EXP", "DEL", "UNCH", "check"], rows)

    print("\nWhere the engine's time goes (seconds)")
    rows = []
    for r in [*initial, *delta]:
        rest = r.seconds - r.plan_s - r.chunks_s
        spawn = r.chunks_s - max(r.chunk_s) if r.chunk_s else 0.0
        rows.append(
            [
                r.label,
                f"{r.plan_s:.2f}",
                f"{r.chunks_s:.2f}",
                " / ".join(f"{s:.2f}" for s in r.chunk_s),
                f"{spawn:.2f}" if len(r.chunk_s) > 1 else "-",
                f"{rest:.2f}",
            ]
        )
    table(
        ["load", "plan", "chunks (wall)", "each chunk", "process start etc.", "commit"],
        rows,
    )
    for r in [*initial, *delta]:
        if len(r.chunk_s) != 1:
            continue
        print(f"\n  statements of '{r.label}' (run in this process):")
        ranked = sorted(r.statements.items(), key=lambda kv: -sum(kv[1]))
        for kind, times in ranked:
            if sum(times) < 0.005:
                continue
            print(f"    {sum(times):7.2f} s  {len(times):4d}x  {kind}")

    threads = [r for r in delta if "processes" not in r.label]
    d1 = next(r for r in threads if r.chunk_s and len(r.chunk_s) == 1)
    d2 = next((r for r in threads if len(r.chunk_s) == 2), None)
    processes = next((r for r in delta if "processes" in r.label), None)
    i1 = next(r for r in initial if len(r.chunk_s) == 1)
    i2 = next((r for r in initial if len(r.chunk_s) == 2), None)
    print("\nRatios and the issue's targets")
    rows = []

    def add(name: str, value: float, target: str = "-", result: str = "") -> None:
        rows.append([name, f"{value:.2f}x", target, result])

    def at_most(name: str, run: Run | None, bound: float) -> None:
        if run:
            ratio = run.seconds / copy.seconds
            add(f"{name} / COPY", ratio, f"<= {bound}x", verdict(ratio, bound, True))

    def at_least(name: str, run: Run | None) -> None:
        if run:
            ratio = run.rate / legacy.rate
            add(name, ratio, f">= {TARGET_LEGACY:.0f}x", verdict(ratio, TARGET_LEGACY, False))

    # the initial load is one run at the default chunk count (2 at 1M rows); one
    # chunk is one INSERT ... SELECT, which PostgreSQL 15 runs on one core: shown, no target
    at_most("initial (2 chunks, the default at 1M rows)", i2, TARGET_INITIAL)
    add("initial (1 chunk: one transaction, one core) / COPY", i1.seconds / copy.seconds)
    at_most("delta (1 chunk)", d1, TARGET_DELTA_1)
    at_most("delta (2 chunks)", d2, TARGET_DELTA_2)
    at_most("delta (2 chunks, processes)", processes, TARGET_DELTA_2)
    for r in threads:
        if len(r.chunk_s) > 2:
            add(f"delta ({len(r.chunk_s)} chunks) / COPY", r.seconds / copy.seconds)
    at_least("engine delta rows/s (1 chunk) / legacy rows/s", d1)
    at_least("engine delta rows/s (2 chunks) / legacy rows/s", d2)
    if d2:
        add("delta time 1 chunk / 2 chunks", d1.seconds / d2.seconds)
    if i2:
        add("initial time 1 chunk / 2 chunks", i1.seconds / i2.seconds)
    table(["ratio", "measured", "target", "result"], rows)

    if rss:
        print(
            f"\nPeak RSS of the cross-database path (PostgreSQL source -> {rss_target}, rows "
            "streamed in batches of BLKPRCROWS; each load a fresh process, initial load, 1 chunk)"
        )
        rows = [
            [f"{r.rows:,} rows", "FAILED", "-", "-", "-", "-"]
            if r.error
            else [
                f"{r.rows:,} rows",
                f"{r.peak_kb / 1024:,.1f}",
                f"{r.before_kb / 1024:,.1f}",
                f"{(r.peak_kb - r.before_kb) / 1024:,.1f}",
                f"{r.seconds:.1f}",
                f"{r.loaded:,}",
            ]
            for r in rss
        ]
        table(
            ["load", "peak RSS MB", "RSS before load MB", "growth MB", "seconds", "rows loaded"],
            rows,
        )
        for r in rss:
            if r.error:
                print(f"  {r.rows:,} rows FAILED: {r.error}")
        ok = [r for r in rss if not r.error]
        if len(ok) >= 2:
            small, large = ok[0], ok[-1]
            ratio = large.peak_kb / small.peak_kb
            print()
            table(
                ["ratio", "measured", "target", "result"],
                [
                    [
                        f"peak RSS {large.rows:,} / {small.rows:,} rows",
                        f"{ratio:.2f}x",
                        f"same (<= {RSS_TOLERANCE:.2f}x)",
                        verdict(ratio, RSS_TOLERANCE, True),
                    ]
                ],
            )
        elif len(rss) >= 2:
            print("\npeak RSS ratio: MISS (a cross-database load failed)")


# ---------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", help="an empty scratch PostgreSQL database; default: throw-away")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--legacy-rows", type=int, default=100_000)
    ap.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs of each engine load (median); COPY: up to 3 samples through the run",
    )
    ap.add_argument("--rss-rows", default="1000000,4000000")
    ap.add_argument("--skip-rss", action="store_true")
    ap.add_argument(
        "--rss-target",
        choices=["postgresql", "sqlite"],
        default="postgresql",
        help="target of the cross-database loads: a second PostgreSQL database or a SQLite file",
    )
    ap.add_argument("--rss-child", metavar="MAPREF", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_child:
        rss_child(args.url, args.rss_child)
        return

    from dms_orchestration.db.connect import create_engine
    from dms_orchestration.db.ddl import init_schema
    from dms_orchestration.engine.spec import load_spec
    from dms_orchestration.metadata.authoring import import_mapping_file
    from dms_orchestration.metadata.catalog import load_catalog
    from dms_orchestration.metadata.mapping_file import parse_mapping_file
    from dms_orchestration.settings import load_settings

    n = args.rows
    legacy_keys = min(args.legacy_rows, n)
    rss_rows = [] if args.skip_rss else [int(x) for x in args.rss_rows.split(",") if x.strip()]
    server = None
    url = args.url
    home = Path(tempfile.mkdtemp(prefix="dms-bench-scd-"))
    # chunk processes read their settings from the environment: make it ours
    for name in ("DMS_DATABASE_URL", "DB_TYPE", "DMS_SCHEMA", "CDR_SCHEMA", "DMS_TIMEZONE"):
        os.environ.pop(name, None)
    os.environ["DMS_HOME"] = str(home)
    if not url:
        from dms_orchestration_tests.pg_server import PostgresServer

        server = PostgresServer(durable=True).start()
        url = server.create_database("bench_scd")
    engine = create_engine(url)
    rss_target = None
    try:
        settings = load_settings(url=url, env={"DMS_HOME": str(home)})
        with engine.connect() as conn:
            version = conn.exec_driver_sql("SHOW server_version").scalar()
        server_info = (
            f"PostgreSQL {version} "
            f"({'throw-away server, default settings' if server else 'given --url'}), "
            f"{os.cpu_count()} CPUs"
        )
        init_schema(engine)
        rss_target = RssTarget(args.rss_target, engine, home, server)
        text = mapping_file(connection_url(url), rss_rows, rss_target.connection)
        import_mapping_file(engine, parse_mapping_file(text))
        mapping = load_catalog(engine).mappings[MAPREF]
        hash_types = [c.hash_type for c in load_spec(mapping, "postgresql").columns]

        t0 = time.perf_counter()
        generate(engine, n)
        print(f"generated V1 ({n:,} rows) and V2 in {time.perf_counter() - t0:.1f} s", flush=True)
        expected = expected_delta(n)
        common = (engine, mapping, settings, url)

        def step(make, repeat: int = args.repeat) -> Run:
            """The median of `repeat` runs of make() (this VM varies 10-25% run to run)."""
            runs = sorted((make() for _ in range(repeat)), key=lambda r: r.seconds)
            run = runs[len(runs) // 2]
            if repeat > 1:
                run.label += (
                    f" [median of {repeat}: {runs[0].seconds:.2f} .. {runs[-1].seconds:.2f} s]"
                )
            return logged(run)

        def logged(run: Run) -> Run:
            load_avg = os.getloadavg()[0]
            loads.append(load_avg)
            print(f"  {run.label}: {run.seconds:.2f} s (load average {load_avg:.1f})", flush=True)
            return run

        loads: list[float] = []

        initial, delta = [], []
        src_rows = expected["srcrows"]
        limit = CopyLimit(engine, n)
        if args.repeat > 1:
            limit.sample()
        for chunks in (1, 2):
            label = f"engine initial load of V1, {chunks} chunk" + (
                "s (parallel)" if chunks > 1 else ""
            )
            initial.append(step(lambda label=label, c=chunks: initial_run(label, *common, c, n)))
        if args.repeat > 2:
            limit.sample()
        for chunks in (1, 2, 4):
            label = f"engine delta load of V2, {chunks} chunk" + (
                "s (parallel)" if chunks > 1 else ""
            )
            delta.append(step(lambda label=label, c=chunks: delta_run(label, *common, c, src_rows)))
        label = "engine delta load of V2, 2 chunks (parallel processes)"
        delta.append(step(lambda: delta_run(label, *common, 2, src_rows, processes=True)))
        rebuild_v1(*common)
        make_legacy_target(engine, legacy_keys)  # from a V1 target
        limit.sample()
        copy = logged(limit.run())
        quiesce(engine)
        legacy = logged(legacy_run(engine, legacy_keys, hash_types))
        rss = []
        for rows in rss_rows:
            r = rss_run(engine, url, rss_target, rows)
            print(
                f"  cross-database load of {rows:,} rows: "
                + (r.error or f"peak RSS {r.peak_kb / 1024:.1f} MB, {r.seconds:.1f} s"),
                flush=True,
            )
            rss.append(r)
        server_info += (
            f"\n1-minute load average after each timed step {min(loads):.1f} .. {max(loads):.1f}"
            " (the benchmark itself makes about 1-2; more: other processes took CPU time)"
        )
        report(n, server_info, initial, delta, copy, legacy, rss, rss_target.description, expected)
    finally:
        try:
            if rss_target is not None:
                rss_target.close(engine)
            if server is None:
                with engine.begin() as conn:
                    for name in [*TABLES, "dim_customer"]:
                        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name} CASCADE")
                    conn.exec_driver_sql("DROP VIEW IF EXISTS src_customer")
                    conn.exec_driver_sql("DROP SEQUENCE IF EXISTS dim_customer_seq")
        finally:
            engine.dispose()
            if server is not None:
                server.stop()


if __name__ == "__main__":
    main()
