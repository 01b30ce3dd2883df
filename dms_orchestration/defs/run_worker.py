"""What a run worker of `ForkedRunLauncher` runs, and everything it imports: the
launcher's forkserver imports this module once, then forks a worker per run from it.

Importing it loads Dagster's execution and storages, the drivers and the code location's
modules (not its definitions: those are built in the worker, for its one mapping, from
the run's reconstruction metadata), then takes all of it out of the garbage collector's
generations (`gc.freeze`), so a worker's collections do not walk it and its pages stay
shared with the server's.
"""

import gc

import dagster as dg
import dagster_postgres  # noqa: F401 (the instance's storage, when it is PostgreSQL)
import psycopg2  # noqa: F401
import sqlalchemy.dialects.postgresql  # noqa: F401
import sqlalchemy.dialects.sqlite  # noqa: F401

import dms_orchestration.definitions  # noqa: F401 (the code location's modules)
from dms_orchestration.defs.dagster_internals import (
    InstanceRef,
    capture_interrupts,
    execute_run_command_body,
)

_execute_run = execute_run_command_body()
gc.freeze()


def execute_run(run_id: str, instance_ref: str) -> int:
    """Run `run_id` as `dagster api execute_run` does (its exit code: 1 when the run
    failed); a SIGINT interrupts it as Dagster's own termination does."""
    ref = dg.deserialize_value(instance_ref, InstanceRef)
    with capture_interrupts(), dg.DagsterInstance.from_ref(ref) as instance:
        return _execute_run(run_id, instance, lambda _event: None, set_exit_code_on_failure=True)
