"""Pins what the project relies on in Dagster's private modules (defs/dagster_internals.py):
the Dagster version, the fields of UnresolvedAssetJobDefinition that MappingJob copies,
the signatures we call, the behaviour of each re-exported name, and that no other module
imports a private Dagster module. A Dagster upgrade that changes any of it fails here,
with a message that says what to re-check."""

from __future__ import annotations

import ast
import inspect
import re
import tomllib
import warnings
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.code_pointer import CodePointer
from dagster._core.definitions.reconstruct import (
    initialize_repository_def_from_pointer,
    reconstruct_repository_def_from_pointer,
)

from dms_orchestration.defs import dagster_internals, jobs
from dms_orchestration.defs.cli_errors import SELECTION_ERRORS, selection_error_line
from dms_orchestration.defs.dagster_internals import (
    IMPLICIT_ASSET_JOB_NAME,
    SINGLETON_REPOSITORY_NAME,
    AssetGraph,
    CapturedLogContext,
    CheckRunHealthResult,
    ConfigurableClass,
    ConfigurableClassData,
    DagsterInvalidAssetSelectionError,
    DefinitionsLoadContext,
    DefinitionsLoadType,
    InstanceConcurrencyContext,
    InstanceRef,
    LaunchRunContext,
    LocalComputeLogManager,
    RunLauncher,
    TableMetadataSet,
    UnresolvedAssetJobDefinition,
    WorkerStatus,
    capture_interrupts,
    ensure_file,
    execute_run_command_body,
    has_valid_name_chars,
    is_valid_name,
    redirect_to_file,
    touch_file,
)
from dms_orchestration.defs.jobs import JOB_FIELDS, MappingJob, mapping_job, run_executor
from dms_orchestration.defs.run_launcher import ForkedRunLauncher

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGE = REPO_ROOT / "dms_orchestration"
# the Dagster release dagster_internals.py was checked against
CHECKED_VERSION = "1.13.27"
UPGRADE = (
    "dms_orchestration/defs/dagster_internals.py was checked against dagster "
    f"{CHECKED_VERSION}: when upgrading, re-check each name it imports (is it public now? "
    "did it change?), MappingJob's JOB_FIELDS (defs/jobs.py), then set CHECKED_VERSION "
    "in this file"
)


def _params(function) -> list[str]:
    return list(inspect.signature(function).parameters)


# ------------------------------------------------------------------ the version


def test_dagster_is_the_version_the_internals_were_checked_against():
    pinned = [
        d
        for d in tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"][
            "dependencies"
        ]
        if re.match(r"dagster\s*[=<>~!]", d)
    ]
    assert pinned == [f"dagster=={CHECKED_VERSION}"], f"pyproject.toml pins {pinned}. {UPGRADE}"
    assert dg.__version__ == CHECKED_VERSION, f"dagster {dg.__version__} is installed. {UPGRADE}"


# ------------------------------------------------------------------ one importer


def _private_imports(path: Path) -> list[str]:
    """`line: module` for each import of a private Dagster module in a source file:
    `dagster._x`, `from dagster import _x`, or anything of dagster_shared (Dagster's
    internal shared package), also through importlib.import_module("...")."""

    def private(module: str) -> bool:
        parts = module.split(".")
        return parts[0] == "dagster_shared" or (
            parts[0].startswith("dagster") and any(p.startswith("_") for p in parts[1:])
        )

    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None))
            in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names = [node.args[0].value]
        found += [f"{node.lineno}: {n}" for n in names if private(n)]
    return found


@pytest.mark.slow
def test_only_dagster_internals_imports_private_dagster_modules():
    sources = sorted(PACKAGE.rglob("*.py"))
    assert len(sources) > 20
    own = PACKAGE / "defs" / "dagster_internals.py"
    offenders = {
        str(p.relative_to(REPO_ROOT)): found
        for p in sources
        if p != own and (found := _private_imports(p))
    }
    assert offenders == {}, (
        "import private Dagster names from dms_orchestration.defs.dagster_internals "
        f"(with a comment on why no public API serves), not directly: {offenders}"
    )
    assert _private_imports(own), "dagster_internals imports the private names"


