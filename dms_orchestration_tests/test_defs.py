"""The Dagster code location built from DMS metadata: frequencies and schedules, assets,
jobs and sensors from the demo, invalid mappings and cycles, reconstruction without
metadata queries, materializations on SQLite and PostgreSQL, failures and retries, the
dependency and request-queue sensors, and the `dms schedule` / `dms queue` verbs."""

from __future__ import annotations

import re
import socket
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml
from dagster._core.definitions.definitions_load_context import (
    DefinitionsLoadContext,
    DefinitionsLoadType,
)
from dagster._core.definitions.metadata.metadata_value import (
    CodeLocationReconstructionMetadataValue,
)
from dagster._core.definitions.repository_definition import RepositoryLoadData
from dagster._core.events import DagsterEvent
from dagster._core.remote_origin import InProcessCodeLocationOrigin, RemoteRepositoryOrigin
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from typer.testing import CliRunner

from dms_orchestration.cli import app
from dms_orchestration.db.connect import create_engine, dispose_all, metadata_engine
from dms_orchestration.db.ddl import init_schema
from dms_orchestration.defs.resources import default_resources
from dms_orchestration.defs.schedules import schedule_definition
from dms_orchestration.demo import DEMO_DIR, change_source, create_demo_databases
from dms_orchestration.metadata.authoring import import_mapping_file
from dms_orchestration.metadata.frequency import FrequencyError, clock_for, skip_reason
from dms_orchestration.metadata.mapping_file import parse_mapping_file
from dms_orchestration.metadata.models import Schedule
from dms_orchestration.metadata.validation import validate_mappings
from dms_orchestration.settings import ConfigError, dms_now, load_settings

QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
DEMO_ASSETS = {
    "main/dim_customer",
    "main/dim_product",
    "main/stg_sales",
    "main/fact_sales_daily",
}
DEMO_JOBS = {"dim_customer_job", "dim_product_job", "stg_sales_job", "fact_sales_daily_job"}
# the demo's report and file load, with their jobs
DEMO_OTHERS = {"reports/sales_by_city", "files/sales_targets", "operations/load_stats"}
DEMO_OTHER_JOBS = {"sales_by_city_report", "sales_targets_files", "dms_operations_job"}


# ------------------------------------------------------------------ helpers


class Dms:
    """A DMS home and metadata database for one test, with the environment the code
    location, the resource and the steps read (DMS_DATABASE_URL, DMS_HOME)."""

    def __init__(self, url: str, home: Path, monkeypatch: pytest.MonkeyPatch, **env) -> None:
        for name in ("DB_TYPE", "DMS_SCHEMA", "CDR_SCHEMA", "DMS_TIMEZONE"):
            monkeypatch.delenv(name, raising=False)
        home.mkdir(parents=True, exist_ok=True)
        monkeypatch.setenv("DMS_HOME", str(home))
        monkeypatch.setenv("DMS_DATABASE_URL", url)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        self.url, self.home = url, home
        self.settings = load_settings()
        self.engine = create_engine(url)
        init_schema(self.engine)

    def import_yaml(self, text: str) -> None:
        import_mapping_file(self.engine, parse_mapping_file(text))

    def params(self, **values) -> None:
        self.import_yaml(
            yaml.safe_dump({"params": [{"code": k, "value": str(v)} for k, v in values.items()]})
        )

    def defs(self, **resources) -> dg.Definitions:
        """The code location; `resources` swap those of the resource layer."""
        # imported here: the module builds its own `defs` from the environment on import
        from dms_orchestration.definitions import definitions

        return definitions(self.settings, resources=resources)

    def sql(self, statement: str, **binds) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.text(statement), binds)

    def query(self, statement: str, **binds) -> list[tuple]:
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(statement), binds)]

    def scalar(self, statement: str, **binds):
        with self.engine.connect() as conn:
            return conn.execute(sa.text(statement), binds).scalar()

    def prclog(self, runid: str) -> list[tuple]:
        """(PRCID, PRCSTS, PARAM1, PRCREQID, JOBSCHID) of a Dagster run."""
        return self.query(
            "SELECT PRCID, PRCSTS, PARAM1, PRCREQID, JOBSCHID FROM DMS_PRCLOG WHERE RUNID = :r",
            r=runid,
        )

    def request(self, prcreqid: int) -> tuple:
        """(REQSTS, RUNID, ERRMSG, RETRYCNT) of a DMS_PRCREQ row."""
        return self.query(
            "SELECT REQSTS, RUNID, ERRMSG, RETRYCNT FROM DMS_PRCREQ WHERE PRCREQID = :i",
            i=prcreqid,
        )[0]

    def jobid(self, mapref: str) -> int:
        return self.scalar("SELECT JOBID FROM DMS_JOB WHERE MAPREF = :m AND CURFLG = 'Y'", m=mapref)

    def schedule_ids(self, mapref: str) -> list[int]:
        return [
            r[0]
            for r in self.query(
                "SELECT JOBSCHID FROM DMS_JOBSCH WHERE MAPREF = :m AND CURFLG = 'Y' "
                "ORDER BY JOBSCHID",
                m=mapref,
            )
        ]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# run id -> the instance whose event log holds the run (the chunks' lines are there)
RUN_INSTANCES: dict[str, dg.DagsterInstance] = {}


def execute(defs: dg.Definitions, job: str, instance=None, **tags) -> dg.ExecuteInProcessResult:
    instance = instance or dg.DagsterInstance.ephemeral()
    result = defs.resolve_job_def(job).execute_in_process(
        run_config=QUIET,
        instance=instance,
        tags={k.replace("__", "/"): v for k, v in tags.items()},
        raise_on_error=False,
    )
    RUN_INSTANCES[result.run_id] = instance
    return result


def chunk_lines(result) -> list[tuple[str, int, str]]:
    """(step key, chunk number, what) of each line a chunk wrote in the run's log:
    `chunk 2/3 started`, `chunk 2/3 done ...`, `chunk 2/3: transient error, retry ...`."""
    lines = []
    for entry in RUN_INSTANCES[result.run_id].all_logs(result.run_id):
        found = re.match(r"chunk (\d+)/\d+:? (\w+)", entry.user_message or "")
        if entry.dagster_event is None and found:
            lines.append((entry.step_key, int(found[1]), found[2]))
    return lines


def chunk_steps(result) -> list[int]:
    """The chunks the run applied, by number (each is reported in the run's log)."""
    return sorted(n for _, n, what in chunk_lines(result) if what == "done")


def materialization(result) -> dict:
    [event] = result.get_asset_materialization_events()
    return {k: v.value for k, v in event.materialization.metadata.items()}


def error_text(error) -> str:
    """Every message of a serialized error and its causes."""
    parts = []
    while error is not None:
        parts.append(error.message)
        error = error.cause or error.context
    return "\n".join(parts)


def executable_specs(defs: dg.Definitions) -> list[dg.AssetSpec]:
    """The specs of the assets a run materializes (not those of the source tables the
    mappings read): the mappings', the reports', the file loads' and the dashboard's."""
    graph = defs.resolve_asset_graph()
    return [s for s in defs.resolve_all_asset_specs() if graph.get(s.key).is_executable]


def mapping_specs(defs: dg.Definitions) -> list[dg.AssetSpec]:
    """The specs of the mappings' assets alone."""
    return [s for s in executable_specs(defs) if "dms/mapref" in s.metadata]


def spec_by_key(defs: dg.Definitions) -> dict[str, dg.AssetSpec]:
    return {s.key.to_user_string(): s for s in executable_specs(defs)}


def demo_home(tmp_path, monkeypatch, url=None, **env) -> Dms:
    """The demo; its metadata in `url` (default: SQLite in DMS_HOME)."""
    url = url or f"sqlite:///{tmp_path / 'home' / 'dms.db'}"
    d = Dms(url, tmp_path / "home", monkeypatch, **env)
    create_demo_databases(d.home)
    d.import_yaml((DEMO_DIR / "mappings.yaml").read_text())
    d.params(RETRY_DELAY_SECONDS=0)
    return d


@pytest.fixture
def demo(tmp_path, monkeypatch):
    """The demo metadata on SQLite (sources and warehouse in DMS_HOME)."""
    yield demo_home(tmp_path, monkeypatch)
    dispose_all()


def warehouse(d: Dms, statement: str) -> list[tuple]:
    with sqlite3.connect(d.home / "warehouse.db") as conn:
        return conn.execute(statement).fetchall()


