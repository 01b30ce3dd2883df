"""Benchmark: build the Dagster definitions for many mappings with schedules.

    python benchmarks/definitions_load.py [--url URL] [--mappings 2000] [--columns 30]

Without --url a throw-away PostgreSQL server is started. Prints, side by side: the
metadata read alone (load_catalog), the whole code-location load (definitions(), one
metadata read), Dagster's validation of it (the repository, and every job resolved, as a
code server does before it serves the location) and a reconstruction from the
reconstruction metadata (what a run worker or step process does: no metadata query),
with seconds and query counts.

The reconstruction follows Dagster's own path: the code-server load runs in an
INITIALIZATION DefinitionsLoadContext, whose pending reconstruction metadata becomes the
repository's RepositoryLoadData (replace_repository_load_data, as
initialize_repository_def_from_pointer does). That load data is serialized and read back
(it reaches a run worker serialized), reconstruct_repository_def_from_pointer loads the
module named in workspace.yaml with it, and the run worker resolves its one job.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import sqlalchemy as sa
from dagster._core.code_pointer import CodePointer
from dagster._core.definitions.definitions_load_context import (
    DefinitionsLoadContext,
    DefinitionsLoadType,
)
from dagster._core.definitions.reconstruct import reconstruct_repository_def_from_pointer
from dagster._core.definitions.repository_definition import RepositoryLoadData
from dagster._serdes import deserialize_value, serialize_value

sys.path.insert(0, str(Path(__file__).resolve().parent))
from metadata_load import generate  # noqa: E402

from dms_orchestration.db.connect import metadata_engine  # noqa: E402
from dms_orchestration.db.ddl import init_schema  # noqa: E402
from dms_orchestration.definitions import CATALOG_KEY, definitions  # noqa: E402
from dms_orchestration.metadata.catalog import load_catalog  # noqa: E402
from dms_orchestration.settings import load_settings  # noqa: E402

HOME = "/tmp/dms-bench-home"
MODULE = "dms_orchestration.definitions"  # workspace.yaml


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


@contextmanager
def run_worker_environment(url: str):
    """A run worker's environment: the metadata database named by DMS_DATABASE_URL."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("DMS_", "DB_", "CDR_"))}
    env = {**keep, "DMS_DATABASE_URL": url, "DMS_HOME": HOME}
    with mock.patch.dict(os.environ, env, clear=True):
        yield


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
        settings = load_settings(url, env={"DMS_HOME": HOME})
        engine = metadata_engine(settings)
        init_schema(engine)
        generate(engine, args.mappings, args.columns)
        t_cat, q_cat, _ = timed(engine, lambda: load_catalog(engine))

        # the code server: an INITIALIZATION context collects the reconstruction metadata
        initial = DefinitionsLoadContext(load_type=DefinitionsLoadType.INITIALIZATION)
        with DefinitionsLoadContext.scoped(initial):
            t_defs, q_defs, defs = timed(engine, lambda: definitions(settings))
            t_repo, q_repo, repo = timed(
                engine,
                lambda: defs.get_repository_def().replace_repository_load_data(
                    initial.get_pending_reconstruction_metadata(),
                    initial.accessed_defs_state_info,
                ),
            )
            t_jobs, q_jobs, jobs = timed(engine, repo.get_all_jobs)
        counts = (
            len(list(repo.asset_graph.asset_nodes)),
            len(jobs),
            len(repo.schedule_defs),
            len(repo.sensor_defs),
        )
        load_data = repo.repository_load_data
        assert load_data and CATALOG_KEY in load_data.reconstruction_metadata, (
            "the code-server load left no catalog for run workers"
        )
        load_data = deserialize_value(serialize_value(load_data), RepositoryLoadData)
        job = next(j.name for j in jobs if "dms/mapref" in j.tags)
        pointer = CodePointer.from_module(MODULE, "defs", None)

        def reconstruct():
            # a run worker: the code location's module with the load data, then its job
            return reconstruct_repository_def_from_pointer(pointer, load_data).get_job(job)

        # scoped: reconstruct_repository_def_from_pointer installs its context globally
        with run_worker_environment(url), DefinitionsLoadContext.scoped(initial):
            assert metadata_engine(load_settings()) is engine, "not the benchmark's database"
            t_rec, q_rec, _ = timed(engine, reconstruct)

        print(
            f"{args.mappings} mappings x {args.columns} columns, each with a job and a "
            f"schedule, on {engine.dialect.name}"
        )
        print(
            f"definitions: {counts[0]} assets, {counts[1]} jobs, {counts[2]} schedules, "
            f"{counts[3]} sensors"
        )
        print(f"{'step':<44}{'seconds':>9}{'metadata queries':>18}")
        print(f"{'metadata read (load_catalog)':<44}{t_cat:>9.2f}{q_cat:>18}")
        print(f"{'code-location load (definitions())':<44}{t_defs:>9.2f}{q_defs:>18}")
        print(f"{'  + repository (get_repository_def)':<44}{t_repo:>9.2f}{q_repo:>18}")
        print(f"{'  + every job resolved (get_all_jobs)':<44}{t_jobs:>9.2f}{q_jobs:>18}")
        print(f"{'reconstruction + its job (run worker)':<44}{t_rec:>9.2f}{q_rec:>18}")
        print(
            f"target: code-location load under 10 s with one metadata read: "
            f"{'PASS' if t_defs < 10 and q_defs <= 9 else 'MISS'}"
        )
    finally:
        if server:
            server.stop()


if __name__ == "__main__":
    main()
