"""`dms mappings preview`: the first rows a load would write and what each would do
against the current target, by the load's own rules, writing nothing (SQLite and
PostgreSQL)."""

from __future__ import annotations

import json
import sqlite3

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from dms_orchestration.cli import app
from dms_orchestration.db.connect import dispose_all
from dms_orchestration.engine import load
from dms_orchestration.engine.preview import preview
from dms_orchestration.metadata.catalog import load_catalog, load_mapping
from dms_orchestration_tests.test_defs import cust_dms, demo_home

runner = CliRunner()


@pytest.fixture
def cust(dms_url, tmp_path, monkeypatch):
    """30 customers (NAME SCD1, CITY SCD2); metadata, source and target in one database."""
    yield cust_dms(dms_url, tmp_path, monkeypatch)
    dispose_all()


def previewed(*args: str) -> dict:
    result = runner.invoke(app, ["mappings", "preview", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def writes(d) -> tuple:
    """What a load would have left behind: tables, log rows, target rows and times."""
    tables = tuple(sorted(sa.inspect(d.engine).get_table_names()))
    logs = (
        d.query("SELECT COUNT(*) FROM DMS_PRCLOG")[0]
        + d.query("SELECT COUNT(*) FROM DMS_JOBLOG")[0]
    )
    target = d.query("SELECT * FROM CUST_DIM ORDER BY SKEY") if "cust_dim" in tables else []
    return tables, tuple(logs), tuple(target)


def test_before_the_first_load_every_row_is_an_insert(cust):
    before = writes(cust)
    shown = previewed("CUST_DIM", "-n", "5")
    assert shown["target_exists"] is False and shown["columns"] == ["ID", "NAME", "CITY"]
    assert [r["action"] for r in shown["rows"]] == ["INSERT"] * 5
    assert [r["values"] for r in shown["rows"][:2]] == [
        {"ID": 1, "NAME": "name1", "CITY": "city1"},
        {"ID": 2, "NAME": "name2", "CITY": "city2"},
    ]
    assert writes(cust) == before  # no table created, no log row


@pytest.mark.slow
def test_each_row_shows_what_the_load_would_do_and_the_load_agrees(cust):
    load(load_mapping(cust.engine, "CUST_DIM").mappings["CUST_DIM"], settings=cust.settings)
    cust.sql("UPDATE SRC_CUST SET NAME = 'renamed' WHERE ID = 1")  # SCD1: in place
    cust.sql("UPDATE SRC_CUST SET CITY = 'moved' WHERE ID = 2")  # SCD2: a new version
    cust.sql("INSERT INTO SRC_CUST VALUES (0, 'new', 'city0')")
    before = writes(cust)
    shown = previewed("CUST_DIM", "-n", "4")
    assert writes(cust) == before
    assert [(r["values"]["ID"], r["action"], r["changed"]) for r in shown["rows"]] == [
        (0, "INSERT", []),
        (1, "UPDATE", ["NAME"]),
        (2, "EXPIRE", ["CITY"]),
        (3, "UNCHANGED", []),
    ]
    assert shown["rows"][1]["values"] == {"ID": 1, "NAME": "renamed", "CITY": "city1"}
    whole = previewed("CUST_DIM", "-n", "1000")
    assert whole["counts"] == {"INSERT": 1, "UPDATE": 1, "EXPIRE": 1, "UNCHANGED": 28}
    done = load(load_mapping(cust.engine, "CUST_DIM").mappings["CUST_DIM"], settings=cust.settings)
    counts = done.counts
    assert (counts.updrows, counts.exprows, counts.unchrows) == (1, 1, 28)
    assert counts.insrows == 2  # the new key and the new version of ID 2
    assert previewed("CUST_DIM", "-n", "1000")["counts"] == {"UNCHANGED": 31}


@pytest.mark.slow
def test_a_column_the_table_lacks_yet_differs_everywhere(cust):
    """The load adds a column the mapping gained: its rows change (NULL before)."""
    load(load_mapping(cust.engine, "CUST_DIM").mappings["CUST_DIM"], settings=cust.settings)
    cust.sql("ALTER TABLE CUST_DIM DROP COLUMN NAME")
    shown = previewed("CUST_DIM", "-n", "2")
    assert [(r["action"], r["changed"]) for r in shown["rows"]] == [("UPDATE", ["NAME"])] * 2


@pytest.mark.slow
def test_params_and_table_output(cust):
    cust.import_yaml(
        "sql:\n  - {code: Q_FROM, sql: 'SELECT ID, NAME, CITY FROM SRC_CUST WHERE ID > :p1'}\n"
        "mappings:\n  - ref: CUST_FROM\n    target: {table: CUST_FROM}\n    sql: Q_FROM\n"
        "    columns:\n      - {name: ID, type: INTEGER, key: 1, logic: SRC.ID}\n"
        "      - {name: CITY, type: VARCHAR(50), logic: UPPER(SRC.CITY)}\n"
    )
    shown = previewed("CUST_FROM", "-n", "2", "--param", "PARAM1=28")
    assert [r["values"] for r in shown["rows"]] == [
        {"ID": 29, "CITY": "CITY1"},
        {"ID": 30, "CITY": "CITY2"},
    ]
    table = runner.invoke(app, ["mappings", "preview", "CUST_FROM", "--param", "PARAM1=29"])
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    assert any("INSERT" in line and "30" in line and "CITY2" in line for line in lines)
    assert lines[-1].startswith("CUST_FROM -> cust_from (not created yet): 1 row(s) shown")
    assert lines[-1].endswith("nothing written")


def test_a_bad_mapping_or_name_is_one_clear_line(cust):
    missing = runner.invoke(app, ["mappings", "preview", "NOPE"])
    assert missing.exit_code == 1 and "no current mapping named NOPE" in missing.output
    cust.sql(
        "UPDATE DMS_MAPRDTL SET MAPLOGIC = 'SRC.NAME; DROP TABLE SRC_CUST' "
        "WHERE MAPREF = 'CUST_DIM' AND TRGCLNM = 'NAME'"
    )
    bad = runner.invoke(app, ["mappings", "preview", "CUST_DIM"])
    assert bad.exit_code == 1 and "CUST_DIM" in bad.output and "NAME" in bad.output
    assert "Traceback" not in bad.output
    assert cust.query("SELECT COUNT(*) FROM SRC_CUST") == [(30,)]


@pytest.mark.slow
def test_lookups_and_combined_rows_are_what_the_load_writes(tmp_path, monkeypatch):
    """The demo's daily sales fact (MAPCMBCD sums, lookups of the dimension keys): the
    preview's rows are the rows its load then writes."""
    d = demo_home(tmp_path, monkeypatch)
    try:
        for ref in sorted(set(load_catalog(d.engine).mappings) - {"FACT_SALES_DAILY"}):
            load(load_mapping(d.engine, ref).mappings[ref], settings=d.settings)
        fact = load_mapping(d.engine, "FACT_SALES_DAILY").mappings["FACT_SALES_DAILY"]
        shown = preview(fact, n=5, settings=d.settings)
        assert not shown.target_exists and len(shown.rows) == 5
        load(fact, settings=d.settings)
        names = ", ".join(shown.columns)
        with sqlite3.connect(d.home / "warehouse.db") as conn:
            written = conn.execute(
                f"SELECT {names} FROM FACT_SALES_DAILY ORDER BY 1 LIMIT 5"
            ).fetchall()
        assert [tuple(r.values.values()) for r in shown.rows] == written
        assert {r.action for r in preview(fact, n=5, settings=d.settings).rows} == {"UNCHANGED"}
    finally:
        dispose_all()