def retail(d: Dms, statement: str) -> list[tuple]:
    with sqlite3.connect(d.home / "retail.db") as conn:
        return conn.execute(statement).fetchall()


# ------------------------------------------------------------------ frequencies


def row(**kw) -> Schedule:
    return Schedule(id=kw.pop("id", 1), **kw)


@pytest.mark.parametrize(
    "fields, cron",
    [
        (dict(frequency="YR", day="03-15", hour=6, minute=30), "30 6 15 3 *"),
        (dict(frequency="YR", hour=1), "0 1 1 1 *"),
        (dict(frequency="HY", day="5", hour=2), "0 2 5 1,7 *"),
        (dict(frequency="QT", hour=4, minute=10), "10 4 1 1,4,7,10 *"),
        (dict(frequency="MN", day="5", hour=1, minute=15), "15 1 5 * *"),
        (dict(frequency="MN", day="L", hour=23), "0 23 28-31 * *"),
        (dict(frequency="FN", day="MON", hour=8, start=datetime(2027, 1, 4)), "0 8 * * 1"),
        (dict(frequency="WK", day="MON", hour=3, minute=30), "30 3 * * 1"),
        (dict(frequency="WK", day="sunday", hour=0), "0 0 * * 0"),
        (dict(frequency="DL", hour=2), "0 2 * * *"),
        (dict(frequency="ID", minute=15), "*/15 * * * *"),
        (dict(frequency="ID", hour=2, minute=0), "0 */2 * * *"),
    ],
)
def test_every_frequency_code_has_a_cron(fields, cron):
    clock = clock_for(row(**fields))
    assert clock.cron == cron
    assert clock.last_day_of_month == (fields.get("day") == "L")
    assert clock.fortnight_anchor == (date(2027, 1, 4) if fields["frequency"] == "FN" else None)


@pytest.mark.parametrize(
    "fields, names",
    [
        (dict(frequency="XX"), "FRQCD"),
        (dict(frequency=None), "FRQCD"),
        (dict(frequency="MN", day="32"), "FRQDD"),
        (dict(frequency="MN", day="x"), "FRQDD"),
        (dict(frequency="YR", day="13-01"), "FRQDD month"),
        (dict(frequency="DL", hour=24), "FRQHH"),
        (dict(frequency="DL", minute=60), "FRQMI"),
        (dict(frequency="WK", day="FOO"), "FRQDD"),
        (dict(frequency="WK"), "FRQDD"),
        (dict(frequency="FN", day="MON"), "STRDT"),
        (dict(frequency="ID", hour=0, minute=0), "FRQMI"),
    ],
)
def test_a_row_that_makes_no_clock_names_the_field(fields, names):
    with pytest.raises(FrequencyError, match=names):
        clock_for(row(**fields))


@pytest.mark.parametrize("day", ["02-30", "04-31"])
def test_a_yearly_day_that_does_not_exist_is_refused(day):
    with pytest.raises(FrequencyError, match="FRQDD"):
        clock_for(row(frequency="YR", day=day))


def test_skip_reasons():
    dl = row(frequency="DL", start=datetime(2027, 1, 10), end=datetime(2027, 1, 20))
    clock = clock_for(dl)
    assert "STRDT" in skip_reason(dl, clock, datetime(2027, 1, 9, 2))
    assert skip_reason(dl, clock, datetime(2027, 1, 10, 2)) is None
    assert skip_reason(dl, clock, datetime(2027, 1, 20, 2)) is None  # ENDDT day included
    assert "ENDDT" in skip_reason(dl, clock, datetime(2027, 1, 21, 2))

    last = row(frequency="MN", day="L", hour=23)
    clock = clock_for(last)
    for day in (date(2027, 1, 31), date(2027, 2, 28), date(2028, 2, 29), date(2027, 4, 30)):
        assert skip_reason(last, clock, datetime.combine(day, datetime.min.time())) is None
    for day in (date(2027, 1, 30), date(2027, 2, 27), date(2028, 2, 28), date(2027, 3, 30)):
        assert "last day" in skip_reason(last, clock, datetime.combine(day, datetime.min.time()))

    fn = row(frequency="FN", day="WED", start=datetime(2027, 1, 6))  # a Wednesday
    clock = clock_for(fn)
    wednesdays = [datetime(2027, 1, 6) + timedelta(weeks=i) for i in range(60)]
    runs = [w for w in wednesdays if skip_reason(fn, clock, w) is None]
    assert runs == wednesdays[::2]
    assert "off week" in skip_reason(fn, clock, datetime(2027, 1, 13))
    assert "STRDT" in skip_reason(fn, clock, datetime(2026, 12, 30))


# ------------------------------------------------------------------ schedules in Dagster


@dg.asset
def some_table():
    return None


SOME_JOB = dg.define_asset_job("some_job", selection=[some_table])


def tick(schedule: dg.ScheduleDefinition, when: datetime) -> dg.RunRequest | dg.SkipReason:
    data = schedule.evaluate_tick(dg.build_schedule_context(scheduled_execution_time=when))
    if data.skip_message:
        return dg.SkipReason(data.skip_message)
    [request] = data.run_requests
    return request


def test_fortnightly_schedule_fires_on_even_weeks_from_strdt():
    fn = row(id=7, frequency="FN", day="MON", hour=8, start=datetime(2027, 1, 4))
    schedule = schedule_definition(SOME_JOB, fn, "UTC")
    assert schedule.cron_schedule == "0 8 * * 1" and schedule.job_name == "some_job"
    mondays = [datetime(2027, 1, 4, 8, tzinfo=UTC) + timedelta(weeks=i) for i in range(8)]
    results = [tick(schedule, m) for m in mondays]
    assert [isinstance(r, dg.RunRequest) for r in results] == [True, False] * 4
    assert results[0].tags["dms/jobschid"] == "7"
    assert "off week" in results[1].skip_message
    before = tick(schedule, datetime(2026, 12, 28, 8, tzinfo=UTC))
    assert isinstance(before, dg.SkipReason) and "STRDT" in before.skip_message


def test_last_day_of_month_schedule_fires_on_feb_28_only():
    mn = row(frequency="MN", day="L", hour=23)
    schedule = schedule_definition(SOME_JOB, mn, "UTC")
    assert isinstance(tick(schedule, datetime(2027, 2, 28, 23, tzinfo=UTC)), dg.RunRequest)
    assert isinstance(tick(schedule, datetime(2027, 2, 27, 23, tzinfo=UTC)), dg.SkipReason)
    assert isinstance(tick(schedule, datetime(2028, 2, 29, 23, tzinfo=UTC)), dg.RunRequest)
    assert isinstance(tick(schedule, datetime(2028, 2, 28, 23, tzinfo=UTC)), dg.SkipReason)


def test_schedule_in_another_time_zone():
    zone = ZoneInfo("Europe/Amsterdam")
    mn = row(frequency="MN", day="L", hour=0, minute=30)
    schedule = schedule_definition(SOME_JOB, mn, "Europe/Amsterdam")
    assert schedule.execution_timezone == "Europe/Amsterdam"
    # 00:30 in Amsterdam on the 28th is still the 27th in UTC: the day counts in the zone
    assert isinstance(tick(schedule, datetime(2027, 2, 28, 0, 30, tzinfo=zone)), dg.RunRequest)
    assert isinstance(tick(schedule, datetime(2027, 3, 1, 0, 30, tzinfo=zone)), dg.SkipReason)


def test_enabled_and_disabled_schedule_status():
    on = schedule_definition(SOME_JOB, row(frequency="DL", enabled_flag="Y"), "UTC")
    off = schedule_definition(SOME_JOB, row(id=2, frequency="DL", enabled_flag="N"), "UTC")
    assert on.default_status == dg.DefaultScheduleStatus.RUNNING
    assert off.default_status == dg.DefaultScheduleStatus.STOPPED


def test_dms_timezone_is_the_schedules_zone(tmp_path, monkeypatch):
    d = demo_home(tmp_path, monkeypatch, DMS_TIMEZONE="Europe/Amsterdam")
    try:
        assert str(d.settings.timezone) == "Europe/Amsterdam"
        schedules = list(d.defs().schedules)
        assert schedules
        assert {s.execution_timezone for s in schedules} == {"Europe/Amsterdam"}
    finally:
        dispose_all()


# ------------------------------------------------------------------ definitions from the demo


