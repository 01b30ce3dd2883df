"""The embedded default scales (issue 10 part 7): every statement of a SQLite load
searches the target's indexes rather than scanning a table once per row (read from
EXPLAIN QUERY PLAN, not from timings), chunks writing one SQLite file take turns instead
of failing on its lock, and the SQLite row hash writes the reference's values."""

from __future__ import annotations

import contextlib
import re
from collections import defaultdict
from collections.abc import Iterator
from datetime import date, datetime

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from dms_orchestration.db import connect, rowhash
from dms_orchestration.db.connect import create_engine, dispose_all
from dms_orchestration_tests.test_engine import (
    CUST_DDL,
    CUST_SQL,
    Dms,
    col,
    counts,
    cust_rows,
    mapping_yaml,
)

ROWS = 3000  # a few thousand: the plans, not the times, are what these tests read


# ------------------------------------------------------------------ query plans


def loop_scans(plan: list[tuple]) -> list[str]:
    """The SCANs of an EXPLAIN QUERY PLAN that run once per row of an outer loop: a
    scan after the first loop of a join (its inner loops), or any scan inside a
    correlated subquery. (A scan under MATERIALIZE, CO-ROUTINE, a subquery that is not
    correlated, or a RIGHT-JOIN's pass over the unmatched rows runs once.)"""
    children: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for node, parent, _unused, detail in plan:
        children[parent].append((node, detail))
    found: list[str] = []

    def walk(parent: int, per_row: bool) -> None:
        loops = 0
        for node, detail in children[parent]:
            if detail.startswith("SCAN ") and (loops or per_row):
                found.append(detail)
            loops += detail.startswith(("SCAN ", "SEARCH "))
            walk(node, per_row or detail.startswith("CORRELATED "))

    walk(0, False)
    return found


def test_loop_scans_reads_sqlite_plans():
    # the classify before issue 10: the current rows materialized, scanned per staged row
    materialized = [
        (16, 0, 0, "MATERIALIZE T"),
        (20, 16, 0, "SCAN tgt USING INDEX tgt_cur"),
        (43, 0, 0, "SCAN SRC"),
        (47, 0, 0, "SCAN T LEFT-JOIN"),
        (134, 0, 0, "RIGHT-JOIN T"),
        (138, 134, 0, "SCAN T"),
    ]
    assert loop_scans(materialized) == ["SCAN T LEFT-JOIN"]
    searched = [
        (20, 0, 0, "SCAN SRC"),
        (22, 0, 0, "SEARCH T USING INDEX tgt_cur (id=?) LEFT-JOIN"),
        (118, 0, 0, "RIGHT-JOIN tgt"),
        (121, 118, 0, "SCAN T"),
    ]
    assert loop_scans(searched) == []
    correlated = [
        (3, 0, 0, "SCAN tgt"),
        (6, 0, 0, "CORRELATED SCALAR SUBQUERY 1"),
        (10, 6, 0, "SCAN A"),
    ]
    assert loop_scans(correlated) == ["SCAN A"]
    listed = [(3, 0, 0, "SCAN tgt"), (8, 0, 0, "LIST SUBQUERY 1"), (10, 8, 0, "SCAN A")]
    assert loop_scans(listed) == []


