"""A run of one mapping: its job runs in the run worker (one load step, its chunks side by
side inside it, each in the run's log and its pool), and a run worker builds the
definitions of the mapping it runs only, from the code server's reconstruction metadata."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.code_pointer import CodePointer
from dagster._core.definitions.definitions_load_context import (
    DefinitionsLoadContext,
    DefinitionsLoadType,
)
from dagster._core.definitions.reconstruct import (
    initialize_repository_def_from_pointer,
    reconstruct_repository_def_from_pointer,
)
from dagster._core.definitions.repository_definition import RepositoryLoadData
from dagster._serdes import deserialize_value, serialize_value

from dms_orchestration.db.connect import dispose_all, metadata_engine
from dms_orchestration.defs.translator import DmsTranslator
from dms_orchestration_tests.test_defs import (
    QUIET,
    chunk_lines,
    chunk_steps,
    cust_dms,
    demo_home,
    execute,
    materialization,
)

REPO = Path(__file__).resolve().parents[1]
POINTER = CodePointer.from_module("dms_orchestration.definitions", "defs", None)
COUNTING = "dms_orchestration_tests.test_runs:CountingTranslator"


class CountingTranslator(DmsTranslator):
    """The default names; remembers which mappings it was asked about."""

    asked: ClassVar[list[str]] = []

    def get_asset_spec(self, mapping):
        CountingTranslator.asked.append(mapping.ref)
        return super().get_asset_spec(mapping)


@pytest.fixture
def demo(tmp_path, monkeypatch):
    """The demo metadata on SQLite (sources and warehouse in DMS_HOME)."""
    yield demo_home(tmp_path, monkeypatch)
    dispose_all()


@pytest.fixture
def cust(dms_url, tmp_path, monkeypatch):
    """30 customers; metadata, source and target in one database (SQLite, PostgreSQL)."""
    yield cust_dms(dms_url, tmp_path, monkeypatch)
    dispose_all()


def _mapref_of(repo: dg.RepositoryDefinition, key: dg.AssetKey) -> str | None:
    """The MAPREF of a mapping's asset; None for a source table."""
    return repo.assets_defs_by_key[key].specs_by_key[key].metadata.get("dms/mapref")


@pytest.mark.slow
def test_a_run_worker_builds_only_the_mapping_it_runs(demo, monkeypatch):
    monkeypatch.setenv("DMS_TRANSLATOR", COUNTING)
    # the code server: every mapping, from one read of the metadata database
    with DefinitionsLoadContext.scoped(DefinitionsLoadContext(DefinitionsLoadType.INITIALIZATION)):
        code_server = initialize_repository_def_from_pointer(POINTER)
    everything = {_mapref_of(code_server, k) for k in code_server.assets_defs_by_key} - {None}
    assert len(everything) == 4 and len(CountingTranslator.asked) >= 4
    # what reaches a run worker: the load data of the code server's load, serialized
    load_data = deserialize_value(
        serialize_value(code_server.repository_load_data), RepositoryLoadData
    )
    statements = []
    meta = metadata_engine(demo.settings)
    sa.event.listen(meta, "before_cursor_execute", lambda *a, **k: statements.append(a[2]))
    for job_name, mapref in [
        ("fact_sales_daily_job", "FACT_SALES_DAILY"),
        ("dim_customer_job", "DIM_CUSTOMER"),
    ]:
        key = code_server.get_job(job_name).asset_layer.executable_asset_keys
        [key] = key
        parents = code_server.asset_graph.get(key).parent_keys
        reads = {_mapref_of(code_server, p) for p in parents} - {None}
        CountingTranslator.asked.clear()
        with DefinitionsLoadContext.scoped(DefinitionsLoadContext.get()):
            worker = reconstruct_repository_def_from_pointer(POINTER, load_data)
            job = worker.get_job(job_name)
        # the mapping and the mappings it reads (shown in its job), not the whole catalog
        assert set(CountingTranslator.asked) == {mapref, *reads}
        assert job.get_job_snapshot_id() == code_server.get_job(job_name).get_job_snapshot_id()
    # dim_customer: itself and its source table, no other mapping
    assert reads == set() and len(everything) > 1
    assert [p.to_user_string() for p in parents] == ["source/retail_src/default/customers"]
    assert statements == []  # nothing read from the metadata database

    result = job.execute_in_process(
        run_config=QUIET, instance=dg.DagsterInstance.ephemeral(), raise_on_error=False
    )
    assert result.success and materialization(result)["inserted"] > 0


def test_a_mapping_job_runs_in_its_run_worker(cust):
    job = cust.defs().resolve_job_def("cust_dim_job")
    assert job.executor_def is dg.in_process_executor  # no process per step
    assert len(job.nodes) == 1  # the load (its chunks inside it), then its checks