def test_demo_metadata_becomes_assets_jobs_schedules_and_sensors(demo):
    defs = demo.defs()
    dg.Definitions.validate_loadable(defs)
    specs = spec_by_key(defs)
    assert set(specs) == DEMO_ASSETS | DEMO_OTHERS
    specs = {key: spec for key, spec in specs.items() if key in DEMO_ASSETS}
    for key, spec in specs.items():
        assert spec.key.path == key.split("/")
        assert spec.group_name == "retail"
        md = spec.metadata
        assert {"dagster/column_schema", "dms/source sql", "dms/findings"} <= set(md)
        assert md["dms/findings"].value == "no findings"
    customer = specs["main/dim_customer"]
    assert customer.description.startswith("Customer dimension, history of city")
    columns = {c.name: c.type for c in customer.metadata["dagster/column_schema"].columns}
    assert columns["CUST_NAME"] == "VARCHAR(100)"
    assert "UPPER(SRC.CUST_NAME)" in customer.metadata["dms/column logic"].value
    assert "FROM CUSTOMERS" in customer.metadata["dms/source sql"].value
    deps = {k: {d.asset_key.to_user_string() for d in s.deps} for k, s in specs.items()}
    assert deps == {
        "main/fact_sales_daily": {"main/stg_sales", "main/dim_customer", "main/dim_product"},
        "main/stg_sales": {"source/retail_src/default/sales"},
        "main/dim_customer": {"source/retail_src/default/customers"},
        "main/dim_product": {"source/retail_src/default/products"},
    }

    jobs = {j.name for j in defs.resolve_all_job_defs()} - {"__ASSET_JOB"}
    assert jobs == DEMO_JOBS | DEMO_OTHER_JOBS
    schedules = {s.job_name + " " + s.cron_schedule: s for s in defs.schedules}
    assert set(schedules) == {
        "dms_operations_job 0 * * * *",  # the operations dashboard
        "dim_customer_job 0 2 * * *",
        "dim_product_job 30 3 * * 1",
        "dim_product_job 0 23 28-31 * *",
        "stg_sales_job */15 * * * *",
    }
    assert schedules["dim_product_job 0 23 28-31 * *"].default_status == (
        dg.DefaultScheduleStatus.STOPPED
    )
    for name, s in schedules.items():
        if "28-31" not in name:
            assert s.default_status == dg.DefaultScheduleStatus.RUNNING, name
        assert s.execution_timezone == "UTC"
    sensors = {s.name: s for s in defs.sensors}
    assert {"fact_sales_daily_job_after_stg_sales_job", "dms_request_queue"} <= set(sensors)
    assert all(s.default_status == dg.DefaultSensorStatus.RUNNING for s in sensors.values())
    assert sensors["fact_sales_daily_job_after_stg_sales_job"].job_name == "fact_sales_daily_job"


INVALID_YAML = """
connections:
  - {{name: DOWN_PG, type: POSTGRESQL, host: 127.0.0.1, port: {port}, database: x, user: x}}
sql:
  - {{code: Q_BAD_TYPE, connection: RETAIL_SRC, sql: "SELECT PROD_ID, PROD_NAME FROM PRODUCTS"}}
  - {{code: Q_GARBAGE, connection: RETAIL_SRC, sql: "SELEKT ,,, FROMM WHERE"}}
  - {{code: Q_DOWN, connection: DOWN_PG, sql: "SELECT ID FROM T"}}
mappings:
  - ref: BAD_TYPE
    source_system: RETAIL
    target: {{schema: main, table: BAD_TYPE, connection: RETAIL_DW}}
    sql: Q_BAD_TYPE
    columns:
      - {{name: PROD_ID, type: INTEGER, key: 1, logic: SRC.PROD_ID}}
      - {{name: PROD_NAME, type: WIDGET, logic: SRC.PROD_NAME, scd: 1}}
    job: {{description: a column of an unknown type}}
  - ref: BAD_SQL
    target: {{schema: main, table: BAD_SQL, connection: RETAIL_DW}}
    sql: Q_GARBAGE
    columns: [{{name: ID, type: INTEGER, key: 1, logic: SRC.ID}}]
    job: {{description: garbage source SQL}}
  - ref: DOWN_SRC
    target: {{schema: main, table: DOWN_SRC, connection: RETAIL_DW}}
    sql: Q_DOWN
    columns: [{{name: ID, type: INTEGER, key: 1, logic: SRC.ID}}]
    job: {{description: a source that is down}}
"""


@pytest.mark.slow
def test_invalid_mappings_and_a_down_source_do_not_stop_the_code_location(demo):
    demo.import_yaml(INVALID_YAML.format(port=closed_port()))
    validate_mappings(demo.engine, demo.settings)  # DMS_MAPERR, as `dms mappings validate`
    started = time.perf_counter()
    defs = demo.defs()
    assert time.perf_counter() - started < 10
    dg.Definitions.validate_loadable(defs)
    specs = spec_by_key(defs)
    assert set(specs) == DEMO_ASSETS | DEMO_OTHERS | {
        "main/bad_type",
        "main/bad_sql",
        "main/down_src",
    }
    findings = {
        k: s.metadata["dms/findings"].value
        for k, s in specs.items()
        if "dms/findings" in s.metadata
    }
    assert "WIDGET" in findings["main/bad_type"] and "ERROR" in findings["main/bad_type"]
    assert "does not parse" in findings["main/bad_sql"]
    assert "unreachable" in findings["main/down_src"]
    assert findings["main/stg_sales"] == "no findings"

    instance = dg.DagsterInstance.ephemeral()
    started = time.perf_counter()
    bad = execute(defs, "bad_type_job", instance)
    assert not bad.success and time.perf_counter() - started < 10
    [failure] = bad.get_step_failure_events()
    assert failure.step_key == "bad_type"  # the load step, before its plan
    text = error_text(failure.step_failure_data.error)
    assert "mapping BAD_TYPE is not valid" in text and "WIDGET" in text
    assert chunk_steps(bad) == []
    assert demo.prclog(bad.run_id)[0][1] == "FL"

    garbage = execute(defs, "bad_sql_job", instance)
    assert not garbage.success and chunk_steps(garbage) == []
    down = execute(defs, "down_src_job", instance)
    assert not down.success and "Connection refused" in error_text(
        down.get_step_failure_events()[0].step_failure_data.error
    )

    good = execute(defs, "stg_sales_job", instance, dms__full="true")
    assert good.success and materialization(good)["inserted"] == 15


def test_an_invalid_mapping_shows_its_findings_without_a_validate_run(demo):
    demo.import_yaml(INVALID_YAML.format(port=closed_port()))
    findings = spec_by_key(demo.defs())["main/bad_type"].metadata["dms/findings"].value
    assert "WIDGET" in findings


def test_a_dependency_cycle_is_a_finding_and_no_sensor(demo):
    customer, product = demo.schedule_ids("DIM_CUSTOMER")[0], demo.schedule_ids("DIM_PRODUCT")[0]
    insert = (
        "INSERT INTO DMS_JOBSCH (JOBSCHID, JOBID, MAPREF, DPND_JOBSCHID, ENABLEFLG, CURFLG) "
        "VALUES (:id, :job, :ref, :parent, 'Y', 'Y')"
    )
    demo.sql(insert, id=9001, job=demo.jobid("DIM_CUSTOMER"), ref="DIM_CUSTOMER", parent=product)
    demo.sql(insert, id=9002, job=demo.jobid("DIM_PRODUCT"), ref="DIM_PRODUCT", parent=customer)
    started = time.perf_counter()
    defs = demo.defs()
    assert time.perf_counter() - started < 10
    dg.Definitions.validate_loadable(defs)
    specs = spec_by_key(defs)
    for key in ("main/dim_customer", "main/dim_product"):
        findings = specs[key].metadata["dms/findings"].value
        assert "cycle" in findings and "DIM_CUSTOMER" in findings and "DIM_PRODUCT" in findings
    assert specs["main/stg_sales"].metadata["dms/findings"].value == "no findings"
    sensors = {s.name for s in defs.sensors}
    assert "dim_customer_job_after_dim_product_job" not in sensors
    assert "dim_product_job_after_dim_customer_job" not in sensors
    assert "fact_sales_daily_job_after_stg_sales_job" in sensors


