"""dms_orchestration.vocabulary: the contract's codes are spelled once. The mapping
file's JSON Schema lists them from there, and no other module spells a status or
request code as a string of its own."""

import ast
from pathlib import Path

import pytest

from dms_orchestration import vocabulary as v
from dms_orchestration.metadata.mapping_file import MappingFile, json_schema, parse_mapping_file

PACKAGE = Path(__file__).resolve().parents[1] / "dms_orchestration"
# codes no other module may write as a string of its own (the status and request codes;
# short words like "ID" or "CSV" are also SQL and file words, so only those are checked)
SPELLED_ONCE = {*v.codes(v.Status), *v.codes(v.RequestStatus), *v.codes(v.RequestType)} - {
    "IMMEDIATE"  # (also SQLite's BEGIN IMMEDIATE)
}


@pytest.mark.parametrize(
    ("definition", "kind"),
    [
        ("CheckpointStrategy", v.CheckpointStrategy),
        ("Combine", v.Combine),
        ("DbType", v.DbType),
        ("DeleteHandling", v.DeleteHandling),
        ("FileType", v.FileType),
        ("Frequency", v.Frequency),
        ("LoadType", v.LoadType),
        ("ReportFormat", v.ReportFormat),
        ("TargetType", v.TargetType),
    ],
)
def test_the_json_schema_lists_the_vocabularys_codes(definition, kind):
    assert json_schema()["$defs"][definition]["enum"] == list(v.codes(kind))


def test_a_spec_holds_plain_text_codes():
    text = """
mappings:
  - ref: M
    sql: Q
    delete_handling: EXPIRE
    target: {table: T}
    columns: [{name: K, type: INTEGER, key: 1, logic: SRC.K}]
"""
    spec = parse_mapping_file(text).mappings[0]
    assert type(spec.delete_handling) is str and spec.delete_handling == "EXPIRE"
    assert type(spec.target.type) is str and spec.target.type == v.TargetType.DIMENSION
    with pytest.raises(ValueError, match="delete_handling"):
        parse_mapping_file(text.replace("EXPIRE", "expire"))
    assert MappingFile.model_validate({}).mappings == []


def _spelled(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and node.value in SPELLED_ONCE
        and id(node) not in docstrings
    ]


@pytest.mark.slow
def test_status_and_request_codes_are_spelled_only_in_the_vocabulary():
    found = {
        str(path.relative_to(PACKAGE)): hits
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "vocabulary.py" and (hits := _spelled(path))
    }
    assert found == {}


def test_the_scan_finds_a_spelled_code(tmp_path):
    module = tmp_path / "m.py"
    module.write_text('"""PC is fine here."""\nx = status == "PC"\n')
    assert _spelled(module) == [(2, "PC")]


def test_a_code_equals_its_text_and_prints_as_it():
    assert v.Status.PC == "PC" and f"{v.Status.FL}" == "FL" and str(v.ScdType.HISTORY) == "2"
    assert "|".join(v.DeleteHandling) == "IGNORE|EXPIRE|DELETE"
    assert v.codes(v.Family)[:3] == v.STRING_FAMILIES
