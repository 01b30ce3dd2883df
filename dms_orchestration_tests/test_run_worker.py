"""What a run worker of ForkedRunLauncher does besides running the run: its server has
imported what a run needs (a worker imports nothing). (It opens the instance's PostgreSQL
storage without inspecting its tables again: test_pooled_storage.py.)"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import dagster as dg
import pytest
import yaml
from dagster._core.definitions.definitions_load_context import (
    DefinitionsLoadContext,
    DefinitionsLoadType,
)
from dagster._core.definitions.reconstruct import (
    ReconstructableRepository,
    initialize_repository_def_from_pointer,
)

from dms_orchestration.db.connect import dispose_all
from dms_orchestration.defs.dagster_internals import InstanceRef
from dms_orchestration.defs.run_worker import RUN_IMPORTS, without_table_checks
from dms_orchestration_tests.test_defs import QUIET, demo_home
from dms_orchestration_tests.test_runs import POINTER, REPO

# a run worker's body in a process that imported what the forkserver imports: prints the
# modules the run imported and its exit code
WORKER = """
import json, sys
from dms_orchestration.defs import run_worker
before = set(sys.modules)
code = run_worker.execute_run(sys.argv[1], sys.argv[2])
print(json.dumps([sorted(set(sys.modules) - before), code]))
"""


@pytest.fixture
def demo(tmp_path, monkeypatch):
    yield demo_home(tmp_path, monkeypatch)
    dispose_all()


@pytest.mark.slow
def test_a_run_imports_nothing_its_worker_server_has_not_imported(demo, tmp_path, monkeypatch):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    # the run as the daemon creates it: the code server's reconstruction metadata with it
    with DefinitionsLoadContext.scoped(DefinitionsLoadContext(DefinitionsLoadType.INITIALIZATION)):
        code_server = initialize_repository_def_from_pointer(POINTER)
    origin = (
        ReconstructableRepository.for_module("dms_orchestration.definitions", "defs", str(REPO))
        .get_reconstructable_job("dim_customer_job")
        .get_python_origin()
    )
    with dg.DagsterInstance.get() as instance:
        run = instance.create_run_for_job(
            code_server.get_job("dim_customer_job"),
            run_config=QUIET,
            job_code_origin=origin,
            repository_load_data=code_server.repository_load_data,
        )
        ref = dg.serialize_value(instance.get_ref())
    done = subprocess.run(
        [sys.executable, "-c", WORKER, run.run_id, ref],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=os.environ,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    imported, exit_code = json.loads(done.stdout.splitlines()[-1])
    assert exit_code == 0, done.stderr[-3000:]
    assert imported == [], " ".join(imported)
    with dg.DagsterInstance.get() as instance:
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.SUCCESS


def test_every_module_a_run_worker_preloads_is_there():
    """A module a newer Dagster renamed would cost each run its import again, silently."""
    import importlib

    for name in RUN_IMPORTS:
        importlib.import_module(name)


def test_a_sqlite_instance_is_left_as_it_is(tmp_path):
    (tmp_path / "dagster.yaml").write_text(
        yaml.safe_dump({"storage": {"sqlite": {"base_dir": str(tmp_path / "storage")}}})
    )
    ref = InstanceRef.from_dir(str(tmp_path))
    assert without_table_checks(ref) == ref
