"""Run metrics from the log tables: `dms stats --since` (table and --csv) and the
operations dashboard asset whose numeric metadata Dagster plots over time."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta

import dagster as dg
import pytest
from typer.testing import CliRunner

from dms_orchestration.cli import app
from dms_orchestration.db.connect import dispose_all
from dms_orchestration.dmslog.stats import percentile
from dms_orchestration.settings import dms_now
from dms_orchestration_tests.test_defs import cust_dms, execute, materialization
from dms_orchestration_tests.test_engine import CUST_SQL, mapping_yaml, scd1_columns
from dms_orchestration_tests.test_faults import _setup_cust, make  # noqa: F401
from dms_orchestration_tests.test_faults import dms as dms  # noqa: F401 (a fixture)

runner = CliRunner()
DAY1, DAY2 = datetime(2026, 3, 9), datetime(2026, 3, 10)


def _load(d, prcid: int, mapref: str, status: str, start: datetime, seconds, rows=None):
    end = start + timedelta(seconds=seconds) if seconds is not None else None
    d.run(
        "INSERT INTO DMS_PRCLOG (PRCID, MAPREF, PRCSTS, STRTDT, ENDDT) "
        "VALUES (:p, :m, :s, :start, :end)",
        p=prcid, m=mapref, s=status, start=start, end=end,
    )  # fmt: skip
    if rows is not None:
        d.run(
            "INSERT INTO DMS_JOBLOG (JOBLOGID, PRCID, MAPREF, JOBSTS, STRTDT, ENDDT, SRCROWS) "
            "VALUES (:p, :p, :m, :s, :start, :end, :rows)",
            p=prcid, m=mapref, s=status, start=start, end=end, rows=rows,
        )  # fmt: skip


def _history(d) -> None:
    """REF: four loads that succeeded (10..40 s, 100 rows each), one failed, one stopped,
    one running; OTHER: one of 300 s on the next day; a report's process and a load
    before the window, neither counted."""
    _setup_cust(d)
    d.import_yaml(mapping_yaml("OTHER", CUST_SQL, scd1_columns(), table="T_OTHER"))
    at = DAY1 + timedelta(hours=8)
    for i, seconds in enumerate((30, 10, 40, 20)):
        _load(d, 9001 + i, "REF", "PC", at + timedelta(minutes=i), seconds, rows=100)
    _load(d, 9005, "REF", "FL", at + timedelta(hours=1), 5, rows=0)
    _load(d, 9006, "REF", "ST", DAY2 + timedelta(hours=1), 7)
    _load(d, 9007, "REF", "IP", DAY2 + timedelta(hours=2), None)
    _load(d, 9008, "OTHER", "PC", DAY2 + timedelta(hours=3), 300, rows=1000)
    _load(d, 9009, "SALES_REPORT", "PC", DAY2, 1)  # a report: no mapping of that name
    _load(d, 9010, "REF", "FL", DAY1 - timedelta(days=1), 1)  # before the window


def test_nearest_rank_percentiles_are_durations_a_load_took():
    assert percentile([], 0.5) is None
    assert percentile([10.0, 20.0, 30.0, 40.0], 0.5) == 20.0
    assert percentile([10.0, 20.0, 30.0, 40.0], 0.95) == 40.0
    assert percentile([7.0], 0.95) == 7.0


def test_dms_stats_csv_gives_the_window_each_day_and_each_mapping(dms):
    _history(dms)
    result = runner.invoke(
        app, ["stats", "--since", "2026-03-09", "--csv", "--url", dms.url],
        env={"DMS_HOME": str(dms.home)},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == [
        "scope", "key", "loads", "succeeded", "failed", "stopped", "running", "success_rate",
        "p50_seconds", "p95_seconds", "max_seconds", "rows",
    ]  # fmt: skip
    total, *rest = rows[1:]
    assert total[0] == "total" and total[1].startswith("2026-03-09 00:00:00/")
    # 8 loads: 5 PC, 1 FL, 1 ST, 1 IP; success 5 / 6; durations 10 20 30 40 300
    assert total[2:] == ["8", "5", "1", "1", "1", "0.8333", "30", "300", "300", "1400"]
    assert rest == [
        ["day", "2026-03-09", "5", "4", "1", "0", "0", "0.8", "20", "40", "40", "400"],
        ["day", "2026-03-10", "3", "1", "0", "1", "1", "1", "300", "300", "300", "1000"],
        ["mapping", "OTHER", "1", "1", "0", "0", "0", "1", "300", "300", "300", "1000"],
        ["mapping", "REF", "7", "4", "1", "1", "1", "0.8", "20", "40", "40", "400"],
    ]


@pytest.mark.slow
def test_dms_stats_prints_the_window_the_days_and_the_slowest_mappings(dms):
    _history(dms)
    result = runner.invoke(
        app, ["stats", "--since", "2026-03-09", "--url", dms.url],
        env={"DMS_HOME": str(dms.home), "COLUMNS": "120"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    first = result.stdout.splitlines()[0]
    assert first.startswith("since 2026-03-09 00:00:00: 8 loads (5 succeeded, 1 failed, ")
    assert "success rate 83.3%" in first and "p50 30.0 s, p95 5 min 00 s" in first
    lines = result.stdout.splitlines()
    day1 = next(line for line in lines if "2026-03-09" in line and "│" in line)
    assert day1.split("│")[2].strip() == "5" and "80.0%" in day1
    slowest = [line.split("│")[1].strip() for line in lines if "OTHER" in line or "REF " in line]
    assert slowest == ["OTHER", "REF"]  # the slowest first

    quiet = runner.invoke(
        app, ["stats", "--since", "30m", "--url", dms.url], env={"DMS_HOME": str(dms.home)}
    )
    assert quiet.exit_code == 0 and quiet.stdout.count("\n") == 1  # no load: one line
    assert " 0 loads (" in quiet.stdout and "success rate n/a" in quiet.stdout
    bad = runner.invoke(app, ["stats", "--since", "last week", "--url", dms.url])
    assert bad.exit_code == 1 and "--since 'last week'" in bad.output


@pytest.fixture
def cust(dms_url, tmp_path, monkeypatch):
    yield cust_dms(dms_url, tmp_path, monkeypatch)
    dispose_all()


@pytest.mark.slow
def test_the_dashboard_asset_records_numbers_dagster_plots(cust):
    defs = cust.defs()
    assert execute(defs, "cust_dim_job").success  # one load that succeeded
    cust.sql(
        "INSERT INTO DMS_PRCLOG (PRCID, MAPREF, PRCSTS, STRTDT, ENDDT) "
        "VALUES (9901, 'CUST_DIM', 'FL', :start, :start)",
        start=dms_now() - timedelta(hours=1),
    )
    result = execute(defs, "dms_operations_job")
    assert result.success
    metadata = materialization(result)
    assert metadata["loads"] == 2.0 and metadata["failed_loads"] == 1.0
    assert metadata["success_rate"] == 0.5 and metadata["window_hours"] == 24
    assert metadata["loads_per_day"] == 2.0  # over a window of 24 hours
    assert metadata["rows_per_day"] == 30.0  # the 30 source rows of the load
    assert 0 < metadata["p50_duration_seconds"] <= metadata["p95_duration_seconds"]
    [slowest] = metadata["slowest_mappings"].records
    assert slowest.data["mapref"] == "CUST_DIM" and slowest.data["loads"] == 2
    # numbers, so the asset's page plots them run after run
    event = result.get_asset_materialization_events()[0].materialization
    assert isinstance(event.metadata["success_rate"], dg.FloatMetadataValue)
    # and on its hourly schedule
    schedule = defs.resolve_schedule_def("dms_operations_schedule")
    assert schedule.cron_schedule == "0 * * * *" and schedule.job_name == "dms_operations_job"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
