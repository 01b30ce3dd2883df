"""The Dagster CLI from the repository root, as the README shows it: `dg list defs`,
`dg launch --assets`, `dagster job list`, `dagster asset materialize -m ...`, `dg dev`,
`dagster dev` and `dms ui` with the README's GraphQL example; an unknown selection is one
line; the queue sensor says nothing on an idle tick.

One demo catalog (SQLite files in a DMS_HOME) and its Dagster instance
(<DMS_HOME>/dagster, where `dms ui` finds it) serve the module; each test loads a
different mapping, so the order does not matter.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from unittest.mock import ANY

import dagster as dg
import pytest
from dagster._core.definitions.instigation_logger import get_instigation_log_records
from dagster._core.execution.build_resources import wrap_resources_for_execution
from typer.testing import CliRunner

from dms_orchestration.cli import app
from dms_orchestration.db.connect import create_engine, dispose_all
from dms_orchestration.db.ddl import init_schema
from dms_orchestration.defs.ui import ui_command
from dms_orchestration.demo import DEMO_DIR, create_demo_databases
from dms_orchestration.metadata.authoring import import_mapping_file
from dms_orchestration.metadata.mapping_file import parse_mapping_file
from dms_orchestration.settings import load_settings
from dms_orchestration_tests.conftest import REPO_ROOT
from dms_orchestration_tests.test_defs import demo_home
from dms_orchestration_tests.test_e2e import _free_port, _stop, _wait_for_graphql

pytestmark = pytest.mark.e2e  # the dg / dagster command lines, each a process of its own

BIN = Path(sys.executable).parent
DG, DAGSTER, DMS = str(BIN / "dg"), str(BIN / "dagster"), str(BIN / "dms")
LOCATION = "dms_orchestration.definitions"
ASSETS = (
    "main/dim_customer",
    "main/dim_product",
    "main/stg_sales",
    "main/fact_sales_daily",
    "reports/sales_by_city",  # the demo's report
    "files/sales_targets",  # and its file load (a partition per landed file)
    "operations/load_stats",  # the operations dashboard
)
# the demo's source tables, external assets the mappings read (not materializable)
SOURCE_ASSETS = tuple(
    f"source/retail_src/default/{table}" for table in ("customers", "products", "sales")
)
JOBS = (
    "dim_customer_job",
    "dim_product_job",
    "stg_sales_job",
    "fact_sales_daily_job",
    "sales_by_city_report",
    "sales_targets_files",
    "dms_operations_job",
)
# Dagster's own notice on its superseded commands (`dagster asset materialize`): two lines
DAGSTER_NOTICE = re.compile(r"SupersessionWarning|^\s+return callback\(")

WORKSPACE = """
{
  workspaceOrError {
    ... on Workspace {
      locationEntries { name locationOrLoadError { __typename ... on PythonError { message } } }
    }
  }
  assetNodes { assetKey { path } }
  instance { info }
}
"""

# what Dagster records for a tick that requested nothing and gave no reason
DAGSTER_EMPTY_TICK = "Sensor function returned an empty result"

QUEUE_TICKS = """
query ($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    ... on Sensor {
      sensorState {
        ticks(limit: 50) { status skipReason logEvents { events { message } } }
      }
    }
  }
}
"""
QUEUE = {
    "repositoryLocationName": LOCATION,
    "repositoryName": "__repository__",
    "sensorName": "dms_request_queue",
}


def graphql(port: int, query: str, variables: dict | None = None) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as reply:
        data = json.loads(reply.read())
    assert "errors" not in data, data
    return data["data"]


def wait_for(what: str, check, timeout: float, log: Path | None = None):
    deadline = time.time() + timeout
    while not (value := check()):
        if time.time() > deadline:
            tail = log.read_text(errors="replace")[-4000:] if log else ""
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n{tail}")
        time.sleep(0.5)
    return value


@dataclass
class Project:
    """The demo catalog in `dms_home`, its Dagster instance in `dagster_home`, and the
    environment the commands run in from the repository root."""

    dms_home: Path
    dagster_home: Path
    env: dict[str, str]

    def run(self, *argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            argv,
            cwd=REPO_ROOT,
            env=env or self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    def loads(self, mapref: str) -> list[tuple[str, str]]:
        """(PRCSTS, RUNID) of the mapping's loads."""
        with sqlite3.connect(self.dms_home / "dms.db") as conn:
            return conn.execute(
                "SELECT PRCSTS, RUNID FROM DMS_PRCLOG WHERE MAPREF = ? ORDER BY PRCID", (mapref,)
            ).fetchall()

    def sql(self, statement: str) -> None:
        with sqlite3.connect(self.dms_home / "dms.db") as conn:
            conn.execute(statement)

    @contextlib.contextmanager
    def serving(self, argv: list[str], log: Path, env: dict | None = None, wait: bool = True):
        """A `dg dev` / `dagster dev` / `dms ui` started from the repository root (`wait`:
        until it answers GraphQL); stopped, its whole process group, afterwards."""
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                ["env", "--default-signal=INT,TERM", *argv],
                cwd=REPO_ROOT,
                env=env or self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            if wait:
                _wait_for_graphql(int(argv[argv.index("-p") + 1]), proc, log, timeout=120)
            yield proc
        finally:
            _stop(proc)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Project:
    dms_home = tmp_path_factory.mktemp("cli") / "dms"
    engine = create_engine(f"sqlite:///{dms_home / 'dms.db'}")
    init_schema(engine)
    create_demo_databases(dms_home)
    import_mapping_file(engine, parse_mapping_file((DEMO_DIR / "mappings.yaml").read_text()))
    engine.dispose()
    dagster_home = dms_home / "dagster"
    dagster_home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DMS_", "DB_", "DAGSTER_"))}
    env.pop("VIRTUAL_ENV", None)
    env.pop("CDR_SCHEMA", None)
    env |= {"DMS_HOME": str(dms_home), "DAGSTER_HOME": str(dagster_home), "COLUMNS": "200"}
    yield Project(dms_home, dagster_home, env)
    dispose_all()


