"""Dagster's local compute log manager, without the processes that mirror a step's output
(deploy/dagster.yaml's `compute_logs`).

Dagster's own writes a step's stdout and stderr to files (the UI's "stdout / stderr" of a
run) and mirrors each to the run worker's own output with a `tail -F` process and a
Python process that watches it: four processes a run (~0.07 s of CPU; a run of a small
mapping costs ~0.3 s). This one writes the same files, which the UI shows as before; the
output no longer also goes to the output of the service that launched the run (the
daemon's journal). What a load logs is in the run's events either way.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import dagster as dg

from dms_orchestration.defs.dagster_internals import (
    CapturedLogContext,
    LocalComputeLogManager,
    ensure_file,
    redirect_to_file,
    touch_file,
)


def default_base_dir() -> str:
    """Where Dagster keeps compute logs by default: DAGSTER_HOME's `storage`."""
    return os.path.join(os.environ.get("DAGSTER_HOME", "."), "storage")


class FileComputeLogManager(LocalComputeLogManager):
    """LocalComputeLogManager (same files, same configuration; `base_dir` defaults to
    Dagster's) whose capture only redirects the step's output to its files."""

    @contextmanager
    def capture_logs(self, log_key: Sequence[str]) -> Iterator[CapturedLogContext]:
        out = self.get_captured_local_path(log_key, "out")
        err = self.get_captured_local_path(log_key, "err")
        ensure_file(out)
        ensure_file(err)
        with redirect_to_file(sys.stdout, out), redirect_to_file(sys.stderr, err):
            yield CapturedLogContext(log_key)
        touch_file(self.complete_artifact_path(log_key))  # (as Dagster's: capture complete)

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        return {
            "base_dir": dg.Field(dg.StringSource, is_required=False),
            "polling_timeout": dg.Field(dg.Float, is_required=False),
        }

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: Any, config_value: Mapping[str, Any]
    ) -> FileComputeLogManager:
        config = {"base_dir": default_base_dir(), **config_value}
        return cls(inst_data=inst_data, **config)
