"""What a run worker of `ForkedRunLauncher` runs, and everything it imports: the
launcher's forkserver imports this module once, then forks a worker per run from it.

Importing it loads Dagster's execution and storages, the drivers and the code location's
modules (not its definitions: those are built in the worker, for its one mapping, from
the run's reconstruction metadata), and what a run imports on first use (`RUN_IMPORTS`),
then takes all of it out of the garbage collector's generations (`gc.freeze`), so a
worker's collections do not walk it and its pages stay shared with the server's.
"""

import contextlib
import gc
import importlib

import dagster as dg
import dagster_postgres  # noqa: F401 (the instance's storage, when it is PostgreSQL)
import psycopg2  # noqa: F401
import sqlalchemy.dialects.postgresql  # noqa: F401
import sqlalchemy.dialects.sqlite  # noqa: F401
import sqlglot
import yaml

import dms_orchestration.definitions  # noqa: F401 (the code location's modules)
from dms_orchestration.db.dialects import DIALECTS
from dms_orchestration.defs.dagster_internals import (
    ConfigurableClassData,
    InstanceRef,
    capture_interrupts,
    execute_run_command_body,
)

# what a run imports on first use, listed from sys.modules after runs in a worker: each
# worker imported them again (~0.1 s of CPU a run: the default IO manager's universal
# paths and fsspec alone took most of it). A name a newer Dagster no longer has costs
# speed, not a run: test_run_worker.py lists what a run still imports.
RUN_IMPORTS = (
    # Dagster's execution, instance and storages
    "dagster._core.definitions.external_asset",
    "dagster._core.definitions.repository_definition.repository_data_builder",
    "dagster._core.execution.plan.active",
    "dagster._core.executor.in_process",
    "dagster._core.instance.factory",
    "dagster._core.storage.local_compute_log_manager",
    "dagster._core.storage.migration.utils",  # a SQLite instance's (dagster dev)
    "dagster._core.storage.root",
    "dagster._core.storage.sqlite_storage",
    "dagster._core.system_config.composite_descent",
    "dagster._core.utility_ops",
    "dagster._core.workspace.autodiscovery",
    "dagster._utils.temp_file",
    "dagster._utils.test.definitions",
    # the instance's classes of our own (deploy/dagster.yaml)
    "dms_orchestration.defs.compute_logs",
    "dms_orchestration.defs.pooled_storage",
    # libraries: the default IO manager's paths, the compute log manager's watchers, ...
    "fsspec.implementations.local",
    "upath.implementations.local",
    "upath.types._abc",
    "watchdog.observers.polling",
    "watchdog.utils.dirsnapshot",
    "psycopg2.extras",
    "importlib.readers",
    "importlib.resources.readers",
    "multiprocessing.popen_fork",
    "multiprocessing.synchronize",
)

for _name in RUN_IMPORTS:
    with contextlib.suppress(ImportError):
        importlib.import_module(_name)
for _dialect in DIALECTS.values():  # a mapping's column lineage parses its SQL
    sqlglot.Dialect.get_or_raise(_dialect.sqlglot_name)

_execute_run = execute_run_command_body()
gc.freeze()


def execute_run(run_id: str, instance_ref: str) -> int:
    """Run `run_id` as `dagster api execute_run` does (its exit code: 1 when the run
    failed); a SIGINT interrupts it as Dagster's own termination does."""
    ref = without_table_checks(dg.deserialize_value(instance_ref, InstanceRef))
    with capture_interrupts(), dg.DagsterInstance.from_ref(ref) as instance:
        return _execute_run(run_id, instance, lambda _event: None, set_exit_code_on_failure=True)


def without_table_checks(ref: InstanceRef) -> InstanceRef:
    """The instance of the service that launched the run, its PostgreSQL storage not
    looking for its tables again: that service has opened (created) them. Each of the
    three storages otherwise inspects the database on opening, on connections of its own
    (6 of a worker's 10 sessions)."""
    data = ref.storage_data
    config = yaml.safe_load(data.config_yaml) if data else None
    if not (isinstance(config, dict) and ("postgres_db" in config or "postgres_url" in config)):
        return ref
    config["should_autocreate_tables"] = False
    return ref._replace(
        storage_data=ConfigurableClassData(data.module_name, data.class_name, yaml.dump(config))
    )
