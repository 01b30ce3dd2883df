"""The asset checks at any table size: the current-row check answered by the unique index
the engine builds (counted when it is missing or not that index), and the
reconciliation taking the source keys of the same run's load of the whole extract, and
the current rows its load found; either part of the step runs alone."""

from __future__ import annotations

import dagster as dg
import pytest

from dms_orchestration.db import interrupt
from dms_orchestration.db.connect import dispose_all, metadata_engine
from dms_orchestration.engine.checks import (
    TableRows,
    current_rows,
    reconcile,
    target_rows,
    target_rows_as_of,
)
from dms_orchestration.metadata.catalog import load_catalog
from dms_orchestration_tests.test_defs import cust_dms, execute

INDEX = "cust_dim_cur"  # the engine's unique index over the current rows of CUST_DIM


@pytest.fixture
def cust(dms_url, tmp_path, monkeypatch):
    d = cust_dms(dms_url, tmp_path, monkeypatch)
    assert execute(d.defs(), "cust_dim_job").success  # the first load builds the index
    yield d
    dispose_all()


def mapping(d):
    return load_catalog(metadata_engine(d.settings)).mappings["CUST_DIM"]


def checks(result: dg.ExecuteInProcessResult) -> dict[str, dict]:
    return {
        c.check_name: {k: v.value for k, v in c.metadata.items()}
        for c in result.get_asset_check_evaluations()
    }


@pytest.mark.slow
def test_the_current_row_check_is_answered_by_the_unique_index(cust):
    result = execute(cust.defs(), "cust_dim_job", dms__full="true")
    found = checks(result)["one_current_row_per_key"]
    assert found["enforced by"] == f"unique index {INDEX}"
    assert found["keys with several current rows"] == 0


@pytest.mark.slow
def test_without_the_index_the_rows_are_counted_and_a_duplicate_is_found(cust):
    cust.sql(f"DROP INDEX {INDEX}")
    cust.sql(
        "INSERT INTO CUST_DIM (SKEY, ID, NAME, CITY, CURFLG, VLDFRM, RWHKEY) "
        "SELECT SKEY + 1000, ID, NAME, CITY, CURFLG, VLDFRM, RWHKEY FROM CUST_DIM WHERE ID = 7"
    )
    result = current_rows(mapping(cust), cust.settings)
    assert result.enforced_by is None
    assert (result.keys_with_several_current_rows, result.sample) == (1, ["7"])


@pytest.mark.slow
def test_an_index_of_that_name_that_is_not_the_rule_is_not_trusted(cust):
    cust.sql(f"DROP INDEX {INDEX}")
    cust.sql(f"CREATE INDEX {INDEX} ON CUST_DIM (ID)")  # not unique
    assert current_rows(mapping(cust), cust.settings).enforced_by is None
    cust.sql(f"DROP INDEX {INDEX}")
    cust.sql(f"CREATE UNIQUE INDEX {INDEX} ON CUST_DIM (SKEY)")  # not the business key
    assert current_rows(mapping(cust), cust.settings).enforced_by is None


@pytest.mark.slow
def test_the_reconciliation_takes_the_source_keys_of_this_runs_whole_load(cust):
    cust.sql("DELETE FROM SRC_CUST WHERE ID > 28")  # two keys gone: expired
    result = execute(cust.defs(), "cust_dim_job", dms__full="true")
    found = checks(result)["source_target_reconciliation"]
    assert found["source keys from"] == "this run's load (whole extract)"
    assert found["current rows from"] == "this run's load, after commit"
    assert (found["source keys"], found["current target rows"]) == (28, 28)
    # what counting the source query says
    counted = reconcile(mapping(cust), cust.settings)
    assert (counted.source_keys, counted.target_rows, counted.source_counted) == (28, 28, True)


@pytest.mark.slow
def test_a_load_of_part_of_the_source_leaves_the_reconciliation_to_count(cust):
    """A load given parameters may have read part of the source only (its SQL may filter
    on them): its rows are not taken for the source's keys."""
    result = execute(cust.defs(), "cust_dim_job", dms__param1="x")
    found = checks(result)["source_target_reconciliation"]
    assert found["source keys from"] == "the source query"
    assert found["source keys"] == 30 and found["current target rows"] == 30


