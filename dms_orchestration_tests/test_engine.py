"""The load engine end to end: SCD1/SCD2, RWHKEY, deletes, target DDL and drift,
transforms, data errors, checkpoints, chunks (also in spawned processes), interruption,
the load lock, the log tables, cross-database streaming, Oracle SQL and `dms run`."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import date, datetime
from decimal import Decimal
from multiprocessing import get_context
from pathlib import Path
from uuid import uuid4

import pytest
import sqlalchemy as sa
import sqlglot
import yaml
from sqlalchemy.dialects import oracle
from typer.testing import CliRunner

from dms_orchestration.cli import app
from dms_orchestration.db import dialects as dialects_module
from dms_orchestration.db.connect import create_engine, dispose_all
from dms_orchestration.db.ddl import init_schema
from dms_orchestration.db.dialects import DIALECTS, Dialect
from dms_orchestration.db.rowhash import row_hash
from dms_orchestration.dmslog.writer import LoadLocked
from dms_orchestration.engine import ChunkResult, LoadPlan, commit, load, plan, run_chunk, sqlgen
from dms_orchestration.engine import chunk as chunk_module
from dms_orchestration.engine import target as target_module
from dms_orchestration.engine.checkpoint import register_checkpoint_function
from dms_orchestration.engine.checks import TableRows
from dms_orchestration.engine.errors import DataError
from dms_orchestration.engine.load import IncompleteLoad
from dms_orchestration.engine.spec import load_spec
from dms_orchestration.engine.strategy import Staging
from dms_orchestration.engine.target import WORK_TABLE, SchemaDrift, index_statements
from dms_orchestration.metadata.authoring import import_mapping_file
from dms_orchestration.metadata.catalog import load_catalog
from dms_orchestration.metadata.datatypes import parse_data_type
from dms_orchestration.metadata.mapping_file import parse_mapping_file
from dms_orchestration.metadata.models import Catalog
from dms_orchestration.settings import ConfigError, load_settings

# ------------------------------------------------------------------ helpers


def col(name, type_, logic=None, *, key=None, scd=1, combine=None, lookup=None):
    """One mapping column (YAML form)."""
    c = {"name": name, "type": type_, "logic": logic or f"SRC.{name}"}
    if key:
        c["key"] = key
    else:
        c["scd"] = scd
    if combine:
        c["combine"] = combine
    if lookup:
        c["lookup"] = {"key": lookup[0], "value": lookup[1]}
    return c


def mapping_yaml(
    ref,
    sql,
    columns,
    *,
    table=None,
    delete=None,
    checkpoint=None,
    source_conn=None,
    target_conn=None,
    connections=(),
    params=(),
) -> str:
    source = {"code": f"Q_{ref}", "sql": sql}
    if source_conn:
        source["connection"] = source_conn
    target = {"table": table or f"T_{ref}"}
    if target_conn:
        target["connection"] = target_conn
    # EXCSEQ in the order given (it orders the RWHKEY columns too)
    columns = [{**c, "order": c.get("order", i)} for i, c in enumerate(columns, start=1)]
    m = {"ref": ref, "target": target, "sql": f"Q_{ref}", "columns": columns}
    if delete:
        m["delete_handling"] = delete
    if checkpoint:
        m["checkpoint"] = checkpoint
    data = {"params": list(params), "connections": list(connections), "sql": [source]}
    data["mappings"] = [m]
    return yaml.safe_dump(data, sort_keys=False)


class Dms:
    """A metadata database (which is also the default source and target) for one test."""

    def __init__(self, url: str, home: Path) -> None:
        self.url = url
        self.home = home
        self.engine = create_engine(url)
        init_schema(self.engine)
        self.settings = load_settings(url=url, env={"DMS_HOME": str(home)})
        self.dialect = self.engine.dialect.name

    # plain SQL on any engine (default: this database)
    def run(self, *statements, engine=None, **binds) -> None:
        with (engine or self.engine).begin() as conn:
            for stmt in statements:
                conn.execute(sa.text(stmt), binds)

    def insert(self, table, rows, engine=None) -> None:
        cols = list(rows[0])
        stmt = (
            f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join(':' + c for c in cols)})"
        )
        with (engine or self.engine).begin() as conn:
            conn.execute(sa.text(stmt), [dict(r) for r in rows])

    def query(self, sql, engine=None, **binds) -> list[tuple]:
        with (engine or self.engine).connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(sql), binds)]

    def scalar(self, sql, engine=None, **binds):
        with (engine or self.engine).connect() as conn:
            return conn.execute(sa.text(sql), binds).scalar()

    def import_yaml(self, text: str) -> None:
        import_mapping_file(self.engine, parse_mapping_file(text))

    def mapping(self, ref="REF"):
        return load_catalog(self.engine).mappings[ref]

    def load(self, ref="REF", params=None, **kw):
        return load(self.mapping(ref), params=params, settings=self.settings, **kw)

    def plan(self, ref="REF", params=None, **kw) -> LoadPlan:
        return plan(self.mapping(ref), params, settings=self.settings, **kw)

    def last_prcid(self) -> int:
        return self.scalar("SELECT MAX(PRCID) FROM DMS_PRCLOG")

    def prcsts(self, prcid) -> str:
        return self.scalar("SELECT PRCSTS FROM DMS_PRCLOG WHERE PRCID = :p", p=prcid)

    def joblog(self, prcid) -> list[tuple]:
        """(CHUNKNO, JOBSTS, SRCROWS, INSROWS, UPDROWS, EXPROWS, DELROWS, UNCHROWS, CHKPNTVAL)"""
        return self.query(
            "SELECT CHUNKNO, JOBSTS, SRCROWS, INSROWS, UPDROWS, EXPROWS, DELROWS, UNCHROWS, "
            "CHKPNTVAL FROM DMS_JOBLOG WHERE PRCID = :p ORDER BY JOBLOGID",
            p=prcid,
        )

    def snapshot(self, table) -> list[tuple]:
        return self.query(f"SELECT * FROM {table} ORDER BY SKEY")


def counts(result) -> tuple:
    c = result.counts
    return c.srcrows, c.insrows, c.updrows, c.exprows, c.delrows, c.unchrows


@pytest.fixture
def make_dms(tmp_path):
    made: list[Dms] = []

    def make(url: str, name: str = "home") -> Dms:
        d = Dms(url, tmp_path / name)
        made.append(d)
        return d

    yield make
    for d in made:
        d.engine.dispose()
    dispose_all()  # the engine caches its engines per URL and process


@pytest.fixture
def dms(dms_url, make_dms) -> Dms:
    return make_dms(dms_url)


def new_pg_database(pg_server) -> str:
    return pg_server.create_database(f"e{uuid4().hex[:12]}")


CUST_DDL = "CREATE TABLE SRC_CUST (ID INTEGER, NAME VARCHAR(100), CITY VARCHAR(50), UPD TIMESTAMP)"
CUST_SQL = "SELECT ID, NAME, CITY, UPD FROM SRC_CUST"


def cust_rows(n, start=1):
    return [
        {"ID": i, "NAME": f"name{i}", "CITY": f"city{i % 3}", "UPD": f"2024-01-{i:02d} 00:00:00"}
        for i in range(start, start + n)
    ]


def scd1_columns():
    return [
        col("ID", "INTEGER", key=1),
        col("NAME", "VARCHAR(100)", scd=1),
        col("CITY", "VARCHAR(50)", scd=1),
    ]


def scd2_columns():
    return [
        col("ID", "INTEGER", key=1),
        col("NAME", "VARCHAR(100)", scd=1),
        col("CITY", "VARCHAR(50)", scd=2),
    ]


def setup_cust(d: Dms, columns, n=3, **kw) -> None:
    d.run(CUST_DDL)
    if n:
        d.insert("SRC_CUST", cust_rows(n))
    d.import_yaml(mapping_yaml("REF", CUST_SQL, columns, table="T_CUST", **kw))


STRING2 = [("STRING", None), ("STRING", None)]


# ------------------------------------------------------------------ SCD1 / SCD2


@pytest.mark.slow
def test_scd1_inserts_updates_and_leaves_unchanged_rows_alone(dms):
    setup_cust(dms, scd1_columns(), n=3)
    first = dms.load()
    assert counts(first) == (3, 3, 0, 0, 0, 0)
    assert first.chunk_count == 1
    rows = dms.query("SELECT ID, NAME, CITY, SKEY, RWHKEY FROM T_CUST ORDER BY ID")
    assert [r[:3] for r in rows] == [
        (1, "name1", "city1"),
        (2, "name2", "city2"),
        (3, "name3", "city0"),
    ]
    assert len({r[3] for r in rows}) == 3 and all(r[3] is not None for r in rows)
    for r in rows:
        assert r[4] == row_hash([r[1], r[2]], STRING2)

    # make the timestamps of the first load recognisable
    dms.run("UPDATE T_CUST SET RECUPDT = :old, RECCRDT = :old", old=datetime(2000, 1, 1))
    dms.run("UPDATE SRC_CUST SET NAME = 'changed' WHERE ID = 2")
    dms.insert("SRC_CUST", cust_rows(1, start=4))
    second = dms.load()
    assert counts(second) == (4, 1, 1, 0, 0, 2)
    rows = dms.query("SELECT ID, NAME, RECCRDT, RECUPDT, RWHKEY FROM T_CUST ORDER BY ID")
    old = datetime(2000, 1, 1)
    by_id = {r[0]: r for r in rows}
    assert _ts(by_id[1][3]) == old and _ts(by_id[3][3]) == old  # unchanged: not written
    assert _ts(by_id[2][3]) > old and _ts(by_id[2][2]) == old  # updated in place
    assert by_id[2][1] == "changed" and by_id[2][4] == row_hash(["changed", "city2"], STRING2)
    assert _ts(by_id[4][2]) > old
    assert dms.scalar("SELECT COUNT(*) FROM T_CUST") == 4

    third = dms.load()
    assert counts(third) == (4, 0, 0, 0, 0, 4)


def _ts(value) -> datetime:
    """A timestamp as read back: SQLite gives text."""
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


@pytest.mark.slow
def test_scd2_versions_type2_changes_and_updates_type1_in_place(dms):
    setup_cust(dms, scd2_columns(), n=3)
    assert counts(dms.load()) == (3, 3, 0, 0, 0, 0)
    dms.run("UPDATE SRC_CUST SET CITY = 'moved' WHERE ID = 1")  # SCD2 column: new version
    dms.run("UPDATE SRC_CUST SET NAME = 'renamed' WHERE ID = 2")  # SCD1 column: in place
    second = dms.load()
    assert counts(second) == (3, 1, 1, 1, 0, 1)
    rows = dms.query(
        "SELECT ID, NAME, CITY, CURFLG, VLDFRM, VLDTO, RWHKEY FROM T_CUST ORDER BY ID, SKEY"
    )
    assert [r[:4] for r in rows] == [
        (1, "name1", "city1", "N"),
        (1, "name1", "moved", "Y"),
        (2, "renamed", "city2", "Y"),
        (3, "name3", "city0", "Y"),
    ]
    old, new = rows[0], rows[1]
    assert old[5] is not None and new[5] is None  # VLDTO closes the old version only
    assert _ts(old[5]) == _ts(new[4])  # the new version starts when the old one ends
    assert all(r[6] == row_hash([r[1], r[2]], STRING2) for r in rows)
    assert dms.scalar("SELECT COUNT(*) FROM T_CUST WHERE CURFLG = 'Y'") == 3
    assert counts(dms.load()) == (3, 0, 0, 0, 0, 3)


# ------------------------------------------------------------------ RWHKEY

ALL_DDL = (
    "CREATE TABLE SRC_ALL (ID INTEGER, NAME VARCHAR(50), AMT NUMERIC(12,2), BDATE DATE, "
    "UPD TIMESTAMP, STATUS CHAR(1), QTY INTEGER, RATE FLOAT)"
)
ALL_COLUMNS = [
    col("ID", "INTEGER", key=1),
    col("NAME", "VARCHAR(50)"),
    col("AMT", "NUMBER(12,2)"),
    col("BDATE", "DATE"),
    col("UPD", "TIMESTAMP"),
    col("STATUS", "CHAR(1)"),
    col("QTY", "INTEGER"),
    col("RATE", "FLOAT"),
]
ALL_TYPES = [
    ("STRING", None),
    ("DECIMAL", 2),
    ("DATE", None),
    ("TIMESTAMP", None),
    ("CHAR", None),
    ("INTEGER", None),
    ("FLOAT", None),
]
# (ID, NAME, AMT, BDATE, UPD, STATUS, QTY, RATE) as inserted, and the values the hash sees
ALL_ROWS = [
    (1, "Ann", "12.5", "2024-02-29", "2024-01-02 03:04:05", "A", 5, 0.1),
    (2, "", None, None, None, "", None, None),
    (3, None, "0", "1999-12-31", "2024-01-02 03:04:05.250000", None, 0, 1e20),
    (4, "O'Hara | x:y ~", "-3.456", "2000-01-01", "1970-01-01 00:00:00", "Z", -7, -2.0),
    (5, "héllo wörld", "1234567890.12", "2024-12-31", "2024-12-31 23:59:59.999999", " ", 12, 1.5),
]
ALL_EXPECTED = {
    1: ["Ann", Decimal("12.5"), date(2024, 2, 29), datetime(2024, 1, 2, 3, 4, 5), "A", 5, 0.1],
    2: ["", None, None, None, "", None, None],
    3: [None, Decimal(0), date(1999, 12, 31), datetime(2024, 1, 2, 3, 4, 5, 250000), None, 0, 1e20],
    4: ["O'Hara | x:y ~", Decimal("-3.46"), date(2000, 1, 1), datetime(1970, 1, 1), "Z", -7, -2.0],
    5: [
        "héllo wörld",
        Decimal("1234567890.12"),
        date(2024, 12, 31),
        datetime(2024, 12, 31, 23, 59, 59, 999999),
        "",
        12,
        1.5,
    ],
}
ALL_NAMES = ["ID", "NAME", "AMT", "BDATE", "UPD", "STATUS", "QTY", "RATE"]


def setup_all(d: Dms, engine=None, **kw) -> None:
    d.run(ALL_DDL, engine=engine)
    d.insert("SRC_ALL", [dict(zip(ALL_NAMES, r, strict=True)) for r in ALL_ROWS], engine=engine)
    d.import_yaml(
        mapping_yaml("REF", f"SELECT {', '.join(ALL_NAMES)} FROM SRC_ALL", ALL_COLUMNS, **kw)
    )


def rwhkeys(d: Dms, table="T_REF", engine=None) -> dict[int, str]:
    return dict(d.query(f"SELECT ID, RWHKEY FROM {table}", engine=engine))


@pytest.mark.slow
def test_rwhkey_is_the_same_on_sqlite_and_postgresql(sqlite_url, pg_url, make_dms):
    keys = {}
    for url in (sqlite_url, pg_url):
        d = make_dms(url, name=f"home_{url[:6]}")
        setup_all(d)
        spec = load_spec(d.mapping())
        assert [c.hash_type for c in spec.columns] == ALL_TYPES
        assert counts(d.load()) == (5, 5, 0, 0, 0, 0)
        keys[d.dialect] = rwhkeys(d)
        # the stored values compare equal to what the next extract computes: nothing changes
        assert counts(d.load()) == (5, 0, 0, 0, 0, 5)
    expected = {k: row_hash(v, ALL_TYPES) for k, v in ALL_EXPECTED.items()}
    assert keys["sqlite"] == expected
    assert keys["postgresql"] == expected


def test_row_hash_keeps_fields_apart():
    assert row_hash(["a", "bc"], STRING2) != row_hash(["ab", "c"], STRING2)
    assert row_hash([None], [("STRING", None)]) != row_hash([""], [("STRING", None)])
    assert row_hash([None, "a"], STRING2) != row_hash(["a", None], STRING2)
    assert row_hash(["a|b", "c"], STRING2) != row_hash(["a", "b|c"], STRING2)
    assert row_hash([Decimal("12.5")], [("DECIMAL", 2)]) == row_hash([12.50], [("DECIMAL", 2)])
    assert row_hash(["A  "], [("CHAR", None)]) == row_hash(["A"], [("CHAR", None)])


# (python value, family, scale, PostgreSQL type of the literal, SQLite stored value)
HASH_SAMPLES = [
    ("abc", "STRING", None, "VARCHAR(20)", "abc"),
    ("", "STRING", None, "VARCHAR(20)", ""),
    (None, "STRING", None, "VARCHAR(20)", None),
    ("héllo|1:x~", "STRING", None, "VARCHAR(20)", "héllo|1:x~"),
    ("it's", "TEXT", None, "TEXT", "it's"),
    ("AB  ", "CHAR", None, "CHAR(4)", "AB  "),
    ("", "CHAR", None, "CHAR(1)", ""),
    (0, "INTEGER", None, "BIGINT", 0),
    (-42, "INTEGER", None, "INTEGER", -42),
    (12345678901, "INTEGER", None, "BIGINT", 12345678901),
    (None, "INTEGER", None, "BIGINT", None),
    (Decimal("12.5"), "DECIMAL", 2, "NUMERIC(12,2)", 12.5),
    (Decimal("0"), "DECIMAL", 2, "NUMERIC(12,2)", 0),
    (Decimal("-3.46"), "DECIMAL", 2, "NUMERIC(12,2)", -3.456),
    (Decimal("1234567890.12"), "DECIMAL", 2, "NUMERIC(14,2)", 1234567890.12),
    (Decimal("7"), "DECIMAL", 0, "NUMERIC(10,0)", 7),
    (Decimal("1.2300"), "DECIMAL", None, "NUMERIC", 1.23),
    (Decimal("100"), "DECIMAL", None, "NUMERIC", 100),
    (Decimal("-0.5"), "DECIMAL", None, "NUMERIC", -0.5),
    (0.1, "FLOAT", None, "DOUBLE PRECISION", 0.1),
    (1.5, "FLOAT", None, "DOUBLE PRECISION", 1.5),
    (-2.0, "FLOAT", None, "DOUBLE PRECISION", -2.0),
    (1e20, "FLOAT", None, "DOUBLE PRECISION", 1e20),
    (1e15, "FLOAT", None, "DOUBLE PRECISION", 1e15),
    (1.25e-05, "FLOAT", None, "DOUBLE PRECISION", 1.25e-05),
    (123456.789, "FLOAT", None, "DOUBLE PRECISION", 123456.789),
    (date(2024, 2, 29), "DATE", None, "DATE", "2024-02-29"),
    (datetime(2024, 1, 2, 3, 4, 5), "TIMESTAMP", None, "TIMESTAMP", "2024-01-02 03:04:05"),
    (
        datetime(2024, 1, 2, 3, 4, 5, 123456),
        "TIMESTAMP",
        None,
        "TIMESTAMP",
        "2024-01-02 03:04:05.123456",
    ),
    (True, "BOOLEAN", None, "BOOLEAN", 1),
    (False, "BOOLEAN", None, "BOOLEAN", 0),
]


@pytest.mark.parametrize("url_fixture", ["sqlite_url", "pg_url"])
def test_sql_row_hash_of_each_dialect_equals_the_python_reference(request, url_fixture):
    engine = create_engine(request.getfixturevalue(url_fixture))
    d = DIALECTS[engine.dialect.name]

    def expr(i, pg_type):
        return f"CAST(:v{i} AS {pg_type})" if d.name == "postgresql" else f":v{i}"

    def bind(sample):
        value, _, _, _, stored = sample
        return stored if d.name == "sqlite" else value

    try:
        with engine.connect() as conn:
            for i, sample in enumerate(HASH_SAMPLES):
                value, family, scale, pg_type, _ = sample
                sql = f"SELECT {d.row_hash([(expr(0, pg_type), family, scale)])}"
                got = conn.execute(sa.text(sql), {"v0": bind(sample)}).scalar()
                assert got == row_hash([value], [(family, scale)]), (i, sample)
            # the whole table as one row
            cols = [(expr(i, s[3]), s[1], s[2]) for i, s in enumerate(HASH_SAMPLES)]
            got = conn.execute(
                sa.text(f"SELECT {d.row_hash(cols)}"),
                {f"v{i}": bind(s) for i, s in enumerate(HASH_SAMPLES)},
            ).scalar()
            assert got == row_hash(
                [s[0] for s in HASH_SAMPLES], [(s[1], s[2]) for s in HASH_SAMPLES]
            )
    finally:
        engine.dispose()


def test_row_text_built_with_string_functions_equals_the_python_reference(pg_url):
    """Oracle has no row values: its RWHKEY text is built with TRANSLATE / REPLACE / CHR
    (Dialect.row_hash). The same generic SQL runs on PostgreSQL here, against the
    reference, with PostgreSQL's canonical texts."""
    engine = create_engine(pg_url)
    d = DIALECTS["postgresql"]
    try:
        with engine.connect() as conn:
            for i, (value, family, scale, pg_type, _) in enumerate(HASH_SAMPLES):
                expr = f"CAST(:v AS {pg_type})"
                sql = (
                    f"SELECT {Dialect.row_hash(d, [(expr, family, scale), (expr, family, scale)])}"
                )
                got = conn.execute(sa.text(sql), {"v": value}).scalar()
                assert got == row_hash([value, value], [(family, scale)] * 2), (i, value)
            quoted = ['a"b', "c\\d", "(x)", "1,2", " ", "tab\t", ""]
            for value in quoted:
                sql = f"SELECT {Dialect.row_hash(d, [('CAST(:v AS TEXT)', 'TEXT', None)])}"
                got = conn.execute(sa.text(sql), {"v": value}).scalar()
                assert got == row_hash([value], [("TEXT", None)]), value
    finally:
        engine.dispose()


