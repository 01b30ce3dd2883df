"""The resource layer: the metadata database, the connections' pools, the ID pools and the
DMS log writer as Dagster resources that steps, checks and sensors receive, listed on the
UI's Resources page with their (secret-free) configuration, and swappable in Definitions."""

from __future__ import annotations

import threading

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

from dms_orchestration.db import connect
from dms_orchestration.db.connect import PoolOptions, dispose_all
from dms_orchestration.definitions import location
from dms_orchestration.defs.resources import (
    RESOURCE_KEYS,
    DmsConnections,
    DmsLogWriter,
    IdPools,
    MetadataDatabase,
    default_resources,
)
from dms_orchestration.dmslog.writer import LogWriter
from dms_orchestration.settings import ConfigError
from dms_orchestration_tests import test_asset_metadata
from dms_orchestration_tests.test_defs import (
    QUIET,
    cust_dms,
    error_text,
    execute,
    materialization,
)

# the demo on SQLite, and the UI's GraphQL API on it (fixtures)
demo, graphql = test_asset_metadata.demo, test_asset_metadata.graphql

# ------------------------------------------------------------------ a log writer that records


class RecordingWriter(LogWriter):
    """Writes the log tables as the plain writer does, and remembers each write."""

    calls: list[tuple[str, dict]] = []
    lock = threading.Lock()

    def _record(self, name: str, **what) -> None:
        with self.lock:
            RecordingWriter.calls.append((name, what))

    def open_load_row(self, **row) -> int:
        self._record("open_load_row", **row)
        return super().open_load_row(**row)

    def write_joblog(self, **row) -> int:
        self._record("write_joblog", **row)
        return super().write_joblog(**row)

    def finish_chunk_row(self, joblogid, prcid, *, counts, status) -> None:
        self._record("finish_chunk_row", prcid=prcid, status=status, counts=counts)
        super().finish_chunk_row(joblogid, prcid, counts=counts, status=status)

    def commit_load(self, **row) -> bool:
        self._record("commit_load", **row)
        return super().commit_load(**row)

    def close_process(self, prcid, status, message=None, **kw) -> bool:
        self._record("close_process", prcid=prcid, status=status, message=message)
        return super().close_process(prcid, status, message, **kw)


class RecordingLogWriter(DmsLogWriter):
    def writer(self, engine: sa.Engine) -> LogWriter:
        return RecordingWriter(engine, self.progress_interval_seconds)


@pytest.fixture
def cust(dms_url, tmp_path, monkeypatch):
    RecordingWriter.calls = []
    yield cust_dms(dms_url, tmp_path, monkeypatch)
    dispose_all()


@pytest.mark.slow
def test_a_log_writer_swapped_in_definitions_sees_every_write_of_a_load(cust):
    defs = cust.defs(dms_log=RecordingLogWriter())
    result = execute(defs, "cust_dim_job", dms__chunks="2", dms__full="true")
    assert result.success
    prcid = materialization(result)["dms/prcid"]
    names = [name for name, _ in RecordingWriter.calls]
    assert names[0] == "open_load_row" and names[-1] == "commit_load"
    chunk_rows = [w for n, w in RecordingWriter.calls if n == "write_joblog"]
    assert sorted(w["chunkno"] for w in chunk_rows) == [0, 1]
    finished = [w for n, w in RecordingWriter.calls if n == "finish_chunk_row"]
    assert [w["status"] for w in finished] == ["PC", "PC"]
    assert sum(w["counts"].insrows for w in finished) == 30
    closed = RecordingWriter.calls[-1][1]
    assert closed["prcid"] == int(prcid) and closed["counts"].insrows == 30
    assert closed["message"].startswith("30 source rows: 30 inserted")
    # and the plain writes still happened: the legacy log tables are as always
    assert cust.prclog(result.run_id)[0][0] == int(prcid)
    assert cust.scalar(f"SELECT PRCSTS FROM DMS_PRCLOG WHERE PRCID = {prcid}") == "PC"
    # the swap is the run's: afterwards the plain writer writes again
    RecordingWriter.calls = []
    assert execute(cust.defs(), "cust_dim_job").success
    assert RecordingWriter.calls == []


def test_steps_checks_and_sensors_receive_the_resources(cust):
    defs = cust.defs()
    job = defs.resolve_job_def("cust_dim_job")
    for node in job.graph.node_defs:  # the load step, which runs the checks too
        assert node.required_resource_keys >= RESOURCE_KEYS, node.name
    queue = defs.resolve_sensor_def("dms_request_queue")
    assert set(queue.required_resource_keys) == RESOURCE_KEYS
    for name in ("dms_close_failed_runs", "dms_close_stopped_runs"):
        sensor = defs.resolve_sensor_def(name)
        assert {"dms_metadata", "dms_log"} <= set(sensor.required_resource_keys), name


# ------------------------------------------------------------------ ID pools


@pytest.mark.slow
def test_id_pools_configured_by_the_resource_reserve_their_blocks(cust):
    ids = IdPools(mode="TABLE_COUNTER", block_size=7, entity_block_sizes={"DMS_JOBLOG": 3})
    assert execute(cust.defs(dms_ids=ids), "cust_dim_job", dms__chunks="2").success
    rows = dict(cust.query("SELECT ENTITYNM, BLKSZ FROM DMS_IDPOOL WHERE ENTITYNM LIKE 'DMS_%LOG'"))
    assert rows == {"DMS_PRCLOG": 7, "DMS_JOBLOG": 3}


