"""Mapping validation: every finding in one pass, DMS_MAPERR replaced, LGVRFYFLG set, and
sources that are down or not created yet reported instead of crashing; TRGCLDTYP parsing."""

from __future__ import annotations

import itertools
import socket

import pytest
import sqlalchemy as sa

from dms_orchestration.db.connect import dispose_all
from dms_orchestration.metadata.datatypes import DataType, UnknownDataType, parse_data_type
from dms_orchestration.metadata.validation import validate_mappings
from dms_orchestration.settings import load_settings

UNSET_PASSWORD_VAR = "DMS_TEST_VALIDATION_UNSET_PASSWORD"

GOOD_SQL = (
    "SELECT CUST_ID, CUST_NAME, CITY, UPDATED_AT FROM SRC_CUSTOMER "
    "WHERE CUST_NAME <> COALESCE(:p1, 'none') AND CUST_NAME NOT LIKE '%:zz%' -- the filter;"
)


class Db:
    """A metadata database with a small source schema, and plain-SQL mapping authoring."""

    def __init__(self, engine: sa.Engine, tmp_path) -> None:
        self.engine = engine
        self.settings = load_settings(
            url=engine.url.render_as_string(hide_password=False),
            env={"DMS_HOME": str(tmp_path)},
        )
        self.ids = itertools.count(1000)
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "CREATE TABLE SRC_CUSTOMER (CUST_ID INTEGER, CUST_NAME VARCHAR(100), "
                    "CITY VARCHAR(50), UPDATED_AT TIMESTAMP)"
                )
            )
            conn.execute(sa.text("CREATE TABLE SRC_SEGMENT (CUST_ID INTEGER, SEGMENT VARCHAR(20))"))
            conn.execute(sa.text("INSERT INTO SRC_CUSTOMER (CUST_ID, CUST_NAME) VALUES (1, 'A')"))
            conn.execute(sa.text("INSERT INTO SRC_SEGMENT (CUST_ID, SEGMENT) VALUES (1, 'B2B')"))

    def insert(self, table: str, **values) -> None:
        cols = ", ".join(values)
        binds = ", ".join(f":{c}" for c in values)
        with self.engine.begin() as conn:
            conn.execute(sa.text(f"INSERT INTO {table} ({cols}) VALUES ({binds})"), values)

    def connection(self, name: str, **values) -> int:
        conid = next(self.ids)
        self.insert("DMS_DBCONDTLS", CONID=conid, CONNM=name, CURFLG="Y", **values)
        return conid

    def source_sql(self, code: str, sql: str, conid: int | None = None) -> None:
        self.insert(
            "DMS_MAPRSQL",
            MAPRSQLID=next(self.ids),
            MAPRSQLCD=code,
            MAPRSQL=sql,
            SQLCONID=conid,
            CURFLG="Y",
        )

    def mapping(
        self,
        ref: str,
        table: str,
        columns: list[dict],
        sql: str | None = GOOD_SQL,
        conid: int | None = None,
        **mapr,
    ) -> None:
        if sql is not None:
            self.source_sql(f"{ref}_SQL", sql, conid)
        values = dict(
            MAPID=next(self.ids),
            MAPREF=ref,
            TRGTBNM=table,
            TRGTBTYP="DIMENSION",
            MAPRSQLCD=f"{ref}_SQL",
            CURFLG="Y",
        )
        values.update(mapr)
        self.insert("DMS_MAPR", **values)
        for seq, col in enumerate(columns, 1):
            row = dict(
                MAPDTLID=next(self.ids),
                MAPREF=ref,
                TRGCLDTYP="VARCHAR(100)",
                SCDTYP="1",
                EXCSEQ=seq,
                CURFLG="Y",
            )
            row.update(col)
            self.insert("DMS_MAPRDTL", **row)

    def rows(self, sql: str, **params) -> list[tuple]:
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(sql), params)]

    def flags(self, ref: str) -> dict[str, str | None]:
        return dict(
            self.rows(
                "SELECT TRGCLNM, LGVRFYFLG FROM DMS_MAPRDTL WHERE MAPREF = :r AND CURFLG = 'Y'",
                r=ref,
            )
        )

    def maperr(self, ref: str) -> list[tuple]:
        return self.rows(
            "SELECT TRGCLNM, ERRTYP, ERRMSG FROM DMS_MAPERR WHERE MAPREF = :r ORDER BY MAPERRID",
            r=ref,
        )

    def validate(self, maprefs: list[str] | None = None):
        return validate_mappings(self.engine, self.settings, maprefs)