def materialized(project: Project, run_id: str) -> set[str]:
    with dg.DagsterInstance.from_config(str(project.dagster_home)) as instance:
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.SUCCESS
        events = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
        return {e.get_dagster_event().asset_key.to_user_string() for e in events}


# ------------------------------------------------------------------ dg / dagster commands


def test_dg_list_defs_lists_the_catalog_from_the_root(project):
    result = project.run(DG, "list", "defs")
    assert result.returncode == 0, result.stdout + result.stderr
    for name in (*ASSETS, *JOBS, "dms_request_queue"):
        assert name in result.stdout
    assert result.stderr == ""  # no venv, telemetry or dagster.yaml notice


def test_dagster_job_list_lists_the_mappings_jobs(project):
    result = project.run(DAGSTER, "job", "list")
    assert result.returncode == 0, result.stdout + result.stderr
    for job in JOBS:
        assert f"Job: {job}" in result.stdout


def test_dg_launch_materializes_the_selected_asset(project):
    result = project.run(DG, "launch", "--assets", "main/dim_product")
    assert result.returncode == 0, result.stdout + result.stderr
    [(status, run_id)] = project.loads("DIM_PRODUCT")
    assert status == "PC"
    assert materialized(project, run_id) == {"main/dim_product"}


def test_dagster_asset_list_with_the_module_target(project):
    """`-m` loads the location as `dagster asset materialize -m ...` does (whose run is
    `dg launch`'s, above); an expression that matches nothing lists nothing, as the README
    says to check before `dg launch`."""
    listed = project.run(DAGSTER, "asset", "list", "-m", LOCATION)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert sorted(listed.stdout.split()) == sorted(ASSETS)
    nothing = project.run(DAGSTER, "asset", "list", "-m", LOCATION, "--select", "tag:nope=1")
    assert (nothing.returncode, nothing.stdout) == (0, "")


def unknown(keys: str) -> str:
    return f"error: no asset {keys} in this code location (`dg list defs` lists the assets)"


@pytest.mark.parametrize(
    "argv, line",
    [
        ((DG, "launch", "--assets", "main/dim_product,nope/nope"), unknown("nope/nope")),
        ((DG, "launch", "--assets", "main:dim_customer"), "error: Invalid selection string: "),
        ((DAGSTER, "asset", "materialize", "-m", LOCATION, "--select", "nope"), unknown("nope")),
    ],
    ids=["dg launch, unknown key", "dg launch, bad expression", "dagster asset materialize"],
)
def test_a_selection_that_cannot_run_is_one_line_and_exit_1(project, argv, line):
    result = project.run(*argv)
    assert result.returncode == 1
    printed = [s for s in result.stderr.splitlines() if s.strip() and not DAGSTER_NOTICE.search(s)]
    assert len(printed) == 1 and printed[0].startswith(line), result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_dg_dev_and_dagster_dev_from_the_root_serve_the_code_location(project, tmp_path):
    ports = {"dg": _free_port(), "dagster": _free_port()}
    with contextlib.ExitStack() as both:  # side by side: slow starts, mostly waiting
        started = {}
        for name, exe in (("dg", DG), ("dagster", DAGSTER)):
            argv = [exe, "dev", "-h", "127.0.0.1", "-p", str(ports[name])]
            log = tmp_path / f"{name}-dev.log"
            started[name] = both.enter_context(project.serving(argv, log, wait=False)), log
        for name, (proc, log) in started.items():
            _wait_for_graphql(ports[name], proc, log, timeout=120)
            data = graphql(ports[name], WORKSPACE)
            [entry] = data["workspaceOrError"]["locationEntries"]
            assert entry["name"] == LOCATION
            assert entry["locationOrLoadError"]["__typename"] == "RepositoryLocation", entry
            assert {"/".join(n["assetKey"]["path"]) for n in data["assetNodes"]} == {
                *ASSETS,
                *SOURCE_ASSETS,
            }


