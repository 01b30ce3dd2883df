"""Dagster's local compute log manager, without the processes that mirror a step's output
(deploy/dagster.yaml's and the repository's dagster.yaml's `compute_logs`).

Dagster's own writes a step's stdout and stderr to files (the UI's "stdout / stderr" of a
run) and mirrors each to the run worker's own output with a `tail -F` process and a
Python process that watches it: four processes a run (~0.07 s of CPU, beside the load's
plan; a run of a small mapping costs ~0.3 s). This one writes the same files, which the
UI shows as before, and with `mirror: true` copies what a step writes to where the
process wrote before (the terminal of `dagster job execute`, `dagster dev`) with a thread
of its own, no process. Without it (deployed) the output no longer also goes to the
output of the service that launched the run (the daemon's journal). What a load logs is
in the run's events either way.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import IO, Any

import dagster as dg

from dms_orchestration.defs.dagster_internals import (
    CapturedLogContext,
    LocalComputeLogManager,
    ensure_file,
    redirect_to_file,
    touch_file,
)

MIRROR_DRAIN_S = 5.0  # how long the end of a capture waits for its copy to catch up


def default_base_dir() -> str:
    """Where Dagster keeps compute logs by default: DAGSTER_HOME's `storage`."""
    return os.path.join(os.environ.get("DAGSTER_HOME", "."), "storage")


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]


@contextmanager
def mirror_to_file(stream: IO[str], path: str) -> Iterator[None]:
    """Everything written to `stream`'s file descriptor while this lasts (by Python or
    not, by this process or a child it forks) goes to `path` and, copied by a thread, to
    where the descriptor pointed before. (A stream without a descriptor stays as it is,
    as with Dagster's.)"""
    try:
        fd = stream.fileno()
    except (AttributeError, ValueError, io.UnsupportedOperation):
        yield
        return
    stream.flush()
    before, (read_end, write_end) = os.dup(fd), os.pipe()
    file = open(path, "ab")  # (the copying thread closes it)

    def copy() -> None:  # owns the pipe's read end and the file; drains the pipe whatever
        # fails (a step writing into a pipe nobody reads would fail, or hang)
        try:
            while data := os.read(read_end, 1 << 16):
                with contextlib.suppress(OSError, ValueError):  # (a full disk: the terminal)
                    file.write(data)
                    file.flush()  # the UI reads the file while the step runs
                with contextlib.suppress(OSError):  # (a closed terminal: the file has it)
                    _write_all(before, data)
        finally:
            file.close()
            os.close(read_end)

    mirror = threading.Thread(target=copy, name="dms-compute-log-mirror", daemon=True)
    mirror.start()
    os.dup2(write_end, fd)
    os.close(write_end)
    try:
        yield
    finally:
        stream.flush()
        os.dup2(before, fd)  # the pipe's last write end closes: the copy drains and ends
        mirror.join(MIRROR_DRAIN_S)  # (unless a forked child still holds the pipe)
        if not mirror.is_alive():  # (else it may still copy there)
            os.close(before)


class FileComputeLogManager(LocalComputeLogManager):
    """LocalComputeLogManager (same files, same configuration; `base_dir` defaults to
    Dagster's: the instance's `storage`, a temporary instance's too) whose capture only
    redirects the step's output to its files, and with `mirror` also copies it to the
    process's own output, with a thread."""

    def __init__(self, base_dir: str | None = None, mirror: bool = False, **kwargs: Any) -> None:
        super().__init__(base_dir or default_base_dir(), **kwargs)
        self.mirror, self.base_dir_given = mirror, base_dir is not None

    def register_instance(self, instance: dg.DagsterInstance) -> None:
        super().register_instance(instance)
        if not self.base_dir_given:  # the instance's (`dagster dev` without DAGSTER_HOME:
            # a temporary folder, which no variable names)
            self._base_dir = os.path.join(instance.root_directory, "storage")

    @contextmanager
    def capture_logs(self, log_key: Sequence[str]) -> Iterator[CapturedLogContext]:
        out = self.get_captured_local_path(log_key, "out")
        err = self.get_captured_local_path(log_key, "err")
        ensure_file(out)
        ensure_file(err)
        to_file = mirror_to_file if self.mirror else redirect_to_file
        with to_file(sys.stdout, out), to_file(sys.stderr, err):
            yield CapturedLogContext(log_key)
        touch_file(self.complete_artifact_path(log_key))  # (as Dagster's: capture complete)

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        return {
            "base_dir": dg.Field(dg.StringSource, is_required=False),
            "polling_timeout": dg.Field(dg.Float, is_required=False),
            "mirror": dg.Field(dg.Bool, is_required=False, default_value=False),
        }

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: Any, config_value: Mapping[str, Any]
    ) -> FileComputeLogManager:
        return cls(inst_data=inst_data, **config_value)