def key(name="CUST_ID", logic="SRC.CUST_ID", **extra) -> dict:
    row = dict(
        TRGCLNM=name, TRGCLDTYP="INTEGER", TRGKEYFLG="Y", TRGKEYSEQ=1, MAPLOGIC=logic, SCDTYP=None
    )
    return {**row, **extra}


def col(name: str, logic: str | None, **extra) -> dict:
    return dict(TRGCLNM=name, MAPLOGIC=logic, **extra)


def good_columns() -> list[dict]:
    return [
        key(),
        col("CUST_NAME", "UPPER(SRC.CUST_NAME)", TRGCLDTYP="varchar2(100 byte)", SCDTYP="2"),
        col("CITY", "SRC.CITY -- as delivered"),
        col(
            "SEGMENT",
            "SELECT CUST_ID, SEGMENT FROM SRC_SEGMENT",
            KEYCLNM="CUST_ID",
            VALCLNM="SEGMENT",
        ),
    ]


def errors(report, ref: str) -> list[tuple[str | None, str]]:
    return [(f.column, f.message) for f in report.for_mapping(ref) if f.severity == "ERROR"]


def has(findings: list[tuple[str | None, str]], column: str | None, *words: str) -> bool:
    """A finding on `column` (None: the mapping) whose message holds every word, any case."""
    return any(c == column and all(w.lower() in m.lower() for w in words) for c, m in findings)


@pytest.fixture
def db(dms_engine, tmp_path) -> Db:
    yield Db(dms_engine, tmp_path)
    dispose_all()  # validation opens source engines through the process-wide cache


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------- validation


def test_a_valid_mapping_has_no_error_and_every_column_verified(db):
    db.mapping(
        "MAP_CUST",
        "DIM_CUSTOMER",
        good_columns(),
        CHKPNTSTRTGY="KEY",
        CHKPNTCLNM="UPDATED_AT",
        DELHNDL="EXPIRE",
    )
    report = db.validate()
    assert report.checked == ["MAP_CUST"]
    assert not report.has_errors, report.findings
    assert db.flags("MAP_CUST") == {"CUST_ID": "Y", "CUST_NAME": "Y", "CITY": "Y", "SEGMENT": "Y"}
    assert [r[1] for r in db.maperr("MAP_CUST")] == []