def test_the_scan_sees_every_form_of_private_import(tmp_path):
    source = tmp_path / "m.py"
    source.write_text(
        "import dagster._core.errors\n"
        "from dagster._serdes import serialize_value\n"
        "from dagster import _check\n"
        "from dagster_shared.record import copy\n"
        "import importlib\n"
        "importlib.import_module('dagster._utils')\n"
        "import dagster as dg\n"
        "from dagster import AssetKey\n"
        "from dagster_k8s import k8s_job_executor\n"
    )
    assert [f.split(": ")[1] for f in _private_imports(source)] == [
        "dagster._core.errors",
        "dagster._serdes",
        "dagster._serdes.serialize_value",
        "dagster._check",
        "dagster_shared.record",
        "dagster_shared.record.copy",
        "dagster._utils",
    ]


def test_each_re_export_is_still_private_and_still_there():
    """Each name is still where it was imported from, and not public yet (when it is,
    use `dg.<name>` and drop it from dagster_internals)."""
    assert dagster_internals.__all__
    for name in dagster_internals.__all__:
        value = getattr(dagster_internals, name)
        assert value is not None, name
        public = getattr(dg, name, None)
        assert public is None, (
            f"dagster now exports {name}: use dg.{name} and drop it from dagster_internals"
        )


def test_the_public_names_that_replaced_internals_are_dagsters_own():
    from dagster._core.errors import DagsterInvalidSubsetError
    from dagster._serdes import deserialize_value, serialize_value

    assert dg.serialize_value is serialize_value
    assert dg.deserialize_value is deserialize_value
    assert dg.DagsterInvalidSubsetError is DagsterInvalidSubsetError
    lineage = {"dagster/row_count": dg.MetadataValue.int(3)}
    assert dg.deserialize_value(dg.serialize_value(lineage), dict) == lineage


# ------------------------------------------------------------------ MappingJob's fields


def test_mapping_job_copies_every_field_of_an_asset_job():
    constructor = _params(UnresolvedAssetJobDefinition.__new__)[1:]  # (without cls)
    record = list(UnresolvedAssetJobDefinition._fields)
    for name in constructor:
        assert name in JOB_FIELDS, (
            f"MappingJob must copy field {name}: Dagster's UnresolvedAssetJobDefinition "
            f"takes it now; add it to JOB_FIELDS in defs/jobs.py. {UPGRADE}"
        )
    for name in JOB_FIELDS:
        assert name in constructor, (
            f"JOB_FIELDS (defs/jobs.py) names {name}, which UnresolvedAssetJobDefinition "
            f"no longer takes. {UPGRADE}"
        )
    assert record == constructor == list(JOB_FIELDS), (
        f"UnresolvedAssetJobDefinition holds {record}, takes {constructor}. {UPGRADE}"
    )
    # define_asset_job (what mapping_job calls) takes the same fields
    assert _params(dg.define_asset_job) == list(JOB_FIELDS), UPGRADE


@dg.asset(config_schema={"n": int})
def loaded(context) -> int:
    return context.op_config["n"]


@dg.asset(deps=[loaded])
def downstream() -> None:
    pass


@dg.asset(deps=[dg.AssetKey("source")])
def reader() -> None:
    pass


@dg.asset_check(asset=loaded)
def loaded_check() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=True)


@dg.success_hook
def on_success(context) -> None:
    pass


DAILY = dg.DailyPartitionsDefinition(start_date="2024-01-01")


@dg.asset(partitions_def=DAILY)
def daily() -> None:
    pass


