"""The production layout of deploy/, run here as production runs it: the code server
(`dagster code-server start`), the daemon and the webserver as three processes, the
workspace reaching the code server over gRPC, Dagster's storage in PostgreSQL and the
queued run coordinator. A scheduled load, a queue request and a STOP go through them; the
daemon is killed and started again in the middle of a run, and the run and the DMS logs
finish true: no request lost, none launched twice. The systemd units pass
`systemd-analyze verify`, and deploy/dms.env names every variable the code reads."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml

from dms_orchestration.db.connect import create_engine
from dms_orchestration.db.ddl import init_schema
from dms_orchestration.db.schema import TABLES
from dms_orchestration.metadata.authoring import import_mapping_file
from dms_orchestration.metadata.mapping_file import parse_mapping_file
from dms_orchestration.settings import dms_now
from dms_orchestration_tests.conftest import REPO_ROOT
from dms_orchestration_tests.services import BIN, DEPLOY, DeployedServices
from dms_orchestration_tests.test_e2e import _wait_for_graphql
from dms_orchestration_tests.test_engine import CUST_DDL, CUST_SQL, mapping_yaml, scd1_columns

pytestmark = pytest.mark.e2e  # the deployed services, started here on a real PostgreSQL


SLOW_ROWS = 10_000  # ~1 ms a row: a load of ~10 s
SLOW_NAME = (
    "CREATE FUNCTION slow_name(t text) RETURNS text IMMUTABLE LANGUAGE plpgsql AS "
    "$$ BEGIN PERFORM pg_sleep(0.001); RETURN t; END $$"
)
SLOW_SQL = "SELECT ID, slow_name(NAME) AS NAME, CITY FROM SRC_CUST"


def _mappings() -> str:
    """FAST on a clock of every minute; SLOW and STOPPED for the queue."""
    files = [
        yaml.safe_load(mapping_yaml("FAST", CUST_SQL, scd1_columns(), table="T_FAST")),
        yaml.safe_load(mapping_yaml("SLOW", SLOW_SQL, scd1_columns(), table="T_SLOW")),
        yaml.safe_load(mapping_yaml("STOPPED", SLOW_SQL, scd1_columns(), table="T_STOPPED")),
    ]
    files[0]["mappings"][0]["job"] = {"schedules": [{"frequency": "ID", "minute": 1}]}
    for f in files[1:]:
        f["mappings"][0]["job"] = {"description": "on request"}  # an active job, no clock
    merged = {"sql": [], "mappings": []}
    for f in files:
        merged["sql"] += f["sql"]
        merged["mappings"] += f["mappings"]
    return yaml.safe_dump(merged)


class Deployment(DeployedServices):
    """The three services on one PostgreSQL server: DMS metadata in one database,
    Dagster's storage in another; the DMS tables as the test reads and writes them."""

    def __init__(self, pg_server, tmp: Path) -> None:
        self.meta_url = pg_server.create_database("deploy_dms")
        pg_server.create_database("deploy_dagster")
        super().__init__(pg_server, tmp, self.meta_url, "deploy_dagster")
        self.engine = create_engine(self.meta_url)
        init_schema(self.engine)
        with self.engine.begin() as conn:
            for statement in (
                CUST_DDL,
                SLOW_NAME,
                "INSERT INTO SRC_CUST (ID, NAME, CITY) SELECT i, 'name' || i, "
                f"'city' || mod(i, 3) FROM generate_series(1, {SLOW_ROWS}) i",
            ):
                conn.exec_driver_sql(statement)
        import_mapping_file(self.engine, parse_mapping_file(_mappings()))

    def stop(self) -> None:
        super().stop()
        self.engine.dispose()

    # --- the DMS tables

    def rows(self, sql: str, **binds) -> list[tuple]:
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(sql), binds)]

    def request(self, prcreqid: int, reqtyp: str, mapref: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO DMS_PRCREQ (PRCREQID, REQTYP, MAPREF, REQSTS, RECCRDT) "
                    "VALUES (:id, :t, :m, 'NEW', :now)"
                ),
                {"id": prcreqid, "t": reqtyp, "m": mapref, "now": dms_now()},
            )

    def request_status(self, prcreqid: int) -> tuple:
        return self.rows(
            "SELECT REQSTS, RUNID, ERRMSG FROM DMS_PRCREQ WHERE PRCREQID = :i", i=prcreqid
        )[0]

    def loads(self, mapref: str) -> list[tuple]:
        return self.rows(
            "SELECT PRCID, PRCSTS, RUNID FROM DMS_PRCLOG WHERE MAPREF = :m ORDER BY PRCID",
            m=mapref,
        )

    def wait(self, what: str, check, timeout: float = 180):
        deadline = time.time() + timeout
        while not (value := check()):
            if time.time() > deadline:
                pytest.fail(
                    f"timed out after {timeout:.0f}s waiting for {what}\n{self.logs_tail()}"
                )
            time.sleep(0.5)
        return value