# ------------------------------------------------------------------ deletes


@pytest.mark.parametrize(
    "scd, handling, want, key2",
    [
        # want: (srcrows, insrows, updrows, exprows, delrows, unchrows) of the load after key 2
        # left the source; key2: CURFLG of key 2's newest row ('-' on SCD1), None = no rows
        (1, "IGNORE", (2, 0, 0, 0, 0, 2), "-"),
        (1, "EXPIRE", (2, 0, 0, 0, 0, 2), "-"),  # nothing to close on an SCD1 table
        (1, "DELETE", (2, 0, 0, 0, 1, 2), None),
        (2, "IGNORE", (2, 0, 0, 0, 0, 2), "Y"),
        (2, "EXPIRE", (2, 0, 0, 1, 0, 2), "N"),
        (2, "DELETE", (2, 0, 0, 0, 2, 2), None),  # both versions of key 2 go
    ],
)
@pytest.mark.slow
def test_delete_handling_of_keys_missing_from_a_full_extract(dms, scd, handling, want, key2):
    columns = scd1_columns() if scd == 1 else scd2_columns()
    setup_cust(dms, columns, n=3, delete=handling)
    dms.load()
    if scd == 2:  # a second version of key 2
        dms.run("UPDATE SRC_CUST SET CITY = 'moved' WHERE ID = 2")
        assert counts(dms.load()) == (3, 1, 0, 1, 0, 2)
    dms.run("DELETE FROM SRC_CUST WHERE ID = 2")
    assert counts(dms.load()) == want
    flag = "CURFLG" if scd == 2 else "'-'"
    rows = dms.query(f"SELECT {flag} FROM T_CUST WHERE ID = 2 ORDER BY SKEY DESC")
    assert (rows[0][0] if rows else None) == key2
    assert len(rows) == (0 if key2 is None else scd)
    assert dms.scalar("SELECT COUNT(*) FROM T_CUST WHERE ID IN (1, 3)") == 2
    if handling == "EXPIRE" and scd == 2:
        assert dms.scalar("SELECT COUNT(*) FROM T_CUST WHERE ID = 2 AND VLDTO IS NULL") == 0
        # the key comes back: a new current version
        dms.insert("SRC_CUST", [cust_rows(2)[1]])
        assert counts(dms.load()) == (3, 1, 0, 0, 0, 2)
        assert dms.scalar("SELECT COUNT(*) FROM T_CUST WHERE ID = 2 AND CURFLG = 'Y'") == 1


@pytest.mark.slow
def test_no_deletes_on_a_checkpointed_delta_load(dms):
    setup_cust(
        dms, scd2_columns(), n=3, delete="DELETE", checkpoint={"strategy": "KEY", "column": "UPD"}
    )
    assert counts(dms.load()) == (3, 3, 0, 0, 0, 0)  # no checkpoint yet: a full extract
    dms.run("DELETE FROM SRC_CUST WHERE ID = 2")
    dms.insert("SRC_CUST", cust_rows(1, start=4))
    delta = dms.load()
    assert counts(delta) == (1, 1, 0, 0, 0, 0)  # only key 4 was read; key 2 is not "missing"
    assert dms.scalar("SELECT COUNT(*) FROM T_CUST WHERE ID = 2 AND CURFLG = 'Y'") == 1
    # a full load sees that key 2 is gone
    assert counts(dms.load(full=True)) == (3, 0, 0, 0, 1, 3)
    assert dms.scalar("SELECT COUNT(*) FROM T_CUST WHERE ID = 2") == 0


@pytest.mark.slow
def test_no_deletes_when_params_narrow_the_extract(dms):
    dms.run(CUST_DDL)
    dms.insert("SRC_CUST", cust_rows(6))
    sql = "SELECT ID, NAME, CITY FROM SRC_CUST WHERE CITY = COALESCE(:p1, CITY)"
    dms.import_yaml(mapping_yaml("REF", sql, scd1_columns(), table="T_CUST", delete="DELETE"))
    assert counts(dms.load()) == (6, 6, 0, 0, 0, 0)
    assert counts(dms.load(params={"PARAM1": "city1"})) == (2, 0, 0, 0, 0, 2)
    assert dms.scalar("SELECT COUNT(*) FROM T_CUST") == 6


# ------------------------------------------------------------------ the target table


def _indexes(engine, table) -> list[dict]:
    return sa.inspect(engine).get_indexes(table.lower())


@pytest.mark.parametrize("chunks", [1, 2])
@pytest.mark.parametrize("scd", [1, 2])
@pytest.mark.slow
def test_target_table_has_audit_columns_and_a_business_key_index(dms, scd, chunks):
    setup_cust(dms, scd1_columns() if scd == 1 else scd2_columns(), n=3)
    dms.load(chunks=chunks)  # a first load: the key and indexes come after its rows
    names = [c["name"].upper() for c in sa.inspect(dms.engine).get_columns("t_cust")]
    audit = ["SKEY", "RWHKEY", "RECCRDT", "RECUPDT"] + (["CURFLG", "VLDFRM", "VLDTO"] * (scd == 2))
    assert names == ["ID", "NAME", "CITY", *audit]
    keyed = [ix for ix in _indexes(dms.engine, "t_cust") if ix["column_names"] == ["id"]]
    assert keyed, _indexes(dms.engine, "t_cust")
    pk = sa.inspect(dms.engine).get_pk_constraint("t_cust")["constrained_columns"]
    assert [c.lower() for c in pk] == ["skey"]
    now = datetime(2030, 1, 1)
    if scd == 1:
        with pytest.raises(sa.exc.IntegrityError):
            dms.run(
                "INSERT INTO T_CUST (SKEY, ID, NAME) VALUES (999, 1, 'dup')",
            )
        return
    # history rows of a key are fine, a second current row is not
    dms.run(
        "INSERT INTO T_CUST (SKEY, ID, NAME, CURFLG, VLDFRM, VLDTO) "
        "VALUES (998, 1, 'old', 'N', :t, :t)",
        t=now,
    )
    with pytest.raises(sa.exc.IntegrityError):
        dms.run(
            "INSERT INTO T_CUST (SKEY, ID, NAME, CURFLG, VLDFRM) VALUES (999, 1, 'dup', 'Y', :t)",
            t=now,
        )
    assert dms.scalar("SELECT COUNT(*) FROM T_CUST WHERE ID = 1") == 2


@pytest.mark.slow
def test_a_column_added_to_the_mapping_is_added_to_the_table(dms):
    setup_cust(dms, scd1_columns(), n=3)
    dms.load()
    more = [*scd1_columns(), col("UPD", "TIMESTAMP")]
    dms.import_yaml(mapping_yaml("REF", CUST_SQL, more, table="T_CUST"))
    result = dms.load()
    names = [c["name"].upper() for c in sa.inspect(dms.engine).get_columns("t_cust")]
    assert "UPD" in names
    assert result.counts.updrows == 3  # the new column is filled in
    assert dms.scalar("SELECT COUNT(*) FROM T_CUST WHERE UPD IS NULL") == 0