def _every_field_job() -> UnresolvedAssetJobDefinition:
    """An asset job with each field of define_asset_job set but partitions_def."""
    return dg.define_asset_job(
        "every_field",
        selection=dg.AssetSelection.assets(loaded),
        config={"ops": {"loaded": {"config": {"n": 7}}}},
        description="a job with every field",
        tags={"dms/mapref": "M1"},
        run_tags={"dms/jobid": "11"},
        metadata={"owner note": "x"},
        executor_def=dg.multiprocess_executor,
        hooks={on_success},
        op_retry_policy=dg.RetryPolicy(max_retries=2, delay=1),
        owners=["team:dms"],
        automation_condition=dg.AutomationCondition.any_job_root_assets_match(
            dg.AutomationCondition.on_cron("0 * * * *")
        ),
    )


def _partitioned_job() -> UnresolvedAssetJobDefinition:
    with warnings.catch_warnings():  # (partitions_def is deprecated: inferred from assets)
        warnings.simplefilter("ignore")
        return dg.define_asset_job(
            "partitioned", selection=dg.AssetSelection.assets(daily), partitions_def=DAILY
        )


@pytest.mark.parametrize("make", [_every_field_job, _partitioned_job])
def test_a_mapping_job_keeps_every_field_of_the_job_it_copies(make):
    job = make()
    set_fields = [f for f in JOB_FIELDS if getattr(job, f) is not None]
    copied = MappingJob.of(job, executor_def=dg.in_process_executor)
    assert type(copied) is MappingJob
    for name in JOB_FIELDS:
        if name != "executor_def":
            assert getattr(copied, name) == getattr(job, name), f"MappingJob lost {name}"
    assert copied.executor_def is dg.in_process_executor
    unchanged = MappingJob.of(job)
    assert all(getattr(unchanged, f) == getattr(job, f) for f in JOB_FIELDS)
    if make is _every_field_job:
        assert set(set_fields) == set(JOB_FIELDS) - {"partitions_def"}
    else:
        assert "partitions_def" in set_fields


def _resolved(job: UnresolvedAssetJobDefinition) -> dg.JobDefinition:
    with warnings.catch_warnings():  # (owners is a beta parameter)
        warnings.simplefilter("ignore")
        definitions = dg.Definitions(
            assets=[loaded, downstream, reader, daily], asset_checks=[loaded_check], jobs=[job]
        )
        return definitions.resolve_job_def(job.name)


@pytest.mark.parametrize("make", [_every_field_job, _partitioned_job])
def test_a_mapping_job_resolves_to_the_job_dagster_resolves(make, monkeypatch):
    """The same JobDefinition as Dagster's own resolution of the job it copies, built from
    the neighbourhood of its assets (Dagster calls MappingJob.resolve)."""
    job = make()
    resolved_in = []
    real = jobs.neighbourhood

    def spy(asset_graph: AssetGraph, keys: set[dg.AssetKey]) -> AssetGraph:
        resolved_in.append(keys)
        return real(asset_graph, keys)

    monkeypatch.setattr(jobs, "neighbourhood", spy)
    ours, dagsters = _resolved(MappingJob.of(job)), _resolved(job)
    assert resolved_in == [set(job.selection.resolve(AssetGraph.from_assets([loaded, daily])))]
    for attribute in (
        "name",
        "description",
        "tags",
        "run_tags",
        "metadata",
        "hook_defs",
        "op_retry_policy",
        "owners",
        "automation_condition",
        "partitions_def",
        "run_config",
    ):
        assert getattr(ours, attribute) == getattr(dagsters, attribute), attribute
    assert ours.executor_def is dagsters.executor_def
    assert sorted(ours.graph.node_dict) == sorted(dagsters.graph.node_dict)
    ours_layer, dagsters_layer = ours.asset_layer, dagsters.asset_layer
    assert ours_layer.executable_asset_keys == dagsters_layer.executable_asset_keys
    assert ours_layer.asset_graph.get_all_asset_keys() <= (
        dagsters_layer.asset_graph.get_all_asset_keys()
    )


