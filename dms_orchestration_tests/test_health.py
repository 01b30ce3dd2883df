"""`dms health`: one line per check, --json for probes, exit 1 when anything is unhealthy:
the metadata database, every DMS_DBCONDTLS connection, the Dagster instance and its
daemons, loads stuck in IP, requests stuck in CLAIMED."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from typer.testing import CliRunner

from dms_orchestration.cli import app
from dms_orchestration.settings import dms_now
from dms_orchestration_tests.conftest import REPO_ROOT
from dms_orchestration_tests.test_engine import CUST_SQL, mapping_yaml, scd1_columns
from dms_orchestration_tests.test_faults import _hold_a_load, _setup_cust, make  # noqa: F401
from dms_orchestration_tests.test_faults import dms as dms  # noqa: F401 (a fixture)

runner = CliRunner()
CHECK_FIELDS = {"check", "status", "detail", "latency_ms"}


def health(d, *args: str, **env) -> tuple[int, dict]:
    env = {"DMS_HOME": str(d.home), "DAGSTER_HOME": None, **env}
    result = runner.invoke(app, ["health", "--json", "--url", d.url, *args], env=env)
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(result.stdout)


def by_name(report: dict) -> dict[str, dict]:
    return {c["check"]: c for c in report["checks"]}


def _connections(d, pg_server) -> list[dict]:
    kind = "SQLITE" if d.url.startswith("sqlite") else "POSTGRESQL"
    return [
        {"name": "DW", "type": kind, "url": d.url},
        {
            "name": "LEGACY_PG",
            "type": "POSTGRESQL",
            "host": "127.0.0.1",
            "port": pg_server.port,
            "database": "postgres",
            "user": pg_server.user,
            "password_env": "DMS_HEALTH_TEST_PASSWORD",
        },
    ]


@pytest.mark.slow
def test_health_checks_each_connection_and_fails_naming_the_one_that_cannot_log_in(
    dms, pg_server, monkeypatch
):
    monkeypatch.delenv("DMS_HEALTH_TEST_PASSWORD", raising=False)
    dms.import_yaml(
        mapping_yaml("REF", CUST_SQL, scd1_columns(), connections=_connections(dms, pg_server))
    )
    code, report = health(dms)
    assert code == 1 and report["status"] == "unhealthy"
    assert all(set(c) == CHECK_FIELDS for c in report["checks"])
    checks = by_name(report)
    assert checks["metadata_database"]["status"] == "ok"
    assert checks["metadata_database"]["latency_ms"] >= 0
    assert checks["connection:DW"]["status"] == "ok" and checks["connection:DW"]["latency_ms"] >= 0
    bad = checks["connection:LEGACY_PG"]
    assert bad["status"] == "fail" and "DMS_HEALTH_TEST_PASSWORD" in bad["detail"]
    # no Dagster instance here: its checks are skipped, said so, and do not fail the probe
    assert checks["dagster_storage"]["status"] == checks["dagster_daemon"]["status"] == "skip"
    assert checks["stuck_loads"]["status"] == checks["stuck_requests"]["status"] == "ok"

    # the password variable set (the test server trusts local logins): healthy, exit 0
    code, report = health(dms, DMS_HEALTH_TEST_PASSWORD="secret-value")
    assert code == 0 and report["status"] == "healthy", report
    assert "secret-value" not in json.dumps(report)

    # the plain output: one line per check, its status first
    result = runner.invoke(
        app, ["health", "--url", dms.url], env={"DMS_HOME": str(dms.home), "DAGSTER_HOME": None}
    )
    lines = result.stdout.splitlines()
    assert result.exit_code == 1 and len(lines) == len(report["checks"])
    assert lines[0].startswith("OK   metadata_database: ")
    assert any(line.startswith("FAIL connection:LEGACY_PG: ") for line in lines)


@pytest.mark.slow
def test_health_fails_on_a_load_whose_holder_died_and_a_request_nobody_serves(dms):
    _setup_cust(dms)
    proc, prcid = _hold_a_load(dms)
    try:
        code, report = health(dms)
        assert code == 0, report  # a live holder: in progress, not stuck
        assert by_name(report)["stuck_loads"]["detail"].startswith("1 load(s) in progress")
        proc.kill()
        proc.wait()
        code, report = health(dms)
        stuck = by_name(report)["stuck_loads"]
        assert code == 1 and stuck["status"] == "fail"
        assert f"REF (PRCID {prcid}, a dms run process" in stuck["detail"]
    finally:
        proc.kill()
    dms.load()  # the next load of the mapping closes it FL: healthy again
    assert health(dms)[0] == 0

    # a request claimed long ago (twice the 60 s claim timeout) with no run
    old = dms_now() - timedelta(seconds=121)
    dms.run(
        "INSERT INTO DMS_PRCREQ (PRCREQID, REQTYP, MAPREF, REQSTS, RECUPDT, RECCRDT) "
        "VALUES (41, 'IMMEDIATE', 'REF', 'CLAIMED', :old, :old)",
        old=old,
    )
    code, report = health(dms)
    stuck = by_name(report)["stuck_requests"]
    assert code == 1 and stuck["status"] == "fail" and "41 (IMMEDIATE REF" in stuck["detail"]
    dms.run("UPDATE DMS_PRCREQ SET RECUPDT = :now WHERE PRCREQID = 41", now=dms_now())
    code, report = health(dms)  # claimed a moment ago: the sensor may still be on it
    assert code == 0 and by_name(report)["stuck_requests"]["detail"] == (
        "1 request(s) CLAIMED, none stuck"
    )
    # the claim timeout is DMS_PARAMS' (read alone, not with every mapping): 2 x 300 s
    dms.run("UPDATE DMS_PRCREQ SET RECUPDT = :old WHERE PRCREQID = 41", old=old)
    dms.run(
        "INSERT INTO DMS_PARAMS (PRTYP, PRCD, PRVAL) "
        "VALUES ('DMSCONFIG', 'CLAIM_TIMEOUT_SECONDS', '300')"
    )
    code, report = health(dms)
    assert code == 0 and by_name(report)["stuck_requests"]["status"] == "ok"


def test_health_of_an_unreachable_metadata_database_fails_and_skips_the_rest(tmp_path):
    url = "postgresql+psycopg2://postgres@127.0.0.1:1/nowhere"
    result = runner.invoke(app, ["health", "--json", "--url", url], env={"DMS_HOME": str(tmp_path)})
    assert result.exit_code == 1
    checks = by_name(json.loads(result.stdout))
    assert checks["metadata_database"]["status"] == "fail"
    assert "127.0.0.1" in checks["metadata_database"]["detail"]
    for name in ("connections", "stuck_loads", "stuck_requests"):
        assert checks[name]["status"] == "skip"


@pytest.mark.parametrize("dms_url", ["sqlite"], indirect=True)
@pytest.mark.slow
def test_health_reads_the_daemons_heartbeats_of_the_dagster_instance(dms, tmp_path):
    home = tmp_path / "dagster"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    code, report = health(dms, DAGSTER_HOME=str(home))
    checks = by_name(report)
    assert code == 1 and checks["dagster_storage"]["status"] == "ok"
    assert checks["dagster_daemon"]["status"] == "fail"  # no daemon ever ran here

    env = {k: v for k, v in os.environ.items() if not k.startswith(("DMS_", "DAGSTER_"))}
    env |= {"DMS_HOME": str(dms.home), "DMS_DATABASE_URL": dms.url, "DAGSTER_HOME": str(home)}
    daemon_bin = os.path.join(os.path.dirname(sys.executable), "dagster-daemon")
    log = open(tmp_path / "daemon.log", "wb")  # noqa: SIM115 - closed below
    daemon = subprocess.Popen(
        [daemon_bin, "run", "-w", str(REPO_ROOT / "workspace.yaml")],
        cwd=REPO_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            code, report = health(dms, DAGSTER_HOME=str(home))
            if code == 0 or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert code == 0, (report, (tmp_path / "daemon.log").read_text()[-3000:])
        daemons = [c for c in report["checks"] if c["check"].startswith("dagster_daemon:")]
        assert {c["check"] for c in daemons} >= {
            "dagster_daemon:SCHEDULER",
            "dagster_daemon:SENSOR",
            "dagster_daemon:QUEUED_RUN_COORDINATOR",
        }
    finally:
        daemon.terminate()
        daemon.wait(60)
        log.close()
    time.sleep(2)
    code, report = health(dms, "--heartbeat-age", "1", DAGSTER_HOME=str(home))
    late = by_name(report)["dagster_daemon:SCHEDULER"]
    assert code == 1 and late["status"] == "fail" and "more than 1 s" in late["detail"]