def test_a_bad_schedule_row_and_an_inactive_job_do_not_stop_the_code_location(demo):
    demo.sql(
        "INSERT INTO DMS_JOBSCH (JOBSCHID, JOBID, MAPREF, FRQCD, FRQHH, ENABLEFLG, CURFLG) "
        "VALUES (9100, :job, 'STG_SALES', 'XX', 1, 'Y', 'Y')",
        job=demo.jobid("STG_SALES"),
    )
    demo.sql("UPDATE DMS_JOB SET STFLG = 'N' WHERE MAPREF = 'DIM_PRODUCT'")
    defs = demo.defs()
    dg.Definitions.validate_loadable(defs)
    specs = spec_by_key(defs)
    assert set(specs) == DEMO_ASSETS | DEMO_OTHERS  # the asset of an inactive job stays
    findings = specs["main/stg_sales"].metadata["dms/findings"].value
    assert "schedule 9100" in findings and "FRQCD" in findings
    assert {j.name for j in defs.resolve_all_job_defs()} == DEMO_JOBS - {
        "dim_product_job"
    } | DEMO_OTHER_JOBS | {"__ASSET_JOB"}
    assert {s.job_name for s in defs.schedules} == {
        "dim_customer_job",
        "stg_sales_job",
        "dms_operations_job",
    }


# ------------------------------------------------------------------ reconstruction


def test_reconstruction_does_not_query_the_metadata_database(demo):
    from dms_orchestration.definitions import FILE_KEY, definitions

    statements = []
    meta = metadata_engine(demo.settings)
    sa.event.listen(meta, "before_cursor_execute", lambda *a, **k: statements.append(a[2]))
    initial = DefinitionsLoadContext(load_type=DefinitionsLoadType.INITIALIZATION)
    with DefinitionsLoadContext.scoped(initial):
        first = definitions(demo.settings)
    assert statements, "the initial load reads the metadata"
    pending = initial.get_pending_reconstruction_metadata()
    assert list(pending) == [FILE_KEY]  # the catalog is in the file it names

    load_data = RepositoryLoadData(
        reconstruction_metadata={
            k: CodeLocationReconstructionMetadataValue(v) for k, v in pending.items()
        }
    )
    statements.clear()
    again = DefinitionsLoadContext(DefinitionsLoadType.RECONSTRUCTION, load_data)
    with DefinitionsLoadContext.scoped(again):
        rebuilt = definitions(demo.settings)
        # the metadata database unreachable: reconstruction does not notice
        down = load_settings(url=f"postgresql://nobody@127.0.0.1:{closed_port()}/none")
        offline = definitions(down)
    assert statements == []
    assert set(spec_by_key(rebuilt)) == set(spec_by_key(first)) == set(spec_by_key(offline))
    assert {s.name for s in rebuilt.schedules} == {s.name for s in first.schedules}
    assert {s.name for s in offline.sensors} == {s.name for s in first.sensors}