def test_mapping_job_is_define_asset_job_with_the_run_executor():
    key = dg.AssetKey(["main", "dim_x"])
    job = mapping_job("dim_x_job", key, "Load DIM_X", {"dms/mapref": "DIM_X"})
    plain = dg.define_asset_job(
        "dim_x_job",
        selection=dg.AssetSelection.assets(key),
        description="Load DIM_X",
        tags={"dms/mapref": "DIM_X"},
    )
    assert type(job) is MappingJob
    assert job.executor_def is run_executor()
    assert all(getattr(job, f) == getattr(plain, f) for f in JOB_FIELDS if f != "executor_def")
    assert job.run_tags == {"dms/mapref": "DIM_X"}  # (Dagster: tags are the run tags too)


def test_resolve_and_the_asset_graph_calls_keep_their_signatures():
    assert _params(UnresolvedAssetJobDefinition.resolve) == [
        "self",
        "asset_graph",
        "default_executor_def",
        "resource_defs",
    ], f"MappingJob.resolve overrides UnresolvedAssetJobDefinition.resolve. {UPGRADE}"
    assert _params(MappingJob.resolve) == _params(UnresolvedAssetJobDefinition.resolve)
    # what neighbourhood() calls
    assert _params(AssetGraph.from_assets) == ["assets"]
    for method in ("get", "has", "assets_def_for_key"):
        assert _params(getattr(AssetGraph, method)) == ["self", "key"], method
    graph = AssetGraph.from_assets([loaded, loaded_check, downstream])
    assert graph.get(loaded.key).check_keys == {loaded_check.check_key}
    assert graph.assets_def_for_key(loaded_check.check_key) is loaded_check
    assert graph.has(downstream.key) and not graph.has(dg.AssetKey("nope"))


# ------------------------------------------------------------------ the other internals


@dg.asset
def one() -> None:
    pass


SEEN: list[dict] = []


@dg.definitions
def round_trip() -> dg.Definitions | dg.RepositoryDefinition:
    """As definitions.location(): metadata left by the code server, a RepositoryDefinition
    of our own named as Dagster names that of a Definitions for the run worker."""
    context = DefinitionsLoadContext.get()
    if context.load_type == DefinitionsLoadType.RECONSTRUCTION:
        SEEN.append(dict(context.reconstruction_metadata))
        data = dg.Definitions(assets=[one]).get_repository_def()._repository_data  # (a test's)
        return dg.RepositoryDefinition(SINGLETON_REPOSITORY_NAME, repository_data=data)
    context.add_to_pending_reconstruction_metadata("dms_orchestration/test", "packed")
    return dg.Definitions(assets=[one])


def test_reconstruction_metadata_reaches_the_run_worker():
    assert set(DefinitionsLoadType) == {
        DefinitionsLoadType.INITIALIZATION,
        DefinitionsLoadType.RECONSTRUCTION,
    }
    assert _params(DefinitionsLoadContext.add_to_pending_reconstruction_metadata) == [
        "self",
        "key",
        "metadata",
    ]
    SEEN.clear()
    pointer = CodePointer.from_module(__name__, "round_trip", None)
    initial = DefinitionsLoadContext(DefinitionsLoadType.INITIALIZATION)
    with DefinitionsLoadContext.scoped(initial):
        code_server = initialize_repository_def_from_pointer(pointer)
    assert code_server.name == SINGLETON_REPOSITORY_NAME
    with DefinitionsLoadContext.scoped(DefinitionsLoadContext.get()):
        worker = reconstruct_repository_def_from_pointer(pointer, code_server.repository_load_data)
    assert SEEN == [{"dms_orchestration/test": "packed"}]
    assert worker.name == SINGLETON_REPOSITORY_NAME
    assert IMPLICIT_ASSET_JOB_NAME in worker.job_names


