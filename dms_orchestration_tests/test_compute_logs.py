"""FileComputeLogManager (deploy/dagster.yaml, and the repository's dagster.yaml with
`mirror: true`): a step's stdout and stderr in the files the UI reads, as Dagster's local
manager writes them, without processes that copy them to the run worker's own output; a
thread copies them there when mirrored."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import dagster as dg
import pytest
import yaml

from dms_orchestration.defs.compute_logs import FileComputeLogManager
from dms_orchestration.defs.dagster_internals import InstanceRef, LocalComputeLogManager
from dms_orchestration_tests.conftest import REPO_ROOT

KEY = ["run-1", "compute_logs", "load_step"]


def _children() -> set[str]:
    """The processes this thread has started and not reaped."""
    tid = threading.get_native_id()
    return set(Path(f"/proc/self/task/{tid}/children").read_text().split())


def _capture(manager) -> set[str]:
    """The processes started while the manager captures a step's output."""
    before = _children()
    with manager.capture_logs(KEY):
        print("rows: 10", flush=True)
        print("a warning", file=sys.stderr, flush=True)
        during = _children()
    return during - before


def test_a_steps_output_is_in_its_files_without_a_process_to_copy_it(tmp_path):
    manager = FileComputeLogManager.from_config_value(None, {"base_dir": str(tmp_path)})
    assert _capture(manager) == set()
    data = manager.get_log_data(KEY)  # what the UI's stdout / stderr tabs read
    assert data.stdout == b"rows: 10\n"
    assert data.stderr == b"a warning\n"
    assert manager.is_capture_complete(KEY)


def test_mirrored_the_output_also_goes_where_it_went_before_without_a_process(tmp_path, capfd):
    config = {"base_dir": str(tmp_path), "mirror": True}
    manager = FileComputeLogManager.from_config_value(None, config)
    before = _children()
    with manager.capture_logs(KEY):
        print("rows: 10", flush=True)
        os.write(sys.stdout.fileno(), b"not through Python\n")
        print("a warning", file=sys.stderr, flush=True)
        during = _children()
    assert during - before == set()
    data = manager.get_log_data(KEY)
    assert data.stdout == b"rows: 10\nnot through Python\n"
    assert data.stderr == b"a warning\n"
    out, err = capfd.readouterr()  # (what the terminal would have shown)
    assert out == "rows: 10\nnot through Python\n" and err == "a warning\n"
    print("after the capture", flush=True)  # the stream is back where it was
    assert capfd.readouterr().out == "after the capture\n"
    assert manager.get_log_data(KEY).stdout == b"rows: 10\nnot through Python\n"
    assert not [t for t in threading.enumerate() if t.name == "dms-compute-log-mirror"]


def test_dagsters_own_manager_starts_processes_to_copy_the_output(tmp_path):
    """What FileComputeLogManager saves: Dagster's starts a tail and a watcher per stream."""
    manager = LocalComputeLogManager(base_dir=str(tmp_path))
    assert len(_capture(manager)) == 4
    assert manager.get_log_data(KEY).stdout == b"rows: 10\n"


def test_its_files_are_where_dagsters_are_by_default(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    manager = FileComputeLogManager.from_config_value(None, {})
    path = manager.get_captured_local_path(KEY, "out")
    assert path.startswith(os.path.join(str(tmp_path), "storage") + os.sep)


def test_a_temporary_instance_of_the_repository_keeps_them_in_its_folder(tmp_path, monkeypatch):
    """`dagster dev` / `dg dev` without DAGSTER_HOME: the repository's dagster.yaml in a
    temporary folder, which no variable names; its runs' output is mirrored."""
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    ref = InstanceRef.from_dir(str(tmp_path), config_dir=str(REPO_ROOT))
    with dg.DagsterInstance.from_ref(ref) as instance:
        manager = instance.compute_log_manager
        assert isinstance(manager, FileComputeLogManager) and manager.mirror
        path = manager.get_captured_local_path(KEY, "out")
        assert path.startswith(str(tmp_path / "storage") + os.sep)


@pytest.mark.parametrize("config", [None, {"base_dir": "/srv/dagster/logs"}])
def test_the_deployed_instance_uses_it(tmp_path, monkeypatch, config):
    instance = yaml.safe_load((REPO_ROOT / "deploy" / "dagster.yaml").read_text())
    compute_logs = instance["compute_logs"]
    assert compute_logs["module"] == "dms_orchestration.defs.compute_logs"
    assert compute_logs["class"] == FileComputeLogManager.__name__
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    if config is not None:  # (as deployed: none)
        compute_logs = {**compute_logs, "config": config}
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump({"compute_logs": compute_logs}))
    with dg.DagsterInstance.get() as dagster:
        manager = dagster.compute_log_manager
        assert isinstance(manager, FileComputeLogManager) and not manager.mirror
        where = (config or {}).get("base_dir", str(tmp_path / "storage"))
        assert manager.get_captured_local_path(KEY, "out").startswith(where + os.sep)