def test_importing_the_code_location_freezes_what_dagster_loaded_before_it():
    """A run worker imports Dagster, then the code location: what was loaded before
    leaves the garbage collector's generations, so importing the rest does not walk it
    (dms_orchestration/_gc.py)."""
    probe = (
        "import gc, dagster; before = gc.get_freeze_count(); "
        "import dms_orchestration.definitions; "
        "print(before, gc.get_freeze_count(), gc.isenabled())"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    before, after, enabled = done.stdout.split()
    assert int(before) == 0 and int(after) > 10_000 and enabled == "True"


def test_a_run_worker_unpacks_only_the_entries_of_the_mapping_it_runs(demo):
    """The index entries and the mappings travel packed one by one: a run worker unpacks
    those of the mapping it runs and of the mappings it reads, not the whole catalog (at
    2,000 mappings that was most of what a run worker spent on its definitions)."""
    from dms_orchestration.definitions import definitions, run_repository
    from dms_orchestration.metadata.catalog import load_catalog

    initial = DefinitionsLoadContext(load_type=DefinitionsLoadType.INITIALIZATION)
    with DefinitionsLoadContext.scoped(initial):
        definitions(demo.settings)
    load_data = RepositoryLoadData(
        reconstruction_metadata={
            k: CodeLocationReconstructionMetadataValue(v)
            for k, v in initial.get_pending_reconstruction_metadata().items()
        }
    )
    again = DefinitionsLoadContext(DefinitionsLoadType.RECONSTRUCTION, load_data)
    with DefinitionsLoadContext.scoped(again):
        repository = run_repository(demo.settings)
        job = repository.get_job("dim_customer_job")
    parts = repository._repository_data.parts  # (MappingRuns)
    needed = {"DIM_CUSTOMER", *parts.index.mappings["DIM_CUSTOMER"].upstream}
    assert set(parts.index.mappings.unpacked) == needed
    assert set(parts.mapping_of.__self__.mappings.unpacked) == needed
    assert len(parts.index.mappings) == len(load_catalog(demo.engine).mappings) > len(needed)
    assert job.name == "dim_customer_job"


def test_a_run_worker_reads_an_index_packed_whole_as_an_earlier_code_server_left_it(demo):
    """Reconstruction metadata whose index holds its entries (no entry of its own for
    each mapping, as code servers before the entries were packed one by one left it):
    a run worker still finds its mapping."""
    from dms_orchestration import definitions as location
    from dms_orchestration.metadata.catalog import load_catalog

    catalog = load_catalog(demo.engine)
    _, index = location._built(catalog, demo.settings, None)
    metadata = {
        key: value
        for key, value in location._packed(catalog, index).items()
        if not key.startswith(location.ENTRY_KEY)
    } | {location.INDEX_KEY: location._pack(index)}
    load_data = RepositoryLoadData(
        reconstruction_metadata={
            k: CodeLocationReconstructionMetadataValue(v) for k, v in metadata.items()
        }
    )
    again = DefinitionsLoadContext(DefinitionsLoadType.RECONSTRUCTION, load_data)
    with DefinitionsLoadContext.scoped(again):
        job = location.run_repository(demo.settings).get_job("dim_customer_job")
    assert job.asset_layer.asset_graph.get(dg.AssetKey(["main", "dim_customer"]))


# ------------------------------------------------------------------ materializations

CUST_YAML = """
params:
  - {code: RETRY_DELAY_SECONDS, value: "0"}
sql:
  - {code: Q_CUST, sql: "SELECT ID, NAME, CITY FROM SRC_CUST"}
mappings:
  - ref: CUST_DIM
    description: Customers with city history
    source_system: CRM
    target: {table: CUST_DIM, type: DIMENSION}
    sql: Q_CUST
    delete_handling: EXPIRE
    columns:
      - {name: ID, type: INTEGER, key: 1, logic: SRC.ID, order: 1}
      - {name: NAME, type: VARCHAR(20), logic: SRC.NAME, scd: 1, order: 2}
      - {name: CITY, type: VARCHAR(50), logic: SRC.CITY, scd: 2, order: 3}
    job:
      description: Load the customers
      schedules:
        - {frequency: DL, hour: 1}
"""


def cust_dms(
    url,
    tmp_path,
    monkeypatch,
    rows=30,
    name_size=20,
    name_logic="SRC.NAME",
    city_scd=2,
    delete_handling="EXPIRE",
) -> Dms:
    """Metadata, source and target in one database (the metadata database); an SCD1
    target with `city_scd=1`."""
    d = Dms(url, tmp_path / "home", monkeypatch)
    d.sql("CREATE TABLE SRC_CUST (ID INTEGER, NAME VARCHAR(100), CITY VARCHAR(50))")
    for i in range(1, rows + 1):
        d.sql("INSERT INTO SRC_CUST VALUES (:i, :n, :c)", i=i, n=f"name{i}", c=f"city{i % 4}")
    file = yaml.safe_load(CUST_YAML)
    name = file["mappings"][0]["columns"][1]
    name.update(type=f"VARCHAR({name_size})", logic=name_logic)
    file["mappings"][0]["columns"][2]["scd"] = city_scd
    file["mappings"][0]["delete_handling"] = delete_handling
    d.import_yaml(yaml.safe_dump(file))
    return d


@pytest.fixture
def cust(dms_url, tmp_path, monkeypatch):
    yield cust_dms(dms_url, tmp_path, monkeypatch)
    dispose_all()


@pytest.mark.slow
def test_materialize_a_mapping_in_chunks_with_log_rows_and_scd2(cust):
    defs = cust.defs()
    instance = dg.DagsterInstance.ephemeral()
    first = execute(defs, "cust_dim_job", instance, dms__chunks="3", dms__full="true")
    assert first.success
    assert chunk_steps(first) == [1, 2, 3]  # chunks decided at run time, each reported
    md = materialization(first)
    assert (md["inserted"], md["updated"], md["unchanged"], md["chunks"]) == (30, 0, 0, 3)
    assert md["source rows"] == 30
    assert isinstance(md["rows per second"], float) and md["rows per second"] > 0
    checks = first.get_asset_check_evaluations()
    assert {c.check_name for c in checks} == {
        "one_current_row_per_key",
        "source_target_reconciliation",
    }
    assert all(c.passed for c in checks)
    [(prcid, prcsts, _, _, _)] = cust.prclog(first.run_id)
    assert prcsts == "PC"
    log = cust.query("SELECT CHUNKNO, JOBSTS FROM DMS_JOBLOG WHERE PRCID = :p", p=prcid)
    chunk_rows = [r for r in log if r[0] is not None]
    assert len(chunk_rows) == 3 and len({r[0] for r in chunk_rows}) == 3
    assert len([r for r in log if r[0] is None]) == 1  # the whole load
    assert {r[1] for r in log} == {"PC"}

    cust.sql("UPDATE SRC_CUST SET CITY = 'moved' WHERE ID IN (1, 15, 30)")
    cust.sql("UPDATE SRC_CUST SET NAME = 'renamed' WHERE ID = 2")
    second = execute(defs, "cust_dim_job", instance, dms__chunks="3", dms__full="true")
    assert second.success
    md = materialization(second)
    assert (md["inserted"], md["updated"], md["expired"], md["unchanged"]) == (3, 1, 3, 26)
    # (not by SKEY: both loads ran in this process, whose chunks drew ids from blocks the
    # first load had reserved; a run worker is a process of its own)
    versions = cust.query("SELECT CITY, CURFLG FROM CUST_DIM WHERE ID = 15 ORDER BY CURFLG")
    assert versions == [("city3", "N"), ("moved", "Y")]
    assert cust.scalar("SELECT COUNT(*) FROM CUST_DIM WHERE CURFLG = 'Y'") == 30
    assert all(c.passed for c in second.get_asset_check_evaluations())


# a row that only chunk 2 of 3 reads (IDs 9..12) breaks the load there
SQLITE_BAD_ROW = """json(CASE WHEN SRC.ID = 11 THEN '{' ELSE '"' || SRC.NAME || '"' END)"""


@pytest.mark.slow
def test_a_failing_chunk_fails_the_run_with_the_error_logged(dms_url, tmp_path, monkeypatch):
    if dms_url.startswith("sqlite"):
        # SQLite does not enforce VARCHAR sizes: malformed JSON for one row fails its chunk
        d = cust_dms(dms_url, tmp_path, monkeypatch, rows=12, name_logic=SQLITE_BAD_ROW)
        want_type, want_text = "PERMANENT", "malformed JSON"
    else:
        d = cust_dms(dms_url, tmp_path, monkeypatch, rows=12, name_size=5)  # 'name10' too long
        want_type, want_text = "DATA", "too long"
    try:
        result = execute(d.defs(), "cust_dim_job", dms__chunks="3", dms__full="true")
        assert not result.success
        [load_step] = result.get_failed_step_keys()  # the load: its checks did not run
        assert load_step.endswith("cust_dim")
        failed = [n for _, n, what in chunk_lines(result) if what == "failed"]
        assert failed and len(chunk_steps(result)) == 3 - len(failed)
        [(prcid, prcsts, _, _, _)] = d.prclog(result.run_id)
        assert prcsts == "FL"
        errors = d.query("SELECT ERRTYP, ERRMSG, ERRDTL FROM DMS_JOBERR WHERE PRCID = :p", p=prcid)
        assert errors
        errtyp, errmsg, errdtl = errors[0]
        assert errtyp == want_type and want_text in errmsg
        assert "Traceback" in errdtl
        # the failed chunk rolled back (the others stay applied, to be completed by a re-run
        # of the failed step)
        loaded = {r[0] for r in d.query("SELECT ID FROM CUST_DIM")}
        assert 11 not in loaded and len(loaded) < 12
    finally:
        dispose_all()


@pytest.mark.slow
def test_a_transient_chunk_error_is_retried(cust, monkeypatch):
    import dms_orchestration.defs.chunks as chunks

    real, calls = chunks.run_chunk, []

    def flaky(plan, index, settings=None, on_progress=None):
        calls.append(index)
        if len(calls) == 1:
            # a connection SQLAlchemy found dead (transient by that, not by these words)
            lost = Exception("could not connect to server")
            raise sa.exc.OperationalError("x", {}, lost, connection_invalidated=True)
        return real(plan, index, settings, on_progress)

    monkeypatch.setattr(chunks, "run_chunk", flaky)
    result = execute(cust.defs(), "cust_dim_job", dms__chunks="3", dms__full="true")
    assert result.success
    assert len(calls) == 4  # one chunk ran twice
    lines = chunk_lines(result)
    [retried] = [n for _, n, what in lines if what == "transient"]
    assert [n for _, n, what in lines if what == "started"].count(retried) == 2
    assert chunk_steps(result) == [1, 2, 3]
    assert cust.prclog(result.run_id)[0][1] == "PC"
    assert materialization(result)["inserted"] == 30


@pytest.mark.slow
def test_demo_param1_reaches_the_load_and_scd2_versions_appear(demo):
    defs = demo.defs()
    instance = dg.DagsterInstance.ephemeral()
    since = "2026-11-04"
    want = retail(demo, f"SELECT COUNT(*) FROM SALES WHERE SALE_TS >= '{since}'")[0][0]
    assert 0 < want < 15
    staged = execute(defs, "stg_sales_job", instance, dms__param1=since, dms__full="true")
    assert staged.success
    assert materialization(staged)["source rows"] == want
    assert demo.prclog(staged.run_id)[0][1:3] == ("PC", since)

    first = execute(defs, "dim_customer_job", instance, dms__chunks="3", dms__full="true")
    assert first.success and chunk_steps(first) == [1, 2, 3]
    change_source(demo.home)
    second = execute(defs, "dim_customer_job", instance, dms__chunks="3", dms__full="true")
    assert second.success
    assert materialization(second)["expired"] >= 2
    rows = warehouse(demo, "SELECT CITY, CURFLG FROM DIM_CUSTOMER WHERE CUST_ID = 1 ORDER BY SKEY")
    assert rows == [("London", "N"), ("Paris", "Y")]


# ------------------------------------------------------------------ dependency sensor


@pytest.mark.slow
def test_dependency_sensor_requests_the_child_job_after_the_parent(demo):
    defs = demo.defs()
    instance = dg.DagsterInstance.ephemeral()
    for job in ("dim_customer_job", "dim_product_job"):
        assert execute(defs, job, instance).success
    parent = execute(defs, "stg_sales_job", instance)
    assert parent.success
    sensor = defs.get_sensor_def("fact_sales_daily_job_after_stg_sales_job")
    assert sensor.job_name == "fact_sales_daily_job"
    context = dg.build_run_status_sensor_context(
        sensor_name=sensor.name,
        dagster_instance=instance,
        dagster_run=instance.get_run_by_id(parent.run_id),
        dagster_event=parent.get_run_success_event(),
    )
    request = sensor(context)
    assert isinstance(request, dg.RunRequest)
    assert parent.run_id in request.run_key
    jobschid = demo.schedule_ids("FACT_SALES_DAILY")[0]
    assert request.tags["dms/jobschid"] == str(jobschid)
    child = execute(defs, "fact_sales_daily_job", instance, **{"dms__jobschid": str(jobschid)})
    assert child.success
    assert demo.prclog(child.run_id)[0][1] == "PC" and demo.prclog(child.run_id)[0][4] == jobschid


def test_a_disabled_dependency_row_makes_its_sensor_stopped_by_default(demo):
    name = "fact_sales_daily_job_after_stg_sales_job"
    sensor = demo.defs().get_sensor_def(name)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    result = runner.invoke(app, ["schedule", "disable", "FACT_SALES_DAILY", "--url", demo.url])
    assert result.exit_code == 0, result.output
    sensor = demo.defs().get_sensor_def(name)
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED


# ------------------------------------------------------------------ queue sensor


class Queue:
    def __init__(self, d: Dms, defs: dg.Definitions) -> None:
        self.d, self.defs = d, defs
        self.instance = dg.DagsterInstance.ephemeral()
        self.sensor = defs.get_sensor_def("dms_request_queue")

    def evaluate(self) -> list[dg.RunRequest]:
        context = dg.build_sensor_context(
            instance=self.instance, resources=default_resources(), definitions=self.defs
        )
        return list(self.sensor.evaluate_tick(context).run_requests or [])

    def insert(self, prcreqid: int, reqtyp: str, mapref=None, jobid=None, param1=None, **more):
        cols = {"PRCREQID": prcreqid, "REQTYP": reqtyp, "MAPREF": mapref, "JOBID": jobid}
        cols |= {"PARAM1": param1, **more}
        cols = {k: v for k, v in cols.items() if v is not None}
        self.d.sql(
            f"INSERT INTO DMS_PRCREQ ({', '.join(cols)}) VALUES "
            f"({', '.join(':' + c for c in cols)})",
            **cols,
        )

    def run(self, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
        """What the daemon does with a RunRequest (in process here)."""
        return self.defs.resolve_job_def(request.job_name).execute_in_process(
            run_config=QUIET, instance=self.instance, tags=request.tags, raise_on_error=False
        )

    def waiting_run(self, request: dg.RunRequest, status: dg.DagsterRunStatus) -> dg.DagsterRun:
        """The run of a request as the daemon leaves it before a worker takes it: created
        (NOT_STARTED), or submitted to the queued run coordinator (QUEUED)."""
        origin = RemoteRepositoryOrigin(
            InProcessCodeLocationOrigin(
                LoadableTargetOrigin(module_name="dms_orchestration.definitions")
            ),
            "__repository__",
        ).get_job_origin(request.job_name)
        run = self.instance.create_run_for_job(
            self.defs.resolve_job_def(request.job_name), tags=request.tags, remote_job_origin=origin
        )
        if status == dg.DagsterRunStatus.QUEUED:
            self.instance.report_dagster_event(DagsterEvent.job_enqueue(run), run_id=run.run_id)
        run = self.instance.get_run_by_id(run.run_id)
        assert run.status == status
        return run

    def fail_to_launch(self, request: dg.RunRequest) -> dg.DagsterRun:
        run = self.instance.create_run_for_job(
            self.defs.resolve_job_def(request.job_name), tags=request.tags
        )
        self.instance.report_run_failed(run)
        return run


@pytest.mark.slow
def test_queue_immediate_requests_by_mapref_and_jobid(demo):
    q = Queue(demo, demo.defs())
    q.insert(101, "IMMEDIATE", mapref="STG_SALES", param1="2026-11-03")
    q.insert(102, "IMMEDIATE", jobid=demo.jobid("DIM_PRODUCT"))
    requests = {r.tags["dms/prcreqid"]: r for r in q.evaluate()}
    assert set(requests) == {"101", "102"}
    assert requests["101"].job_name == "stg_sales_job"
    assert requests["101"].tags["dms/param1"] == "2026-11-03"
    assert requests["102"].job_name == "dim_product_job"
    assert demo.request(101)[0] == demo.request(102)[0] == "CLAIMED"
    # evaluated again, or by a second code location's sensor: never yielded twice
    assert q.evaluate() == []
    assert Queue(demo, demo.defs()).evaluate() == []

    result = q.run(requests["101"])
    assert result.success
    assert q.evaluate() == []
    assert demo.request(101)[:2] == ("DONE", result.run_id)
    prcid, prcsts, param1, prcreqid, _ = demo.prclog(result.run_id)[0]
    assert (prcsts, param1, prcreqid) == ("PC", "2026-11-03", 101)
    assert (
        materialization(result)["source rows"]
        == retail(demo, "SELECT COUNT(*) FROM SALES WHERE SALE_TS >= '2026-11-03'")[0][0]
    )


@pytest.mark.slow
def test_queue_two_sensors_at_once_claim_each_request_once(dms_url, tmp_path, monkeypatch):
    demo = demo_home(tmp_path, monkeypatch, url=dms_url)
    defs = demo.defs()
    for i in range(6):
        Queue(demo, defs).insert(200 + i, "IMMEDIATE", mapref="DIM_CUSTOMER")
    queues = [Queue(demo, defs), Queue(demo, defs)]
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda q: q.evaluate(), queues))
    ids = [r.tags["dms/prcreqid"] for batch in results for r in batch]
    assert sorted(ids) == [str(200 + i) for i in range(6)]
    assert {demo.request(200 + i)[0] for i in range(6)} == {"CLAIMED"}
    dispose_all()