@pytest.mark.slow
def test_each_chunk_takes_a_slot_of_its_pool(cust, tmp_path):
    overrides = {"concurrency": {"pools": {"default_limit": 1}}}
    with dg.instance_for_test(overrides=overrides, temp_dir=str(tmp_path)) as inst:
        result = execute(cust.defs(), "cust_dim_job", inst, dms__chunks="3", dms__full="true")
        assert result.success and chunk_steps(result) == [1, 2, 3]
        # one slot: the chunks ran one after another
        events = [(n, what) for _, n, what in chunk_lines(result)]
        running = 0
        for _, what in events:
            running += {"started": 1, "done": -1}.get(what, 0)
            assert running <= 1, events
        info = inst.event_log_storage.get_concurrency_info("dms_metadata")
        assert info.slot_count == 1 and info.active_slot_count == 0  # all given back


@pytest.mark.slow
def test_dagster_job_execute_runs_a_mapping(cust):
    """The dagster CLI, with no code server: it reconstructs the location four times in
    one process, reading the catalog once."""
    dispose_all()
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "dagster"),
            "job",
            "execute",
            *("-m", "dms_orchestration.definitions", "-a", "defs", "-j", "cust_dim_job"),
            *("--tags", '{"dms/chunks": "2", "dms/full": "true"}'),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "chunk 2/2 done" in done.stderr
    status = cust.query("SELECT PRCSTS, MAPREF FROM DMS_PRCLOG ORDER BY PRCID")
    assert status == [("PC", "CUST_DIM")]


def test_without_a_code_server_only_the_mapping_run_has_its_sql_read(demo, monkeypatch):
    """`dagster job execute` (no reconstruction metadata) reads the catalog, and the SQL of
    the one mapping it runs: the same job as the code server's, lineage included."""
    from dms_orchestration import definitions as location
    from dms_orchestration.defs import lineage

    monkeypatch.setattr(location, "_read", {})
    read, real = [], lineage.mapping_reads
    monkeypatch.setattr(lineage, "mapping_reads", lambda m, d: read.append(m.ref) or real(m, d))
    with DefinitionsLoadContext.scoped(DefinitionsLoadContext(DefinitionsLoadType.INITIALIZATION)):
        code_server = initialize_repository_def_from_pointer(POINTER)
    assert len(read) == 4  # the code server reads every mapping's SQL
    read.clear()
    with DefinitionsLoadContext.scoped(DefinitionsLoadContext(DefinitionsLoadType.RECONSTRUCTION)):
        job = location.run_repository().get_job("dim_customer_job")
    assert read == ["DIM_CUSTOMER"]
    assert (
        job.get_job_snapshot_id() == code_server.get_job("dim_customer_job").get_job_snapshot_id()
    )
    node = job.asset_layer.asset_graph.get(dg.AssetKey(["main", "dim_customer"]))
    assert "dagster/column_lineage" in node.metadata


def _reconstructed_job(job_name: str) -> dg.JobDefinition:
    """The job as `dagster job execute` builds it: reconstructed, no metadata given."""
    from dms_orchestration import definitions as location

    with DefinitionsLoadContext.scoped(DefinitionsLoadContext(DefinitionsLoadType.RECONSTRUCTION)):
        return location.run_repository().get_job(job_name)


def test_without_a_code_server_only_the_mappings_a_run_needs_are_read_whole(demo, monkeypatch):
    """`dagster job execute` names and indexes the catalog from the mapping rows (of the
    columns, only those that look up): only the mapping it runs, and those it reads, are
    read with all their columns - the same job as the code server's."""
    from dms_orchestration import definitions as location
    from dms_orchestration.metadata.catalog import load_catalog

    monkeypatch.setattr(location, "_read", {})
    with DefinitionsLoadContext.scoped(DefinitionsLoadContext(DefinitionsLoadType.INITIALIZATION)):
        code_server = initialize_repository_def_from_pointer(POINTER)
    job = _reconstructed_job("fact_sales_daily_job")
    [(catalog, _, whole, _)] = location._read.values()
    [key] = code_server.get_job("fact_sales_daily_job").asset_layer.executable_asset_keys
    parents = {_mapref_of(code_server, p) for p in code_server.asset_graph.get(key).parent_keys}
    assert parents - {None} and set(whole.read) == {"FACT_SALES_DAILY", *parents} - {None}
    assert len(catalog.mappings) == 4
    assert all(c.is_lookup for m in catalog.mappings.values() for c in m.columns)
    full = load_catalog(metadata_engine(demo.settings)).mappings
    assert whole.read["FACT_SALES_DAILY"].columns == full["FACT_SALES_DAILY"].columns
    expected = code_server.get_job("fact_sales_daily_job").get_job_snapshot_id()
    assert job.get_job_snapshot_id() == expected