@contextlib.contextmanager
def query_plans(engine: sa.Engine, names: re.Pattern) -> Iterator[list[tuple[str, list]]]:
    """(statement, EXPLAIN QUERY PLAN rows) of each statement naming a table that
    `names` matches, run on the database of `engine` in this process: explained on the
    statement's own connection, in its transaction, with its parameters, just before it
    runs (work tables exist only then)."""
    plans: list[tuple[str, list]] = []

    def explain(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        if conn.engine.url.database != engine.url.database or executemany:
            return
        if not re.match(r"\s*(SELECT|INSERT|UPDATE|DELETE|CREATE TABLE \S+ AS)", statement, re.I):
            return
        if names.search(statement):
            rows = cursor.connection.execute(f"EXPLAIN QUERY PLAN {statement}", parameters)
            plans.append((statement, [tuple(r) for r in rows]))

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", explain)
    try:
        yield plans
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", explain)


def assert_no_loop_scans(plans: list[tuple[str, list]]) -> None:
    loops = [(stmt, scans) for stmt, plan in plans if (scans := loop_scans(plan))]
    assert not loops, "statements that scan a table once per row:\n" + "\n".join(
        f"{scans}: {stmt}" for stmt, scans in loops
    )


def classify_plan(plans: list[tuple[str, list]]) -> list[str]:
    (plan,) = [p for stmt, p in plans if re.match(r"CREATE TABLE \S*dms_a_", stmt)]
    return [detail for *_ids, detail in plan]


@pytest.fixture
def sqlite_dms(sqlite_url, tmp_path) -> Iterator[Dms]:
    d = Dms(sqlite_url, tmp_path / "home")
    yield d
    d.engine.dispose()
    dispose_all()


def _changes(d: Dms, n: int) -> None:
    """A tenth of the keys change (SCD2 CITY, SCD1 NAME), some are absent, some new."""
    d.run(
        "UPDATE SRC_CUST SET CITY = 'moved', UPD = '2025-01-01 00:00:00' WHERE ID % 10 = 0",
        "UPDATE SRC_CUST SET NAME = 'renamed', UPD = '2025-01-01 00:00:00' WHERE ID % 10 = 1",
        "DELETE FROM SRC_CUST WHERE ID % 10 = 2",
    )
    d.insert("SRC_CUST", [{**r, "UPD": "2025-01-01 00:00:00"} for r in cust_rows(5, start=n + 1)])


SCD2 = [
    col("ID", "INTEGER", key=1),
    col("NAME", "VARCHAR(100)", scd=1),
    col("CITY", "VARCHAR(50)", scd=2),
]
SCD1 = [col("ID", "INTEGER", key=1), col("NAME", "VARCHAR(100)"), col("CITY", "VARCHAR(50)")]
KEY_CHECKPOINT = {"strategy": "KEY", "column": "UPD"}


DISTINCT_SQL = CUST_SQL.replace("SELECT", "SELECT DISTINCT")  # more than a read: staged


@pytest.mark.parametrize(
    "columns, delete, checkpoint, chunks, sql, index",
    [
        (SCD2, "EXPIRE", None, 1, CUST_SQL, "t_cust_cur"),
        (SCD2, "DELETE", None, 1, CUST_SQL, "t_cust_cur"),
        (SCD1, "DELETE", None, 1, CUST_SQL, "t_cust_bk"),
        (SCD2, "EXPIRE", None, 3, CUST_SQL, "t_cust_cur"),  # the chunks' key ranges
        (SCD1, "IGNORE", None, 3, CUST_SQL, "t_cust_bk"),
        (SCD2, "EXPIRE", KEY_CHECKPOINT, 1, CUST_SQL, "t_cust_cur"),  # a window: LEFT JOIN
        (SCD2, "DELETE", None, 1, DISTINCT_SQL, "t_cust_cur"),  # from a staging table
    ],
    ids=[
        "scd2-expire",
        "scd2-delete",
        "scd1-delete",
        "scd2-3-chunks",
        "scd1-3-chunks",
        "window",
        "staged",
    ],
)
def test_no_statement_of_a_sqlite_load_scans_a_table_per_row(
    sqlite_dms, columns, delete, checkpoint, chunks, sql, index
):
    d = sqlite_dms
    d.run(CUST_DDL)
    d.insert("SRC_CUST", [{**r, "UPD": "2024-01-01 00:00:00"} for r in cust_rows(ROWS)])
    d.import_yaml(
        mapping_yaml("REF", sql, columns, table="T_CUST", delete=delete, checkpoint=checkpoint)
    )
    ours = re.compile(r"\b(t_cust|dms_[as]_\d+_\d+)\b", re.I)
    with query_plans(d.engine, ours) as first:
        d.load(chunks=chunks)
    _changes(d, ROWS)
    with query_plans(d.engine, ours) as plans:
        result = d.load(chunks=chunks, full=checkpoint is None)
    assert result.counts.insrows == 5 + ROWS // 10 * (2 in [c.get("scd") for c in columns])
    classifies = [s for s, _ in plans if re.match(r"CREATE TABLE \S*dms_a_", s)]
    assert len(classifies) == chunks
    assert ("dms_s_" in classifies[0]) == (sql == DISTINCT_SQL)
    assert_no_loop_scans(first + plans)
    if chunks == 1:  # the classify finds each staged row's current row through the index
        assert any(
            re.fullmatch(
                rf"SEARCH (T|t_cust) USING (COVERING )?INDEX {index} \(id=\?\)( LEFT-JOIN)?", p
            )
            for p in classify_plan(plans)
        ), classify_plan(plans)


# ------------------------------------------------------------------ chunks of one file


@pytest.mark.parametrize("processes", [False, True], ids=["threads", "processes"])
@pytest.mark.slow
def test_chunks_writing_one_sqlite_file_take_turns_instead_of_failing_on_its_lock(
    sqlite_dms, monkeypatch, processes
):
    """Chunks of one SQLite target in parallel: each waits for its turn, however long
    the others write (the busy timeout, after which a chunk that waits for SQLite's write
    lock fails with "database is locked", is cut to 50 ms here so that any meeting on
    that lock shows), and the counts are exact."""
    monkeypatch.setattr(connect, "SQLITE_BUSY_TIMEOUT_S", 0.05)
    dispose_all()  # (engines made from here on wait 50 ms; forked chunks inherit it)
    d = sqlite_dms
    n = 6000
    d.run(CUST_DDL)
    d.insert("SRC_CUST", [{**r, "UPD": "2024-01-01 00:00:00"} for r in cust_rows(n)])
    d.import_yaml(mapping_yaml("REF", CUST_SQL, SCD2, table="T_CUST", delete="EXPIRE"))
    first = d.load(chunks=4, parallel=True, processes=processes)
    assert first.chunk_count == 4 and counts(first) == (n, n, 0, 0, 0, 0)
    _changes(d, n)
    delta = d.load(chunks=4, parallel=True, processes=processes, full=True)
    moved, renamed, absent = n // 10, n // 10, n // 10
    assert counts(delta) == (
        n - absent + 5,
        5 + moved,
        renamed,
        moved + absent,
        0,
        n - moved - renamed - absent,
    )
    assert d.query("SELECT COUNT(*), COUNT(DISTINCT ID) FROM T_CUST WHERE CURFLG = 'Y'") == [
        (n - absent + 5, n - absent + 5)
    ]
    chunks = d.query(
        "SELECT COUNT(*) FROM DMS_JOBLOG WHERE PRCID = :p AND CHUNKNO IS NOT NULL",
        p=delta.prcid,
    )
    assert chunks == [(4,)]


@pytest.mark.slow
def test_a_sqlite_target_earns_one_chunk(dms_url, tmp_path):
    """One writer at a time: a SQLite target's load runs as one chunk however many rows
    it reads, unless told otherwise; the same mapping on PostgreSQL earns several."""
    d = Dms(dms_url, tmp_path / "home")
    try:
        d.run(CUST_DDL)
        d.insert("SRC_CUST", cust_rows(30))
        params = [
            {"code": "MIN_ROWS_FOR_PARALLEL", "value": "10"},
            {"code": "CHUNK_ROWS", "value": "10"},
            {"code": "MAX_PARALLEL_CHUNKS", "value": "3"},
        ]
        d.import_yaml(mapping_yaml("REF", CUST_SQL, SCD1, table="T_CUST", params=params))
        first = d.plan()
        assert first.chunk_count == (1 if d.dialect == "sqlite" else 3)
        d.run("UPDATE DMS_PRCLOG SET PRCSTS = 'FL'")  # (lets the next plan in)
        assert d.plan(chunks=3).chunk_count == 3
    finally:
        d.engine.dispose()
        dispose_all()


# ------------------------------------------------------------------ the SQLite row hash


@pytest.mark.slow
def test_dms_rowhash_quotes_exactly_the_characters_the_reference_quotes():
    for code in range(0x110000):
        ch = chr(code)
        assert (rowhash._NEEDS_QUOTES.search(ch) is not None) == (ch in rowhash._QUOTED), code


_TRICKY_TEXT = st.text(
    st.sampled_from(list('ab "\\(),\t\n\r\v\f') + ["\x1c", "\x85", "\xa0", "\u2028", "é", "\x00"]),
    max_size=6,
)
_DATES = st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31))
_TIMESTAMPS = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31))
_FLOATS = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(
    [0.0, -0.0, 0.125, 2.675, 1.005, 123456789012345.67, 1e15, 1e16, 1e-4, 1e-5, 5e-324]
)
_INTS = st.integers(-(2**63), 2**63 - 1) | st.sampled_from([10**18 - 1, -(10**18) + 1, 10**18])
_NUMBERS = _INTS | _FLOATS | st.decimals(allow_nan=False, allow_infinity=False, places=4)