def test_every_fault_of_a_mapping_is_reported_in_one_run_with_its_column(db):
    db.mapping(
        "MAP_BAD",
        "bad-table",
        [
            col("SKEY", "SRC.CUST_ID"),
            col("CUST_NAME", "SRC.CUST_NAME", TRGCLDTYP="BLOB", SCDTYP="3", MAPCMBCD="MAX"),
            col("cust_name", "SRC.CUST_NAME"),
            col("CITY", None),
            col("SEGMENT", "SELECT 1", KEYCLNM="CUST_ID"),
            col("AMOUNT", "SRC.CUST_ID", TRGCLDTYP="NUMBER(5,7)", SCDTYP=None, MAPCMBCD="MEDIAN"),
            col("A_VERY_LONG_COLUMN_NAME_OVER_THIRTY", "SRC.CITY"),
        ],
        TRGTBTYP="CUBE",
        DELHNDL="PURGE",
        CHKPNTSTRTGY="PYTHON",
    )
    report = db.validate(["MAP_BAD"])
    found = errors(report, "MAP_BAD")
    assert has(found, None, "TRGTBNM", "bad-table")
    assert has(found, None, "TRGTBTYP", "CUBE")
    assert has(found, None, "DELHNDL", "PURGE")
    assert has(found, None, "CHKPNTFN")
    assert has(found, None, "no business key")
    assert has(found, "SKEY", "audit column")
    assert has(found, "CUST_NAME", "unknown data type", "BLOB")
    assert has(found, "CUST_NAME", "SCDTYP", "3")
    assert has(found, "CUST_NAME", "listed 2 times") and has(found, "cust_name", "listed 2 times")
    assert has(found, "CITY", "MAPLOGIC is empty")
    assert has(found, "CITY", "MAPCMBCD is empty")
    assert has(found, "SEGMENT", "KEYCLNM and VALCLNM")
    assert has(found, "AMOUNT", "scale")
    assert has(found, "AMOUNT", "MAPCMBCD", "MEDIAN")
    warnings = [(f.column, f.message) for f in report.warnings]
    assert has(warnings, "AMOUNT", "treated as 1")
    assert has(warnings, "A_VERY_LONG_COLUMN_NAME_OVER_THIRTY", "longer than 30")
    stored = db.maperr("MAP_BAD")
    assert len(stored) == len(report.findings)
    assert ("CITY", "ERROR", "MAPLOGIC is empty: give the SQL expression for this column") in stored


def test_key_combine_and_lookup_rules(db):
    db.mapping(
        "MAP_KEYS",
        "DIM_KEYS",
        [
            key(MAPCMBCD="MAX"),
            key("CUST_NAME", "SRC.CUST_NAME", TRGCLDTYP="VARCHAR(100)"),
            col(
                "SEGMENT",
                "SELECT CUST_ID, SEGMENT FROM SRC_SEGMENT; DELETE FROM SRC_SEGMENT",
                KEYCLNM="CUST_ID",
                VALCLNM="SEGMENT",
                MAPCMBCD="MAX",
            ),
        ],
        CHKPNTSTRTGY="KEY",
    )
    found = errors(db.validate(), "MAP_KEYS")
    assert has(found, "CUST_NAME", "TRGKEYSEQ 1", "CUST_ID")
    assert has(found, "CUST_ID", "must not have MAPCMBCD")
    assert has(found, "SEGMENT", "single-column business key")
    assert has(found, "SEGMENT", "exactly one statement")
    assert has(found, None, "KEY needs CHKPNTCLNM")
    assert db.rows("SELECT COUNT(*) FROM SRC_SEGMENT") == [(1,)]  # the DELETE never ran


def test_a_bad_expression_names_its_column_and_is_flagged_not_verified(db):
    db.mapping(
        "MAP_EXPR",
        "DIM_EXPR",
        [
            key(),
            col("CUST_NAME", "SRC.CUST_NAME"),
            col("BROKEN", "SRC.NO_SUCH_COLUMN + 1"),
            col("CITY", "LOWER(SRC.CITY)"),
        ],
        CHKPNTSTRTGY="AUTO",
        CHKPNTCLNM="LAST_CHANGE",
    )
    report = db.validate()
    found = errors(report, "MAP_EXPR")
    assert has(found, "BROKEN", "does not compile", "no_such_column")
    assert not any(c in ("CUST_ID", "CUST_NAME", "CITY") for c, _ in found)
    assert has(found, None, "CHKPNTCLNM LAST_CHANGE is not a column of the source query")
    assert db.flags("MAP_EXPR") == {"CUST_ID": "Y", "CUST_NAME": "Y", "BROKEN": "N", "CITY": "Y"}


