"""The embedded default scales (issue 10 part 7): every statement of a SQLite load
searches the target's indexes rather than scanning a table once per row (read from
EXPLAIN QUERY PLAN, not from timings), chunks writing one SQLite file take turns instead
of failing on its lock, and the SQLite row hash writes the reference's values."""

from __future__ import annotations

import contextlib
import re
from collections import defaultdict
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from dms_orchestration_tests.test_engine import (
    CUST_DDL,
    CUST_SQL,
    Dms,
    col,
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
    from dms_orchestration.db.connect import dispose_all

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


@pytest.mark.parametrize(
    "columns, delete, checkpoint, chunks, index",
    [
        (SCD2, "EXPIRE", None, 1, "t_cust_cur"),
        (SCD2, "DELETE", None, 1, "t_cust_cur"),
        (SCD1, "DELETE", None, 1, "t_cust_bk"),
        (SCD2, "EXPIRE", None, 3, "t_cust_cur"),  # the chunks' key ranges
        (SCD1, "IGNORE", None, 3, "t_cust_bk"),
        (SCD2, "EXPIRE", KEY_CHECKPOINT, 1, "t_cust_cur"),  # a window: a LEFT JOIN
    ],
    ids=["scd2-expire", "scd2-delete", "scd1-delete", "scd2-3-chunks", "scd1-3-chunks", "window"],
)
def test_no_statement_of_a_sqlite_delta_scans_a_table_per_row(
    sqlite_dms, columns, delete, checkpoint, chunks, index
):
    d = sqlite_dms
    d.run(CUST_DDL)
    d.insert("SRC_CUST", [{**r, "UPD": "2024-01-01 00:00:00"} for r in cust_rows(ROWS)])
    d.import_yaml(
        mapping_yaml("REF", CUST_SQL, columns, table="T_CUST", delete=delete, checkpoint=checkpoint)
    )
    d.load(chunks=chunks)
    _changes(d, ROWS)
    with query_plans(d.engine, re.compile(r"\b(t_cust|dms_[as]_\d+_\d+)\b", re.I)) as plans:
        result = d.load(chunks=chunks, full=checkpoint is None)
    assert result.counts.insrows == 5 + ROWS // 10 * (2 in [c.get("scd") for c in columns])
    assert len([s for s, _ in plans if re.match(r"CREATE TABLE \S*dms_a_", s)]) == chunks
    assert_no_loop_scans(plans)
    if chunks == 1:  # the classify finds each staged row's current row through the index
        assert any(
            re.fullmatch(rf"SEARCH T USING (COVERING )?INDEX {index} \(id=\?\)( LEFT-JOIN)?", p)
            for p in classify_plan(plans)
        ), classify_plan(plans)