# ------------------------------------------------------------------ dms ui


@dataclass
class Ui:
    port: int
    log: Path


@pytest.fixture(scope="module")
def ui(project, tmp_path_factory):
    """`dms ui` as the demo's closing line says: DMS_HOME set, DAGSTER_HOME not, started
    from the repository root (which holds a dagster.yaml of its own)."""
    port, log = _free_port(), tmp_path_factory.mktemp("ui") / "dms-ui.log"
    env = {k: v for k, v in project.env.items() if k != "DAGSTER_HOME"}
    with project.serving([DMS, "ui", "-p", str(port)], log, env=env):
        yield Ui(port, log)


def test_dms_ui_serves_the_instance_under_dms_home_without_dagster_yaml_notices(project, ui):
    data = graphql(ui.port, WORKSPACE)
    [entry] = data["workspaceOrError"]["locationEntries"]
    assert entry["locationOrLoadError"]["__typename"] == "RepositoryLocation", entry
    assert {"/".join(n["assetKey"]["path"]) for n in data["assetNodes"]} == {
        *ASSETS,
        *SOURCE_ASSETS,
    }
    assert f"base_dir: {project.dagster_home}" in data["instance"]["info"]
    printed = ui.log.read_text()
    first = printed.splitlines()[0]
    assert first.startswith(f"Dagster UI on http://127.0.0.1:{ui.port} (DAGSTER_HOME=")
    for notice in ("dagster.yaml", "Warning:", "Traceback"):
        assert notice not in printed, printed


def queue_ticks(port: int) -> list[dict]:
    sensor = graphql(port, QUEUE_TICKS, {"selector": QUEUE})["sensorOrError"]
    return sensor["sensorState"]["ticks"]


def test_idle_queue_ticks_log_nothing_and_stay_out_of_the_terminal(ui):
    ticks = wait_for("two ticks of the queue sensor", lambda: len(queue_ticks(ui.port)) >= 2, 60)
    ticks = queue_ticks(ui.port)
    assert {t["status"] for t in ticks} == {"SKIPPED"}
    assert [t["logEvents"]["events"] for t in ticks] == [[]] * len(ticks), ticks
    # no reason of ours: Dagster's own for an empty result, or none (a tick the daemon
    # found interrupted, e.g. under load while the location starts, is moved to SKIPPED)
    reasons = [t["skipReason"] for t in ticks]
    assert set(reasons) <= {DAGSTER_EMPTY_TICK, None} and DAGSTER_EMPTY_TICK in reasons, ticks
    assert "dms_request_queue" not in ui.log.read_text()


def test_a_queue_tick_that_serves_a_request_logs_it(project, ui):
    project.sql(
        "INSERT INTO DMS_PRCREQ (PRCREQID, REQTYP, MAPREF) VALUES (77001, 'IMMEDIATE', 'NOPE')"
    )

    def logged():
        return [e["message"] for t in queue_ticks(ui.port) for e in t["logEvents"]["events"]]

    messages = wait_for("the tick that served request 77001", logged, 60, ui.log)
    assert messages == ["DMS_PRCREQ 77001 FAILED: no active job for JOBID=None MAPREF=NOPE"]