@pytest.mark.slow
def test_bad_id_pool_settings_fail_the_run_naming_the_resource(cust):
    result = execute(cust.defs(dms_ids=IdPools(mode="COUNTER")), "cust_dim_job")
    assert not result.success
    [failure] = result.get_step_failure_events()
    message = error_text(failure.step_failure_data.error)
    assert "dms_ids mode" in message and "'COUNTER'" in message, message
    assert cust.prclog(result.run_id) == []  # before any write


# ------------------------------------------------------------------ connections


@pytest.mark.slow
def test_the_connections_resource_sets_the_pools_of_source_and_target_engines(demo):
    """The demo's mappings read retail.db and write warehouse.db (DMS_DBCONDTLS rows)."""
    dispose_all()
    pools = DmsConnections(pool_size=2, max_overflow=1, pool_recycle_seconds=600)
    assert execute(demo.defs(dms_connections=pools), "dim_customer_job").success
    wanted = PoolOptions(pool_size=2, max_overflow=1, pool_recycle=600)
    made = {key[0]: engine for key, engine in connect._engines.items() if key[2] == wanted}
    assert {sa.make_url(url).database.rsplit("/", 1)[-1] for url in made} == {
        "retail.db",
        "warehouse.db",
    }
    assert all(engine.pool.size() == 2 for engine in made.values())
    # the metadata database keeps its own engine
    assert all(key[2] is None for key in connect._engines if key[0].endswith("dms.db"))


# ------------------------------------------------------------------ the metadata database


def test_the_metadata_password_comes_from_an_env_var_never_from_the_url(monkeypatch, tmp_path):
    monkeypatch.setenv("DMS_HOME", str(tmp_path))
    monkeypatch.setenv("META_PW", "s3cret")
    url = "postgresql://dms@db.example:5432/dms"
    resource = MetadataDatabase(url=url, password=dg.EnvVar("META_PW"))
    settings = resource.process_config_and_initialize().settings()
    assert settings.database_url.password == "s3cret"
    assert settings.database_url.host == "db.example"
    with pytest.raises(ConfigError, match="dms_metadata: its url holds a password"):
        MetadataDatabase(url="postgresql://dms:s3cret@db.example/dms").settings()


def test_the_default_resources_take_the_metadata_password_from_dms_database_password(
    monkeypatch,
):
    monkeypatch.delenv("DMS_DATABASE_PASSWORD", raising=False)
    assert default_resources()["dms_metadata"].password is None
    monkeypatch.setenv("DMS_DATABASE_PASSWORD", "s3cret")
    metadata = default_resources()["dms_metadata"]
    assert isinstance(metadata, MetadataDatabase)
    assert "s3cret" not in repr(metadata.password)  # an EnvVar: the name, not the value


# ------------------------------------------------------------------ the UI's Resources page

RESOURCES_PAGE = """
query Resources($selector: RepositorySelector!) {
  allTopLevelResourceDetailsOrError(repositorySelector: $selector) {
    __typename
    ... on ResourceDetailsList {
      results {
        name
        description
        configuredValues { key value type }
      }
    }
  }
}
"""


@pytest.mark.slow
def test_the_resources_page_lists_each_resource_with_its_configuration(graphql):
    data = graphql.query(RESOURCES_PAGE, {"selector": graphql.selector})
    page = data["allTopLevelResourceDetailsOrError"]
    assert page["__typename"] == "ResourceDetailsList", page
    listed = {r["name"]: r for r in page["results"]}
    assert RESOURCE_KEYS <= set(listed)
    values = {
        name: {v["key"]: v["value"] for v in r["configuredValues"]} for name, r in listed.items()
    }
    assert values["dms_connections"]["pool_size"] == "5"
    assert values["dms_log"]["progress_interval_seconds"] == "2.0"
    assert "block_size" in values["dms_ids"] and "url" in values["dms_metadata"]
    assert "metadata database" in listed["dms_metadata"]["description"]


# ------------------------------------------------------------------ a location of one's own


@dg.definitions
def recording_location():
    """A code location of one's own: ours, with the recording log writer."""
    return location(resources={"dms_log": RecordingLogWriter()})


@pytest.mark.slow
def test_a_location_of_ones_own_swaps_the_writer_in_its_run_workers_too(demo):
    """The run worker's lazy reconstruction (one mapping) keeps the swapped resource."""
    RecordingWriter.calls = []
    pointer = CodePointer.from_module(__name__, "recording_location", None)
    with DefinitionsLoadContext.scoped(DefinitionsLoadContext(DefinitionsLoadType.INITIALIZATION)):
        code_server = initialize_repository_def_from_pointer(pointer)
    with DefinitionsLoadContext.scoped(DefinitionsLoadContext.get()):
        worker = reconstruct_repository_def_from_pointer(pointer, code_server.repository_load_data)
        job = worker.get_job("dim_product_job")
    result = job.execute_in_process(
        run_config=QUIET, instance=dg.DagsterInstance.ephemeral(), raise_on_error=False
    )
    assert result.success
    committed = [w for name, w in RecordingWriter.calls if name == "commit_load"]
    assert [w["mapref"] for w in committed] == ["DIM_PRODUCT"]