def _value(family: str) -> st.SearchStrategy:
    """Values of a family as SQLite hands them to dms_rowhash (and a few it never does)."""
    return (
        st.none()
        | {
            "STRING": _TRICKY_TEXT | _INTS | _FLOATS,
            "TEXT": _TRICKY_TEXT,
            "CHAR": _TRICKY_TEXT.map(lambda t: t + " " * (len(t) % 3)),
            "INTEGER": _INTS | st.integers(-(10**30), 10**30) | st.sampled_from(["12", " 7 "]),
            "DECIMAL": _NUMBERS | st.sampled_from(["12.345", "x"]),
            "FLOAT": _FLOATS | _INTS,
            "DATE": _DATES.map(date.isoformat)
            | _TIMESTAMPS.map(lambda t: t.isoformat(sep=" "))
            | _DATES
            | st.sampled_from(["2024-02-30", "20240101", "2024-W01-1", " 2024-01-0", "2024-1-1"]),
            "TIMESTAMP": _TIMESTAMPS.map(lambda t: t.isoformat(sep=" "))
            | _DATES.map(date.isoformat),
            "BOOLEAN": st.sampled_from([0, 1, "1", "t", "Y", "N", True, False]),
        }[family]
    )


@st.composite
def _typed_values(draw) -> tuple[str, int | None, object]:
    family = draw(st.sampled_from(FAMILIES))
    scale = draw(st.none() | st.integers(0, 12)) if family == "DECIMAL" else None
    return family, scale, draw(_value(family))


