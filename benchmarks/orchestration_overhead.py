"""Benchmark: a 1M-row delta load through Dagster (4 chunk steps) vs the engine alone
(4 chunks in parallel processes), side by side in one run: the orchestration overhead.

    python benchmarks/orchestration_overhead.py [--url URL] [--rows 1000000] [--chunks 4]

Uses the data set of benchmarks/scd_load.py (DIM_CUSTOMER, version 2 over version 1).
The Dagster run is `dagster job execute` of dim_customer_job (multiprocess executor, the
pool limit raised to the chunk count) with the tags dms/chunks and dms/full.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scd_load import (  # noqa: E402
    MAPREF,
    generate,
    mapping_file,
    point_view,
    rebuild_v1,
    vacuum,
)

from dms_orchestration.db.connect import create_engine  # noqa: E402
from dms_orchestration.db.ddl import init_schema  # noqa: E402
from dms_orchestration.engine import load  # noqa: E402
from dms_orchestration.metadata.authoring import import_mapping_file  # noqa: E402
from dms_orchestration.metadata.catalog import load_catalog  # noqa: E402
from dms_orchestration.metadata.mapping_file import parse_mapping_file  # noqa: E402
from dms_orchestration.settings import load_settings  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--chunks", type=int, default=4)
    args = ap.parse_args()
    server = None
    url = args.url
    if not url:
        from dms_orchestration_tests.pg_server import PostgresServer

        server = PostgresServer().start()
        url = server.create_database("bench_overhead")
    home = Path(tempfile.mkdtemp(prefix="dms-bench-"))
    try:
        engine = create_engine(url)
        init_schema(engine)
        generate(engine, args.rows)
        doc = mapping_file(url, [], {"type": "SQLITE", "database": str(home / "unused.db")})
        import_mapping_file(engine, parse_mapping_file(doc))
        with engine.begin() as conn:  # a job for the mapping, so Dagster has dim_customer_job
            conn.exec_driver_sql(
                "INSERT INTO DMS_JOB (JOBID, MAPREF, STFLG, CURFLG) "
                "VALUES (990001, 'DIM_CUSTOMER', 'A', 'Y')"
            )
        settings = load_settings(url, env={"DMS_HOME": str(home)})
        mapping = load_catalog(engine).mappings[MAPREF]

        rebuild_v1(engine, mapping, settings, url)
        point_view(engine, "src_customer_v2")
        vacuum(engine, "dim_customer")
        t0 = time.perf_counter()
        result = load(
            mapping, chunks=args.chunks, full=True, parallel=True, settings=settings, url=url
        )
        engine_s = time.perf_counter() - t0

        rebuild_v1(engine, mapping, settings, url)
        point_view(engine, "src_customer_v2")
        vacuum(engine, "dim_customer")
        dagster_home = home / "dagster"
        dagster_home.mkdir()
        config = yaml.safe_load((REPO / "dagster.yaml").read_text())
        config["concurrency"]["pools"]["default_limit"] = args.chunks
        (dagster_home / "dagster.yaml").write_text(yaml.safe_dump(config))
        env = {
            **os.environ,
            "DAGSTER_HOME": str(dagster_home),
            "DMS_DATABASE_URL": url,
            "DMS_HOME": str(home),
        }
        tags = json.dumps({"dms/chunks": str(args.chunks), "dms/full": "true"})
        dagster = str(Path(sys.executable).parent / "dagster")
        t0 = time.perf_counter()
        done = subprocess.run(
            [
                dagster,
                "job",
                "execute",
                "-m",
                "dms_orchestration.definitions",
                "-a",
                "defs",
                "-j",
                "dim_customer_job",
                "--tags",
                tags,
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
        )
        dagster_s = time.perf_counter() - t0
        if done.returncode != 0:
            print(done.stdout[-3000:], done.stderr[-3000:])
            raise SystemExit("the Dagster run failed")
        with engine.connect() as conn:
            counts = conn.exec_driver_sql(
                "SELECT SRCROWS, INSROWS, UPDROWS, EXPROWS, UNCHROWS FROM DMS_JOBLOG "
                "WHERE CHUNKNO IS NULL ORDER BY JOBLOGID DESC LIMIT 1"
            ).one()
        c = result.counts
        print(f"delta load of {args.rows:,} rows, {args.chunks} chunks, PostgreSQL")
        print(f"{'how':<52}{'seconds':>9}  counts (SRC/INS/UPD/EXP/UNCH)")
        print(
            f"{'engine alone (load(), chunks in parallel)':<52}{engine_s:>9.2f}  "
            f"{c.srcrows}/{c.insrows}/{c.updrows}/{c.exprows}/{c.unchrows}"
        )
        print(
            f"{'through Dagster (dagster job execute, 4 steps)':<52}{dagster_s:>9.2f}  "
            f"{'/'.join(str(v) for v in counts)}"
        )
        print(
            f"orchestration overhead: Dagster / engine = {dagster_s / engine_s:.2f}x "
            f"(+{dagster_s - engine_s:.1f} s: process start-up, step processes, event log)"
        )
    finally:
        if server:
            server.stop()


if __name__ == "__main__":
    main()
