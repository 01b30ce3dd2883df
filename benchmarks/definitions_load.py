"""Benchmark: build the Dagster definitions for many mappings with schedules.

    python benchmarks/definitions_load.py [--url URL] [--mappings 2000] [--columns 30]

Without --url a throw-away PostgreSQL server is started. Prints, side by side: the
metadata read alone (load_catalog), the whole code-location load (definitions(), one
metadata read) and a reconstruction from the reconstruction metadata (what a run
worker or step process does: no metadata query), with seconds and query counts.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import sqlalchemy as sa
from dagster._core.definitions.definitions_load_context import (
    DefinitionsLoadContext,
    DefinitionsLoadType,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from metadata_load import generate  # noqa: E402

from dms_orchestration.db.connect import metadata_engine  # noqa: E402
from dms_orchestration.db.ddl import init_schema  # noqa: E402
from dms_orchestration.definitions import CATALOG_KEY, definitions  # noqa: E402
from dms_orchestration.metadata.catalog import load_catalog  # noqa: E402
from dms_orchestration.settings import load_settings  # noqa: E402


def timed(engine: sa.Engine, fn) -> tuple[float, int, object]:
    queries = 0

    def count(*_a):
        nonlocal queries
        queries += 1

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        t0 = time.perf_counter()
        value = fn()
        return time.perf_counter() - t0, queries, value
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url")
    ap.add_argument("--mappings", type=int, default=2000)
    ap.add_argument("--columns", type=int, default=30)
    args = ap.parse_args()
    server = None
    url = args.url
    if not url:
        from dms_orchestration_tests.pg_server import PostgresServer

        server = PostgresServer().start()
        url = server.create_database("bench_definitions")
    try:
        settings = load_settings(url, env={"DMS_HOME": "/tmp/dms-bench-home"})
        engine = metadata_engine(settings)
        init_schema(engine)
        generate(engine, args.mappings, args.columns)
        t_cat, q_cat, _ = timed(engine, lambda: load_catalog(engine))
        t_defs, q_defs, defs = timed(engine, lambda: definitions(settings))
        repo = defs.get_repository_def()
        counts = (len(list(repo.asset_graph.asset_nodes)), len(repo.get_all_jobs()),
                  len(repo.schedule_defs), len(repo.sensor_defs))
        metadata = {CATALOG_KEY: defs.metadata[CATALOG_KEY].value}

        def reconstruct():
            context = DefinitionsLoadContext(
                load_type=DefinitionsLoadType.RECONSTRUCTION, repository_load_data=None)
            context.__dict__["reconstruction_metadata"] = metadata
            with DefinitionsLoadContext.scoped(context):
                return definitions(settings)

        t_rec, q_rec, _ = timed(engine, reconstruct)
        print(f"{args.mappings} mappings x {args.columns} columns, each with a job and a "
              f"schedule, on {engine.dialect.name}")
        print(f"definitions: {counts[0]} assets, {counts[1]} jobs, {counts[2]} schedules, "
              f"{counts[3]} sensors")
        print(f"{'step':<44}{'seconds':>9}{'metadata queries':>18}")
        print(f"{'metadata read (load_catalog)':<44}{t_cat:>9.2f}{q_cat:>18}")
        print(f"{'code-location load (definitions())':<44}{t_defs:>9.2f}{q_defs:>18}")
        print(f"{'reconstruction (run worker / step process)':<44}{t_rec:>9.2f}{q_rec:>18}")
        print(f"target: code-location load under 10 s with one metadata read: "
              f"{'PASS' if t_defs < 10 and q_defs <= 9 else 'MISS'}")
    finally:
        if server:
            server.stop()


if __name__ == "__main__":
    main()