def test_dagster_names_its_asset_job_as_the_run_worker_lists_it():
    repository = dg.Definitions(assets=[one]).get_repository_def()
    assert IMPLICIT_ASSET_JOB_NAME in repository.job_names
    assert repository.name == SINGLETON_REPOSITORY_NAME


def test_table_metadata_set_makes_dagsters_table_keys():
    lineage = dg.TableColumnLineage(
        {"id": [dg.TableColumnDep(asset_key=dg.AssetKey("src"), column_name="id")]}
    )
    schema = dg.TableSchema(columns=[dg.TableColumn("id", "INTEGER")])
    made = dict(
        TableMetadataSet(
            row_count=3, table_name="main.t", column_schema=schema, column_lineage=lineage
        )
    )
    assert made == {
        "dagster/row_count": 3,
        "dagster/table_name": "main.t",
        "dagster/column_schema": schema,
        "dagster/column_lineage": lineage,
    }
    assert dict(TableMetadataSet(row_count=None)) == {}  # (unset fields are left out)


@pytest.mark.parametrize(
    "name", ["dim_customer_job", "DIM_X", "a1", "x" * 100, "a-b", "a b", "é", "", "input"]
)
def test_name_rules_are_the_ones_dagster_enforces(name):
    assert has_valid_name_chars(name) == bool(re.fullmatch(r"[A-Za-z0-9_]+", name))
    try:
        dg.op(name=name)(lambda: None)
        accepted = True
    except dg.DagsterInvalidDefinitionError:
        accepted = False
    assert is_valid_name(name) == accepted


def test_selection_errors_are_the_ones_dagster_raises():
    with pytest.raises(DagsterInvalidAssetSelectionError) as bad_string:
        dg.AssetSelection.from_string("(((")
    with pytest.raises(dg.DagsterInvalidSubsetError) as unknown:
        dg.AssetSelection.assets("nope").resolve(AssetGraph.from_assets([one]))
    assert isinstance(bad_string.value, SELECTION_ERRORS)
    assert isinstance(unknown.value, SELECTION_ERRORS)
    assert selection_error_line(unknown.value).startswith("error: no asset nope in this")


def test_instance_concurrency_context_keeps_what_pool_slots_call():
    assert _params(InstanceConcurrencyContext.__init__) == ["self", "instance", "dagster_run"]
    assert _params(InstanceConcurrencyContext.claim)[:3] == [
        "self",
        "concurrency_key",
        "step_key",
    ]
    assert hasattr(InstanceConcurrencyContext, "__enter__")
    assert hasattr(InstanceConcurrencyContext, "__exit__")


def test_the_run_launcher_base_and_the_run_worker_body_keep_what_forked_runs_call():
    """ForkedRunLauncher implements RunLauncher's abstract methods and the health check;
    its workers call `dagster api execute_run`'s body with these arguments."""
    abstract = getattr(RunLauncher, "__abstractmethods__", frozenset())
    assert abstract <= {"launch_run", "terminate"}, abstract
    assert _params(RunLauncher.check_run_worker_health) == ["self", "run"]
    assert _params(RunLauncher.register_instance) == ["self", "instance"]
    assert {s.name for s in WorkerStatus} >= {"RUNNING", "FAILED"}
    assert CheckRunHealthResult(WorkerStatus.RUNNING).status == WorkerStatus.RUNNING
    assert _params(LaunchRunContext) == ["dagster_run", "workspace"]
    assert issubclass(ForkedRunLauncher, ConfigurableClass)
    assert ConfigurableClassData("m", "C", "{}").module_name == "m"
    assert _params(execute_run_command_body()) == [
        "run_id",
        "instance",
        "write_stream_fn",
        "set_exit_code_on_failure",
    ]
    assert dg.DagsterInstance.from_ref  # (the worker opens the instance from its ref)
    assert InstanceRef.from_dir  # (what instance.get_ref() returns)
    with capture_interrupts():  # a context manager that installs the SIGINT handler
        pass