def test_queue_requests_for_unknown_mappings_and_reports_fail(demo):
    q = Queue(demo, demo.defs())
    q.insert(103, "IMMEDIATE", mapref="NOPE")
    q.insert(104, "REPORT", mapref="STG_SALES")
    q.insert(105, "IMMEDIATE", jobid=987654)
    q.insert(106, "HISTORY", mapref="STG_SALES", HSTFRMDT="2026-11-04", HSTTODT="2026-11-02")
    assert q.evaluate() == []
    status, _, errmsg, _ = demo.request(106)
    assert status == "FAILED" and "HSTFRMDT" in errmsg
    status, _, errmsg, _ = demo.request(103)
    assert status == "FAILED" and "NOPE" in errmsg
    status, _, errmsg, _ = demo.request(104)
    assert status == "FAILED" and "REPORT names no current report" in errmsg
    status, _, errmsg, _ = demo.request(105)
    assert status == "FAILED" and "987654" in errmsg


@pytest.mark.slow
def test_queue_history_loads_one_day_after_another(demo):
    q = Queue(demo, demo.defs())
    q.insert(110, "HISTORY", mapref="STG_SALES", HSTFRMDT="2026-11-02", HSTTODT="2026-11-04")
    runs = []
    for day in ("2026-11-02", "2026-11-03", "2026-11-04"):
        [request] = q.evaluate()
        assert request.job_name == "stg_sales_job"
        assert request.tags["dms/histday"] == request.tags["dms/param1"] == day
        assert request.tags["dms/prcreqid"] == "110"
        again = q.evaluate()  # before its run exists: nothing new (a same run_key at most)
        assert all(r.run_key == request.run_key for r in again)
        result = q.run(request)
        assert result.success
        runs.append(result.run_id)
        assert demo.prclog(result.run_id)[0][2] == day
    assert q.evaluate() == []
    assert demo.request(110)[0] == "DONE"


@pytest.mark.slow
def test_queue_history_does_not_repeat_a_day_while_its_run_is_active(demo):
    q = Queue(demo, demo.defs())
    q.insert(111, "HISTORY", mapref="STG_SALES", HSTFRMDT="2026-11-02", HSTTODT="2026-11-03")
    [request] = q.evaluate()
    run = q.instance.create_run_for_job(
        q.defs.resolve_job_def(request.job_name), tags=request.tags
    )  # launched, not finished
    assert q.evaluate() == []
    assert demo.request(111)[:2] == ("CLAIMED", run.run_id)


@pytest.mark.slow
def test_queue_launch_failures_are_retried_then_dead(demo):
    demo.params(RETRY_MAX=2)
    q = Queue(demo, demo.defs())
    q.insert(120, "IMMEDIATE", mapref="STG_SALES")
    [request] = q.evaluate()
    keys = [request.run_key]
    for retry in (1, 2):
        q.fail_to_launch(request)
        [request] = q.evaluate()
        keys.append(request.run_key)
        assert demo.request(120)[0] == "CLAIMED" and demo.request(120)[3] == retry
    assert len(set(keys)) == 3  # each retry is a new launch
    q.fail_to_launch(request)
    assert q.evaluate() == []
    status, _, errmsg, retrycnt = demo.request(120)
    assert status == "DEAD" and retrycnt == 2
    assert "could not be launched" in errmsg


@pytest.mark.slow
def test_queue_a_retry_that_succeeds_completes_the_request(demo):
    q = Queue(demo, demo.defs())
    q.insert(130, "IMMEDIATE", mapref="STG_SALES")
    [request] = q.evaluate()
    q.fail_to_launch(request)
    [retry] = q.evaluate()
    result = q.run(retry)
    assert result.success
    assert q.evaluate() == []
    assert demo.request(130)[:2] == ("DONE", result.run_id)


@pytest.mark.slow
def test_a_failed_run_fails_its_request(demo):
    q = Queue(demo, demo.defs())
    q.insert(140, "IMMEDIATE", mapref="DIM_PRODUCT")
    [request] = q.evaluate()
    (demo.home / "retail.db").unlink()  # the load fails inside its steps
    sqlite3.connect(demo.home / "retail.db").close()
    result = q.run(request)
    assert not result.success
    assert q.evaluate() == []
    status, runid, errmsg, _ = demo.request(140)
    assert (status, runid) == ("FAILED", result.run_id) and "FAILURE" in errmsg