def run_selected(d, selection: dg.AssetSelection, instance=None) -> dg.ExecuteInProcessResult:
    """A run of part of the mapping's step, as the UI asks for one ("Execute checks",
    "Materialize without checks")."""
    job = dg.define_asset_job("part_of_cust_dim", selection=selection)
    defs = dg.Definitions.merge(d.defs(), dg.Definitions(jobs=[job]))
    instance = instance or dg.DagsterInstance.ephemeral()
    return defs.resolve_job_def(job.name).execute_in_process(
        instance=instance, raise_on_error=False
    )


CUST_DIM = dg.AssetKey(["default", "cust_dim"])


@pytest.mark.slow
def test_the_checks_run_alone_without_a_load_and_the_load_without_its_checks(cust):
    before = cust.scalar("SELECT COUNT(*) FROM DMS_PRCLOG")
    checked = run_selected(cust, dg.AssetSelection.checks_for_assets(CUST_DIM))
    assert checked.success
    assert not checked.get_asset_materialization_events()
    assert cust.scalar("SELECT COUNT(*) FROM DMS_PRCLOG") == before  # nothing loaded
    found = checks(checked)
    assert set(found) == {"one_current_row_per_key", "source_target_reconciliation"}
    # no load in this run to take them from: both counted by the check
    reconciliation = found["source_target_reconciliation"]
    assert reconciliation["source keys from"] == "the source query"
    assert reconciliation["current rows from"] == "this check"
    assert (reconciliation["source keys"], reconciliation["current target rows"]) == (30, 30)

    loaded = run_selected(cust, dg.AssetSelection.assets(CUST_DIM).without_checks())
    assert loaded.success and len(loaded.get_asset_materialization_events()) == 1
    assert not loaded.get_asset_check_evaluations()
    assert cust.scalar("SELECT COUNT(*) FROM DMS_PRCLOG") == before + 1


@pytest.mark.slow
def test_a_failing_current_row_check_fails_the_mappings_step(cust):
    cust.sql(f"DROP INDEX {INDEX}")
    cust.sql(
        "INSERT INTO CUST_DIM (SKEY, ID, NAME, CITY, CURFLG, VLDFRM, RWHKEY) "
        "SELECT SKEY + 1000, ID, NAME, CITY, CURFLG, VLDFRM, RWHKEY FROM CUST_DIM WHERE ID = 7"
    )
    result = run_selected(cust, dg.AssetSelection.checks_for_assets(CUST_DIM))
    assert not result.success
    [failure] = result.get_step_failure_events()
    assert failure.step_key == "cust_dim"
    assert "blocking asset check failed" in failure.step_failure_data.error.message
    evaluation = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert not evaluation["one_current_row_per_key"].passed
    assert evaluation["one_current_row_per_key"].blocking


@pytest.mark.slow
def test_rows_counted_in_a_snapshot_do_not_see_what_commits_after_it(cust):
    """The target's rows before a load's chunks write, counted beside them: what
    commits once the snapshot is taken is not counted (SQLite's read transaction, taken
    at its first read; PostgreSQL's REPEATABLE READ)."""

    def meanwhile(_cancel):  # as a chunk would, on a connection of its own
        cust.sql("DELETE FROM CUST_DIM WHERE ID > 20")
        cust.sql("UPDATE CUST_DIM SET CURFLG = 'N' WHERE ID = 1")

    assert target_rows_as_of(mapping(cust), cust.settings, meanwhile) == TableRows(30, 30)
    assert target_rows(mapping(cust), cust.settings) == TableRows(20, 19)


@pytest.mark.slow
def test_a_count_beside_the_chunks_keeps_psycopg2s_wait_callback_set(cust):
    """The count runs `cancellable`, as a chunk's log writes do (engine.progress): the
    chunks' transactions set and unset psycopg2's process-wide wait callback, and a
    statement that began under it can fail when the last of them leaves before it waits
    (a full run of the suite saw a load's count fail, its rows None, in the model test)."""
    from psycopg2 import extensions

    callbacks = []
    target_rows_as_of(
        mapping(cust), cust.settings, lambda _: callbacks.append(extensions.get_wait_callback())
    )
    postgres = cust.url.startswith("postgresql")
    assert callbacks == [interrupt._wait] if postgres else callbacks == [None]
    assert extensions.get_wait_callback() is None  # unset again once the count is done
