"""The dialect boundary: what differs between databases is asked of db.dialects (its
capabilities record and statement builders), never decided by a dialect's name or by
patching generated SQL elsewhere."""

import ast
import dataclasses
from pathlib import Path

import pytest
import sqlalchemy as sa

from dms_orchestration.db.dialects import DIALECTS, Capabilities
from dms_orchestration.db.schema import IndexSpec
from dms_orchestration.db.sqltext import bound_text

PACKAGE = Path(__file__).resolve().parents[1] / "dms_orchestration"
NAMES = {"postgresql", "oracle", "sqlite"}


def _name_tests(tree: ast.AST) -> list[int]:
    """Lines that compare something's `.name` with a database's name."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        sides = [node.left, *node.comparators]
        named = any(isinstance(s, ast.Attribute) and s.attr == "name" for s in sides)
        words = {s.value for s in sides if isinstance(s, ast.Constant)}
        for s in sides:
            if isinstance(s, ast.Tuple | ast.Set | ast.List):
                words |= {e.value for e in s.elts if isinstance(e, ast.Constant)}
        if named and words & NAMES:
            found.append(node.lineno)
    return found


def _patches(tree: ast.AST) -> list[int]:
    """Lines that patch SQL text: .replace("CREATE ..." / "INDEX ..." / ...)."""
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "replace"
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
        and node.args[0].value.lstrip().split(" ")[0] in {"CREATE", "INDEX", "TABLE", "SEQUENCE"}
    ]


def test_the_engine_asks_capabilities_never_a_dialects_name():
    bad = {}
    for path in sorted((PACKAGE / "engine").glob("*.py")) + [PACKAGE / "ids" / "provider.py"]:
        tree = ast.parse(path.read_text())
        lines = _name_tests(tree) + _patches(tree)
        if lines:
            bad[path.name] = lines
    assert bad == {}


def test_no_private_sqlalchemy_attribute_is_used():
    users = [
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if "._bindparams" in p.read_text() or "._bind_params" in p.read_text()
    ]
    assert users == []


def test_the_name_check_finds_what_it_looks_for():
    assert _name_tests(ast.parse('x = d.name == "postgresql"')) == [1]
    assert _name_tests(ast.parse('x = d.name not in ("sqlite", "oracle")')) == [1]
    assert _patches(ast.parse('s.replace("CREATE SEQUENCE", "CREATE SEQUENCE IF NOT EXISTS")'))


def test_capabilities_are_one_frozen_record_per_dialect():
    for d in DIALECTS.values():
        assert isinstance(d.capabilities, Capabilities)
        with pytest.raises(dataclasses.FrozenInstanceError):
            d.capabilities.sequences = False
    assert not DIALECTS["sqlite"].capabilities.sequences
    assert not DIALECTS["sqlite"].capabilities.schemas
    assert not DIALECTS["oracle"].capabilities.partial_indexes
    assert DIALECTS["postgresql"].capabilities.parallel_index_builds


@pytest.mark.parametrize("name", ["postgresql", "oracle"])
def test_if_not_exists_only_where_the_database_has_it(name):
    d = DIALECTS[name]
    sequence = d.create_sequence("S.T_SEQ", 5, cache=1000, if_not_exists=True)
    index = d.create_index("S.T", IndexSpec("t_bk", ("K",), unique=True), if_not_exists=True)
    plain = d.create_index("S.T", IndexSpec("t_bk", ("K",), unique=True))
    assert sequence.endswith("START WITH 5 INCREMENT BY 1 CACHE 1000")
    assert ("IF NOT EXISTS S.T_SEQ" in sequence) == d.capabilities.sequence_if_not_exists
    assert ("INDEX IF NOT EXISTS t_bk" in index) == d.capabilities.index_if_not_exists
    assert "IF NOT EXISTS" not in plain
    assert (d.create_schema("DMS") is not None) == d.capabilities.schema_if_not_exists


def test_if_not_exists_statements_run_twice_on_sqlite(tmp_path):
    d = DIALECTS["sqlite"]
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (k INTEGER)")
        for _ in range(2):
            conn.exec_driver_sql(d.create_index("t", IndexSpec("t_bk", ("k",)), True))
        assert d.index_names(conn, "t", None) == {"T_BK"}


def test_a_count_of_a_bound_query_keeps_its_binds(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    query = bound_text("SELECT :p1 AS a UNION ALL SELECT :p2 UNION ALL SELECT '10\\:30'", {})
    with engine.connect() as conn:
        assert DIALECTS["sqlite"].estimate_rows(conn, query) == 3
        assert conn.execute(bound_text("SELECT :p1, :P2", {"p1": 1, "p2": 2})).one() == (1, 2)
