"""The one module of the project that imports Dagster's private modules (`dagster._…`).

Each name below is something the public `dagster` namespace of the pinned version
(pyproject.toml: dagster==1.13.27) does not offer; its comment says why we need it.
Everything else comes from `import dagster as dg` (serialize_value, deserialize_value,
DagsterInvalidSubsetError are public there). dms_orchestration_tests/
test_dagster_internals.py pins the names, the signatures and the behaviour we rely on,
and the Dagster version: an upgrade fails there first, not in a run.
"""

from collections.abc import Callable

# an error a Dagster CLI raises for a selection of unknown assets; not exported by `dagster`
# (only its base class DagsterError is, which would catch every Dagster error)
from dagster._core.definitions.asset_selection import DagsterInvalidAssetSelectionError

# the asset graph a job resolves against: MappingJob resolves against a part of it (built
# with AssetGraph.from_assets) to keep loading linear; no public type or constructor
from dagster._core.definitions.assets.graph.asset_graph import AssetGraph

# the name of the job Dagster adds for the assets (the UI's materialize), which a
# RepositoryData of our own must list; only Dagster's private modules name it
from dagster._core.definitions.assets.job.asset_job import IMPLICIT_ASSET_JOB_NAME

# whether this load is a code server's or a run worker's, and the reconstruction metadata
# a code server leaves for the run workers; no public API exposes either (public
# ComponentLoadContext has neither; StateBackedComponent would replace the lazy
# one-mapping run-worker load with a whole-location load)
from dagster._core.definitions.definitions_load_context import (
    DefinitionsLoadContext,
    DefinitionsLoadType,
)

# the documented `dagster/...` table metadata keys (row_count, table_name, column_lineage)
# made and checked by Dagster itself; the class is not exported by `dagster`
from dagster._core.definitions.metadata import TableMetadataSet

# the name Dagster gives the repository of a Definitions, which a RepositoryDefinition of
# our own must have to be found as the code location's; only private modules name it
from dagster._core.definitions.repository_definition.valid_definitions import (
    SINGLETON_REPOSITORY_NAME,
)

# what define_asset_job returns: MappingJob subclasses it to resolve in linear time, and
# annotations name it; the class is not exported by `dagster`
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

# Dagster's own name rules (which names it accepts, which characters), so that names
# made from DMS rows are valid exactly when Dagster says so; not exported by `dagster`
from dagster._core.definitions.utils import has_valid_name_chars, is_valid_name

# a compute log manager of our own (FileComputeLogManager): Dagster's local one, and how it
# sends a step's stdout / stderr to its files
from dagster._core.execution.compute_logs import redirect_to_file

# the claims of pool (concurrency) slots a step makes, used for each chunk of a load; the
# public pools only apply per op/step, not to work inside a step
from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext

# a run launcher of our own (ForkedRunLauncher) and what the instance hands it; dagster-k8s
# and dagster-docker import these from the same private modules
from dagster._core.instance import InstanceRef
from dagster._core.launcher import (
    CheckRunHealthResult,
    LaunchRunContext,
    RunLauncher,
    WorkerStatus,
)
from dagster._core.storage.compute_log_manager import CapturedLogContext
from dagster._core.storage.local_compute_log_manager import LocalComputeLogManager
from dagster._serdes import ConfigurableClass, ConfigurableClassData
from dagster._utils import ensure_file, touch_file

# how a run worker turns SIGINT into Dagster's interrupt of the run (a terminated run)
from dagster._utils.interrupts import capture_interrupts


def execute_run_command_body() -> Callable[..., int]:
    """The body of `dagster api execute_run` (a run worker: the run's job rebuilt from its
    origin and reconstruction metadata, executed, the run's status reported), which a run
    forked by ForkedRunLauncher runs; the command itself only parses its JSON argument.
    Imported when asked for: `dagster._cli` costs ~0.12 s to import."""
    from dagster._cli.api import _execute_run_command_body

    return _execute_run_command_body


__all__ = [
    "CapturedLogContext",
    "LocalComputeLogManager",
    "ensure_file",
    "redirect_to_file",
    "touch_file",
    "CheckRunHealthResult",
    "ConfigurableClass",
    "ConfigurableClassData",
    "InstanceRef",
    "LaunchRunContext",
    "RunLauncher",
    "WorkerStatus",
    "capture_interrupts",
    "execute_run_command_body",
    "IMPLICIT_ASSET_JOB_NAME",
    "SINGLETON_REPOSITORY_NAME",
    "AssetGraph",
    "DagsterInvalidAssetSelectionError",
    "DefinitionsLoadContext",
    "DefinitionsLoadType",
    "InstanceConcurrencyContext",
    "TableMetadataSet",
    "UnresolvedAssetJobDefinition",
    "has_valid_name_chars",
    "is_valid_name",
]