@pytest.mark.parametrize("new_type", ["INTEGER", "DATE"])
@pytest.mark.slow
def test_an_incompatible_type_change_is_schema_drift(dms, new_type):
    setup_cust(dms, scd1_columns(), n=3)
    dms.load()
    before = dms.snapshot("T_CUST")
    changed = [col("ID", "INTEGER", key=1), col("NAME", new_type), col("CITY", "VARCHAR(50)")]
    dms.import_yaml(mapping_yaml("REF", CUST_SQL, changed, table="T_CUST"))
    with pytest.raises(SchemaDrift, match=r"column NAME is .* but " + re.escape(new_type)):
        dms.load()
    prcid = dms.last_prcid()
    assert dms.prcsts(prcid) == "FL"
    assert dms.query("SELECT ERRTYP FROM DMS_JOBERR WHERE PRCID = :p", p=prcid) == [("VALIDATION",)]
    assert dms.snapshot("T_CUST") == before


@pytest.mark.slow
def test_a_narrower_type_in_the_mapping_keeps_the_wider_column(dms):
    """VARCHAR(100) in the table, VARCHAR(10) in the mapping: the table still holds every
    value the mapping can produce, so the load goes on (no drift, no silent cast)."""
    setup_cust(dms, scd1_columns(), n=3)
    dms.load()
    narrower = [col("ID", "INTEGER", key=1), col("NAME", "VARCHAR(10)"), col("CITY", "VARCHAR(50)")]
    dms.import_yaml(mapping_yaml("REF", CUST_SQL, narrower, table="T_CUST"))
    assert dms.load().counts.unchrows == 3


@pytest.mark.slow
def test_a_wider_type_in_the_mapping_widens_the_column(dms):
    """VARCHAR(10) -> VARCHAR(40) and INTEGER -> BIGINT (the key) keep every value: the
    table's columns are widened (SQLite enforces no length: nothing to alter there)."""
    narrow = [
        col("ID", "INTEGER", key=1),
        col("NAME", "VARCHAR(10)"),
        col("CITY", "VARCHAR(50)", scd=2),
    ]
    setup_cust(dms, narrow, n=3)
    dms.load()
    wide = [
        col("ID", "BIGINT", key=1),
        col("NAME", "VARCHAR(40)"),
        col("CITY", "VARCHAR(50)", scd=2),
    ]
    dms.import_yaml(mapping_yaml("REF", CUST_SQL, wide, table="T_CUST"))
    dms.run("UPDATE SRC_CUST SET NAME = :n WHERE ID = 2", n="x" * 40)
    assert counts(dms.load()) == (3, 0, 1, 0, 0, 2)
    assert dms.scalar("SELECT NAME FROM T_CUST WHERE ID = 2") == "x" * 40
    if dms.dialect == "postgresql":
        types = {c["name"]: c["type"] for c in sa.inspect(dms.engine).get_columns("t_cust")}
        assert isinstance(types["id"], sa.BigInteger) and types["name"].length == 40
    assert counts(dms.load()) == (3, 0, 0, 0, 0, 3)  # widened once; the next load is quiet


@pytest.mark.parametrize(
    "existing, mapping, widened",
    [
        (sa.String(10), "VARCHAR(40)", True),
        (sa.String(10), "CLOB", True),
        (sa.CHAR(10), "CHAR(40)", True),
        (sa.SmallInteger(), "INTEGER", True),
        (sa.Integer(), "BIGINT", True),
        (sa.Integer(), "NUMBER(12)", True),
        (sa.Numeric(10, 2), "NUMBER(12,2)", True),
        (sa.Numeric(10, 0), "BIGINT", True),
        (sa.CHAR(10), "VARCHAR(40)", False),  # PostgreSQL would drop the trailing blanks
        (sa.String(10), "INTEGER", False),
        (sa.Integer(), "NUMBER(12,2)", False),
        (sa.Numeric(10, 2), "NUMBER(12,3)", False),
        (sa.Numeric(10, 2), "NUMBER", False),
        (sa.Numeric(19, 0), "BIGINT", False),
        (sa.Float(), "NUMBER(12,2)", False),
        (sa.Integer(), "FLOAT", False),
        (sa.Date(), "TIMESTAMP", False),
    ],
)
def test_which_type_changes_widen_a_column(existing, mapping, widened):
    d = DIALECTS["postgresql"]
    assert target_module.widens(existing, parse_data_type(mapping), d) is widened


def test_widening_statements_of_each_dialect():
    t, c = "dw.t_cust", "name"
    pg, ora, lite = DIALECTS["postgresql"], DIALECTS["oracle"], DIALECTS["sqlite"]
    assert pg.widen_column(t, c, sa.String(40)) == [
        "ALTER TABLE dw.t_cust ALTER COLUMN name TYPE VARCHAR(40)"
    ]
    (stmt,) = ora.widen_column(t, c, sa.String(40))
    assert stmt == "ALTER TABLE dw.t_cust MODIFY (name VARCHAR2(40 CHAR))"
    sqlglot.parse_one(stmt, read="oracle")
    assert ora.widen_column(t, c, sa.Text()) is None  # refused: drift
    assert lite.widen_column(t, c, sa.String(40)) == []  # nothing to alter
    # an Oracle INTEGER is NUMBER(38): it already holds a BIGINT mapping
    assert target_module._holds(sa.Integer(), parse_data_type("BIGINT"), ora)


# ------------------------------------------------------------------ transforms


def segment_lookup():
    """SEGMENT looked up in SRC_SEG (CUST_ID -> SEGMENT) by the business key."""
    return col(
        "SEGMENT",
        "VARCHAR(20)",
        "SELECT CUST_ID, SEGMENT FROM SRC_SEG",
        lookup=("CUST_ID", "SEGMENT"),
    )


@pytest.mark.slow
def test_maplogic_expressions_and_lookups(dms):
    dms.run(CUST_DDL)
    dms.insert("SRC_CUST", cust_rows(5))
    dms.run("CREATE TABLE SRC_SEG (CUST_ID INTEGER, SEGMENT VARCHAR(20))")
    dms.insert("SRC_SEG", [{"CUST_ID": 1, "SEGMENT": "gold"}, {"CUST_ID": 3, "SEGMENT": "silver"}])
    columns = [
        col("ID", "INTEGER", key=1),
        col("NAME_UP", "VARCHAR(100)", "UPPER(SRC.NAME)"),
        col("LABEL", "VARCHAR(200)", "SRC.NAME || '@' || SRC.CITY"),
        col("CITY", "VARCHAR(50)", "CITY"),  # a bare column name
        segment_lookup(),
    ]
    dms.import_yaml(mapping_yaml("REF", CUST_SQL, columns))
    assert counts(dms.load()) == (5, 5, 0, 0, 0, 0)
    assert dms.query("SELECT ID, NAME_UP, LABEL, CITY, SEGMENT FROM T_REF ORDER BY ID") == [
        (1, "NAME1", "name1@city1", "city1", "gold"),
        (2, "NAME2", "name2@city2", "city2", None),  # no match: NULL
        (3, "NAME3", "name3@city0", "city0", "silver"),
        (4, "NAME4", "name4@city1", "city1", None),
        (5, "NAME5", "name5@city2", "city2", None),
    ]
    # a changed lookup value is a change of the row
    dms.run("UPDATE SRC_SEG SET SEGMENT = 'bronze' WHERE CUST_ID = 3")
    assert counts(dms.load()) == (5, 0, 1, 0, 0, 4)
    assert dms.scalar("SELECT SEGMENT FROM T_REF WHERE ID = 3") == "bronze"


SALES_DDL = (
    "CREATE TABLE SRC_SALES (SALE_ID INTEGER, CUST_ID INTEGER, QTY INTEGER, AMT NUMERIC(10,2))"
)
SALES = [
    (1, 10, 2, "5.50"),
    (2, 10, 1, "4.50"),
    (3, 10, 7, "1.00"),
    (4, 20, 3, "10.00"),
    (5, 30, 1, "0.25"),
    (6, 30, 4, "0.25"),
]
SALES_COLUMNS = [
    col("CUST_ID", "INTEGER", key=1),
    col("TOTAL_AMT", "NUMBER(12,2)", "SRC.AMT", combine="SUM"),
    col("LINES", "INTEGER", "SRC.SALE_ID", combine="COUNT"),
    col("MIN_QTY", "INTEGER", "SRC.QTY", combine="MIN"),
    col("MAX_QTY", "INTEGER", "SRC.QTY", combine="MAX"),
    col(
        "REGION",
        "VARCHAR(20)",
        "SELECT CUST_ID, REGION FROM SRC_REGION",
        combine="FIRST",
        lookup=("CUST_ID", "REGION"),
    ),
]


def setup_sales(d: Dms, engine=None, **kw) -> None:
    d.run(SALES_DDL, "CREATE TABLE SRC_REGION (CUST_ID INTEGER, REGION VARCHAR(20))", engine=engine)
    d.insert("SRC_REGION", [{"CUST_ID": 10, "REGION": "north"}, {"CUST_ID": 30, "REGION": "south"}])
    keys = ["SALE_ID", "CUST_ID", "QTY", "AMT"]
    d.insert("SRC_SALES", [dict(zip(keys, r, strict=True)) for r in SALES], engine=engine)
    sql = "SELECT SALE_ID, CUST_ID, QTY, AMT FROM SRC_SALES"
    d.import_yaml(mapping_yaml("REF", sql, SALES_COLUMNS, table="T_SALES", **kw))


@pytest.mark.parametrize("chunks", [1, 2])
@pytest.mark.slow
def test_mapcmbcd_groups_the_source_rows_by_the_business_key(dms, chunks):
    setup_sales(dms)
    result = dms.load(chunks=chunks)
    assert counts(result) == (6, 3, 0, 0, 0, 0)  # SRCROWS counts source rows
    rows = dms.query(
        "SELECT CUST_ID, TOTAL_AMT, LINES, MIN_QTY, MAX_QTY, REGION FROM T_SALES ORDER BY 1"
    )
    assert [(r[0], Decimal(str(r[1])), *r[2:]) for r in rows] == [
        (10, Decimal("11.00"), 3, 1, 7, "north"),
        (20, Decimal("10.00"), 1, 3, 3, None),
        (30, Decimal("0.50"), 2, 1, 4, "south"),
    ]
    dms.insert("SRC_SALES", [{"SALE_ID": 7, "CUST_ID": 20, "QTY": 9, "AMT": "1.00"}])
    assert counts(dms.load(chunks=chunks)) == (7, 0, 1, 0, 0, 2)


@pytest.mark.slow
def test_param1_is_bound_as_a_value(dms):
    dms.run(CUST_DDL)
    dms.insert("SRC_CUST", cust_rows(3))
    dms.insert("SRC_CUST", [{"ID": 9, "NAME": "x", "CITY": "O'Brien", "UPD": None}])
    sql = "SELECT ID, NAME, CITY FROM SRC_CUST WHERE CITY = :p1"
    dms.import_yaml(mapping_yaml("REF", sql, scd1_columns()))
    assert counts(dms.load(params={"PARAM1": "city1"})) == (1, 1, 0, 0, 0, 0)
    assert counts(dms.load(params={"PARAM1": "O'Brien"})) == (1, 1, 0, 0, 0, 0)
    injected = dms.load(params={"PARAM1": "x' OR '1'='1"})
    assert counts(injected) == (0, 0, 0, 0, 0, 0)
    assert sorted(r[0] for r in dms.query("SELECT ID FROM T_REF")) == [1, 9]
    assert dms.query("SELECT PARAM1 FROM DMS_PRCLOG WHERE PRCID = :p", p=injected.prcid) == [
        ("x' OR '1'='1",)
    ]


# ------------------------------------------------------------------ data errors


@pytest.mark.parametrize("chunks", [1, 3])
@pytest.mark.slow
def test_duplicate_business_keys_fail_the_load_and_change_nothing(dms, chunks):
    setup_cust(dms, scd2_columns(), n=9)
    dms.load()
    dms.run("UPDATE SRC_CUST SET CITY = 'moved' WHERE ID IN (1, 5, 9)")  # would be new versions
    dms.insert("SRC_CUST", [cust_rows(1, start=4)[0], {**cust_rows(1, start=7)[0], "NAME": "b"}])
    before = dms.snapshot("T_CUST")
    with pytest.raises(DataError, match="duplicate business keys") as info:
        dms.load(chunks=chunks)
    assert "4" in str(info.value) and "7" in str(info.value)
    assert set(info.value.keys) == {"4", "7"}
    prcid = dms.last_prcid()
    assert dms.prcsts(prcid) == "FL"
    errors = dms.query("SELECT ERRTYP, ERRMSG, KEYVAL FROM DMS_JOBERR WHERE PRCID = :p", p=prcid)
    assert len(errors) == 1
    assert errors[0][0] == "DATA" and "duplicate business keys" in errors[0][1]
    assert "4" in errors[0][2] and "7" in errors[0][2]
    assert dms.snapshot("T_CUST") == before
    assert not [n for n in sa.inspect(dms.engine).get_table_names() if WORK_TABLE.match(n)]
    assert (
        dms.scalar("SELECT COUNT(*) FROM DMS_JOBLOG WHERE PRCID = :p AND JOBSTS = 'PC'", p=prcid)
        == 0
    )