FAMILIES = ["STRING", "TEXT", "CHAR", "INTEGER", "DECIMAL", "FLOAT", "DATE", "TIMESTAMP", "BOOLEAN"]


def _outcome(fn, *args):  # noqa: ANN001, ANN002
    try:
        return fn(*args)
    except Exception as exc:  # the same failure, or none: what the load sees
        return type(exc)


@hyp_settings(max_examples=1000, deadline=None)
@given(st.lists(_typed_values(), max_size=6))
@pytest.mark.slow
def test_dms_rowhash_equals_the_reference_row_hash(row):
    specs = [family if scale is None else f"{family}:{scale}" for family, scale, _ in row]
    args = [x for spec, (*_type, value) in zip(specs, row, strict=True) for x in (spec, value)]
    want = _outcome(rowhash.row_hash, [v for *_t, v in row], [(f, s) for f, s, _ in row])
    assert _outcome(rowhash.sqlite_row_hash, *args) == want
    # the writers are cached per statement shape: a second row of it is the same
    assert _outcome(rowhash.sqlite_row_hash, *args) == want


def test_dms_rowhash_in_sqlite_equals_the_reference_over_stored_values(sqlite_url):
    """Values stored under each column affinity come back to dms_rowhash as SQLite
    holds them; its hash is the reference's over the values read back (a value the
    reference refuses fails the statement)."""
    columns = [
        ("A VARCHAR(20)", "STRING", None),
        ("B CHAR(4)", "CHAR", None),
        ("C INTEGER", "INTEGER", None),
        ("D NUMERIC(12,2)", "DECIMAL", 2),
        ("E NUMERIC", "DECIMAL", None),
        ("F REAL", "FLOAT", None),
        ("G DATE", "DATE", None),
        ("H TIMESTAMP", "TIMESTAMP", None),
    ]
    rows = [
        ("a b", "X  ", 7, 12.5, 1.23, 0.1, "2024-02-29", "2024-01-02 03:04:05.123456"),
        ("", "", -1, 3, 100, -2.0, "1900-01-01", "2024-01-02 03:04:05"),
        ('q"\\', None, 2**62, -3.456, -0.5, 1e20, None, "2024-01-02"),
        (None, "(,)", None, 1234567890.12, "7.10", 5e-324, "2024-13-01", None),
    ]
    names = [c[0].split()[0] for c in columns]
    types = [(family, scale) for _c, family, scale in columns]
    args = ", ".join(
        f"'{family}{'' if scale is None else f':{scale}'}', {name}"
        for name, (family, scale) in zip(names, types, strict=True)
    )
    engine = create_engine(sqlite_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"CREATE TABLE H ({', '.join(c[0] for c in columns)})")
            conn.exec_driver_sql(f"INSERT INTO H VALUES ({', '.join('?' * len(names))})", rows)
            stored = conn.exec_driver_sql(f"SELECT rowid, {', '.join(names)} FROM H").all()
            for rowid, *values in stored:
                want = _outcome(rowhash.row_hash, values, types)
                sql = f"SELECT dms_rowhash({args}) FROM H WHERE rowid = ?"
                got = _outcome(lambda: conn.exec_driver_sql(sql, (rowid,)).scalar())  # noqa: B023
                if isinstance(want, type):  # the reference refuses it: so does the statement
                    assert got is sa.exc.OperationalError, (values, want)
                else:
                    assert got == want, values
    finally:
        engine.dispose()