def test_findings_replace_earlier_rows_and_a_fix_clears_them(db):
    db.mapping("MAP_FIX", "DIM_FIX", [key(), col("BROKEN", "SRC.NOPE")])
    first = db.validate(["MAP_FIX"])
    second = db.validate(["MAP_FIX"])
    assert len(first.findings) == len(second.findings) == 1
    assert len(db.maperr("MAP_FIX")) == 1
    assert db.flags("MAP_FIX")["BROKEN"] == "N"
    with db.engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE DMS_MAPRDTL SET MAPLOGIC = 'SRC.CITY' WHERE MAPREF = 'MAP_FIX' "
                "AND TRGCLNM = 'BROKEN'"
            )
        )
    third = db.validate(["MAP_FIX"])
    assert third.findings == []
    assert db.maperr("MAP_FIX") == []
    assert db.flags("MAP_FIX")["BROKEN"] == "Y"


def test_two_mappings_writing_one_table_are_both_errors_naming_the_other(db):
    db.mapping("MAP_ONE", "DIM_SHARED", [key(), col("CITY", "SRC.CITY")], TRGSCHM="dw")
    db.mapping("MAP_TWO", "dim_shared", [key(), col("CITY", "SRC.CITY")], TRGSCHM="DW")
    db.mapping("MAP_THREE", "DIM_SHARED", [key(), col("CITY", "SRC.CITY")], TRGSCHM="OTHER")
    report = db.validate()
    assert has(errors(report, "MAP_ONE"), None, "MAP_TWO", "also writes")
    assert has(errors(report, "MAP_TWO"), None, "MAP_ONE", "also writes")
    assert errors(report, "MAP_THREE") == []


@pytest.mark.parametrize(
    "sql, words",
    [
        ("SELECT (CUST_ID FROM SRC_CUSTOMER", ("does not parse", "line 1")),
        ("SELEC * FORM SRC_CUSTOMER", ("must be a SELECT",)),
        ("DELETE FROM SRC_CUSTOMER", ("must be a SELECT", "DELETE")),
        ("SELECT CUST_ID FROM SRC_CUSTOMER; DROP TABLE SRC_CUSTOMER", ("exactly one statement",)),
        ("SELECT * INTO COPY_CUSTOMER FROM SRC_CUSTOMER", ("must only read",)),
    ],
)
@pytest.mark.slow
def test_source_sql_that_is_not_one_select_is_refused_and_never_run(db, sql, words):
    db.mapping("MAP_SQL", "DIM_SQL", [key(), col("CITY", "SRC.CITY")], sql=sql)
    report = db.validate()
    assert has(errors(report, "MAP_SQL"), None, "source SQL MAP_SQL_SQL", *words)
    assert db.rows("SELECT COUNT(*) FROM SRC_CUSTOMER") == [(1,)]
    assert db.flags("MAP_SQL") == {"CUST_ID": None, "CITY": None}


def test_missing_source_sql_and_an_expression_that_is_not_one_expression(db):
    db.mapping("MAP_NOSQL", "DIM_NOSQL", [key()], sql=None, MAPRSQLCD="NOT_THERE")
    db.mapping("MAP_NOCODE", "DIM_NOCODE", [key()], sql=None, MAPRSQLCD=None)
    db.mapping(
        "MAP_INJ",
        "DIM_INJ",
        [
            key(),
            col("CITY", "SRC.CITY FROM SRC_CUSTOMER; DELETE FROM SRC_CUSTOMER; SELECT 1"),
        ],
    )
    report = db.validate()
    assert has(errors(report, "MAP_NOSQL"), None, "NOT_THERE", "not a current source query")
    assert has(errors(report, "MAP_NOCODE"), None, "MAPRSQLCD is missing")
    assert has(errors(report, "MAP_INJ"), "CITY", "MAPLOGIC")
    assert db.flags("MAP_INJ") == {"CUST_ID": "Y", "CITY": "N"}
    assert db.rows("SELECT COUNT(*) FROM SRC_CUSTOMER") == [(1,)]