@pytest.mark.parametrize("scd", [1, 2])
@pytest.mark.parametrize("when", ["before the plan", "after the plan"])
@pytest.mark.slow
def test_duplicate_keys_in_a_first_load_of_several_chunks_are_named_and_taken_out(dms, scd, when):
    # the unique rule of a first load is built at commit, after its rows: a duplicate
    # makes the commit name some keys and take the load's rows back out
    setup_cust(dms, scd1_columns() if scd == 1 else scd2_columns(), n=9)
    dups = [{**cust_rows(1, start=k)[0], "NAME": "late"} for k in (2, 8)]
    if when == "before the plan":
        dms.insert("SRC_CUST", dups)
    p = dms.plan(chunks=2)
    assert p.strategy.initial and p.chunk_count == 2
    if when == "after the plan":
        dms.insert("SRC_CUST", dups)
    results = [run_chunk(p, i, dms.settings) for i in range(2)]
    with pytest.raises(DataError, match="duplicate business keys") as info:
        commit(p, results, dms.settings)
    assert set(info.value.keys) == {"2", "8"}
    assert dms.prcsts(p.prcid) == "FL"
    errors = dms.query("SELECT ERRTYP, KEYVAL FROM DMS_JOBERR WHERE PRCID = :p", p=p.prcid)
    assert [e[0] for e in errors] == ["DATA"] and "2" in errors[0][1] and "8" in errors[0][1]
    # rows not kept: the chunks' rows FL, and the load's (none of its rows counted)
    log = dms.joblog(p.prcid)
    assert [r[:2] for r in log] == [(None, "FL"), (0, "FL"), (1, "FL")]
    assert log[0][2:8] == (0, 0, 0, 0, 0, 0)
    assert dms.scalar("SELECT COUNT(*) FROM T_CUST") == 0  # the next load starts afresh
    dms.run("DELETE FROM SRC_CUST WHERE NAME = 'late'")
    assert counts(dms.load(chunks=2)) == (9, 9, 0, 0, 0, 0)


@pytest.mark.parametrize("chunks", [1, 3])
@pytest.mark.parametrize("first_load", [True, False])
@pytest.mark.slow
def test_a_null_business_key_fails_the_load(dms, chunks, first_load):
    setup_cust(dms, scd1_columns(), n=9)
    if not first_load:
        dms.load()
        dms.run("UPDATE SRC_CUST SET CITY = 'moved'")
    before = [] if first_load else dms.snapshot("T_CUST")
    dms.insert("SRC_CUST", [{"ID": None, "NAME": "x", "CITY": "y", "UPD": None}])
    with pytest.raises(DataError, match="NULL business key"):
        dms.load(chunks=chunks)  # no chunk leaves the NULL key out, none writes
    assert dms.prcsts(dms.last_prcid()) == "FL"
    assert dms.snapshot("T_CUST") == before


def unfit_columns():
    """NAME holds 20 characters, SCORE (ID * 100.5) three integer digits."""
    return [
        col("ID", "INTEGER", key=1),
        col("NAME", "VARCHAR(20)"),
        col("CITY", "VARCHAR(50)", scd=2),
        col("SCORE", "DECIMAL(5,2)", "SRC.ID * 100.5"),
    ]


@pytest.mark.parametrize("first_load", [True, False])
@pytest.mark.slow
def test_a_value_the_target_cannot_hold_is_a_data_error_naming_its_keys(dms, first_load):
    setup_cust(dms, unfit_columns(), n=9)
    if not first_load:
        dms.load()
        dms.run("UPDATE SRC_CUST SET CITY = 'moved' WHERE ID = 1")  # a change to apply
    before = [] if first_load else dms.snapshot("T_CUST")
    dms.run("UPDATE SRC_CUST SET NAME = :n WHERE ID = 7", n="x" * 30)
    dms.insert("SRC_CUST", cust_rows(1, start=12))  # SCORE 1206.0: four integer digits
    if dms.dialect == "sqlite":  # SQLite keeps the values whole: nothing cut, no error
        dms.load()
        assert dms.scalar("SELECT NAME FROM T_CUST WHERE ID = 7") == "x" * 30
        return
    with pytest.raises(DataError) as info:
        dms.load()
    assert "NAME (VARCHAR(20)): ID = 7; SCORE (DECIMAL(5,2)): ID = 12" in str(info.value)
    assert info.value.keys == ["7", "12"]
    prcid = dms.last_prcid()
    assert dms.query("SELECT ERRTYP, KEYVAL FROM DMS_JOBERR WHERE PRCID = :p", p=prcid) == [
        ("DATA", "7, 12")
    ]
    assert dms.prcsts(prcid) == "FL" and dms.snapshot("T_CUST") == before


@pytest.mark.slow
def test_a_value_too_long_streamed_from_sqlite_into_postgresql_names_its_key(
    pg_url, make_dms, tmp_path
):
    dms = make_dms(pg_url)
    src_file = tmp_path / "src.db"
    src = create_engine(f"sqlite:///{src_file}")
    try:
        dms.run(CUST_DDL, engine=src)
        dms.insert("SRC_CUST", [*cust_rows(5), {**cust_rows(1, 6)[0], "NAME": "y" * 21}], src)
        dms.import_yaml(
            mapping_yaml(
                "REF",
                CUST_SQL,
                unfit_columns(),
                table="T_CUST",
                source_conn="SRC",
                connections=[{"name": "SRC", "type": "SQLITE", "database": str(src_file)}],
            )
        )
        with pytest.raises(DataError, match=r"NAME \(VARCHAR\(20\)\): ID = 6\b") as info:
            dms.load()
        assert info.value.keys == ["6"]
    finally:
        src.dispose()


def test_the_query_for_unfit_values_of_each_dialect(sqlite_url, make_dms):
    d = make_dms(sqlite_url)
    d.import_yaml(mapping_yaml("REF", CUST_SQL, [*unfit_columns(), col("N", "BIGINT")]))
    spec = load_spec(d.mapping())
    pg, ora = DIALECTS["postgresql"], DIALECTS["oracle"]
    sql = sqlgen.unfit_values(pg, pg, spec, "SELECT * FROM T")
    assert "LENGTH(RTRIM(CAST(X.name AS TEXT))) > 20" in sql
    assert "ABS(CAST(X.score AS NUMERIC)) >= 999.995" in sql
    assert "CAST(X.n AS NUMERIC) >= 9223372036854775807.5" in sql
    assert "CAST(X.id AS NUMERIC) <= -2147483648.5" in sql
    assert "WHEN LENGTH(RTRIM(CAST(X.name AS TEXT))) > 20 THEN 'NAME'" in sql
    sqlglot.parse_one(sqlgen.unfit_values(ora, ora, spec, "SELECT * FROM T"), read="oracle")


# ------------------------------------------------------------------ checkpoints

KEY_CHECKPOINT = {"strategy": "KEY", "column": "UPD"}


def whole_load_row(d: Dms, prcid) -> tuple:
    rows = [r for r in d.joblog(prcid) if r[0] is None]
    assert len(rows) == 1, d.joblog(prcid)
    return rows[0]


def current_names(d: Dms, table="T_CUST") -> dict:
    return dict(d.query(f"SELECT ID, NAME FROM {table}"))


@pytest.mark.slow
def test_key_checkpoint_reads_only_rows_past_it_and_full_ignores_it(dms):
    setup_cust(dms, scd1_columns(), n=3, checkpoint=KEY_CHECKPOINT)
    first = dms.load(chunks=2)
    assert counts(first) == (3, 3, 0, 0, 0, 0)
    assert first.checkpoint == "2024-01-03 00:00:00"
    log = dms.joblog(first.prcid)
    assert [r[8] for r in log if r[0] is not None] == [None, None]  # chunk rows: no CHKPNTVAL
    assert whole_load_row(dms, first.prcid)[8] == "2024-01-03 00:00:00"

    dms.run("UPDATE SRC_CUST SET NAME = 'new1', UPD = '2024-02-01 00:00:00' WHERE ID = 1")
    dms.run("UPDATE SRC_CUST SET NAME = 'unseen' WHERE ID = 2")  # UPD not moved: not read
    dms.insert("SRC_CUST", [{**cust_rows(1, start=4)[0], "UPD": "2024-02-02 10:30:00"}])
    second = dms.load(chunks=2)
    assert second.chunk_count == 2
    assert counts(second) == (2, 1, 1, 0, 0, 0)
    assert second.checkpoint == "2024-02-02 10:30:00"
    assert current_names(dms) == {1: "new1", 2: "name2", 3: "name3", 4: "name4"}

    assert counts(dms.load()) == (0, 0, 0, 0, 0, 0)  # nothing new
    assert whole_load_row(dms, dms.last_prcid())[8] == "2024-02-02 10:30:00"

    full = dms.load(full=True)
    assert counts(full) == (4, 0, 1, 0, 0, 3)
    assert current_names(dms)[2] == "unseen"
    assert full.checkpoint == "2024-02-02 10:30:00"


@pytest.mark.slow
def test_a_failed_load_keeps_the_checkpoint_and_the_retry_matches_a_clean_run(
    dms_url, make_dms, tmp_path
):
    dms = make_dms(dms_url)
    setup_cust(dms, scd2_columns(), n=3, checkpoint=KEY_CHECKPOINT)
    dms.load()
    changes = [
        "UPDATE SRC_CUST SET CITY = 'moved', UPD = '2024-03-01 00:00:00' WHERE ID = 1",
        "UPDATE SRC_CUST SET NAME = 'renamed', UPD = '2024-03-02 00:00:00' WHERE ID = 3",
    ]
    dms.run(*changes)
    # a bad row (NULL key) inside the window fails the load
    dms.insert("SRC_CUST", [{"ID": None, "NAME": "bad", "CITY": "x", "UPD": "2024-03-03 00:00:00"}])
    before = dms.snapshot("T_CUST")
    with pytest.raises(DataError):
        dms.load()
    failed = dms.last_prcid()
    assert dms.prcsts(failed) == "FL"
    # the load's FL row and the chunk's: no checkpoint
    assert [r[:2] + r[8:] for r in dms.joblog(failed)] == [(None, "FL", None), (0, "FL", None)]
    assert dms.snapshot("T_CUST") == before
    # fixed at the source; the retry reads from the old checkpoint
    dms.run("UPDATE SRC_CUST SET ID = 4 WHERE ID IS NULL")
    retry = dms.load()
    assert counts(retry) == (3, 2, 1, 1, 0, 0)
    assert retry.checkpoint == "2024-03-03 00:00:00"

    # the same source history without the failure
    clean = make_dms(f"sqlite:///{tmp_path / 'clean.db'}", name="clean")
    setup_cust(clean, scd2_columns(), n=3, checkpoint=KEY_CHECKPOINT)
    clean.load()
    clean.run(*changes)
    clean.insert("SRC_CUST", [{"ID": 4, "NAME": "bad", "CITY": "x", "UPD": "2024-03-03 00:00:00"}])
    assert counts(clean.load()) == counts(retry)

    def content(d):
        return d.query("SELECT ID, NAME, CITY, CURFLG, RWHKEY FROM T_CUST ORDER BY ID, SKEY")

    assert content(dms) == content(clean)


CALLS: list[tuple] = []
WINDOW: list[tuple] = []  # (start, end) to return; start None: the last checkpoint


@register_checkpoint_function("test_engine_window")
def _test_window(last, params):
    CALLS.append((last, dict(params)))
    start, end = WINDOW[-1]
    return start or last, end


@pytest.mark.slow
def test_python_checkpoint_function_gives_the_window(dms):
    CALLS.clear()
    WINDOW[:] = [("2024-01-01 00:00:00", "2024-01-03 00:00:00")]
    checkpoint = {"strategy": "PYTHON", "column": "UPD", "function": "test_engine_window"}
    setup_cust(dms, scd1_columns(), n=5, checkpoint=checkpoint)
    first = dms.load()
    assert counts(first) == (2, 2, 0, 0, 0, 0)  # (Jan 1, Jan 3]: keys 2 and 3
    assert first.checkpoint == "2024-01-03 00:00:00"
    assert whole_load_row(dms, first.prcid)[8] == "2024-01-03 00:00:00"
    WINDOW.append((None, "2024-01-04 00:00:00"))  # None: from the last checkpoint
    second = dms.load(params={"PARAM2": "v"})
    assert counts(second) == (1, 1, 0, 0, 0, 0)  # (Jan 3, Jan 4]: key 4
    assert second.checkpoint == "2024-01-04 00:00:00"
    assert CALLS[0][0] is None
    assert CALLS[1] == ("2024-01-03 00:00:00", {"p2": "v"})
    assert sorted(current_names(dms)) == [2, 3, 4]
    dms.load(full=True)  # the function sees no checkpoint on a full load
    assert CALLS[2][0] is None


def test_python_checkpoint_window_without_start_still_ends_at_its_end(sqlite_url, make_dms):
    dms = make_dms(sqlite_url)
    CALLS.clear()
    WINDOW[:] = [(None, "2024-01-02 00:00:00")]
    checkpoint = {"strategy": "PYTHON", "column": "UPD", "function": "test_engine_window"}
    setup_cust(dms, scd1_columns(), n=5, checkpoint=checkpoint)
    result = dms.load()
    assert (result.checkpoint, result.counts.srcrows) == ("2024-01-02 00:00:00", 2)


# ------------------------------------------------------------------ chunks

STRING_KEYS = [
    "a01", "B02", "c03", "D04", "e05", "F06", "g07", "H08", "i09", "J10",
    "k11", "L12", "m13", "N14", "o15", "P16", "q17", "R18", "s19", "T20",
    "_21", "Z22", "z23", "0024", "9-25", "ä26", "Ä27", "a28", "A29", "é30",
]  # fmt: skip


def setup_keyed(d: Dms, key_type: str, n=30) -> list:
    keys = list(range(1, n + 1)) if key_type == "INTEGER" else STRING_KEYS[:n]
    sql_type = "INTEGER" if key_type == "INTEGER" else "VARCHAR(20)"
    d.run(f"CREATE TABLE SRC_K (K {sql_type}, V VARCHAR(20))")
    d.insert("SRC_K", [{"K": k, "V": f"v{i}"} for i, k in enumerate(keys)])
    columns = [col("K", key_type, key=1), col("V", "VARCHAR(20)")]
    d.import_yaml(mapping_yaml("REF", "SELECT K, V FROM SRC_K", columns, table="T_K"))
    return keys


@pytest.mark.slow
def test_integer_keys_stored_as_text_in_the_source_still_split_into_chunks(dms):
    # the mapping says INTEGER, the source column is text: MIN / MAX would compare text,
    # so the plan falls back to tiles of the keys as the source holds them
    dms.run("CREATE TABLE SRC_K (K VARCHAR(20), V VARCHAR(20))")
    dms.insert("SRC_K", [{"K": str(i), "V": f"v{i}"} for i in range(1, 31)])
    columns = [col("K", "INTEGER", key=1), col("V", "VARCHAR(20)")]
    dms.import_yaml(mapping_yaml("REF", "SELECT K, V FROM SRC_K", columns, table="T_K"))
    assert counts(dms.load(chunks=3)) == (30, 30, 0, 0, 0, 0)
    dms.run("UPDATE SRC_K SET V = 'changed' WHERE K IN ('3', '17', '29')")
    assert counts(dms.load(chunks=3)) == (30, 0, 3, 0, 0, 27)
    assert dms.scalar("SELECT COUNT(*) FROM T_K") == 30


