"""A table cell is input, not code: every load, check and `dms run` refuses SQL that
validation refuses (a second statement, a write, a call that runs SQL text) before any
statement runs, naming the mapping and the column."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from dms_orchestration.cli import app
from dms_orchestration.db.connect import dispose_all
from dms_orchestration.engine.checks import reconcile
from dms_orchestration.engine.spec import MappingInvalid
from dms_orchestration.metadata.validation import rule_findings
from dms_orchestration_tests.test_engine import (
    CUST_DDL,
    CUST_SQL,
    Dms,
    col,
    cust_rows,
    mapping_yaml,
)

runner = CliRunner()


@pytest.fixture
def dms(dms_url, tmp_path):
    d = Dms(dms_url, tmp_path / "home")
    yield d
    d.engine.dispose()
    dispose_all()  # the engine caches its engines per URL and process


# each is one valid statement when the loader wraps it (`SELECT ... FROM (<sql>) SRC`)
# but three when it runs: the middle one drops a table
SOURCE_SMUGGLING = "SELECT * FROM SRC_CUST) SRC; DROP TABLE VICTIM; SELECT * FROM (SELECT 1 AS X"
KEY_SMUGGLING = "SRC.NAME AS k FROM (SELECT 1 AS A) Q; DROP TABLE VICTIM; SELECT SRC.NAME"


def _setup(d: Dms, key_logic: str = "SRC.NAME") -> None:
    d.run(CUST_DDL, "CREATE TABLE VICTIM (ID INTEGER)")
    d.insert("SRC_CUST", cust_rows(4))
    columns = [col("NAME", "VARCHAR(100)", key_logic, key=1), col("CITY", "VARCHAR(50)")]
    d.import_yaml(mapping_yaml("REF", CUST_SQL, columns, table="T_CUST"))


def _victim_exists(d: Dms) -> bool:
    return d.scalar("SELECT COUNT(*) FROM VICTIM") == 0  # raises when it was dropped


def _logged_failure(d: Dms) -> tuple:
    prcid = d.last_prcid()
    status = d.prcsts(prcid)
    errtyp = d.scalar("SELECT ERRTYP FROM DMS_JOBERR WHERE PRCID = :p", p=prcid)
    return status, errtyp


@pytest.mark.slow
def test_a_smuggled_statement_in_the_source_sql_never_runs(dms):
    _setup(dms)
    dms.run("UPDATE DMS_MAPRSQL SET MAPRSQL = :sql WHERE MAPRSQLCD = 'Q_REF'", sql=SOURCE_SMUGGLING)
    with pytest.raises(MappingInvalid, match=r"mapping REF .*\n  source SQL Q_REF "):
        dms.load()
    assert _victim_exists(dms)
    assert _logged_failure(dms) == ("FL", "VALIDATION")


@pytest.mark.slow
def test_a_smuggled_statement_in_a_column_logic_never_runs(dms):
    _setup(dms)
    dms.run("UPDATE DMS_MAPRDTL SET MAPLOGIC = :sql WHERE TRGCLNM = 'NAME'", sql=KEY_SMUGGLING)
    with pytest.raises(MappingInvalid, match=r"mapping REF .*\n  NAME: MAPLOGIC must be one"):
        dms.load(full=True)
    assert _victim_exists(dms)
    with pytest.raises(MappingInvalid, match="NAME: MAPLOGIC"):
        reconcile(dms.mapping(), dms.settings)  # the asset check runs the source too
    assert _victim_exists(dms)


@pytest.mark.parametrize(
    "logic, why",
    [
        ("query_to_xml('DROP TABLE VICTIM', true, false, '')", "calls QUERY_TO_XML"),
        ("(SELECT 1 FROM VICTIM FOR UPDATE)", "contains LOCK"),
        ("SRC.CITY; COMMIT", "must be one SQL expression"),
    ],
)
@pytest.mark.slow
def test_a_column_logic_that_acts_instead_of_reading_is_refused(dms, logic, why):
    _setup(dms)
    dms.run("UPDATE DMS_MAPRDTL SET MAPLOGIC = :sql WHERE TRGCLNM = 'CITY'", sql=logic)
    with pytest.raises(MappingInvalid, match=rf"CITY: .*{why}"):
        dms.load()
    assert _victim_exists(dms)


@pytest.mark.slow
def test_a_lookup_query_with_a_second_statement_is_refused(dms):
    _setup(dms, key_logic="SRC.NAME")
    dms.run(
        "UPDATE DMS_MAPRDTL SET MAPLOGIC = :sql, KEYCLNM = 'K', VALCLNM = 'V' "
        "WHERE TRGCLNM = 'CITY'",
        sql="SELECT NAME AS K, CITY AS V FROM SRC_CUST; DROP TABLE VICTIM",
    )
    with pytest.raises(MappingInvalid, match="CITY: lookup MAPLOGIC must be exactly one statement"):
        dms.load()
    assert _victim_exists(dms)


@pytest.mark.slow
def test_dms_run_names_the_mapping_and_column_and_validate_refuses_the_same(dms, tmp_path):
    _setup(dms)
    dms.run("UPDATE DMS_MAPRDTL SET MAPLOGIC = :sql WHERE TRGCLNM = 'NAME'", sql=KEY_SMUGGLING)
    env = {"DMS_HOME": str(tmp_path / "home")}
    result = runner.invoke(app, ["run", "REF", "--full", "--url", dms.url], env=env)
    assert result.exit_code == 1
    assert "REF" in result.stderr and "NAME: MAPLOGIC must be one" in result.stderr
    assert _victim_exists(dms)
    validated = runner.invoke(app, ["mappings", "validate", "REF", "--url", dms.url], env=env)
    assert validated.exit_code == 1 and "MAPLOGIC must be one" in validated.stdout
    assert _victim_exists(dms)


@pytest.mark.slow
def test_rule_findings_parse_in_the_source_dialect(dms):
    _setup(dms)
    dms.run(
        "UPDATE DMS_MAPRDTL SET MAPLOGIC = :sql WHERE TRGCLNM = 'CITY'",
        sql="SRC.CITY || E'!'",  # a PostgreSQL escape string: fine there, not in Oracle
    )
    mapping = dms.mapping()
    assert not [f for f in rule_findings(mapping, "postgres") if f.severity == "ERROR"]
    assert [f.column for f in rule_findings(mapping, "oracle") if f.severity == "ERROR"] == ["CITY"]


@pytest.mark.slow
def test_a_trailing_line_comment_in_the_source_or_a_logic_does_not_swallow_the_load(dms):
    _setup(dms)
    dms.run(
        "UPDATE DMS_MAPRSQL SET MAPRSQL = :sql WHERE MAPRSQLCD = 'Q_REF'",
        sql=CUST_SQL + " -- all customers;",
    )
    dms.run("UPDATE DMS_MAPRDTL SET MAPLOGIC = 'SRC.CITY -- as is' WHERE TRGCLNM = 'CITY'")
    result = dms.load()
    assert result.counts.insrows == 4