@pytest.mark.slow
def test_queue_a_claim_left_without_a_run_is_served_again(dms_url, tmp_path, monkeypatch):
    # the DMS clock runs behind UTC here: a claim compared with UTC would look 8 hours old
    demo = demo_home(tmp_path, monkeypatch, url=dms_url, DMS_TIMEZONE="America/Los_Angeles")
    demo.params(RETRY_MAX=1, CLAIM_TIMEOUT_SECONDS=600)
    q = Queue(demo, demo.defs())
    old, fresh = dms_now() - timedelta(minutes=20), dms_now() - timedelta(minutes=1)
    q.insert(170, "IMMEDIATE", mapref="STG_SALES", REQSTS="CLAIMED", RECUPDT=old)
    q.insert(171, "IMMEDIATE", mapref="STG_SALES", REQSTS="CLAIMED", RECUPDT=fresh)
    q.insert(172, "HISTORY", mapref="DIM_PRODUCT", REQSTS="CLAIMED", RECUPDT=old,
             HSTFRMDT="2026-11-02", HSTTODT="2026-11-03")  # fmt: skip
    q.insert(173, "STOP", mapref="DIM_CUSTOMER", REQSTS="CLAIMED", RECUPDT=old)
    served = {r.tags["dms/prcreqid"]: r for r in q.evaluate()}
    assert set(served) == {"170", "172"}  # 171's claim is fresh: its launch may be under way
    assert served["170"].run_key == "prcreq-170-now-1"
    assert served["172"].tags["dms/histday"] == "2026-11-02"
    assert demo.request(170)[0::3] == demo.request(172)[0::3] == ("CLAIMED", 1)
    assert demo.request(173)[0] == "DONE"  # a STOP left CLAIMED is served again too
    assert q.evaluate() == []  # the claims were renewed

    result = q.run(served["172"])  # the re-served request goes on as any other
    assert result.success
    [next_day] = q.evaluate()
    assert next_day.tags["dms/histday"] == "2026-11-03"

    demo.sql("UPDATE DMS_PRCREQ SET RECUPDT = :t WHERE PRCREQID = 170", t=old)
    # its run never came again and RETRY_MAX=1 is spent (172 asks for its day 2 until it runs)
    assert [r.tags["dms/prcreqid"] for r in q.evaluate()] == ["172"]
    status, runid, errmsg, retrycnt = demo.request(170)
    assert (status, runid, retrycnt) == ("DEAD", None, 1)
    assert "no run was launched" in errmsg and "1 retries" in errmsg
    dispose_all()


@pytest.mark.slow
def test_queue_serves_statuses_and_types_in_any_case(dms_url, tmp_path, monkeypatch):
    demo = demo_home(tmp_path, monkeypatch, url=dms_url)
    q = Queue(demo, demo.defs())
    q.insert(180, "immediate", mapref="STG_SALES", REQSTS=" new ")
    q.insert(181, " History", mapref="DIM_PRODUCT", REQSTS="New",
             HSTFRMDT="2026-11-02", HSTTODT="2026-11-02")  # fmt: skip
    q.insert(182, "Report", mapref="STG_SALES", REQSTS="new")
    served = {r.tags["dms/prcreqid"]: r for r in q.evaluate()}
    assert set(served) == {"180", "181"}
    assert served["181"].tags["dms/histday"] == "2026-11-02"
    assert demo.request(180)[0] == demo.request(181)[0] == "CLAIMED"  # written in upper case
    status, _, errmsg, _ = demo.request(182)
    assert status == "FAILED" and "no current report" in errmsg  # (a type in any case too)

    result = q.run(served["180"])
    demo.sql("UPDATE DMS_PRCREQ SET REQSTS = 'claimed ' WHERE PRCREQID = 180")  # an outside tool
    assert q.evaluate() == []
    assert demo.request(180)[:2] == ("DONE", result.run_id)
    dispose_all()


@pytest.mark.slow
def test_queue_history_longer_than_history_max_days_is_refused(demo):
    q = Queue(demo, demo.defs())
    q.insert(190, "HISTORY", mapref="STG_SALES", HSTFRMDT="1900-01-01", HSTTODT="9999-12-31")
    assert q.evaluate() == []
    status, runid, errmsg, _ = demo.request(190)
    assert (status, runid) == ("FAILED", None)
    assert "2958464 days" in errmsg and "HISTORY_MAX_DAYS=366" in errmsg
    assert not q.instance.get_runs()

    demo.params(HISTORY_MAX_DAYS=3)
    q = Queue(demo, demo.defs())
    q.insert(191, "HISTORY", mapref="STG_SALES", HSTFRMDT="2026-11-01", HSTTODT="2026-11-04")
    q.insert(192, "HISTORY", mapref="STG_SALES", HSTFRMDT="2026-11-02", HSTTODT="2026-11-04")
    assert [r.tags["dms/prcreqid"] for r in q.evaluate()] == ["192"]
    status, _, errmsg, _ = demo.request(191)
    assert status == "FAILED" and "4 days" in errmsg and "HISTORY_MAX_DAYS=3" in errmsg

    # the verb reads the same parameter
    args = ("queue", "history", "STG_SALES", "--from", "2026-11-01")
    refused = dms(demo.url, *args, "--to", "2026-11-04")
    assert refused.exit_code == 1
    assert "HISTORY_MAX_DAYS=3" in " ".join(refused.stderr.split())
    assert printed_id(dms(demo.url, *args, "--to", "2026-11-03"))
    demo.params(HISTORY_MAX_DAYS="three")
    wrong = dms(demo.url, *args, "--to", "2026-11-03")
    assert wrong.exit_code == 1 and "HISTORY_MAX_DAYS='three'" in wrong.stderr
    q = Queue(demo, demo.defs())  # the code location loads; the queue's tick says why it stops
    with pytest.raises(ConfigError, match="DMS_PARAMS DMSCONFIG HISTORY_MAX_DAYS='three'"):
        q.evaluate()


@pytest.mark.slow
def test_queue_stop_cancels_the_requests_queued_before_it_in_the_same_tick(
    dms_url, tmp_path, monkeypatch
):
    demo = demo_home(tmp_path, monkeypatch, url=dms_url)
    q = Queue(demo, demo.defs())
    q.insert(200, "HISTORY", mapref="STG_SALES", HSTFRMDT="2026-11-02", HSTTODT="2026-11-04")
    q.insert(201, "IMMEDIATE", jobid=demo.jobid("STG_SALES"))  # the mapping by its job
    q.insert(202, "IMMEDIATE", mapref="DIM_PRODUCT")  # another mapping
    q.insert(203, "STOP", mapref="STG_SALES")
    q.insert(204, "IMMEDIATE", mapref="STG_SALES")  # queued after the STOP
    served = [r.tags["dms/prcreqid"] for r in q.evaluate()]
    assert sorted(served) == ["202", "204"]
    for request in (200, 201):
        status, runid, errmsg, _ = demo.request(request)
        assert (status, runid, errmsg) == ("FAILED", None, "canceled by STOP request 203")
    assert demo.request(203)[0::2] == ("DONE", None)
    assert demo.request(204)[0] == demo.request(202)[0] == "CLAIMED"
    dispose_all()


@pytest.mark.slow
def test_queue_stop_right_after_a_history_request_lets_no_further_day_run(demo):
    q = Queue(demo, demo.defs())
    q.insert(210, "HISTORY", mapref="STG_SALES", HSTFRMDT="2026-11-02", HSTTODT="2026-11-04")
    [first_day] = q.evaluate()
    assert q.run(first_day).success
    q.insert(211, "STOP", mapref="STG_SALES")
    assert q.evaluate() == []  # the next day was due in this very tick
    assert q.evaluate() == []
    status, _, errmsg, _ = demo.request(210)
    assert (status, errmsg) == ("FAILED", "canceled by STOP request 211")
    assert demo.request(211)[0] == "DONE"
    assert [r.tags["dms/histday"] for r in q.instance.get_runs()] == ["2026-11-02"]


@pytest.mark.parametrize("status", [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED])
@pytest.mark.slow
def test_queue_stop_of_a_request_cancels_its_queued_run(demo, status):
    q = Queue(demo, demo.defs())
    q.insert(220, "HISTORY", mapref="STG_SALES", HSTFRMDT="2026-11-02", HSTTODT="2026-11-03")
    [request] = q.evaluate()
    run = q.waiting_run(request, status)
    q.insert(221, "STOP", TRGPRCREQID=220)
    assert q.evaluate() == []
    assert q.instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.CANCELED
    status, _, errmsg, _ = demo.request(220)
    assert (status, errmsg) == ("FAILED", "canceled by STOP request 221")
    assert demo.request(221)[:3] == ("DONE", run.run_id, None)
    assert q.evaluate() == []