def chunk_of(key, boundaries) -> int:
    return sum(1 for b in boundaries if key > b)


@pytest.mark.parametrize("key_type", ["INTEGER", "VARCHAR(20)"])
@pytest.mark.slow
def test_three_chunks_cover_every_key_exactly_once(dms, key_type):
    keys = setup_keyed(dms, key_type)
    p = dms.plan(chunks=3)
    assert p.chunk_count == 3 and len(p.boundaries) == 2
    results = [run_chunk(p, i, dms.settings) for i in range(3)]
    total = commit(p, results, dms.settings)
    assert counts(total) == (30, 30, 0, 0, 0, 0)
    log = dms.joblog(p.prcid)
    chunk_rows = sorted(r for r in log if r[0] is not None)
    assert [r[:2] for r in chunk_rows] == [(0, "PC"), (1, "PC"), (2, "PC")]
    assert sum(r[2] for r in chunk_rows) == 30 and all(r[2] > 0 for r in chunk_rows)
    # each chunk read the keys of its range (byte order for strings, on both databases)
    by_chunk = [sum(1 for k in keys if chunk_of(k, p.boundaries) == i) for i in range(3)]
    assert [r[2] for r in chunk_rows] == by_chunk
    assert sorted(r[0] for r in dms.query("SELECT K FROM T_K")) == sorted(keys)
    # the target side of each chunk meets the same keys: a reload changes nothing
    assert counts(dms.load(chunks=3)) == (30, 0, 0, 0, 0, 30)
    dms.run("UPDATE SRC_K SET V = 'x'")
    assert counts(dms.load(chunks=3)) == (30, 0, 30, 0, 0, 0)


@pytest.mark.slow
def test_load_can_run_the_chunks_of_one_database_in_spawned_processes(dms):
    setup_keyed(dms, "INTEGER")
    assert counts(dms.load(chunks=2, parallel=True, processes=True)) == (30, 30, 0, 0, 0, 0)
    dms.run("UPDATE SRC_K SET V = 'x' WHERE K > 20")
    dms.run("INSERT INTO SRC_K (K, V) VALUES (31, 'new')")
    # the target counted before the chunk processes fork (none takes its connection)
    done = dms.load(chunks=2, parallel=True, processes=True, count_rows=True)
    assert counts(done) == (31, 1, 10, 0, 0, 20)
    assert done.target_rows == TableRows(31, 31) and dms.scalar("SELECT COUNT(*) FROM T_K") == 31


def _spawned_chunk(plan_json: str, index: int, url: str, home: str) -> str:
    """A chunk in its own (spawned) process, as a Dagster op or `dms run` runs it."""
    settings = load_settings(url=url, env={"DMS_HOME": home})
    return run_chunk(LoadPlan.model_validate_json(plan_json), index, settings).model_dump_json()


@pytest.mark.slow
def test_chunks_of_one_plan_in_separate_processes(pg_url, make_dms):
    dms = make_dms(pg_url)
    setup_cust(dms, scd2_columns(), n=30)
    dms.load(chunks=3)
    dms.run("UPDATE SRC_CUST SET CITY = 'moved' WHERE ID IN (2, 15, 29)")
    dms.run("UPDATE SRC_CUST SET NAME = 'renamed' WHERE ID IN (3, 16)")
    p = dms.plan(chunks=3)
    data = p.model_dump_json()
    with ProcessPoolExecutor(3, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(_spawned_chunk, data, i, pg_url, str(dms.home)) for i in range(3)]
        results = [ChunkResult.model_validate_json(f.result()) for f in futures]
    assert counts(commit(p, results, dms.settings)) == (30, 3, 2, 3, 0, 25)
    assert dms.prcsts(p.prcid) == "PC"
    assert dms.scalar("SELECT COUNT(*) FROM T_CUST WHERE CURFLG = 'Y'") == 30
    assert dms.scalar("SELECT COUNT(*) FROM T_CUST") == 33
    assert dms.query("SELECT ID FROM T_CUST WHERE CITY = 'moved' AND CURFLG = 'Y' ORDER BY ID") == [
        (2,),
        (15,),
        (29,),
    ]


def no_work_tables(d: Dms) -> bool:
    return not [n for n in sa.inspect(d.engine).get_table_names() if WORK_TABLE.match(n)]


@pytest.mark.slow
def test_a_failed_chunk_leaves_nothing_behind_and_can_be_rerun(pg_url, make_dms, tmp_path):
    dms = make_dms(pg_url)
    dms.run(CUST_DDL.replace("VARCHAR(100)", "VARCHAR(40)"))
    dms.insert("SRC_CUST", cust_rows(30))
    columns = [
        col("ID", "INTEGER", key=1),
        col("NAME", "VARCHAR(20)"),
        col("CITY", "VARCHAR(50)", scd=2),
    ]
    dms.import_yaml(mapping_yaml("REF", CUST_SQL, columns, table="T_CUST"))
    dms.load(chunks=3)
    p = dms.plan(chunks=3)
    mid = [k for k in range(1, 31) if chunk_of(k, p.boundaries) == 1]
    assert mid and 15 in mid
    # changes in every chunk; in chunk 1, a name too long for VARCHAR(20)
    dms.run("UPDATE SRC_CUST SET CITY = 'moved' WHERE ID IN (1, 15, 30)")
    dms.run("UPDATE SRC_CUST SET NAME = :n WHERE ID = :k", n="x" * 30, k=mid[-1])
    before = dms.snapshot("T_CUST")
    first = run_chunk(p, 0, dms.settings)
    with pytest.raises(DataError, match=r"NAME \(VARCHAR\(20\)\): ID = ") as info:
        run_chunk(p, 1, dms.settings)
    assert info.value.keys == [str(mid[-1])]
    last = run_chunk(p, 2, dms.settings)
    after = dms.snapshot("T_CUST")
    assert [r for r in after if r[0] in mid] == [r for r in before if r[0] in mid]
    assert no_work_tables(dms)
    log = dms.joblog(p.prcid)
    assert [r[:2] for r in log if r[0] == 1] == [(1, "FL")]
    assert dms.query(
        "SELECT CHUNKNO, ERRTYP, KEYVAL FROM DMS_JOBERR WHERE PRCID = :p", p=p.prcid
    ) == [(1, "DATA", str(mid[-1]))]
    # fixed at the source: run chunk 1 again, then commit
    dms.run("UPDATE SRC_CUST SET NAME = 'fixed' WHERE ID = :k", k=mid[-1])
    again = run_chunk(p, 1, dms.settings)
    repeat = run_chunk(p, 0, dms.settings)  # a chunk that already ran: nothing to do
    assert repeat.counts.srcrows == first.counts.srcrows
    assert repeat.counts.unchrows == repeat.counts.srcrows
    total = commit(p, [first, again, last], dms.settings)
    assert (total.counts.exprows, total.counts.updrows) == (3, 1)
    assert dms.prcsts(p.prcid) == "PC"

    # the same source history loaded without the failure
    clean = make_dms(f"sqlite:///{tmp_path / 'clean.db'}", name="clean")
    clean.run(CUST_DDL)
    clean.insert("SRC_CUST", cust_rows(30))
    clean.import_yaml(mapping_yaml("REF", CUST_SQL, columns, table="T_CUST"))
    clean.load()
    clean.run("UPDATE SRC_CUST SET CITY = 'moved' WHERE ID IN (1, 15, 30)")
    clean.run("UPDATE SRC_CUST SET NAME = 'fixed' WHERE ID = :k", k=mid[-1])
    assert counts(clean.load()) == counts(total)

    def content(d):
        return d.query("SELECT ID, NAME, CITY, CURFLG, RWHKEY FROM T_CUST ORDER BY ID, SKEY")

    assert content(dms) == content(clean)


# ------------------------------------------------------------------ interruption and lock


@pytest.mark.slow
def test_an_interruption_inside_the_apply_leaves_nothing_half_applied(dms, monkeypatch):
    setup_cust(dms, scd2_columns(), n=5)
    dms.load()
    dms.run("UPDATE SRC_CUST SET CITY = 'moved' WHERE ID = 1")  # expire + insert
    dms.run("UPDATE SRC_CUST SET NAME = 'renamed' WHERE ID = 2")  # update in place
    before = dms.snapshot("T_CUST")
    real = chunk_module._execute
    seen = []

    def interrupted(conn, sql, values):
        seen.append(sql.split()[0])
        if sql.startswith("INSERT INTO"):  # the last apply statement, after UPDATEs ran
            raise KeyboardInterrupt
        return real(conn, sql, values)

    monkeypatch.setattr(chunk_module, "_execute", interrupted)
    with pytest.raises(KeyboardInterrupt):
        dms.load()
    assert seen.count("UPDATE") == 2  # in place, then the closed versions, before the stop
    prcid = dms.last_prcid()
    assert dms.prcsts(prcid) == "ST"
    assert [r[:2] for r in dms.joblog(prcid)] == [(None, "ST"), (0, "ST")]
    assert dms.scalar("SELECT COUNT(*) FROM DMS_JOBERR WHERE PRCID = :p", p=prcid) == 0
    assert dms.snapshot("T_CUST") == before
    assert no_work_tables(dms)
    monkeypatch.undo()
    assert counts(dms.load()) == (5, 1, 1, 1, 0, 3)  # the stop released the lock


@pytest.mark.slow
def test_a_second_plan_of_the_same_mapping_is_locked_out(dms):
    setup_cust(dms, scd1_columns(), n=3)
    p = dms.plan(runid="first-run")
    with pytest.raises(LoadLocked, match=rf"already being loaded by process {p.prcid}\b") as info:
        dms.plan()
    assert "first-run" in str(info.value)
    with pytest.raises(LoadLocked):
        dms.load()
    assert dms.scalar("SELECT COUNT(*) FROM DMS_PRCLOG") == 1  # the refused runs left no row
    commit(p, [run_chunk(p, 0, dms.settings)], dms.settings)
    q = dms.plan()
    assert q.prcid != p.prcid
    commit(q, [run_chunk(q, 0, dms.settings)], dms.settings)


# ------------------------------------------------------------------ logs


@pytest.mark.slow
def test_process_job_and_flow_logs(dms):
    setup_cust(dms, scd2_columns(), n=6)
    p = dms.plan(chunks=2, runid="r1")
    assert dms.query(
        "SELECT PRCSTS, RUNID, MAPREF FROM DMS_PRCLOG WHERE PRCID = :p", p=p.prcid
    ) == [("IP", "r1", "REF")]
    results = [run_chunk(p, i, dms.settings) for i in range(p.chunk_count)]
    assert dms.prcsts(p.prcid) == "IP"  # until commit
    # the whole-load row is IP until commit, with the rows its chunks have done
    log = dms.joblog(p.prcid)
    assert [r[:2] for r in log] == [(None, "IP"), (0, "PC"), (1, "PC")]
    assert log[0][2:8] == tuple(sum(r[i] for r in log[1:]) for i in range(2, 8))
    result = commit(p, results, dms.settings)
    assert dms.query(
        "SELECT PRCSTS, RUNID FROM DMS_PRCLOG WHERE PRCID = :p AND ENDDT IS NOT NULL", p=p.prcid
    ) == [("PC", "r1")]
    log = dms.query(
        "SELECT CHUNKNO, CHUNKCNT, JOBSTS, SRCROWS, INSROWS, UPDROWS, EXPROWS, DELROWS, "
        "UNCHROWS FROM DMS_JOBLOG WHERE PRCID = :p ORDER BY JOBLOGID",
        p=p.prcid,
    )
    chunks = [r for r in log if r[0] is not None]
    whole = [r for r in log if r[0] is None]
    assert sorted(r[0] for r in chunks) == [0, 1] and all(r[1] == 2 for r in chunks)
    assert len(whole) == 1 and whole[0][1:3] == (2, "PC")
    assert whole[0][3:] == tuple(sum(r[i] for r in chunks) for i in range(3, 9))
    assert whole[0][3:] == counts(result)

    flows = dms.query("SELECT DWLOGIC, CURFLG FROM DMS_JOBFLW WHERE MAPREF = 'REF'")
    assert len(flows) == 1 and flows[0][1] == "Y"
    text = flows[0][0]
    assert re.search(r"CREATE (UNLOGGED )?TABLE", text)
    assert "INSERT INTO" in text and "UPDATE" in text
    assert text.count(";") >= 3  # classify, update (in place + close), insert
    dms.load(chunks=2)
    assert dms.scalar("SELECT COUNT(*) FROM DMS_JOBFLW WHERE MAPREF = 'REF'") == 1
    # a changed mapping writes a new version
    dms.import_yaml(
        mapping_yaml("REF", CUST_SQL, [*scd2_columns(), col("UPD", "TIMESTAMP")], table="T_CUST")
    )
    dms.load()
    assert dms.query("SELECT CURFLG FROM DMS_JOBFLW WHERE MAPREF = 'REF' ORDER BY JOBFLWID") == [
        ("N",),
        ("Y",),
    ]


# ------------------------------------------------------------------ connections

SECRET = "Sup3rSecret"


