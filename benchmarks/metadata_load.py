"""Benchmark: read the whole catalog (load_catalog) for many mappings on PostgreSQL.

    python benchmarks/metadata_load.py [--url URL] [--mappings 2000] [--columns 30]

Without --url a throw-away PostgreSQL server is started (as in the tests). Prints the
time and the number of queries of load_catalog, side by side with a baseline run in the
same process: the naive reader that queries each mapping's rows separately.
"""

from __future__ import annotations

import argparse
import statistics
import time

import sqlalchemy as sa

from dms_orchestration.db import schema as s
from dms_orchestration.db.connect import create_engine
from dms_orchestration.db.ddl import init_schema
from dms_orchestration.metadata.catalog import load_catalog


def generate(engine: sa.Engine, n_mappings: int, n_columns: int) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.insert(s.dms_dbcondtls),
            [dict(conid=1, connm="SRC", dbtyp="POSTGRESQL", dbhost="h", dbnm="src", curflg="Y")],
        )
        conn.execute(
            sa.insert(s.dms_maprsql),
            [
                dict(
                    maprsqlid=i,
                    maprsqlcd=f"Q{i}",
                    maprsql=f"SELECT * FROM SRC_{i}",
                    sqlconid=1,
                    curflg="Y",
                )
                for i in range(n_mappings)
            ],
        )
        conn.execute(
            sa.insert(s.dms_mapr),
            [
                dict(
                    mapid=i,
                    mapref=f"MAP_{i:05d}",
                    trgtbnm=f"T_{i}",
                    trgschm="dw",
                    trgtbtyp="DIMENSION",
                    maprsqlcd=f"Q{i}",
                    curflg="Y",
                )
                for i in range(n_mappings)
            ],
        )
        conn.execute(
            sa.insert(s.dms_maprdtl),
            [
                dict(
                    mapdtlid=i * n_columns + j,
                    mapref=f"MAP_{i:05d}",
                    trgclnm=f"COL_{j}",
                    trgcldtyp="VARCHAR(100)",
                    trgkeyflg="Y" if j == 0 else "N",
                    trgkeyseq=1 if j == 0 else None,
                    maplogic=f"SRC.COL_{j}",
                    excseq=j,
                    scdtyp="2" if j % 3 else "1",
                    curflg="Y",
                )
                for i in range(n_mappings)
                for j in range(n_columns)
            ],
        )
        conn.execute(
            sa.insert(s.dms_job),
            [
                dict(jobid=i, mapref=f"MAP_{i:05d}", stflg="A", curflg="Y")
                for i in range(n_mappings)
            ],
        )
        conn.execute(
            sa.insert(s.dms_jobsch),
            [
                dict(
                    jobschid=i,
                    jobid=i,
                    mapref=f"MAP_{i:05d}",
                    frqcd="DL",
                    frqhh=i % 24,
                    frqmi=0,
                    enableflg="Y",
                    curflg="Y",
                )
                for i in range(n_mappings)
            ],
        )


def naive_load(engine: sa.Engine) -> int:
    """The baseline: one query for the mapping list, then queries per mapping."""
    with engine.connect() as conn:
        maps = conn.execute(sa.select(s.dms_mapr).where(s.dms_mapr.c.curflg == "Y")).all()
        for m in maps:
            conn.execute(
                sa.select(s.dms_maprdtl).where(
                    s.dms_maprdtl.c.mapref == m.mapref, s.dms_maprdtl.c.curflg == "Y"
                )
            ).all()
            conn.execute(
                sa.select(s.dms_maprsql).where(
                    s.dms_maprsql.c.maprsqlcd == m.maprsqlcd, s.dms_maprsql.c.curflg == "Y"
                )
            ).all()
            conn.execute(sa.select(s.dms_job).where(s.dms_job.c.mapref == m.mapref)).all()
            conn.execute(sa.select(s.dms_jobsch).where(s.dms_jobsch.c.mapref == m.mapref)).all()
    return len(maps)


def measure(engine: sa.Engine, fn, repeat: int) -> tuple[float, int]:
    queries = 0

    def count(*_a):
        nonlocal queries
        queries += 1

    sa.event.listen(engine, "before_cursor_execute", count)
    times = []
    try:
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn(engine)
            times.append(time.perf_counter() - t0)
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    return statistics.median(times), queries // repeat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url")
    ap.add_argument("--mappings", type=int, default=2000)
    ap.add_argument("--columns", type=int, default=30)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    server = None
    url = args.url
    if not url:
        from dms_orchestration_tests.pg_server import PostgresServer

        server = PostgresServer().start()
        url = server.create_database("bench_metadata")
    try:
        engine = create_engine(url)
        init_schema(engine)
        generate(engine, args.mappings, args.columns)
        load_catalog(engine)  # warm up
        t_cat, q_cat = measure(engine, lambda e: load_catalog(e), args.repeat)
        t_naive, q_naive = measure(engine, naive_load, 1)
        print(
            f"{args.mappings} mappings x {args.columns} columns on "
            f"{engine.dialect.name} (median of {args.repeat})"
        )
        print(f"{'reader':<34}{'seconds':>10}{'queries':>10}")
        print(f"{'load_catalog (fixed queries)':<34}{t_cat:>10.3f}{q_cat:>10}")
        print(f"{'baseline: queries per mapping':<34}{t_naive:>10.3f}{q_naive:>10}")
        print(
            f"ratio baseline/load_catalog: time {t_naive / t_cat:.1f}x, "
            f"queries {q_naive / q_cat:.0f}x"
        )
    finally:
        if server:
            server.stop()


if __name__ == "__main__":
    main()