@pytest.mark.slow
def test_without_a_code_server_a_bad_column_row_still_stops_its_run(demo, monkeypatch):
    """What reading the run's mapping whole finds (a value of the wrong type) is one of
    its findings, as in the code server, and the run fails on it before any write."""
    from dms_orchestration import definitions as location

    monkeypatch.setattr(location, "_read", {})
    demo.sql("UPDATE DMS_MAPRDTL SET EXCSEQ = 'abc' WHERE MAPREF = 'DIM_CUSTOMER'")
    job = _reconstructed_job("dim_customer_job")
    result = job.execute_in_process(
        run_config=QUIET, instance=dg.DagsterInstance.ephemeral(), raise_on_error=False
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "EXCSEQ 'abc' is left out" in str(failure.event_specific_data.error)
    assert demo.query("SELECT COUNT(*) FROM DMS_PRCLOG WHERE PRCSTS = 'PC'") == [(0,)]


def _code_server_load() -> tuple[dg.RepositoryDefinition, RepositoryLoadData]:
    """The code server's definitions, and its load data as a run worker receives it."""
    with DefinitionsLoadContext.scoped(DefinitionsLoadContext(DefinitionsLoadType.INITIALIZATION)):
        code_server = initialize_repository_def_from_pointer(POINTER)
    data = serialize_value(code_server.repository_load_data)
    return code_server, deserialize_value(data, RepositoryLoadData)


def _worker_job(load_data: RepositoryLoadData, job_name: str) -> dg.JobDefinition:
    with DefinitionsLoadContext.scoped(DefinitionsLoadContext.get()):
        return reconstruct_repository_def_from_pointer(POINTER, load_data).get_job(job_name)


def _same_job(job: dg.JobDefinition, code_server: dg.RepositoryDefinition) -> bool:
    return job.get_job_snapshot_id() == code_server.get_job(job.name).get_job_snapshot_id()


def test_the_catalog_reaches_run_workers_in_a_file_named_by_its_content(demo):
    """The reconstruction metadata (which travels with every run and is stored with its
    plan) names a file under DMS_HOME; a run worker builds its job from the file."""
    from dms_orchestration.definitions import FILE_KEY

    code_server, load_data = _code_server_load()
    metadata = load_data.reconstruction_metadata
    assert list(metadata) == [FILE_KEY]
    path = demo.home / "catalogs" / f"{metadata[FILE_KEY].data}.json"
    assert "dms_orchestration/mapping/DIM_CUSTOMER" in json.loads(path.read_text())
    statements = []
    meta = metadata_engine(demo.settings)
    sa.event.listen(meta, "before_cursor_execute", lambda *a, **k: statements.append(a[2]))
    job = _worker_job(load_data, "dim_customer_job")
    assert statements == []  # nothing read from the metadata database
    assert _same_job(job, code_server)
    # the same catalog again: the same file, the same metadata (and snapshot ids)
    assert _code_server_load()[1].reconstruction_metadata == metadata


@pytest.mark.parametrize("fault", ["missing", "damaged"])
@pytest.mark.slow
def test_a_run_worker_without_the_catalog_file_reads_the_database(demo, monkeypatch, fault):
    from dms_orchestration import definitions as location
    from dms_orchestration.defs.catalog_file import read_catalog

    monkeypatch.setattr(location, "_read", {})
    code_server, load_data = _code_server_load()
    [path] = (demo.home / "catalogs").glob("*.json")
    if fault == "missing":
        path.unlink()
    else:
        path.write_text(path.read_text().replace("DIM_CUSTOMER", "DIM_CUSTOMEX"))
    read_catalog.cache_clear()
    job = _worker_job(load_data, "dim_customer_job")
    assert _same_job(job, code_server)
    result = job.execute_in_process(
        run_config=QUIET, instance=dg.DagsterInstance.ephemeral(), raise_on_error=False
    )
    assert result.success and materialization(result)["inserted"] > 0


def test_a_code_server_that_cannot_write_the_file_leaves_the_catalog_inline(demo):
    from dms_orchestration.definitions import CATALOG_KEY, FILE_KEY

    (demo.home / "catalogs").write_text("a file where the folder would be")
    code_server, load_data = _code_server_load()
    metadata = load_data.reconstruction_metadata
    assert FILE_KEY not in metadata and CATALOG_KEY in metadata
    job = _worker_job(load_data, "dim_customer_job")
    assert _same_job(job, code_server)