@pytest.mark.slow
def test_a_password_written_in_a_legacy_dburl_never_leaves_the_table(dms):
    setup_cust(dms, scd1_columns(), n=3)
    # a legacy row written with plain SQL, as the import would refuse it
    dms.run(
        "INSERT INTO DMS_DBCONDTLS (CONID, CONNM, DBTYP, DBURL, CURFLG) "
        "VALUES (900, 'LEGACY_WH', 'POSTGRESQL', :url, 'Y')",
        url=f"postgresql://etl:{SECRET}@127.0.0.1:1/wh",
    )
    dms.import_yaml(
        mapping_yaml("LEGACY", CUST_SQL, scd1_columns(), table="T_LEG", source_conn="LEGACY_WH")
    )
    catalog = load_catalog(dms.engine)
    legacy = catalog.mappings["LEGACY"]
    catalog_json = catalog.model_dump_json()  # handed to run workers
    assert "LEGACY_WH" in catalog_json and SECRET not in catalog_json
    assert legacy.source_connection.password_in_url
    worker_copy = Catalog.model_validate_json(catalog_json).mappings["LEGACY"].source_connection
    with pytest.raises(ConfigError, match="LEGACY_WH"):
        worker_copy.sqlalchemy_url()
    plan_json = dms.plan().model_copy(update={"mapping": legacy}).model_dump_json()
    assert "LEGACY_WH" in plan_json and SECRET not in plan_json
    exported = CliRunner().invoke(app, ["mappings", "export", "--url", dms.url])
    assert exported.exit_code == 0 and "LEGACY_WH" in exported.stdout
    assert SECRET not in exported.stdout
    with pytest.raises(ConfigError, match=r"LEGACY_WH.*\$\{NAME\}.*DBPSWDENV"):
        dms.load("LEGACY")
    prcid = dms.last_prcid()
    errors = dms.query("SELECT ERRTYP, ERRMSG, ERRDTL FROM DMS_JOBERR WHERE PRCID = :p", p=prcid)
    assert [e[0] for e in errors] == ["VALIDATION"] and "LEGACY_WH" in errors[0][1]
    logged = errors + dms.query("SELECT PRCMSG FROM DMS_PRCLOG WHERE PRCID = :p", p=prcid)
    assert SECRET not in repr(logged)


@pytest.mark.parametrize("side", ["source", "target"])
def test_a_sqlite_connection_to_a_missing_file_names_it_and_creates_nothing(dms, side, tmp_path):
    missing = tmp_path / "gone" / "missing.db"
    connections = [{"name": "GONE", "type": "SQLITE", "database": str(missing)}]
    setup_cust(dms, scd1_columns(), connections=connections, **{f"{side}_conn": "GONE"})
    with pytest.raises(ConfigError, match=f"GONE.*{re.escape(str(missing))} does not exist"):
        dms.load()
    assert not missing.parent.exists()
    prcid = dms.last_prcid()
    assert dms.query("SELECT ERRTYP FROM DMS_JOBERR WHERE PRCID = :p", p=prcid) == [("VALIDATION",)]


# ------------------------------------------------------------------ streaming across databases


def all_content(d: Dms, engine=None) -> list[tuple]:
    """The target rows; CHAR(1) blank-padded as PostgreSQL returns it ('' is ' ')."""
    rows = d.query(f"SELECT {', '.join(ALL_NAMES)}, RWHKEY FROM T_REF ORDER BY ID", engine=engine)
    status = ALL_NAMES.index("STATUS")
    return [
        (*r[:status], None if r[status] is None else r[status].ljust(1), *r[status + 1 :])
        for r in rows
    ]


def _at_scale(rows):
    return [tuple(round(v, 2) if isinstance(v, float) else v for v in row) for row in rows]


@pytest.mark.parametrize(
    "direction",
    [
        "sqlite_to_pg",
        "pg_to_sqlite",
    ],
)
@pytest.mark.slow
def test_streaming_between_databases_matches_a_same_database_load(
    direction, pg_server, make_dms, tmp_path
):
    pg_source_or_target = new_pg_database(pg_server)
    sqlite_file = tmp_path / "other.db"
    sqlite_engine = create_engine(f"sqlite:///{sqlite_file}")
    sqlite_engine.connect().close()  # the database exists (empty), as a connection's must
    pg_engine = create_engine(pg_source_or_target)
    try:
        if direction == "sqlite_to_pg":
            same = make_dms(new_pg_database(pg_server), name="same")
            src_engine, tgt_engine = sqlite_engine, pg_engine
            connections = [
                {"name": "SRC", "type": "SQLITE", "database": str(sqlite_file)},
                {"name": "TGT", "type": "POSTGRESQL", "url": pg_source_or_target},
            ]
        else:
            same = make_dms(f"sqlite:///{tmp_path / 'same.db'}", name="same")
            src_engine, tgt_engine = pg_engine, sqlite_engine
            connections = [
                {"name": "SRC", "type": "POSTGRESQL", "url": pg_source_or_target},
                {"name": "TGT", "type": "SQLITE", "database": str(sqlite_file)},
            ]
        # the reference: source and target in one database (the target's kind)
        setup_all(same)
        assert counts(same.load()) == (5, 5, 0, 0, 0, 0)
        # streamed: metadata in its own SQLite file, source and target elsewhere
        meta = make_dms(f"sqlite:///{tmp_path / 'meta.db'}", name="meta")
        setup_all(
            meta,
            engine=src_engine,
            connections=connections,
            source_conn="SRC",
            target_conn="TGT",
        )
        p = meta.plan(chunks=2)
        assert p.strategy.staging is Staging.STREAMED and p.chunk_count == 2
        commit(p, [run_chunk(p, i, meta.settings) for i in range(2)], meta.settings)
        # a PostgreSQL NUMERIC(12,2) source rounds -3.456 where SQLite keeps it: compare at
        # the column's scale (RWHKEY, computed at that scale, is compared exactly)
        assert _at_scale(all_content(meta, engine=tgt_engine)) == _at_scale(all_content(same))
        # what was streamed compares equal to the next extract: nothing changes
        assert counts(meta.load(chunks=2)) == (5, 0, 0, 0, 0, 5)
        names = sa.inspect(tgt_engine).get_table_names()
        assert not [n for n in names if WORK_TABLE.match(n)]
    finally:
        sqlite_engine.dispose()
        pg_engine.dispose()


JOIN_SQL = "SELECT C.ID, C.NAME, R.REGION FROM SRC_CUST C JOIN SRC_CITY R ON R.CITY = C.CITY"
JOIN_COLUMNS = [
    col("ID", "INTEGER", key=1),
    col("NAME", "VARCHAR(100)"),
    col("REGION", "VARCHAR(20)", scd=2),
]


def setup_join(d: Dms, sql: str = JOIN_SQL) -> None:
    d.run(CUST_DDL, "CREATE TABLE SRC_CITY (CITY VARCHAR(50), REGION VARCHAR(20))")
    d.insert("SRC_CUST", cust_rows(9))
    d.insert("SRC_CITY", [{"CITY": f"city{i}", "REGION": f"region{i}"} for i in range(3)])
    d.import_yaml(mapping_yaml("REF", sql, JOIN_COLUMNS))


@pytest.mark.parametrize("chunks", [1, 2])
@pytest.mark.slow
def test_a_full_extract_of_a_join_is_staged_once_per_chunk(dms, chunks):
    setup_join(dms)
    first = dms.plan()
    assert first.strategy.staging is not Staging.STAGED  # a first load reads its source once anyway
    commit(first, [run_chunk(first, 0, dms.settings)], dms.settings)
    dms.run("UPDATE SRC_CUST SET NAME = 'renamed' WHERE ID = 2")
    dms.run("UPDATE SRC_CITY SET REGION = 'moved' WHERE CITY = 'city1'")  # 1, 4, 7
    dms.run("DELETE FROM SRC_CUST WHERE ID = 9")
    p = dms.plan(chunks=chunks)
    assert p.strategy.staging is Staging.STAGED and p.chunk_count == chunks
    results = [run_chunk(p, i, dms.settings) for i in range(chunks)]
    assert counts(commit(p, results, dms.settings)) == (8, 3, 1, 3, 0, 4)
    rows = dms.query("SELECT ID, NAME, REGION FROM T_REF WHERE CURFLG = 'Y' ORDER BY ID")
    # (key 9 left the source: DELHNDL IGNORE keeps its row)
    expected = [(i, "renamed" if i == 2 else f"name{i}", f"region{i % 3}") for i in range(1, 10)]
    assert rows == [(i, n, "moved" if r == "region1" else r) for i, n, r in expected]
    assert "stage the transform query" in dms.scalar(
        "SELECT DWLOGIC FROM DMS_JOBFLW WHERE MAPREF = 'REF' AND CURFLG = 'Y'"
    )
    assert counts(dms.load(chunks=chunks)) == (8, 0, 0, 0, 0, 8)
    assert no_work_tables(dms)


@pytest.mark.slow
def test_a_staged_full_extract_runs_its_source_query_once(pg_url, make_dms):
    dms = make_dms(pg_url)
    dms.run("CREATE SEQUENCE SRC_READS")  # counts the source rows each run produces
    setup_join(dms, JOIN_SQL.replace("R.REGION", "R.REGION, nextval('src_reads') AS N"))
    dms.load()
    dms.run("UPDATE SRC_CUST SET NAME = 'renamed' WHERE ID = 2")
    before = dms.scalar("SELECT last_value FROM SRC_READS")
    assert counts(dms.load()) == (9, 0, 1, 0, 0, 8)
    assert dms.scalar("SELECT last_value FROM SRC_READS") - before == 9  # not 18


@pytest.mark.parametrize("dialect", ["sqlite", "oracle"])
def test_which_source_queries_read_one_table_from_their_text(dialect):
    d = DIALECTS[dialect]

    def one(sql: str) -> bool:
        return d.reads_one_table(None, sa.text(f"SELECT * FROM ({sql}) SRC WHERE SRC.X > :p1"))

    assert one("SELECT * FROM SRC_CUST") and one("SELECT ID, UPPER(NAME) FROM S.T WHERE ID > 3")
    assert not one(JOIN_SQL)
    assert not one("SELECT ID, COUNT(*) AS N FROM T GROUP BY ID")
    assert not one("SELECT DISTINCT ID FROM T")
    assert not one("SELECT ID FROM T UNION ALL SELECT ID FROM U")
    assert not one("SELECT ID, ROW_NUMBER() OVER (ORDER BY ID) AS R FROM T")


def test_postgresql_trusts_a_unique_not_null_source_key_through_a_view(pg_url, make_dms):
    dms = make_dms(pg_url)
    dms.run(
        "CREATE TABLE S_PK (ID INTEGER PRIMARY KEY, NAME VARCHAR(20))",
        "CREATE TABLE S_UQ (ID INTEGER UNIQUE, NAME VARCHAR(20))",  # NULLs allowed
        "CREATE TABLE S_PART (ID INTEGER NOT NULL, NAME VARCHAR(20))",
        "CREATE UNIQUE INDEX S_PART_UQ ON S_PART (ID) WHERE NAME IS NOT NULL",
        "CREATE TABLE S_TWO (ID INTEGER NOT NULL, NO INTEGER NOT NULL, PRIMARY KEY (ID, NO))",
        "CREATE TABLE S_BIG (ID BIGINT PRIMARY KEY)",
        "CREATE VIEW V_PK AS SELECT * FROM S_PK WHERE NAME <> 'x'",
    )
    d = DIALECTS["postgresql"]

    def unique(key: str, source: str) -> bool:
        sql = f"SELECT {key} AS k FROM ({source}) SRC WHERE (:c IS NULL OR SRC.ID > :c)"
        with dms.engine.connect() as conn:
            return d.key_is_unique(conn, sa.text(sql).bindparams(c=None))

    assert unique("SRC.ID", "SELECT * FROM S_PK")
    assert unique("CAST(SRC.ID AS INTEGER)", "SELECT * FROM V_PK")  # a filtered view
    assert not unique("SRC.ID", "SELECT * FROM S_UQ")  # NULL keys possible
    assert not unique("SRC.ID", "SELECT * FROM S_PART")  # unique only where NAME is set
    assert not unique("SRC.ID", "SELECT * FROM S_TWO")  # unique only with NO
    assert not unique("SRC.ID + 0", "SELECT * FROM S_PK")  # an expression
    assert not unique("CAST(SRC.ID AS INTEGER)", "SELECT * FROM S_BIG")  # a narrowing cast
    assert not unique("SRC.ID", "SELECT P.ID FROM S_PK P JOIN S_UQ U ON U.ID = P.ID")


@pytest.mark.parametrize("chunks", [1, 3])
@pytest.mark.parametrize("keyed", [True, False])
@pytest.mark.slow
def test_a_source_with_its_own_unique_key_gives_the_same_counts(pg_url, make_dms, chunks, keyed):
    # under a unique NOT NULL source key the chunks count the source rows from the target
    # side (rows met, less the absent, plus the new) instead of reading the source again
    dms = make_dms(pg_url)
    pk = " PRIMARY KEY" if keyed else ""
    dms.run(CUST_DDL.replace("ID INTEGER", f"ID INTEGER{pk}"))
    dms.insert("SRC_CUST", cust_rows(12))
    dms.import_yaml(mapping_yaml("REF", CUST_SQL, scd2_columns(), delete="EXPIRE"))
    dms.load(chunks=chunks)
    dms.run(
        "UPDATE SRC_CUST SET CITY = 'moved' WHERE ID IN (1, 6, 11)",  # new versions
        "UPDATE SRC_CUST SET NAME = 'renamed' WHERE ID IN (2, 7)",  # in place
        "DELETE FROM SRC_CUST WHERE ID IN (3, 12)",  # absent: expired
    )
    dms.insert("SRC_CUST", cust_rows(2, start=13))  # new keys
    p = dms.plan(chunks=chunks, full=True)
    assert p.strategy.unique_source_key == keyed
    result = commit(p, [run_chunk(p, i, dms.settings) for i in range(chunks)], dms.settings)
    assert counts(result) == (12, 5, 2, 5, 0, 5)
    assert dms.scalar("SELECT COUNT(*) FROM T_REF WHERE CURFLG = 'Y'") == 12
    assert counts(dms.load(chunks=chunks, full=True)) == (12, 0, 0, 0, 0, 12)


PARTS_PARAMS = [  # 12 source rows earn 3 chunks: a load forced into one reads 3 parts
    {"code": "MIN_ROWS_FOR_PARALLEL", "value": "1"},
    {"code": "CHUNK_ROWS", "value": "4"},
    {"code": "MAX_PARALLEL_CHUNKS", "value": "3"},
]


@contextlib.contextmanager
def statements_run() -> Iterator[list[str]]:
    """The SQL every engine of this process sends while the block runs."""
    seen: list[str] = []

    def record(conn, cursor, statement, *args) -> None:  # noqa: ANN001
        seen.append(statement)

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", record)


def change_cust(dms: Dms) -> None:
    """V2 of 12 customers: 3 new versions, 2 in place, 2 absent, 2 new keys."""
    dms.run(
        "UPDATE SRC_CUST SET CITY = 'moved' WHERE ID IN (1, 6, 11)",
        "UPDATE SRC_CUST SET NAME = 'renamed' WHERE ID IN (2, 7)",
        "DELETE FROM SRC_CUST WHERE ID IN (3, 12)",
    )
    dms.insert("SRC_CUST", cust_rows(2, start=13))