def test_an_unreachable_source_is_one_clear_finding_and_the_others_are_still_checked(
    db, monkeypatch
):
    monkeypatch.delenv(UNSET_PASSWORD_VAR, raising=False)
    down = db.connection(
        "CRM_DOWN",
        DBTYP="POSTGRESQL",
        DBHOST="127.0.0.1",
        DBPORT=_closed_port(),
        DBNM="crm",
        DBUSR="crm",
    )
    nopw = db.connection(
        "CRM_NOPW",
        DBTYP="POSTGRESQL",
        DBHOST="127.0.0.1",
        DBPORT=5432,
        DBNM="crm",
        DBUSR="crm",
        DBPSWDENV=UNSET_PASSWORD_VAR,
    )
    db.mapping(
        "MAP_DOWN", "DIM_DOWN", [key(), col("CITY", "SRC.CITY", TRGCLDTYP="BLOB")], conid=down
    )
    db.mapping("MAP_NOPW", "DIM_NOPW", [key(), col("CITY", "SRC.CITY")], conid=nopw)
    nofile = db.connection("LOCAL_MISSING", DBTYP="SQLITE", DBNM="missing.db")
    db.mapping("MAP_NOFILE", "DIM_NOFILE", [key()], conid=nofile)
    db.mapping("MAP_OK", "DIM_OK", good_columns())
    report = db.validate()
    assert report.checked == ["MAP_DOWN", "MAP_NOFILE", "MAP_NOPW", "MAP_OK"]
    assert has(errors(report, "MAP_NOFILE"), None, "'LOCAL_MISSING'", "does not exist")
    down_errors = errors(report, "MAP_DOWN")
    unreachable = [m for c, m in down_errors if "unreachable" in m]
    assert len(unreachable) == 1 and "'CRM_DOWN'" in unreachable[0]
    assert has(down_errors, "CITY", "BLOB")  # the static checks are still reported
    nopw_errors = errors(report, "MAP_NOPW")
    assert has(nopw_errors, None, "'CRM_NOPW'", "unreachable", UNSET_PASSWORD_VAR)
    assert errors(report, "MAP_OK") == []
    assert db.flags("MAP_OK")["CITY"] == "Y"
    assert db.flags("MAP_DOWN") == {"CUST_ID": None, "CITY": None}
    assert any("unreachable" in m for _, _, m in db.maperr("MAP_DOWN"))


def test_reading_a_table_another_mapping_creates_is_a_warning_not_an_error(db):
    db.mapping("MAP_DIM", "DIM_CUSTOMER", [key(), col("CITY", "SRC.CITY")])
    db.mapping(
        "MAP_FACT",
        "FCT_SALES",
        [key(), col("CITY", "D.CITY")],
        sql="SELECT D.CUST_ID, D.CITY FROM DIM_CUSTOMER D",
        TRGTBTYP="FACT",
    )
    db.mapping(
        "MAP_LOOKUP",
        "DIM_LOOKUP",
        [
            key(),
            col(
                "CITY", "SELECT CUST_ID, CITY FROM DIM_CUSTOMER", KEYCLNM="CUST_ID", VALCLNM="CITY"
            ),
        ],
    )
    db.mapping("MAP_NOBODY", "FCT_OTHER", [key()], sql="SELECT CUST_ID FROM NOBODY_MAKES_THIS")
    report = db.validate()
    assert errors(report, "MAP_FACT") == []
    warnings = [f.message for f in report.for_mapping("MAP_FACT")]
    assert any("reads DIM_CUSTOMER, which mapping MAP_DIM creates" in w for w in warnings)
    assert db.flags("MAP_FACT") == {"CUST_ID": None, "CITY": None}
    assert errors(report, "MAP_LOOKUP") == []
    assert any(
        f.column == "CITY" and "MAP_DIM" in f.message for f in report.for_mapping("MAP_LOOKUP")
    )
    assert db.flags("MAP_LOOKUP") == {"CUST_ID": "Y", "CITY": None}
    assert has(errors(report, "MAP_NOBODY"), None, "does not run", "nobody_makes_this")