@pytest.fixture(scope="module")
def deployed(pg_server, tmp_path_factory):
    d = Deployment(pg_server, tmp_path_factory.mktemp("deploy"))
    try:
        d.start_code_server()
        d.start_daemon()
        d.start_webserver()
        _wait_for_graphql(d.web_port, d.procs["webserver"], d.logs / "webserver.log", 180)
        yield d
    finally:
        d.stop()


def _runs_of_request(d: Deployment, prcreqid: int) -> list[dg.DagsterRun]:
    with d.instance() as instance:
        return list(instance.get_runs(filters=dg.RunsFilter(tags={"dms/prcreqid": str(prcreqid)})))


def test_the_deployed_services_serve_a_schedule_the_queue_and_a_stop_through_a_daemon_restart(
    deployed,
):
    d = deployed
    # a queue request for a load of ~10 s; the daemon dies in the middle of its run
    d.request(501, "IMMEDIATE", "SLOW")
    d.wait("the SLOW load to run", lambda: any(s == "IP" for _, s, _ in d.loads("SLOW")))
    os.killpg(d.procs["daemon"].pid, signal.SIGKILL)
    d.procs["daemon"].wait(30)
    time.sleep(3)  # (the queue sensor would have ticked)
    d.start_daemon()

    # meanwhile a STOP of another load, through the restarted daemon
    d.request(502, "IMMEDIATE", "STOPPED")
    d.wait("the STOPPED load to run", lambda: any(s == "IP" for _, s, _ in d.loads("STOPPED")))
    d.request(503, "STOP", "STOPPED")
    d.wait("the STOP to end the load", lambda: [s for _, s, _ in d.loads("STOPPED")] == ["ST"])
    d.wait("the STOP to be served", lambda: d.request_status(503)[0] == "DONE")
    status, _, errmsg = d.wait(
        "the stopped request to end", lambda: (r := d.request_status(502))[0] != "CLAIMED" and r
    )
    assert (status, errmsg) == ("FAILED", "canceled by STOP request 503")

    # the run the daemon saw start finishes true: one run, one load, every row
    d.wait("the SLOW request to be done", lambda: d.request_status(501)[0] == "DONE")
    [run] = _runs_of_request(d, 501)  # none launched twice
    assert run.status == dg.DagsterRunStatus.SUCCESS
    assert d.loads("SLOW") == [(d.loads("SLOW")[0][0], "PC", run.run_id)]
    [(srcrows, insrows)] = d.rows(
        "SELECT SRCROWS, INSROWS FROM DMS_JOBLOG WHERE MAPREF = 'SLOW' AND CHUNKNO IS NULL"
    )
    assert srcrows == insrows == SLOW_ROWS
    assert d.rows("SELECT COUNT(*) FROM T_SLOW") == [(SLOW_ROWS,)]
    assert d.request_status(501)[1] == run.run_id

    # the clock of FAST (every minute) ticked through the daemon: each tick one run, one load
    d.wait("a scheduled load of FAST", lambda: any(s == "PC" for _, s, _ in d.loads("FAST")), 150)

    def succeeded_runs() -> set[str]:
        with d.instance() as instance:
            runs = instance.get_runs(
                filters=dg.RunsFilter(job_name="fast_job", statuses=[dg.DagsterRunStatus.SUCCESS])
            )
        return {r.run_id for r in runs}

    # (a run succeeds a moment after its load: its checks follow it)
    d.wait("a scheduled run of FAST to succeed", succeeded_runs, 60)
    with d.instance() as instance:
        scheduled = instance.get_runs(filters=dg.RunsFilter(job_name="fast_job"))
        ticks = [r.tags.get(".dagster/scheduled_execution_time") for r in scheduled]
        assert all(ticks) and len(ticks) == len(set(ticks))  # no tick run twice
        assert {r.tags.get("dagster/schedule_name") for r in scheduled} == {
            "fast_job_id_1"
        }  # its DMS_JOBSCH clock
        done = {r.run_id for r in scheduled if r.status == dg.DagsterRunStatus.SUCCESS}
    assert done and done <= {runid for _, s, runid in d.loads("FAST") if s == "PC"}

    # and the probe says all is well: daemons beating, nothing stuck
    health = subprocess.run(
        [str(BIN / "dms"), "health", "--json"],
        env=d.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    report = json.loads(health.stdout)
    assert health.returncode == 0, report
    assert {"dagster_storage", "dagster_daemon:SCHEDULER", "dagster_daemon:SENSOR"} <= {
        c["check"] for c in report["checks"]
    }


# ------------------------------------------------------------------ the files of deploy/


def test_the_systemd_units_pass_systemd_analyze_verify_and_a_broken_one_does_not(tmp_path):
    """The units as installed under /opt/dms, checked with this checkout in its place."""
    units = sorted((DEPLOY / "systemd").glob("*.service"))
    assert [u.name for u in units] == [
        "dms-code-server.service",
        "dms-dagster-daemon.service",
        "dms-dagster-webserver.service",
    ]
    for unit in units:
        text = unit.read_text()
        assert "EnvironmentFile=/etc/dms/dms.env" in text
        text = text.replace("/opt/dms/.venv/bin", str(BIN)).replace("/opt/dms", str(REPO_ROOT))
        text = text.replace("/etc/dms/dms.env", str(DEPLOY / "dms.env"))
        text = re.sub(r"^(User|Group)=dms$", r"\1=root", text, flags=re.MULTILINE)
        (tmp_path / unit.name).write_text(text)
    verify = subprocess.run(
        ["systemd-analyze", "verify", *(u.name for u in units)],
        cwd=tmp_path, capture_output=True, text=True,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr
    broken = (tmp_path / "dms-dagster-daemon.service").read_text()
    (tmp_path / "broken.service").write_text(broken.replace(str(BIN), "/nonexistent"))
    refused = subprocess.run(
        ["systemd-analyze", "verify", "broken.service"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert refused.returncode != 0 and "/nonexistent" in refused.stderr


def test_the_deployed_instance_forks_run_workers_and_the_daemons_unit_leaves_them_running():
    """The daemon launches runs as forks of its preloaded server (ForkedRunLauncher): a
    stop of its unit must not take the running loads with it."""
    instance = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    assert instance["run_launcher"] == {
        "module": "dms_orchestration.defs.run_launcher",
        "class": "ForkedRunLauncher",
    }
    unit = (DEPLOY / "systemd" / "dms-dagster-daemon.service").read_text()
    assert re.findall(r"^KillMode=(\w+)$", unit, flags=re.MULTILINE) == ["process"]


_VARIABLE = re.compile(r"\"((?:DMS|DB|DAGSTER|CDR)_[A-Z0-9_]+)\"")


def variables_the_code_reads() -> set[str]:
    """Every DMS_* / DB_* / DAGSTER_* / CDR_* string in the code that is not a table,
    index or pool name."""
    names = set()
    for path in (REPO_ROOT / "dms_orchestration").rglob("*.py"):
        names |= set(_VARIABLE.findall(path.read_text()))
    tables = {t.name for t in TABLES}
    return {
        n
        for n in names
        if n not in tables and not re.search(r"_(IX|UK)\d+$", n) and n != "DMS_METADATA"
    }


def test_the_environment_file_names_every_variable_the_code_reads():
    documented = set(
        re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", (DEPLOY / "dms.env").read_text(), re.M)
    )
    used = variables_the_code_reads()
    assert {"DMS_DATABASE_URL", "DMS_ALERT_WEBHOOK", "DAGSTER_HOME"} <= used
    assert used <= documented, sorted(used - documented)
    # and what the deployment's own files read from the environment
    for name in ("dagster.yaml", "workspace.yaml"):
        wanted = set(re.findall(r"\{env: ([A-Z0-9_]+)\}", (DEPLOY / name).read_text()))
        assert wanted and wanted <= documented, (name, sorted(wanted - documented))


# ------------------------------------------------------------------ Kubernetes (deploy/k8s)

K8S = DEPLOY / "k8s"


def test_the_kubernetes_instance_config_passes_dagsters_validation_with_dagster_k8s(
    tmp_path, monkeypatch
):
    from dagster._config import process_config
    from dagster._core.instance.config import dagster_instance_config
    from dagster._core.instance.ref import InstanceRef
    from dagster_k8s import K8sRunLauncher

    shutil.copy(K8S / "dagster-instance.yaml", tmp_path / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", "unused")
    config, _ = dagster_instance_config(str(tmp_path))  # the instance schema, the pools
    ref = InstanceRef.from_dir(str(tmp_path))
    launcher = ref.run_launcher_data
    assert (launcher.module_name, launcher.class_name) == ("dagster_k8s", "K8sRunLauncher")
    checked = process_config(K8sRunLauncher.config_type(), yaml.safe_load(launcher.config_yaml))
    assert checked.success, checked.errors
    assert ref.run_coordinator_data.class_name == "QueuedRunCoordinator"
    assert ref.run_storage_data.class_name == "PostgresRunStorage"
    assert config["concurrency"]["pools"]["default_limit"] == 2
    # a misspelt key is refused: the check can fail
    bad = yaml.safe_load(launcher.config_yaml) | {"job_namespce": "dms"}
    assert not process_config(K8sRunLauncher.config_type(), bad).success


@pytest.mark.parametrize(
    "instance_file",
    [REPO_ROOT / "dagster.yaml", DEPLOY / "dagster.yaml", K8S / "dagster-instance.yaml"],
    ids=["dagster.yaml", "deploy", "k8s"],
)
def test_no_instance_runs_the_freshness_daemon(instance_file, tmp_path, monkeypatch):
    """No DMS asset has a freshness policy; Dagster's freshness daemon would still walk
    every asset each second and write an event per asset on its first pass."""
    from dagster._core.instance.config import dagster_instance_config

    shutil.copy(instance_file, tmp_path / "dagster.yaml")
    for name in ("DAGSTER_PG_HOST", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB"):
        monkeypatch.setenv(name, "unused")
    config, _ = dagster_instance_config(str(tmp_path))
    assert config["freshness"] == {"enabled": False}
    if instance_file == REPO_ROOT / "dagster.yaml":  # SQLite storage: the instance itself
        monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
        with dg.DagsterInstance.get() as instance:
            daemons = instance.get_required_daemon_types()
        assert "FRESHNESS_DAEMON" not in daemons and "QUEUED_RUN_COORDINATOR" in daemons
    values = yaml.safe_load((K8S / "values.yaml").read_text())
    assert values["additionalInstanceConfig"]["freshness"] == {"enabled": False}


@pytest.mark.parametrize(
    "instance_file",
    [REPO_ROOT / "dagster.yaml", DEPLOY / "dagster.yaml", K8S / "dagster-instance.yaml"],
    ids=["dagster.yaml", "deploy", "k8s"],
)
def test_the_run_queue_starts_one_run_of_a_mapping_at_a_time(instance_file, tmp_path, monkeypatch):
    """Runs of a mapping queued behind one that loads (schedule ticks waiting while the
    host catches up, a run-now request) wait for it, not fail on the load lock: a limit
    of 1 per value of the job tag dms/mapref, as Dagster's queue reads it."""
    from dagster._core.instance.config import dagster_instance_config

    shutil.copy(instance_file, tmp_path / "dagster.yaml")
    for name in ("DAGSTER_PG_HOST", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB"):
        monkeypatch.setenv(name, "unused")
    config, _ = dagster_instance_config(str(tmp_path))
    limits = config["concurrency"]["runs"]["tag_concurrency_limits"]
    assert {"key": "dms/mapref", "value": {"applyLimitPerUniqueValue": True}, "limit": 1} in limits
    if instance_file == REPO_ROOT / "dagster.yaml":  # the queue's own reading of it
        monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
        with dg.DagsterInstance.get() as instance:
            queue = instance.get_concurrency_config().run_queue_config
        assert queue.tag_concurrency_limits == limits


def test_a_mappings_runs_carry_the_tag_the_run_queue_limits(tmp_path, monkeypatch):
    from dms_orchestration_tests.test_defs import cust_dms

    d = cust_dms(f"sqlite:///{tmp_path / 'dms.db'}", tmp_path, monkeypatch)
    job = d.defs().resolve_job_def("cust_dim_job")
    assert job.tags["dms/mapref"] == "CUST_DIM"  # every run of the job has its tags


def test_the_helm_values_and_the_instance_config_say_the_same():
    values = yaml.safe_load((K8S / "values.yaml").read_text())
    instance = yaml.safe_load((K8S / "dagster-instance.yaml").read_text())
    k8s = values["runLauncher"]["config"]["k8sRunLauncher"]
    launcher = instance["run_launcher"]["config"]
    assert values["runLauncher"]["type"] == instance["run_launcher"]["class"]
    assert k8s["jobNamespace"] == launcher["job_namespace"]
    assert [c["name"] for c in k8s["envConfigMaps"]] == launcher["env_config_maps"]
    assert [s["name"] for s in k8s["envSecrets"]] == launcher["env_secrets"]
    resources = k8s["runK8sConfig"]["containerConfig"]["resources"]
    assert resources == launcher["run_k8s_config"]["container_config"]["resources"]
    assert values["additionalInstanceConfig"]["concurrency"] == instance["concurrency"]
    [code] = values["dagster-user-deployments"]["deployments"]
    assert code["dagsterApiGrpcArgs"] == ["-m", "dms_orchestration.definitions"]
    assert values["dagsterDaemon"]["runCoordinator"]["type"] == "QueuedRunCoordinator"


def test_dms_executor_k8s_gives_the_jobs_dagster_k8s_executor_and_its_run_config_validates(
    tmp_path, monkeypatch
):
    from dms_orchestration.defs.jobs import run_executor
    from dms_orchestration_tests.test_defs import cust_dms

    monkeypatch.setenv("DMS_EXECUTOR", "k8s")
    d = cust_dms(f"sqlite:///{tmp_path / 'dms.db'}", tmp_path, monkeypatch)
    defs = d.defs()
    job = defs.resolve_job_def("cust_dim_job")
    assert job.executor_def.name == "k8s"
    run_config = yaml.safe_load((K8S / "run-config.yaml").read_text())
    run_config["loggers"] = {"console": {"config": {"log_level": "WARNING"}}}
    assert dg.validate_run_config(job, run_config)
    with pytest.raises(dg.DagsterInvalidConfigError, match="max_concurent"):
        run_config["execution"]["config"]["max_concurent"] = 4
        dg.validate_run_config(job, run_config)
    assert run_executor({"DMS_EXECUTOR": ""}).name == "in_process"
    assert run_executor({"DMS_EXECUTOR": "multiprocess"}).name == "multiprocess"
    with pytest.raises(ValueError, match="DMS_EXECUTOR='k9s' is not one of"):
        run_executor({"DMS_EXECUTOR": "k9s"})