@pytest.mark.parametrize("checkpoint", [None, "KEY"])
@pytest.mark.parametrize("keyed", [True, False])
@pytest.mark.slow
def test_one_chunk_of_a_delta_big_enough_for_several_reads_its_key_parts_side_by_side(
    pg_url, make_dms, keyed, checkpoint
):
    dms = make_dms(pg_url)
    pk = " PRIMARY KEY" if keyed else ""
    dms.run(CUST_DDL.replace("ID INTEGER", f"ID INTEGER{pk}"))
    dms.insert("SRC_CUST", cust_rows(12))
    window = {"strategy": checkpoint, "column": "UPD"} if checkpoint else None
    dms.import_yaml(  # (with a checkpoint, full=True reads the whole window's range)
        mapping_yaml(
            "REF",
            CUST_SQL,
            scd2_columns(),
            delete="EXPIRE",
            params=PARTS_PARAMS,
            checkpoint=window,
        )
    )
    assert dms.plan(chunks=1, full=True).parts == []  # a first load: nothing to compare
    dms.run("UPDATE DMS_PRCLOG SET PRCSTS = 'FL'")
    dms.load(chunks=1)
    change_cust(dms)
    p = dms.plan(chunks=1, full=True)
    assert p.chunk_count == 1 and len(p.parts) == 2  # 3 parts
    with statements_run() as seen:
        result = commit(p, [run_chunk(p, 0, dms.settings)], dms.settings)
    (classify,) = [s for s in seen if s.startswith("CREATE UNLOGGED TABLE dms_a_")]
    assert classify.count("UNION ALL") == 2
    assert counts(result) == (12, 5, 2, 5, 0, 5)
    current = dict(dms.query("SELECT ID, CITY FROM T_REF WHERE CURFLG = 'Y'"))
    assert sorted(current) == [1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14]
    assert current[6] == "moved" and current[13] == "city1"
    assert dms.scalar("SELECT COUNT(*) FROM T_REF") == 17
    assert counts(dms.load(chunks=1, full=True)) == (12, 0, 0, 0, 0, 12)
    # the default chunk count (3 here) reads no parts: its chunks run side by side
    assert dms.plan(full=True).parts == []


@pytest.mark.slow
def test_a_null_key_fails_a_load_read_in_parts_before_any_write(pg_url, make_dms):
    # parts split the keys by range: a NULL key would fall in none, so the plan counts them
    dms = make_dms(pg_url)
    dms.run(CUST_DDL)
    dms.insert("SRC_CUST", cust_rows(12))
    dms.import_yaml(mapping_yaml("REF", CUST_SQL, scd2_columns(), params=PARTS_PARAMS))
    dms.load(chunks=1)
    before = dms.snapshot("T_REF")
    dms.run("UPDATE SRC_CUST SET ID = NULL WHERE ID = 4", "UPDATE SRC_CUST SET CITY = 'x'")
    with pytest.raises(DataError, match="NULL.*ID"):
        dms.plan(chunks=1)  # (a single chunk's own check would come after the parts)
    assert dms.snapshot("T_REF") == before


WIDE_SQL = "SELECT ID, NAME, CITY FROM SRC_WIDE"


@pytest.mark.parametrize("handling", ["EXPIRE", "DELETE"])
@pytest.mark.parametrize("mode", ["SEQUENCE", "TABLE_COUNTER"])
@pytest.mark.slow
def test_a_work_table_applied_in_slices_gives_the_target_of_one_applied_whole(
    pg_server, make_dms, monkeypatch, mode, handling
):
    """Wide rows spread the work table over pages; slices of 5 rows take a few pages
    each; the target (content, versions, unique SKEYs) equals a load applied whole."""
    slices: list[int] = []
    real = DIALECTS["postgresql"].work_slices

    def recorded(conn, table, rows):  # noqa: ANN001
        out = real(conn, table, rows)
        slices.append(len(out))
        return out

    monkeypatch.setattr(DIALECTS["postgresql"], "work_slices", recorded)
    params = [{"code": "ID_GENERATION_MODE", "value": mode}]
    targets = []
    for slice_rows in (5, 1_000_000):
        monkeypatch.setattr(dialects_module, "SLICE_ROWS", slice_rows)
        dms = make_dms(new_pg_database(pg_server), name=f"home{slice_rows}")
        dms.run("CREATE TABLE SRC_WIDE (ID INTEGER, NAME VARCHAR(2000), CITY VARCHAR(50))")
        dms.insert(
            "SRC_WIDE",
            [{"ID": i, "NAME": "n" * 1500 + str(i), "CITY": f"c{i % 3}"} for i in range(1, 61)],
        )
        columns = [
            col("ID", "INTEGER", key=1),
            col("NAME", "VARCHAR(2000)", scd=1),
            col("CITY", "VARCHAR(50)", scd=2),
        ]
        dms.import_yaml(mapping_yaml("W", WIDE_SQL, columns, delete=handling, params=params))
        dms.load("W", chunks=1)
        dms.run(
            "UPDATE SRC_WIDE SET CITY = 'moved' WHERE ID % 4 = 0",  # 15 new versions
            "UPDATE SRC_WIDE SET NAME = 'short' WHERE ID % 4 = 1",  # 12 in place (3 of them absent)
            "DELETE FROM SRC_WIDE WHERE ID % 10 = 3",  # 6 absent (expired / deleted)
        )
        dms.insert("SRC_WIDE", [{"ID": i, "NAME": "new", "CITY": "c"} for i in range(61, 71)])
        slices.clear()
        expired, deleted = (21, 0) if handling == "EXPIRE" else (15, 6)
        assert counts(dms.load("W", chunks=1)) == (64, 25, 12, expired, deleted, 27)
        assert slices == [1] if slice_rows > 100 else len(slices) == 1 and slices[0] >= 4
        rows = dms.query(
            "SELECT ID, NAME, CITY, RWHKEY, CURFLG, VLDTO IS NULL, SKEY FROM T_W ORDER BY ID, SKEY"
        )
        assert len({r[-1] for r in rows}) == len(rows) == 85 - deleted  # SKEYs unique
        targets.append(sorted(r[:-1] for r in rows))
    assert targets[0] == targets[1]


@pytest.mark.slow
def test_a_target_row_changed_under_the_load_fails_the_chunk_with_nothing_kept(dms, monkeypatch):
    # a current row deleted by another session between the classify and the apply: the
    # closing step writes fewer rows than the work table holds
    setup_cust(dms, scd2_columns(), n=5)
    dms.load()
    dms.run("UPDATE SRC_CUST SET CITY = 'moved'")
    real = chunk_module._skey

    def meddling(*args, **kw):  # noqa: ANN002, ANN003
        dms.run("DELETE FROM T_CUST WHERE ID = 2")
        return real(*args, **kw)

    monkeypatch.setattr(chunk_module, "_skey", meddling)
    with pytest.raises(RuntimeError, match=r"the expire step wrote 4 rows .* holds 5"):
        dms.load()
    assert dms.query("SELECT ID, CITY, CURFLG FROM T_CUST ORDER BY ID") == [
        (i, f"city{i % 3}", "Y") for i in (1, 3, 4, 5)
    ]
    assert dms.prcsts(dms.last_prcid()) == "FL"


def test_postgresql_sees_through_a_view_to_tell_a_join(pg_url, make_dms):
    dms = make_dms(pg_url)
    setup_join(dms)
    dms.run(f"CREATE VIEW V_JOINED AS {JOIN_SQL}", "CREATE VIEW V_CUST AS SELECT * FROM SRC_CUST")
    d = DIALECTS["postgresql"]
    with dms.engine.connect() as conn:
        assert d.reads_one_table(conn, sa.text("SELECT * FROM (SELECT * FROM V_CUST) SRC"))
        assert not d.reads_one_table(conn, sa.text("SELECT * FROM (SELECT * FROM V_JOINED) SRC"))


@pytest.mark.slow
def test_streaming_from_postgresql_to_sqlite_with_a_checkpoint(pg_server, make_dms, tmp_path):
    """PostgreSQL -> SQLite without NUMERIC columns (see the xfail above): strings,
    integers and timestamps stream, and a KEY checkpoint over a PostgreSQL timestamp."""
    src_url = new_pg_database(pg_server)
    tgt_file = tmp_path / "target.db"
    src, tgt = create_engine(src_url), create_engine(f"sqlite:///{tgt_file}")
    tgt.connect().close()  # the target database exists (empty)
    try:
        meta = make_dms(f"sqlite:///{tmp_path / 'meta.db'}")
        meta.run(CUST_DDL, engine=src)
        meta.insert("SRC_CUST", cust_rows(10), engine=src)
        connections = [
            {"name": "SRC", "type": "POSTGRESQL", "url": src_url},
            {"name": "TGT", "type": "SQLITE", "database": str(tgt_file)},
        ]
        columns = [*scd2_columns(), col("UPD", "TIMESTAMP", scd=1)]
        meta.import_yaml(
            mapping_yaml(
                "REF",
                CUST_SQL,
                columns,
                table="T_CUST",
                connections=connections,
                source_conn="SRC",
                target_conn="TGT",
                checkpoint=KEY_CHECKPOINT,
            )
        )
        first = meta.load(chunks=3)
        assert counts(first) == (10, 10, 0, 0, 0, 0)
        assert first.checkpoint == "2024-01-10 00:00:00"
        meta.run("UPDATE SRC_CUST SET CITY = 'moved', UPD = '2024-02-01' WHERE ID = 4", engine=src)
        assert counts(meta.load(chunks=2)) == (1, 1, 0, 1, 0, 0)
        rows = meta.query(
            "SELECT ID, NAME, CITY, UPD, RWHKEY FROM T_CUST WHERE CURFLG = 'Y'", engine=tgt
        )
        by_id = {r[0]: r for r in rows}
        assert len(by_id) == 10 and by_id[4][2] == "moved"
        assert _ts(by_id[4][3]) == datetime(2024, 2, 1)
        types = [("STRING", None), ("STRING", None), ("TIMESTAMP", None)]
        assert by_id[4][4] == row_hash(["name4", "moved", datetime(2024, 2, 1)], types)
        assert counts(meta.load(full=True)) == (10, 0, 0, 0, 0, 10)
    finally:
        src.dispose()
        tgt.dispose()


# ------------------------------------------------------------------ Oracle SQL

ORACLE_FILE = """
sql:
  - code: Q_CUST
    sql: |
      SELECT ID, NAME, CITY, AMT, BDATE, UPD, STATUS FROM SRC_CUST
      WHERE OPEN_AT <> '10:30' AND REGION = COALESCE(:p1, REGION)
  - code: Q_SALES
    sql: SELECT SALE_ID, CUST_ID, QTY, AMT, SALE_TS FROM SRC_SALES
mappings:
  - ref: O_SCD1
    target: {schema: DW, table: O_SCD1}
    sql: Q_CUST
    delete_handling: DELETE
    checkpoint: {strategy: KEY, column: UPD}
    columns:
      - {name: ID, type: INTEGER, key: 1, logic: SRC.ID, order: 1}
      - {name: NAME, type: VARCHAR2(100), logic: UPPER(SRC.NAME), scd: 1, order: 2}
      - {name: AMT, type: "NUMBER(12,2)", logic: SRC.AMT, scd: 1, order: 3}
      - {name: BDATE, type: DATE, logic: SRC.BDATE, scd: 1, order: 4}
      - {name: UPD, type: TIMESTAMP, logic: SRC.UPD, scd: 1, order: 5}
      - {name: STATUS, type: CHAR(1), logic: SRC.STATUS, scd: 1, order: 6}
      - {name: RATE, type: FLOAT, logic: SRC.AMT / 3, scd: 1, order: 7}
      - {name: BIG, type: NUMBER, logic: SRC.AMT, scd: 1, order: 8}
  - ref: O_SCD2
    target: {schema: DW, table: O_SCD2}
    sql: Q_CUST
    delete_handling: EXPIRE
    columns:
      - {name: ID, type: INTEGER, key: 1, logic: SRC.ID, order: 1}
      - {name: NAME, type: VARCHAR2(100), logic: SRC.NAME, scd: 1, order: 2}
      - {name: CITY, type: VARCHAR2(50), logic: SRC.CITY, scd: 2, order: 3}
      - name: SEGMENT
        type: VARCHAR2(20)
        scd: 2
        order: 4
        lookup: {key: CUST_ID, value: SEGMENT}
        logic: SELECT CUST_ID, SEGMENT FROM SRC_SEG WHERE VALID_AT > '12:00'
      - name: REGION_NM
        type: VARCHAR2(50)
        scd: 1
        order: 5
        lookup: {key: CUST_ID, value: REGION_NM}
        logic: |
          SELECT C.ID AS CUST_ID, R.NAME AS REGION_NM
          FROM SRC_CUST C JOIN REGIONS R ON R.ID = C.REGION
  - ref: O_AGG
    target: {table: O_AGG}
    sql: Q_SALES
    delete_handling: DELETE
    columns:
      - {name: CUST_ID, type: INTEGER, key: 1, logic: SRC.CUST_ID, order: 1}
      - {name: TOTAL_AMT, type: "NUMBER(14,2)", logic: SRC.AMT, combine: SUM, scd: 1, order: 2}
      - {name: LINES, type: INTEGER, logic: SRC.SALE_ID, combine: COUNT, scd: 1, order: 3}
      - {name: MIN_QTY, type: INTEGER, logic: SRC.QTY, combine: MIN, scd: 1, order: 4}
      - {name: MAX_QTY, type: INTEGER, logic: SRC.QTY, combine: MAX, scd: 1, order: 5}
      - {name: AVG_AMT, type: "NUMBER(14,4)", logic: SRC.AMT, combine: AVG, scd: 1, order: 6}
      - {name: FIRST_TS, type: TIMESTAMP, logic: SRC.SALE_TS, combine: FIRST, scd: 1, order: 7}
"""
ORACLE_BINDS = {"dms_lo", "dms_hi", "dms_chk_from", "dms_chk_to", "dms_now", "dms_skey0", "dms_n"}
ORACLE_BINDS |= {f"p{i}" for i in range(1, 11)}
# Oracle allows no AS before a table alias
TABLE_ALIAS_AS = re.compile(
    r"(\b(FROM|JOIN|USING|UPDATE|INTO)\s+[\w.\"]+\s+AS\s)|(\)\s+AS\s+\w+\s+(ON|WHERE|GROUP|LEFT|FULL|JOIN)\b)",
    re.IGNORECASE,
)