def test_an_unknown_mapref_is_an_error_for_that_name(db):
    db.mapping("MAP_CUST", "DIM_CUSTOMER", good_columns())
    report = db.validate(["MAP_CUST", "NO_SUCH_MAP"])
    assert report.checked == ["MAP_CUST"]
    assert has(errors(report, "NO_SUCH_MAP"), None, "NO_SUCH_MAP")
    assert report.has_errors


# ---------------------------------------------------------------- data types


@pytest.mark.parametrize(
    "text, expected",
    [
        ("VARCHAR(100)", DataType("STRING", length=100)),
        ("varchar2 ( 100 byte )", DataType("STRING", length=100)),
        ("VARCHAR2(10 CHAR)", DataType("STRING", length=10)),
        ("NVARCHAR2(20)", DataType("STRING", length=20)),
        ("character   varying(5)", DataType("STRING", length=5)),
        ("NCHAR(2)", DataType("CHAR", length=2)),
        ("CLOB", DataType("TEXT")),
        ("int", DataType("INTEGER", precision=10)),
        ("BIGINT", DataType("INTEGER", precision=19)),
        ("NUMBER", DataType("DECIMAL")),
        ("NUMBER(10)", DataType("DECIMAL", precision=10, scale=0)),
        ("number( 12 , 2 )", DataType("DECIMAL", precision=12, scale=2)),
        ("DECIMAL(38,38)", DataType("DECIMAL", precision=38, scale=38)),
        ("Double  Precision", DataType("FLOAT", precision=53)),
        ("BINARY_DOUBLE", DataType("FLOAT", precision=53)),
        ("REAL", DataType("FLOAT", precision=24)),
        ("TIMESTAMP(6)", DataType("TIMESTAMP", precision=6)),
        ("DATETIME", DataType("TIMESTAMP")),
        ("boolean", DataType("BOOLEAN")),
    ],
)
def test_data_types_are_parsed_into_one_canonical_form(text, expected):
    parsed = parse_data_type(text)
    assert parsed == expected
    assert isinstance(parsed.sqlalchemy_type(), sa.types.TypeEngine)


@pytest.mark.parametrize(
    "text, message",
    [
        ("BLOB", "unknown data type"),
        ("VARCHAR", "needs one length"),
        ("VARCHAR(0)", "length must be positive"),
        ("CHAR(-1)", "length must be positive"),
        ("NUMBER(5,6)", "scale must be 0..precision"),
        ("NUMBER(39)", "precision must be 1..38"),
        ("NUMBER(0)", "precision must be 1..38"),
        ("NUMBER(1,2,3)", "takes (precision[, scale])"),
        ("NUMBER()", "empty parentheses"),
        ("INT(5)", "takes no size"),
        ("NVARCHAR(10 BYTE)", "no BYTE|CHAR"),
        ("VARCHAR(ten)", "not a whole number"),
        ("TIMESTAMP(10)", "0..9"),
        ("", "no data type"),
        (None, "no data type"),
    ],
)
def test_bad_data_types_are_refused_with_a_clear_message(text, message):
    with pytest.raises(UnknownDataType, match=None) as info:
        parse_data_type(text)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


def test_the_unknown_type_message_lists_the_accepted_types():
    with pytest.raises(UnknownDataType) as info:
        parse_data_type("GEOMETRY")
    assert "VARCHAR2(n [BYTE|CHAR])" in str(info.value) and "BOOLEAN" in str(info.value)


def test_sqlalchemy_types_keep_sizes():
    assert parse_data_type("VARCHAR2(40)").sqlalchemy_type().length == 40
    numeric = parse_data_type("NUMBER(12,3)").sqlalchemy_type()
    assert (numeric.precision, numeric.scale) == (12, 3)
    assert isinstance(parse_data_type("SMALLINT").sqlalchemy_type(), sa.SmallInteger)
    assert isinstance(parse_data_type("BIGINT").sqlalchemy_type(), sa.BigInteger)
    assert isinstance(parse_data_type("DATE").sqlalchemy_type(), sa.Date)