def test_dagster_postgres_storages_keep_the_engine_the_pooled_storage_replaces():
    """PooledPostgresStorage replaces each storage's `_engine` (dagster-postgres has no
    public way to pool beyond the webserver's pool of one): the three storages still
    create it in __init__ and send their statements through it."""
    from dagster_postgres import (
        PostgresEventLogStorage,
        PostgresRunStorage,
        PostgresScheduleStorage,
    )
    from dagster_postgres.utils import create_pg_engine

    for storage in (PostgresRunStorage, PostgresEventLogStorage, PostgresScheduleStorage):
        source = inspect.getsource(storage)
        assert "self._engine = create_pg_engine(" in source, storage
        assert "create_pg_connection(self._engine)" in source, storage
    assert _params(create_pg_engine) == [
        "postgres_url",
        "token_provider",
        "engine_kwargs",
    ]


def test_the_local_compute_log_manager_keeps_what_file_compute_logs_override_and_call():
    """FileComputeLogManager replaces LocalComputeLogManager's capture_logs (the same files,
    no processes mirroring them: test_compute_logs.py), builds itself as it does, and takes
    its default folder from the instance."""
    assert _params(LocalComputeLogManager.capture_logs) == ["self", "log_key"]
    assert _params(LocalComputeLogManager.get_captured_local_path) == [
        "self",
        "log_key",
        "extension",
        "partial",
    ]
    assert _params(LocalComputeLogManager.complete_artifact_path) == ["self", "log_key"]
    assert _params(LocalComputeLogManager.__init__) == [
        "self",
        "base_dir",
        "polling_timeout",
        "inst_data",
    ]
    assert _params(redirect_to_file) == ["stream", "filepath"]
    assert _params(ensure_file) == ["path"] and _params(touch_file) == ["path"]
    assert CapturedLogContext(["k"]).log_key == ["k"]
    # where it learns a temporary instance's folder (its default base_dir): the instance
    # hands itself over, and the manager keeps base_dir in this attribute
    assert _params(LocalComputeLogManager.register_instance) == ["self", "instance"]
    assert LocalComputeLogManager(base_dir="/x/storage")._base_dir == "/x/storage"
    assert _params(dg.DagsterInstance.root_directory.fget) == ["self"]


def test_dagster_postgres_keeps_what_the_pooled_storages_override():
    """PooledPostgresStorage sets what DagsterPostgresStorage.__init__ sets (its own three
    storages in place of dagster-postgres'), and they override Dagster's migration checks
    with these signatures (a renamed check would be asked on every event again)."""
    from dagster_postgres import (
        DagsterPostgresStorage,
        PostgresEventLogStorage,
        PostgresRunStorage,
        PostgresScheduleStorage,
    )

    init = inspect.getsource(DagsterPostgresStorage.__init__)
    assigned = set(re.findall(r"self\.(\w+) =", init))
    assert assigned == {
        "postgres_url",
        "should_autocreate_tables",
        "_inst_data",
        "_run_storage",
        "_event_log_storage",
        "_schedule_storage",
    }
    assert "super().__init__()" in init
    checks = {
        PostgresRunStorage: {
            "has_run_stats_index_cols": ["self"],
            "has_backfill_id_column": ["self"],
            "has_bulk_actions_selector_cols": ["self"],
            "has_bulk_action_job_name_column": ["self"],
            "has_backfill_tags_table": ["self"],
        },
        PostgresEventLogStorage: {
            "_has_asset_key_col_on_connection": ["self", "conn", "column_name"],
            "has_table": ["self", "table_name"],
        },
        PostgresScheduleStorage: {
            "_has_instigators_table": ["self", "conn"],
            "_has_asset_daemon_asset_evaluations_table": ["self", "conn"],
            "has_secondary_index_table": ["self"],
            "has_built_index": ["self", "migration_name"],
        },
    }
    for storage, methods in checks.items():
        for name, params in methods.items():
            assert _params(getattr(storage, name)) == params, (storage.__name__, name)