def oracle_statements(spec) -> list[str]:
    d = DIALECTS["oracle"]
    out = []
    windows = [False, True] if spec.checkpoint_column else [False]
    work = sqlgen.work_table(d, spec, "a", 7, 1)
    staging = sqlgen.work_table(d, spec, "s", 7, 1)
    out.append(sqlgen.create_staging(d, spec, staging))
    for windowed in windows:
        for bounds in (sqlgen.ChunkBounds.of(i, n) for i, n in [(0, 1), (0, 3), (1, 3), (2, 3)]):
            transform = sqlgen.transform_query(spec, d, bounds, windowed)
            out.append(transform)
            for staged in (staging, f"({transform})"):
                for full in (False, True):
                    out.append(sqlgen.classify(d, spec, [(staged, bounds)], work, full))
                    out.append(sqlgen.met_rows(d, spec, work, bounds, full))
        out.append(sqlgen.key_tiles(d, spec, windowed))
        out.append(sqlgen.duplicate_transform_keys(d, spec, windowed))
        out += [sqlgen.key_range(d, spec, windowed, checks) for checks in ("all", "nulls", "none")]
        out.append(sqlgen.duplicate_source_keys(d, spec, windowed))
        out.append(sqlgen.extract(d, spec, windowed))
    if spec.checkpoint_column:
        out.append(sqlgen.checkpoint_max(d, spec))
    sequence = d.next_sequence_value(d.qualified(spec.schema, f"{spec.table}_SEQ"))
    for skey in (sequence, sqlgen.pool_skey(d, spec)):
        out += [stmt for _, stmt in sqlgen.apply_statements(d, spec, work, skey)]
        out.append(sqlgen.initial_insert(d, spec, work, skey))
    out += [
        sqlgen.duplicate_new_keys(d, spec, work),
        sqlgen.duplicate_staged_keys(d, spec, work),
        sqlgen.null_keys(d, spec, work),
        sqlgen.staged_counts(work),
        sqlgen.action_counts(work),
        sqlgen.drop_table(work),
        *(stmt for _name, stmt, _unique in index_statements(d, spec)),
    ]
    return out


@pytest.mark.parametrize("ref", ["O_SCD1", "O_SCD2", "O_AGG"])
@pytest.mark.slow
def test_every_statement_parses_and_compiles_as_oracle(sqlite_url, make_dms, ref):
    meta = make_dms(sqlite_url)
    meta.import_yaml(ORACLE_FILE)
    spec = load_spec(meta.mapping(ref), "oracle", default_schema="CDR")
    assert spec.schema == ("DW" if ref != "O_AGG" else "CDR")
    statements = oracle_statements(spec)
    assert len(statements) > 10
    kinds = set()
    for sql in statements:
        compiled = sa.text(sql).compile(dialect=oracle.dialect())
        text = str(compiled)
        assert set(compiled.params) <= ORACLE_BINDS, (set(compiled.params), sql)
        assert "'10:30'" in text or "10:30" not in sql  # a literal stays a literal
        tree = sqlglot.parse_one(text, read="oracle")
        kinds.add(type(tree).__name__)
        assert not TABLE_ALIAS_AS.search(text), text
        assert " LIMIT " not in text and "IS DISTINCT FROM" not in text and "MD5(" not in text
    assert {"Select", "Create", "Insert", "Merge", "Drop"} <= kinds


def test_oracle_timestamp_columns_are_timestamps(sqlite_url, make_dms):
    meta = make_dms(sqlite_url)
    meta.import_yaml(ORACLE_FILE)
    spec = load_spec(meta.mapping("O_AGG"), "oracle")
    first_ts = next(c for c in spec.columns if c.name == "FIRST_TS")
    assert DIALECTS["oracle"].type_sql(first_ts.dtype.sqlalchemy_type()).startswith("TIMESTAMP")


def test_oracle_staging_table_uses_oracle_types(sqlite_url, make_dms):
    meta = make_dms(sqlite_url)
    meta.import_yaml(ORACLE_FILE)
    d = DIALECTS["oracle"]
    spec = load_spec(meta.mapping("O_SCD1"), "oracle")
    assert "BIGINT" not in sqlgen.create_staging(d, spec, sqlgen.work_table(d, spec, "s", 1, 0))


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite", "oracle"])
def test_an_scd2_target_gets_a_plain_key_index_only_where_its_rule_cannot_serve_lookups(
    sqlite_url, make_dms, dialect
):
    meta = make_dms(sqlite_url)
    meta.import_yaml(ORACLE_FILE)
    spec = load_spec(meta.mapping("O_SCD2"), dialect)
    indexes = {
        name.lower(): unique for name, _stmt, unique in index_statements(DIALECTS[dialect], spec)
    }
    # the rule (unique among current rows) is a partial index on PostgreSQL and SQLite,
    # an index over CASE expressions on Oracle, which lookups by key cannot use
    expected = {"o_scd2_cur": True} | ({"o_scd2_bk": False} if dialect == "oracle" else {})
    assert indexes == expected


# ------------------------------------------------------------------ dms run

runner = CliRunner()


def test_dms_run_prints_the_counts_and_fails_with_exit_1(
    sqlite_url, make_dms, monkeypatch, tmp_path
):
    monkeypatch.setenv("DMS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DMS_DATABASE_URL", raising=False)
    meta = make_dms(sqlite_url)
    meta.run(CUST_DDL)
    meta.insert("SRC_CUST", cust_rows(8))
    sql = "SELECT ID, NAME, CITY FROM SRC_CUST WHERE CITY <> :p1"
    meta.import_yaml(mapping_yaml("REF", sql, scd1_columns()))
    args = ["run", "REF", "--chunks", "2", "--param", "PARAM1=city0", "--full", "--url", sqlite_url]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert re.search(r"\bSRCROWS=6 INSROWS=6\b", result.stdout), result.stdout
    assert "CHUNKS=2" in result.stdout
    assert meta.scalar("SELECT COUNT(*) FROM T_REF") == 6

    meta.insert("SRC_CUST", [cust_rows(1, start=2)[0]])  # a duplicate key
    failed = runner.invoke(app, [*args[:-2], "--sequential", "--url", sqlite_url])
    assert failed.exit_code == 1
    assert "duplicate business keys" in failed.stderr and "REF" in failed.stderr
    assert "Traceback" not in failed.output
    unknown = runner.invoke(app, ["run", "NOPE", "--url", sqlite_url])
    assert unknown.exit_code == 1 and "NOPE" in unknown.stderr


# ------------------------------------------------------------------ more edges


@pytest.mark.slow
def test_changes_to_and_from_null_and_empty_string_are_detected(dms):
    setup_cust(dms, scd2_columns(), n=4)
    dms.run(
        "UPDATE SRC_CUST SET NAME = NULL WHERE ID = 1",
        "UPDATE SRC_CUST SET NAME = '' WHERE ID = 2",
        "UPDATE SRC_CUST SET CITY = NULL WHERE ID = 3",
    )
    dms.load()
    dms.run(
        "UPDATE SRC_CUST SET NAME = '' WHERE ID = 1",  # NULL -> '' (SCD1)
        "UPDATE SRC_CUST SET NAME = NULL WHERE ID = 2",  # '' -> NULL (SCD1)
        "UPDATE SRC_CUST SET CITY = '' WHERE ID = 3",  # NULL -> '' (SCD2)
        "UPDATE SRC_CUST SET CITY = NULL WHERE ID = 4",  # value -> NULL (SCD2)
    )
    assert counts(dms.load()) == (4, 2, 2, 2, 0, 0)
    rows = dms.query("SELECT ID, NAME, CITY FROM T_CUST WHERE CURFLG = 'Y' ORDER BY ID")
    assert rows == [(1, "", "city1"), (2, None, "city2"), (3, "name3", ""), (4, "name4", None)]
    assert counts(dms.load()) == (4, 0, 0, 0, 0, 4)


def setup_two_column_key(d: Dms, **kw) -> None:
    """SRC_2K: 9 rows keyed by (REGION, ID), three regions, mapped to T_REF (V is SCD2)."""
    d.run("CREATE TABLE SRC_2K (REGION VARCHAR(10), ID INTEGER, V VARCHAR(20))")
    rows = [
        {"REGION": r, "ID": i, "V": f"{r}{i}"} for r in ("east", "north", "west") for i in (1, 2, 3)
    ]
    d.insert("SRC_2K", rows)
    columns = [
        col("REGION", "VARCHAR(10)", key=1),
        col("ID", "INTEGER", key=2),
        col("V", "VARCHAR(20)", scd=2),
    ]
    d.import_yaml(mapping_yaml("REF", "SELECT REGION, ID, V FROM SRC_2K", columns, **kw))


@pytest.mark.parametrize("handling", ["DELETE", "EXPIRE"])
@pytest.mark.slow
def test_a_two_column_business_key_in_three_chunks(dms, handling):
    setup_two_column_key(dms, delete=handling)
    assert counts(dms.load(chunks=3)) == (9, 9, 0, 0, 0, 0)
    dms.run("UPDATE SRC_2K SET V = 'x' WHERE ID = 2", "DELETE FROM SRC_2K WHERE ID = 3")
    closed = 3 if handling == "EXPIRE" else 0
    deleted = 3 if handling == "DELETE" else 0
    assert counts(dms.load(chunks=3)) == (6, 3, 0, 3 + closed, deleted, 3)
    current = dms.query("SELECT REGION, ID, V FROM T_REF WHERE CURFLG = 'Y' ORDER BY 1, 2")
    assert current == [
        (r, i, "x" if i == 2 else f"{r}{i}") for r in ("east", "north", "west") for i in (1, 2)
    ]
    assert counts(dms.load(chunks=3)) == (6, 0, 0, 0, 0, 6)


@pytest.mark.parametrize("first_load", [True, False])
@pytest.mark.slow
def test_a_duplicate_two_column_key_fails_a_load_of_three_chunks_with_nothing_written(
    dms, first_load
):
    # the chunks split on REGION; the duplicate lives in one chunk, the other two have
    # writes to do: the plan (delta) or the commit (first load) must stop them all
    setup_two_column_key(dms)
    if not first_load:
        dms.load(chunks=3)
        dms.run("UPDATE SRC_2K SET V = 'changed'")
    before = [] if first_load else dms.snapshot("T_REF")
    dms.insert("SRC_2K", [{"REGION": "west", "ID": 2, "V": "again"}])
    with pytest.raises(DataError, match="duplicate business keys") as info:
        dms.load(chunks=3)
    assert info.value.keys == ["west/2"]
    assert dms.prcsts(dms.last_prcid()) == "FL"
    assert dms.snapshot("T_REF") == before


@pytest.mark.slow
def test_a_lookup_with_two_rows_for_a_key_fails_a_delta_of_three_chunks_before_any_writes(dms):
    dms.run(CUST_DDL, "CREATE TABLE SRC_SEG (CUST_ID INTEGER, SEGMENT VARCHAR(20))")
    dms.insert("SRC_CUST", cust_rows(9))
    dms.insert("SRC_SEG", [{"CUST_ID": 8, "SEGMENT": "gold"}])
    columns = [
        col("ID", "INTEGER", key=1),
        col("CITY", "VARCHAR(50)"),
        segment_lookup(),
    ]
    dms.import_yaml(mapping_yaml("REF", CUST_SQL, columns))
    dms.load(chunks=3)
    dms.run("UPDATE SRC_CUST SET CITY = 'moved'")  # every chunk has updates to do
    dms.insert("SRC_SEG", [{"CUST_ID": 8, "SEGMENT": "silver"}])
    before = dms.snapshot("T_REF")
    with pytest.raises(DataError, match="duplicate business keys") as info:
        dms.load(chunks=3)
    assert info.value.keys == ["8"]
    assert dms.snapshot("T_REF") == before


@pytest.mark.parametrize("mode", ["SEQUENCE", "TABLE_COUNTER"])
@pytest.mark.slow
def test_surrogate_keys_are_unique_across_chunks_and_loads(pg_url, make_dms, mode):
    dms = make_dms(pg_url)
    dms.run(CUST_DDL)
    dms.insert("SRC_CUST", cust_rows(20))
    params = [{"code": "ID_GENERATION_MODE", "value": mode}]
    dms.import_yaml(mapping_yaml("REF", CUST_SQL, scd2_columns(), table="T_CUST", params=params))
    dms.load(chunks=3)
    dms.run("UPDATE SRC_CUST SET CITY = 'moved' WHERE ID > 5")
    dms.load(chunks=3)
    skeys = [r[0] for r in dms.query("SELECT SKEY FROM T_CUST")]
    assert len(skeys) == 35 and len(set(skeys)) == 35
    has_sequence = sa.inspect(dms.engine).has_sequence("t_cust_seq")
    assert has_sequence == (mode == "SEQUENCE")


def test_commit_refuses_a_load_with_a_missing_chunk(dms):
    setup_cust(dms, scd1_columns(), n=6)
    p = dms.plan(chunks=2)
    first = run_chunk(p, 0, dms.settings)
    with pytest.raises(IncompleteLoad, match=r"chunk\(s\) \[1\] of 2"):
        commit(p, [first], dms.settings)
    assert dms.prcsts(p.prcid) == "FL"
    # the load's row FL with what committed, no checkpoint
    log = dms.joblog(p.prcid)
    rows = first.counts.srcrows
    assert [r[:3] + r[8:] for r in log] == [(None, "FL", rows, None), (0, "PC", rows, None)]


@pytest.mark.slow
def test_work_tables_left_by_a_dead_load_are_dropped_by_the_next(dms):
    setup_cust(dms, scd1_columns(), n=3)
    done = dms.load()
    dms.run(f"CREATE TABLE dms_a_{done.prcid}_0 (X INTEGER)")
    dms.run(f"CREATE TABLE dms_s_{done.prcid}_1 (X INTEGER)")
    dms.load()
    names = sa.inspect(dms.engine).get_table_names()
    assert not [n for n in names if WORK_TABLE.match(n)], names