# ------------------------------------------------------------------ the dms verbs

runner = CliRunner()


def dms(url, *args):
    return runner.invoke(app, [*args, "--url", url])


def printed_id(result) -> int:
    assert result.exit_code == 0, result.output
    [line] = result.stdout.split()
    return int(line)


@pytest.mark.slow
def test_schedule_and_queue_verbs_print_the_ids_they_write(demo):
    url = demo.url
    jobschid = printed_id(
        dms(url, "schedule", "set", "DIM_CUSTOMER", "--freq", "MN", "--day", "L", "--hour",
            "23", "--start", "2027-01-01", "--end", "2027-12-31")
    )  # fmt: skip
    assert demo.query(
        "SELECT FRQCD, FRQDD, FRQHH, CURFLG FROM DMS_JOBSCH WHERE JOBSCHID = :i", i=jobschid
    ) == [("MN", "L", 23, "Y")]
    assert demo.schedule_ids("DIM_CUSTOMER") == [jobschid]  # the DL row is history now
    dep = printed_id(dms(url, "schedule", "depend", "DIM_PRODUCT", "--on", "DIM_CUSTOMER"))
    assert demo.scalar("SELECT DPND_JOBSCHID FROM DMS_JOBSCH WHERE JOBSCHID = :i", i=dep) == (
        jobschid
    )
    off = dms(url, "schedule", "disable", "STG_SALES")
    assert off.exit_code == 0 and [int(x) for x in off.stdout.split()] == demo.schedule_ids(
        "STG_SALES"
    )
    assert demo.query("SELECT ENABLEFLG FROM DMS_JOBSCH WHERE MAPREF = 'STG_SALES'") == [("N",)]

    defs = demo.defs()
    schedules = {s.job_name + " " + s.cron_schedule: s for s in defs.schedules}
    assert "dim_customer_job 0 23 28-31 * *" in schedules
    assert "dim_customer_job 0 2 * * *" not in schedules
    assert schedules["stg_sales_job */15 * * * *"].default_status == (
        dg.DefaultScheduleStatus.STOPPED
    )
    assert "dim_product_job_after_dim_customer_job" in {s.name for s in defs.sensors}

    on = dms(url, "schedule", "enable", "STG_SALES")
    assert [int(x) for x in on.stdout.split()] == demo.schedule_ids("STG_SALES")
    assert demo.query("SELECT ENABLEFLG FROM DMS_JOBSCH WHERE MAPREF = 'STG_SALES'") == [("Y",)]

    now = printed_id(dms(url, "queue", "immediate", "STG_SALES", "--param", "PARAM1=2026-11-03"))
    hist = printed_id(
        dms(url, "queue", "history", "STG_SALES", "--from", "2026-11-02", "--to", "2026-11-04")
    )
    rows = {
        r[0]: r[1:]
        for r in demo.query(
            "SELECT PRCREQID, REQTYP, MAPREF, PARAM1, REQSTS, TRGPRCREQID FROM DMS_PRCREQ"
        )
    }
    assert rows[now] == ("IMMEDIATE", "STG_SALES", "2026-11-03", "NEW", None)
    assert rows[hist][:2] == ("HISTORY", "STG_SALES")

    # the queue sensor serves what the verbs wrote
    q = Queue(demo, defs)
    served = {r.tags["dms/prcreqid"]: r for r in q.evaluate()}
    assert served[str(now)].tags["dms/param1"] == "2026-11-03"
    assert served[str(hist)].tags["dms/histday"] == "2026-11-02"

    stop = printed_id(dms(url, "queue", "stop", "STG_SALES"))
    stop_req = printed_id(dms(url, "queue", "stop", "--request", str(now)))
    rows = {
        r[0]: r[1:]
        for r in demo.query("SELECT PRCREQID, REQTYP, MAPREF, REQSTS, TRGPRCREQID FROM DMS_PRCREQ")
    }
    assert rows[stop] == ("STOP", "STG_SALES", "NEW", None)
    assert rows[stop_req] == ("STOP", "STG_SALES", "NEW", now)
    assert q.evaluate() == []
    assert demo.request(stop)[0] == demo.request(stop_req)[0] == "DONE"
    for request in (now, hist):  # the mapping's STOP canceled them
        status, _, errmsg, _ = demo.request(request)
        assert status == "FAILED" and errmsg == f"canceled by STOP request {stop}"


def test_a_request_or_schedule_of_one_mapping_reads_only_that_mappings_rows(demo):
    """`dms queue` / `dms schedule set|enable` of one mapping read its rows alone: they
    cost the same with 4 or 2,000 mappings (a dependency reads them all: its cycle check)."""
    from dms_orchestration.metadata import scheduling

    rows_read: list[tuple[str, set]] = []

    def read(conn, cursor, statement, parameters, context, executemany):
        for table in ("DMS_MAPR", "DMS_MAPRDTL", "DMS_JOB"):
            if re.search(rf"FROM {table}\b", statement, re.IGNORECASE):
                binds = parameters.values() if isinstance(parameters, dict) else parameters
                rows_read.append((table, set(binds or ())))

    sa.event.listen(demo.engine, "before_cursor_execute", read)
    try:
        scheduling.queue_immediate_job(demo.engine, "STG_SALES")
        scheduling.queue_history_job(demo.engine, "STG_SALES", date(2026, 11, 1), date(2026, 11, 2))
        scheduling.queue_stop_request(demo.engine, "STG_SALES")
        scheduling.enable_disable_schedule(demo.engine, "STG_SALES", True)
        scheduling.create_job_schedule(demo.engine, "STG_SALES", "DL", hour=2)
    finally:
        sa.event.remove(demo.engine, "before_cursor_execute", read)
    assert {table for table, _ in rows_read} == {"DMS_MAPR", "DMS_MAPRDTL", "DMS_JOB"}
    assert all("STG_SALES" in binds for _, binds in rows_read), rows_read
    assert len(demo.query("SELECT PRCREQID FROM DMS_PRCREQ WHERE MAPREF = 'STG_SALES'")) == 3


@pytest.mark.parametrize(
    "args, message",
    [
        (("schedule", "set", "NOPE", "--freq", "DL"), "no current mapping named NOPE"),
        (("schedule", "set", "STG_SALES", "--freq", "XX"), "FRQCD"),
        (("schedule", "set", "STG_SALES", "--freq", "WK", "--day", "FOO"), "FRQDD"),
        (
            (
                "schedule",
                "set",
                "STG_SALES",
                "--freq",
                "DL",
                "--start",
                "2027-02-01",
                "--end",
                "2027-01-01",
            ),
            "before start",
        ),
        (("schedule", "depend", "STG_SALES", "--on", "STG_SALES"), "itself"),
        (("schedule", "depend", "STG_SALES", "--on", "FACT_SALES_DAILY"), "cycle"),
        (("schedule", "depend", "NOPE", "--on", "STG_SALES"), "NOPE"),
        (("schedule", "enable", "NOPE"), "NOPE"),
        (("queue", "immediate", "NOPE"), "no current mapping named NOPE"),
        (("queue", "immediate", "STG_SALES", "--param", "PARAM11=x"), "PARAM11"),
        (
            ("queue", "history", "STG_SALES", "--from", "2026-11-04", "--to", "2026-11-02"),
            "before it starts",
        ),
        (
            ("queue", "history", "STG_SALES", "--from", "2025-01-01", "--to", "2026-01-02"),
            "367 days, more than HISTORY_MAX_DAYS=366",
        ),
        (("queue", "stop"), "a mapping or a request"),
        (("queue", "stop", "--request", "424242"), "424242"),
    ],
)
@pytest.mark.slow
def test_legacy_validations_exit_1_with_a_clear_message(demo, args, message):
    before = demo.query("SELECT COUNT(*) FROM DMS_JOBSCH UNION ALL SELECT COUNT(*) FROM DMS_PRCREQ")
    result = dms(demo.url, *args)
    assert result.exit_code == 1, result.output
    assert message in " ".join(result.stderr.split())
    assert "Traceback" not in result.output
    after = demo.query("SELECT COUNT(*) FROM DMS_JOBSCH UNION ALL SELECT COUNT(*) FROM DMS_PRCREQ")
    assert after == before
