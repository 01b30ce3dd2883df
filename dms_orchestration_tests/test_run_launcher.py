"""ForkedRunLauncher's view of a run worker, with real processes: a worker is running while
its process (that very process, not a pid used again, not its zombie) lives; stopping a
run interrupts its worker as Dagster's own termination does; a run whose code location
runs in another Python is refused. (Runs launched through it:
test_e2e.py and test_deploy.py, whose instances use it.)"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import dagster as dg
import pytest

from dms_orchestration.defs.dagster_internals import WorkerStatus
from dms_orchestration.defs.run_launcher import (
    PID_TAG,
    STARTED_TAG,
    ForkedRunLauncher,
    process_start,
)

# a stand-in for a run worker: says it is ready, writes "interrupted" on SIGINT
WORKER = """
import signal, sys, time
out = sys.argv[1]
def interrupted(*_):
    open(out, "w").write("interrupted")
    sys.exit(0)
signal.signal(signal.SIGINT, interrupted)
open(out, "w").write("ready")
time.sleep(60)
"""


@pytest.fixture
def worker(tmp_path):
    out = tmp_path / "worker.out"
    proc = subprocess.Popen([sys.executable, "-c", WORKER, str(out)])
    deadline = time.monotonic() + 30
    while not (out.exists() and out.read_text()):
        assert time.monotonic() < deadline, "the worker did not start"
        time.sleep(0.05)
    yield proc, out
    proc.kill()
    proc.wait()


def _run(tags: dict[str, str], status=dg.DagsterRunStatus.STARTED) -> dg.DagsterRun:
    return dg.DagsterRun(job_name="dim_job", run_id=str(uuid.uuid4()), status=status, tags=tags)


def _tags(pid: int, started: str | None = None) -> dict[str, str]:
    return {PID_TAG: str(pid), STARTED_TAG: started or process_start(pid) or "?"}


def test_a_worker_is_running_while_its_process_lives_and_failed_once_it_has_ended(worker):
    proc, _ = worker
    launcher, run = ForkedRunLauncher(), _run(_tags(proc.pid))
    assert launcher.check_run_worker_health(run).status == WorkerStatus.RUNNING
    proc.kill()
    proc.wait()
    health = launcher.check_run_worker_health(run)
    assert health.status == WorkerStatus.FAILED
    assert f"pid {proc.pid}" in (health.msg or "")


def test_a_zombie_or_a_pid_used_again_is_not_the_worker(worker):
    proc, _ = worker
    launcher = ForkedRunLauncher()
    # the same pid, started at another time: another process that has the pid now
    reused = _run(_tags(proc.pid, started=str(int(process_start(proc.pid) or 0) + 1)))
    assert launcher.check_run_worker_health(reused).status == WorkerStatus.FAILED
    proc.kill()
    time.sleep(0.2)  # not reaped: a zombie until wait()
    assert Path(f"/proc/{proc.pid}").exists()
    assert process_start(proc.pid) is None
    assert launcher.check_run_worker_health(_run(_tags(proc.pid))).status == WorkerStatus.FAILED


def test_a_run_launched_this_instant_has_no_worker_tags_yet_and_is_running():
    assert ForkedRunLauncher().check_run_worker_health(_run({})).status == WorkerStatus.RUNNING


def test_stopping_a_run_interrupts_its_worker_and_marks_it_canceling(worker):
    proc, out = worker
    with dg.instance_for_test() as instance:
        launcher = ForkedRunLauncher()
        launcher.register_instance(instance)
        run = _run(_tags(proc.pid))
        instance.add_run(run)
        assert launcher.terminate(run.run_id)
        assert proc.wait(30) == 0
        assert out.read_text() == "interrupted"
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.CANCELING


def test_stopping_a_run_whose_worker_has_ended_says_so_and_interrupts_nothing(worker):
    proc, _ = worker
    tags = _tags(proc.pid)
    proc.kill()
    proc.wait()
    with dg.instance_for_test() as instance:
        launcher = ForkedRunLauncher()
        launcher.register_instance(instance)
        run = _run(tags)
        instance.add_run(run)
        assert not launcher.terminate(run.run_id)
        messages = [e.message for e in instance.all_logs(run.run_id)]
        assert any("No run worker of this run is running" in m for m in messages)
        finished = _run(tags, status=dg.DagsterRunStatus.SUCCESS)
        instance.add_run(finished)
        assert not launcher.terminate(finished.run_id)  # nothing to stop


def _origin(python: str):
    from dagster._core.code_pointer import CodePointer
    from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin

    pointer = CodePointer.from_module("dms_orchestration.definitions", "defs", None)
    return JobPythonOrigin("dim_job", RepositoryPythonOrigin(python, pointer))


def test_a_run_whose_code_location_runs_in_another_python_is_refused_before_any_worker():
    from dms_orchestration.defs.dagster_internals import LaunchRunContext

    other = "/opt/other-env/bin/python3"
    with dg.instance_for_test() as instance:
        launcher = ForkedRunLauncher()
        launcher.register_instance(instance)
        run = dg.DagsterRun(job_name="dim_job", run_id=str(uuid.uuid4()))
        run = run._replace(job_code_origin=_origin(other))
        instance.add_run(run)
        with pytest.raises(dg.DagsterInvariantViolationError) as refused:
            launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))
        assert other in str(refused.value) and sys.executable in str(refused.value)
        assert run.run_id in str(refused.value)
        assert PID_TAG not in instance.get_run_by_id(run.run_id).tags  # no worker started
        assert launcher._context is None  # not even the forkserver