def test_the_readme_graphql_example_launches_a_mapping_and_prints_its_result(project, ui):
    example = REPO_ROOT / "examples" / "launch_mapping.py"
    assert example.read_text() in (REPO_ROOT / "README.md").read_text()  # shown as it runs
    argv = [sys.executable, str(example), "dim_customer_job", "--port", str(ui.port)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr + ui.log.read_text()[-4000:]
    [(status, run_id)] = project.loads("DIM_CUSTOMER")
    assert status == "PC"
    lines = result.stdout.splitlines()
    assert lines[0] == f"run {run_id}: SUCCESS"
    assert any(line.startswith("main/dim_customer: ") for line in lines[1:]), lines

    nope = subprocess.run(
        [*argv[:2], "nope_job", "--port", str(ui.port)], capture_output=True, text=True
    )
    assert nope.returncode == 1
    assert nope.stderr.splitlines() == [
        "error: JobNotFoundError: No jobs with the name `nope_job` exist"
    ]


def test_dms_ui_without_a_metadata_database_says_so(tmp_path, monkeypatch):
    for name in ("DMS_DATABASE_URL", "DB_TYPE", "DAGSTER_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DMS_HOME", str(tmp_path / "empty"))
    result = CliRunner().invoke(app, ["ui"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"error: no metadata database at {tmp_path / 'empty' / 'dms.db'}: run `dms db init` "
        "and import mappings, or `bash scripts/demo.sh`, first (or set DMS_HOME / "
        "DMS_DATABASE_URL)"
    ]
    assert not (tmp_path / "empty" / "dms.db").exists()


def test_dms_ui_runs_dg_dev_in_dagster_home_with_absolute_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    env = {"DMS_DATABASE_URL": "sqlite:///meta.db", "DMS_HOME": "home", "PATH": "/usr/bin"}
    command = ui_command(load_settings(env=env), "127.0.0.1", 3001, "warning", env=env)
    assert command.cwd == tmp_path / "home" / "dagster"
    assert (command.cwd / "dagster.yaml").read_text() == (REPO_ROOT / "dagster.yaml").read_text()
    assert command.env == {
        "DMS_DATABASE_URL": f"sqlite:///{tmp_path / 'meta.db'}",  # the UI starts elsewhere
        "DMS_HOME": str(tmp_path / "home"),
        "DAGSTER_HOME": str(tmp_path / "home" / "dagster"),
        "PATH": "/usr/bin",
    }
    assert command.argv[:3] == [sys.executable, "-m", "dagster_dg_cli.cli"]
    assert command.argv[3:] == [
        *("dev", "-m", LOCATION, "-d", str(tmp_path)),
        *("-h", "127.0.0.1", "-p", "3001", "--log-level", "warning"),
    ]
    # the legacy variables reach the UI as they are
    legacy = {"DB_TYPE": "POSTGRESQL", "DB_HOST": "db", "DB_NAME": "dms", "DB_USER": "u"}
    command = ui_command(load_settings(env=legacy), "127.0.0.1", 3001, "info", env=legacy)
    assert command.env == {**legacy, "DMS_HOME": str(tmp_path / ".dms"), "DAGSTER_HOME": ANY}


# ------------------------------------------------------------------ the queue sensor itself


def queue_tick(defs: dg.Definitions, instance: dg.DagsterInstance):
    """One evaluation as the code server runs it for the daemon: with a log key, so what
    the sensor logs is captured for the tick."""
    context = dg.SensorEvaluationContext(
        instance_ref=instance.get_ref(),
        log_key=["dms_request_queue", uuid.uuid4().hex],
        repository_name="__repository__",
        instance=instance,
        sensor_name="dms_request_queue",
        resources=wrap_resources_for_execution(dict(defs.resources)),
        definitions=defs,
    )
    with context:
        return defs.resolve_sensor_def("dms_request_queue").evaluate_tick(context)


def test_the_queue_sensor_is_silent_when_idle_and_logs_what_it_serves(tmp_path, monkeypatch):
    demo = demo_home(tmp_path, monkeypatch)
    defs = demo.defs()
    with dg.instance_for_test() as instance:
        idle = queue_tick(defs, instance)
        assert (list(idle.run_requests), idle.skip_message) == ([], DAGSTER_EMPTY_TICK)
        assert idle.log_key is None  # nothing logged

        demo.sql(
            "INSERT INTO DMS_PRCREQ (PRCREQID, REQTYP, MAPREF) "
            "VALUES (1, 'IMMEDIATE', 'STG_SALES'), (2, 'IMMEDIATE', 'NOPE')"
        )
        busy = queue_tick(defs, instance)
        assert [r.job_name for r in busy.run_requests] == ["stg_sales_job"]
        records = get_instigation_log_records(instance, busy.log_key)
        logged = [r["msg"].removeprefix("__repository__ - dms_request_queue - ") for r in records]
        assert logged == [
            "DMS_PRCREQ 2 FAILED: no active job for JOBID=None MAPREF=NOPE",
            "DMS_PRCREQ 1: run of stg_sales_job",
        ]
    dispose_all()
