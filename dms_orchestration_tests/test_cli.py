"""The `dms` command: exact output formats and exit codes of the chores it offers."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from dms_orchestration.cli import app
from dms_orchestration.demo import DEMO_DIR

runner = CliRunner()


def dms(*args, env=None):
    return runner.invoke(app, list(args), env=env)


def test_db_init_twice_on_a_url(dms_url):
    first = dms("db", "init", "--url", dms_url)
    assert first.exit_code == 0, first.output
    assert "DMS_MAPR" in first.output
    second = dms("--url", dms_url, "db", "init")  # the global form works too
    assert second.exit_code == 0 and "nothing (all present)" in second.output


def test_ids_next_prints_n_increasing_ids_one_per_line(dms_url):
    dms("db", "init", "--url", dms_url)
    result = dms("ids", "next", "DMS_PRCLOG", "-n", "5", "--url", dms_url)
    assert result.exit_code == 0, result.output
    ids = [int(line) for line in result.stdout.splitlines()]
    assert len(ids) == 5 and ids == sorted(set(ids))
    more = [int(x) for x in dms("ids", "next", "DIM_CUSTOMER", "--url", dms_url).stdout.split()]
    assert len(more) == 1


def test_ids_format_reset_and_health(sqlite_url):
    dms("db", "init", "--url", sqlite_url)
    out = dms("ids", "format", "CUS", "-n", "3", "--url", sqlite_url).stdout.splitlines()
    assert out == ["CUS-AAA0001", "CUS-AAA0002", "CUS-AAA0003"]
    assert dms("ids", "reset", "CUS", "CUS-AZZ9999", "--url", sqlite_url).exit_code == 0
    assert dms("ids", "format", "CUS", "--url", sqlite_url).stdout.strip() == "CUS-BAA0001"
    bad = dms("ids", "format", "BAD-PREFIX", "--url", sqlite_url)
    assert bad.exit_code == 1 and "BAD-PREFIX" in bad.stderr
    health = dms("ids", "health", "--url", sqlite_url)
    assert health.exit_code == 0
    report = json.loads(health.stdout)
    assert report["status"] == "healthy" and report["prefix_count"] == 1
    assert report["test_id_generated"] == "_HEALTH_CHECK_-AAA0001" and report["timestamp"]


def test_ids_health_reports_an_unreachable_database_as_json(tmp_path):
    url = "postgresql+psycopg2://nobody@127.0.0.1:9/none"
    result = dms("ids", "health", "--url", url)
    assert result.exit_code == 1
    assert json.loads(result.stdout)["status"] == "unhealthy"


def test_bad_config_is_one_clear_line(dms_url):
    dms("db", "init", "--url", dms_url)
    from dms_orchestration.db.connect import create_engine

    with create_engine(dms_url).begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO DMS_PARAMS (PRTYP, PRCD, PRVAL) VALUES ('DMSCONFIG', 'ID_BLOCK_SIZE', '0')"
        )
    result = dms("ids", "next", "DMS_JOB", "--url", dms_url)
    assert result.exit_code == 1 and "ID_BLOCK_SIZE" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_mappings_import_export_validate(tmp_path, sqlite_url):
    dms("db", "init", "--url", sqlite_url)
    # the demo mappings read the demo source under DMS_HOME
    env = {"DMS_HOME": str(tmp_path)}
    from dms_orchestration.demo import create_demo_databases

    create_demo_databases(tmp_path)
    imported = dms(
        "mappings", "import", str(DEMO_DIR / "mappings.yaml"), "--url", sqlite_url, env=env
    )
    assert imported.exit_code == 0, imported.output
    exported = dms("mappings", "export", "DIM_CUSTOMER", "--url", sqlite_url, env=env)
    assert exported.exit_code == 0 and "ref: DIM_CUSTOMER" in exported.stdout
    assert "ref: DIM_PRODUCT" not in exported.stdout
    out_file = tmp_path / "all.yaml"
    dms("mappings", "export", "-o", str(out_file), "--url", sqlite_url, env=env)
    again = dms("mappings", "import", str(out_file), "--url", sqlite_url, env=env)
    assert again.exit_code == 0 and "no changes" in again.stdout
    valid = dms("mappings", "validate", "--url", sqlite_url, env=env)
    assert valid.exit_code == 0, valid.output
    assert "4 mapping(s) checked: 0 error(s)" in valid.stdout


def test_validate_exits_1_on_an_error(sqlite_url, tmp_path):
    dms("db", "init", "--url", sqlite_url)
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "sql:\n  - {code: Q, sql: 'SELECT 1 AS ID'}\n"
        "mappings:\n  - ref: BROKEN\n    target: {table: T}\n    sql: Q\n    columns:\n"
        "      - {name: VAL, type: WIDGET, logic: SRC.NOPE, scd: 1}\n"
    )
    assert dms("mappings", "import", str(bad), "--url", sqlite_url).exit_code == 0
    result = dms("mappings", "validate", "BROKEN", "--url", sqlite_url)
    assert result.exit_code == 1
    assert "BROKEN" in result.stdout and "VAL" in result.stdout


@pytest.mark.slow
def test_demo_on_the_embedded_default_via_the_console_script(tmp_path):
    exe = shutil.which("dms", path=str(__import__("pathlib").Path(sys.executable).parent))
    cmd = [exe] if exe else [sys.executable, "-m", "dms_orchestration.cli"]
    env = {"PATH": "/usr/bin:/bin", "DMS_HOME": str(tmp_path / "home"), "HOME": str(tmp_path)}
    result = subprocess.run(
        [*cmd, "demo"], capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "home" / "dms.db").exists() and (tmp_path / "home" / "retail.db").exists()
    assert "4 mapping(s) checked: 0 error(s)" in result.stdout
    # it ends with the one command that opens the UI on this DMS_HOME and its Dagster instance
    assert result.stdout.splitlines()[-2:] == [
        f"  DMS_HOME={tmp_path / 'home'} dms ui",
        "and browse to http://127.0.0.1:3000",
    ]
    # running it again is fine: the metadata is already there, nothing changes
    again = subprocess.run(
        [*cmd, "demo"], capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path
    )
    assert again.returncode == 0, again.stdout + again.stderr


@pytest.mark.parametrize("args", [["--help"], ["ids", "--help"], ["mappings", "--help"]])
def test_help(args):
    assert dms(*args).exit_code == 0
