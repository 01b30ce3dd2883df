"""The DMS schema: DDL files match the contract definition, `dms db init` creates only
what is missing, and the Oracle DDL parses and names the same tables and columns."""

from __future__ import annotations

import sqlalchemy as sa
import sqlglot
from sqlglot import exp

from dms_orchestration.db.connect import create_engine
from dms_orchestration.db.ddl import ddl_path, init_schema, render
from dms_orchestration.db.dialects import DIALECTS, dialect_of
from dms_orchestration.db.schema import TABLES
from dms_orchestration_tests.conftest import REPO_ROOT


def test_ddl_files_are_rendered_from_the_schema_definition():
    for dialect in DIALECTS.values():
        assert ddl_path(REPO_ROOT, dialect).read_text() == render(dialect), (
            f"{dialect.name} DDL is stale: run python -m dms_orchestration.db.ddl"
        )


def _tables_and_columns(path, dialect: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for stmt in sqlglot.parse(path.read_text(), read=dialect):
        if isinstance(stmt, exp.Create) and stmt.kind == "TABLE":
            schema = stmt.this
            found[schema.this.name.upper()] = {
                col.name.upper() for col in schema.expressions if isinstance(col, exp.ColumnDef)
            }
    return found


def test_oracle_ddl_parses_and_names_the_same_tables_and_columns_as_postgresql():
    oracle = _tables_and_columns(ddl_path(REPO_ROOT, DIALECTS["oracle"]), "oracle")
    postgres = _tables_and_columns(ddl_path(REPO_ROOT, DIALECTS["postgresql"]), "postgres")
    assert oracle == postgres
    assert set(oracle) == {t.name for t in TABLES}
    assert {"MAPREF", "CHKPNTSTRTGY", "DELHNDL", "MAPRSQLCD"} <= oracle["DMS_MAPR"]
    # every statement, sequences and function-based indexes included, parses
    statements = sqlglot.parse(ddl_path(REPO_ROOT, DIALECTS["oracle"]).read_text(), read="oracle")
    assert sum(isinstance(s, exp.Create) and s.kind == "SEQUENCE" for s in statements) == 16


def test_init_creates_every_table_and_is_idempotent(dms_url):
    engine = create_engine(dms_url)
    first = init_schema(engine)
    assert set(first.created) >= {t.name for t in TABLES}
    second = init_schema(engine)
    assert second.created == []
    assert set(second.existing) == {t.name for t in TABLES}
    names = {n.upper() for n in sa.inspect(engine).get_table_names()}
    assert names >= {t.name for t in TABLES}


def test_init_leaves_an_existing_legacy_table_and_its_rows_alone(dms_url):
    engine = create_engine(dms_url)
    with engine.begin() as conn:
        # a legacy DMS_MAPR, as the seed DDL had it (no checkpoint columns)
        conn.exec_driver_sql(
            "CREATE TABLE DMS_MAPR (MAPID INTEGER PRIMARY KEY, MAPREF VARCHAR(50) NOT NULL, "
            "TRGTBNM VARCHAR(100), CURFLG VARCHAR(1))"
        )
        conn.exec_driver_sql(
            "INSERT INTO DMS_MAPR (MAPID, MAPREF, TRGTBNM, CURFLG) "
            "VALUES (41, 'OLD_MAP', 'T1', 'Y')"
        )
    report = init_schema(engine)
    assert "DMS_MAPR" in report.existing and "DMS_MAPR" not in report.created
    assert "CHKPNTSTRTGY" in report.missing_columns["DMS_MAPR"]
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT MAPID, MAPREF, TRGTBNM FROM DMS_MAPR").all()
        cols = {c["name"].upper() for c in sa.inspect(conn).get_columns("dms_mapr")}
    assert [tuple(r) for r in rows] == [(41, "OLD_MAP", "T1")]
    assert cols == {"MAPID", "MAPREF", "TRGTBNM", "CURFLG"}


def test_init_gives_an_existing_table_the_indexes_it_lacks_unless_its_rows_forbid(dms_url):
    engine = create_engine(dms_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE DMS_MAPR (MAPID INTEGER PRIMARY KEY, MAPREF VARCHAR(50) NOT NULL, "
            "TRGTBNM VARCHAR(100), CURFLG VARCHAR(1))"
        )
        conn.exec_driver_sql(  # two current rows of one MAPREF: the unique rule cannot hold
            "INSERT INTO DMS_MAPR (MAPID, MAPREF, CURFLG) VALUES (1, 'M', 'Y'), (2, 'M', 'Y')"
        )
        conn.exec_driver_sql(
            "CREATE TABLE DMS_PRCREQ (PRCREQID INTEGER PRIMARY KEY, REQTYP VARCHAR(20), "
            "REQSTS VARCHAR(20))"
        )
    report = init_schema(engine)
    assert {"DMS_PRCREQ_IX1", "DMS_PRCREQ_IX2"} <= set(report.created)
    assert "DMS_MAPR_UK1" in report.index_problems
    with engine.connect() as conn:
        names = dialect_of(engine).index_names(conn, "dms_prcreq", None)
        assert {"DMS_PRCREQ_IX1", "DMS_PRCREQ_IX2"} <= names
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM DMS_MAPR").scalar() == 2
    assert init_schema(engine).created == []  # and then nothing more to do


def test_init_starts_a_new_sequence_after_existing_ids(pg_url):
    engine = create_engine(pg_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE DMS_PRCLOG (PRCID BIGINT PRIMARY KEY, MAPREF VARCHAR(50))"
        )
        conn.exec_driver_sql("INSERT INTO DMS_PRCLOG VALUES (500, 'X')")
    init_schema(engine)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT nextval('dms_prclogseq')").scalar() == 501


def test_plain_sql_writers_see_defaults(dms_engine):
    with dms_engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO DMS_PRCREQ (PRCREQID, REQTYP, MAPREF) VALUES (7, 'IMMEDIATE', 'M1')"
        )
        row = conn.exec_driver_sql(
            "SELECT REQSTS, RETRYCNT, RECCRDT FROM DMS_PRCREQ WHERE PRCREQID = 7"
        ).one()
    assert row[0] == "NEW" and row[1] == 0 and row[2] is not None


def test_dms_schema_setting_puts_tables_in_that_schema(pg_url):
    engine = create_engine(pg_url, schema="DWT")
    init_schema(engine)
    plain = create_engine(pg_url)
    assert "dms_mapr" in sa.inspect(plain).get_table_names(schema="dwt")
    assert "dms_mapr" not in sa.inspect(plain).get_table_names()
