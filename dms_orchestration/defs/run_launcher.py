"""Runs in processes forked from a preloaded server, not spawned (dagster.yaml's
`run_launcher`).

Dagster's default launcher asks the code server to spawn a new interpreter per run: it
imports Dagster, SQLAlchemy and the code location again (~1 s of CPU), then runs a load
that often takes less. `ForkedRunLauncher` starts one forkserver per launching process
(the daemon) that imports all of that once (`run_worker`); each run is a fork of it that
only opens the instance, builds its one mapping's job from the run's reconstruction
metadata and runs it, as `dagster api execute_run` does.

A run worker is known by the tags `dms/run_worker_pid` and `dms/run_worker_started` (its
start in the kernel's clock ticks, so a pid used again is not taken for it): any process
of the host can check it (run monitoring) or stop it (`terminate`, the DMS STOP
request), also after the daemon that launched it has restarted; a running worker
outlives the daemon and its forkserver.

The worker runs in the launching process's Python: the code location's environment (as
in deploy/: the daemon, the webserver and the code server share one). A run whose code
location names another Python is refused at launch, with both named.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg

from dms_orchestration.defs.dagster_internals import (
    CheckRunHealthResult,
    ConfigurableClass,
    ConfigurableClassData,
    LaunchRunContext,
    RunLauncher,
    WorkerStatus,
)

PID_TAG = "dms/run_worker_pid"
STARTED_TAG = "dms/run_worker_started"
# what the forkserver imports once: Dagster, the storages, the code location's modules
PRELOAD = "dms_orchestration.defs.run_worker"
_PROC = Path("/proc/self/stat")


def _work(run_id: str, instance_ref: str) -> None:
    """A run worker's body, in a fork of the preloaded server (imports nothing new), in
    a session of its own: a stop or a kill of the daemon's process group (a restart, a
    Ctrl-C) leaves the run to finish."""
    from dms_orchestration.defs.run_worker import execute_run

    os.setsid()
    sys.exit(execute_run(run_id, instance_ref))


def process_start(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot, as the kernel says), or None
    when there is no such process, or only its zombie, on this host."""
    if not _PROC.exists():  # not Linux: whether the pid exists is all we can know
        return _exists(pid)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    state, started = fields[0], fields[19]
    return None if state in ("Z", "X") else started


def _exists(pid: int) -> str | None:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return "?"


class ForkedRunLauncher(RunLauncher, ConfigurableClass):
    """Launches each run in a fork of a server that has imported Dagster and the code
    location once (see the module's docstring)."""

    def __init__(self, inst_data: ConfigurableClassData | None = None) -> None:
        self._inst_data = inst_data
        self._context: Any = None
        super().__init__()

    @property
    def inst_data(self) -> ConfigurableClassData | None:
        return self._inst_data

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        return {}

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]
    ) -> ForkedRunLauncher:
        return cls(inst_data=inst_data)

    def _forkserver(self) -> Any:
        if self._context is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload([PRELOAD])
            self._context = context
        return self._context

    def launch_run(self, context: LaunchRunContext) -> None:
        run = context.dagster_run
        origin = run.job_code_origin
        if origin is None:
            raise dg.DagsterInvariantViolationError(f"run {run.run_id} has no code origin")
        python = origin.repository_origin.executable_path
        if python != sys.executable:
            raise dg.DagsterInvariantViolationError(
                f"run {run.run_id}: its code location runs in {python}, this launcher in "
                f"{sys.executable}; ForkedRunLauncher runs a job in the launching process's "
                "Python (run the daemon in the code location's environment, or use "
                "Dagster's DefaultRunLauncher)"
            )
        ref = dg.serialize_value(self._instance.get_ref())
        worker = self._forkserver().Process(
            target=_work, args=(run.run_id, ref), name=f"dagster-run-{run.run_id}"
        )
        worker.start()  # (multiprocessing lets go of it once it has ended)
        pid = worker.pid
        assert pid is not None
        self._instance.add_run_tags(
            run.run_id, {PID_TAG: str(pid), STARTED_TAG: process_start(pid) or "?"}
        )

    def _worker_pid(self, run: dg.DagsterRun) -> int | None:
        """The pid of the run's worker while it runs on this host, else None."""
        pid, started = run.tags.get(PID_TAG), run.tags.get(STARTED_TAG)
        if pid is None or not pid.isdigit():
            return None
        now = process_start(int(pid))
        if now is None or (started not in (None, "?") and now not in (started, "?")):
            return None
        return int(pid)

    def terminate(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id)
        if run is None or run.is_finished:
            return False
        self._instance.report_run_canceling(run)
        pid = self._worker_pid(run)
        if pid is None:
            self._instance.report_engine_event(
                "No run worker of this run is running on this host: nothing to interrupt",
                run,
                cls=self.__class__,
            )
            return False
        # what Dagster's own termination does inside a worker: an interrupt, which the
        # run turns into CANCELED after its steps have stopped
        os.kill(pid, signal.SIGINT)
        return True

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        if PID_TAG not in run.tags:
            # launched this instant: the tags follow the fork
            return CheckRunHealthResult(WorkerStatus.RUNNING, "run worker starting")
        if self._worker_pid(run) is not None:
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        return CheckRunHealthResult(
            WorkerStatus.FAILED,
            f"run worker (pid {run.tags[PID_TAG]}) ended without ending the run",
        )
