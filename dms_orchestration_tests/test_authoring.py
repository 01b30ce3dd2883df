"""Mapping files: import with legacy versioning, export, and import of an export as a no-op."""

from __future__ import annotations

from typing import get_args

import pytest
import sqlalchemy as sa
from pydantic import BaseModel

from dms_orchestration.demo import DEMO_DIR
from dms_orchestration.metadata.authoring import export_mapping_file, import_mapping_file
from dms_orchestration.metadata.authoring_fields import DECLARED, HANDLED_OTHERWISE
from dms_orchestration.metadata.catalog import load_catalog
from dms_orchestration.metadata.mapping_file import (
    SCHEMA_PATH,
    MappingFile,
    MappingFileError,
    dump_mapping_file,
    json_schema,
    parse_mapping_file,
    read_mapping_file,
)

SMALL = """
connections:
  - {name: SRC, type: SQLITE, database: src.db, password_env: NOT_USED}
sql:
  - {code: Q1, connection: SRC, sql: "SELECT ID, NAME, CITY FROM PEOPLE"}
mappings:
  - ref: DIM_PERSON
    target: {schema: main, table: DIM_PERSON}
    sql: Q1
    columns:
      - {name: ID, type: INTEGER, key: 1, logic: SRC.ID}
      - {name: NAME, type: VARCHAR(50), logic: SRC.NAME, scd: 1}
      - {name: CITY, type: VARCHAR(50), logic: SRC.CITY, scd: 2}
    job:
      schedules:
        - {frequency: DL, hour: 1, minute: 30}
"""


def _count(engine, table, where="1=1"):
    with engine.connect() as conn:
        return conn.exec_driver_sql(f"SELECT COUNT(*) FROM {table} WHERE {where}").scalar()


@pytest.mark.slow
def test_import_writes_every_table_and_the_catalog_reads_it_back(dms_engine):
    report = import_mapping_file(dms_engine, parse_mapping_file(SMALL))
    assert report.new["DMS_MAPR"] == 1 and report.new["DMS_MAPRDTL"] == 3
    catalog = load_catalog(dms_engine)
    m = catalog.mappings["DIM_PERSON"]
    assert [c.name for c in m.business_key] == ["ID"]
    assert m.source.sql.startswith("SELECT ID")
    assert m.source_connection.name == "SRC" and m.source_connection.password_env == "NOT_USED"
    assert m.jobs[0].active and m.jobs[0].schedules[0].frequency == "DL"
    assert _count(dms_engine, "DMS_JOBDTL", "CURFLG = 'Y'") == 3


@pytest.mark.slow
def test_reimport_of_same_file_and_of_an_export_changes_nothing(dms_engine):
    import_mapping_file(dms_engine, parse_mapping_file(SMALL))
    assert import_mapping_file(dms_engine, parse_mapping_file(SMALL)).is_noop
    exported = dump_mapping_file(export_mapping_file(dms_engine))
    before = {t: _count(dms_engine, t) for t in ("DMS_MAPR", "DMS_MAPRDTL", "DMS_JOBSCH")}
    assert import_mapping_file(dms_engine, parse_mapping_file(exported)).is_noop
    assert before == {t: _count(dms_engine, t) for t in before}


@pytest.mark.slow
def test_demo_file_round_trips(dms_engine):
    import_mapping_file(dms_engine, read_mapping_file(DEMO_DIR / "mappings.yaml"))
    exported = dump_mapping_file(export_mapping_file(dms_engine))
    assert import_mapping_file(dms_engine, parse_mapping_file(exported)).is_noop
    catalog = load_catalog(dms_engine)
    fact = catalog.mappings["FACT_SALES_DAILY"]
    assert fact.jobs[0].schedules[0].depends_on_mapref == "STG_SALES"
    assert {c.combine for c in fact.columns if not c.is_key} <= {"SUM", "COUNT", "FIRST"}


@pytest.mark.slow
def test_a_changed_column_gets_a_new_current_version_and_the_old_row_is_kept(dms_engine):
    import_mapping_file(dms_engine, parse_mapping_file(SMALL))
    changed = SMALL.replace("logic: SRC.CITY, scd: 2", "logic: UPPER(SRC.CITY), scd: 2")
    report = import_mapping_file(dms_engine, parse_mapping_file(changed))
    assert report.changed["DMS_MAPRDTL"] == 1 and report.unchanged["DMS_MAPRDTL"] == 2
    assert report.unchanged["DMS_MAPR"] == 1
    with dms_engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT MAPLOGIC, CURFLG FROM DMS_MAPRDTL WHERE TRGCLNM = 'CITY' ORDER BY MAPDTLID"
        ).all()
    assert [tuple(r) for r in rows] == [("SRC.CITY", "N"), ("UPPER(SRC.CITY)", "Y")]
    # the job's frozen column list follows the mapping
    assert _count(dms_engine, "DMS_JOBDTL", "CURFLG = 'Y' AND MAPLOGIC = 'UPPER(SRC.CITY)'") == 1


@pytest.mark.slow
def test_a_removed_column_and_schedule_are_retired(dms_engine):
    import_mapping_file(dms_engine, parse_mapping_file(SMALL))
    smaller = SMALL.replace(
        "      - {name: NAME, type: VARCHAR(50), logic: SRC.NAME, scd: 1}\n", ""
    )
    smaller = smaller.replace(
        "      schedules:\n        - {frequency: DL, hour: 1, minute: 30}\n",
        "      schedules: []\n",
    )
    report = import_mapping_file(dms_engine, parse_mapping_file(smaller))
    assert report.retired["DMS_MAPRDTL"] == 1 and report.retired["DMS_JOBSCH"] == 1
    m = load_catalog(dms_engine).mappings["DIM_PERSON"]
    assert [c.name for c in m.columns] == ["ID", "CITY"] and m.jobs[0].schedules == ()


def test_a_bad_file_names_the_fault_and_changes_nothing(dms_engine):
    with pytest.raises(MappingFileError, match=r"mappings\[DIM_PERSON\]\.columns\[NAME\]\.scd"):
        parse_mapping_file(SMALL.replace("scd: 1", "scd: 3"))
    bad_ref = SMALL.replace("sql: Q1\n", "sql: NOPE\n")
    with pytest.raises(MappingFileError, match="DIM_PERSON: unknown sql code 'NOPE'"):
        import_mapping_file(dms_engine, parse_mapping_file(bad_ref))
    assert _count(dms_engine, "DMS_MAPR") == 0 and _count(dms_engine, "DMS_DBCONDTLS") == 0


@pytest.mark.slow
def test_a_column_named_twice_is_refused_and_changes_nothing(dms_engine):
    import_mapping_file(dms_engine, parse_mapping_file(SMALL))
    before = _count(dms_engine, "DMS_MAPRDTL")
    twice = SMALL.replace(
        "      - {name: CITY, type: VARCHAR(50), logic: SRC.CITY, scd: 2}\n",
        "      - {name: CITY, type: VARCHAR(50), logic: SRC.CITY, scd: 2}\n"
        "      - {name: city, type: VARCHAR(60), logic: SRC.CITY, scd: 2}\n",
    )
    for _ in range(2):  # (each import used to add a current row)
        with pytest.raises(MappingFileError, match="DIM_PERSON: column CITY / city appears 2"):
            import_mapping_file(dms_engine, parse_mapping_file(twice))
    assert _count(dms_engine, "DMS_MAPRDTL") == before
    assert import_mapping_file(dms_engine, parse_mapping_file(SMALL)).is_noop


def test_a_value_longer_than_its_dms_column_is_refused_naming_the_field(dms_engine):
    long_ref = "M" * 51
    text = (
        SMALL.replace("ref: DIM_PERSON", f"ref: {long_ref}")
        .replace("{name: CITY,", "{name: " + "C" * 101 + ",")
        .replace(
            "logic: SRC.NAME, scd: 1}", "logic: SRC.NAME, scd: 1, description: " + "d" * 501 + "}"
        )
        .replace("    sql: Q1\n", "    sql: Q1\n    bulk_rows: 3000000000\n")
    )
    with pytest.raises(MappingFileError) as info:
        import_mapping_file(dms_engine, parse_mapping_file(text))
    message = str(info.value)
    assert (
        f"mappings[{long_ref}].ref: 51 characters, longer than DMS_MAPR.MAPREF (VARCHAR(50))"
        in (message)
    )
    assert f"mappings[{long_ref}].columns[{'C' * 101}].name: 101 characters" in message
    assert f"mappings[{long_ref}].columns[NAME].description: 501 characters" in message
    assert f"mappings[{long_ref}].bulk_rows: 3000000000 is larger" in message
    for table in ("DMS_MAPR", "DMS_MAPRDTL", "DMS_DBCONDTLS", "DMS_MAPRSQL"):
        assert _count(dms_engine, table) == 0


@pytest.mark.parametrize(
    "url",
    ["postgresql://etl:Sup3rSecret@h/db", "postgresql://etl@h/db?password=Sup3rSecret"],
)
@pytest.mark.slow
def test_a_password_written_in_a_url_is_refused_and_names_the_way_out(dms_engine, url):
    text = SMALL.replace(
        "  - {name: SRC, type: SQLITE, database: src.db, password_env: NOT_USED}",
        f"  - {{name: SRC, type: POSTGRESQL, url: '{url}'}}",
    )
    with pytest.raises(MappingFileError) as info:
        import_mapping_file(dms_engine, parse_mapping_file(text))
    message = str(info.value)
    assert "connections[SRC].url" in message and "DBPSWDENV" in message and "${NAME}" in message
    assert "Sup3rSecret" not in message
    assert _count(dms_engine, "DMS_DBCONDTLS") == 0
    # a placeholder is the way: accepted
    placeholder = text.replace("Sup3rSecret", "${SRC_PASSWORD}")
    import_mapping_file(dms_engine, parse_mapping_file(placeholder))
    assert _count(dms_engine, "DMS_DBCONDTLS") == 1


@pytest.mark.slow
def test_export_of_chosen_mappings_and_unknown_mapref(dms_engine):
    import_mapping_file(dms_engine, read_mapping_file(DEMO_DIR / "mappings.yaml"))
    file = export_mapping_file(dms_engine, ["DIM_PRODUCT"])
    assert [m.ref for m in file.mappings] == ["DIM_PRODUCT"]
    assert [q.code for q in file.sql] == ["SRC_PRODUCTS"]
    assert {c.name for c in file.connections} == {"RETAIL_SRC", "RETAIL_DW"}
    with pytest.raises(MappingFileError, match="NO_SUCH_MAP"):
        export_mapping_file(dms_engine, ["NO_SUCH_MAP"])


def _spec_models(model: type[BaseModel]) -> set[type[BaseModel]]:
    """`model` and every model its fields hold, however deep (lists and optionals too)."""
    found, todo = set(), [model]
    while todo:
        m = todo.pop()
        if m in found:
            continue
        found.add(m)
        annotations = [info.annotation for info in m.model_fields.values()]
        while annotations:
            a = annotations.pop()
            annotations += get_args(a)
            if isinstance(a, type) and issubclass(a, BaseModel):
                todo.append(a)
    return found


def test_every_field_of_the_file_is_declared_or_handled_otherwise():
    """A field added to the mapping file must be declared in authoring_fields (its DMS
    column and catalog attribute) or listed as handled otherwise: import and export would
    drop it silently."""
    models = _spec_models(MappingFile)
    assert len(models) == 14
    for model in models:
        declared = [f.field for f in DECLARED.get(model, ())]
        otherwise = HANDLED_OTHERWISE.get(model, frozenset())
        assert len(set(declared)) == len(declared), f"{model.__name__}: declared twice"
        assert not otherwise & set(declared), f"{model.__name__}: declared and otherwise"
        fields = set(model.model_fields)
        missing = fields - otherwise - set(declared)
        assert not missing, f"{model.__name__}.{missing}: neither declared nor handled otherwise"
        unknown = (otherwise | set(declared)) - fields
        assert not unknown, f"{model.__name__}.{unknown}: not a field"


def test_shipped_json_schema_is_current_and_validates_the_demo_file():
    import json

    import jsonschema
    import yaml

    assert json.loads(SCHEMA_PATH.read_text()) == json_schema()
    data = yaml.safe_load((DEMO_DIR / "mappings.yaml").read_text())
    jsonschema.validate(json.loads(json.dumps(data, default=str)), json_schema())
    data["mappings"][0]["columns"][0]["bogus"] = 1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(json.loads(json.dumps(data, default=str)), json_schema())


@pytest.mark.slow
def test_catalog_is_read_in_a_fixed_number_of_queries(dms_engine):
    from dms_orchestration.metadata.catalog import CATALOG_QUERIES

    def queries_for(n_mappings):
        text = "sql:\n  - {code: Q, sql: SELECT 1 AS ID}\nmappings:\n" + "".join(
            f"  - ref: M{i}\n    target: {{table: T{i}}}\n    sql: Q\n    columns:\n"
            f"      - {{name: ID, type: INTEGER, key: 1, logic: SRC.ID}}\n"
            f"    job: {{schedules: [{{frequency: DL, hour: 1, minute: 0}}]}}\n"
            for i in range(n_mappings)
        )
        import_mapping_file(dms_engine, parse_mapping_file(text))
        count = 0

        def _count_query(*_args):
            nonlocal count
            count += 1

        sa.event.listen(dms_engine, "before_cursor_execute", _count_query)
        try:
            catalog = load_catalog(dms_engine)
        finally:
            sa.event.remove(dms_engine, "before_cursor_execute", _count_query)
        assert len(catalog.mappings) == n_mappings
        return count

    small, large = queries_for(3), queries_for(40)
    assert small == large
    assert large <= CATALOG_QUERIES + 1  # + the BEGIN that SQLite issues


@pytest.mark.slow
def test_one_mapping_is_read_alone(dms_engine):
    """load_mapping reads the rows of one mapping (the same mapping the whole catalog
    has); a catalog read for its names keeps, of the columns, those that look up."""
    from dms_orchestration.metadata.catalog import NoSuchMapping, load_mapping

    text = "sql:\n" + "".join(f"  - {{code: Q{i}, sql: SELECT {i} AS ID}}\n" for i in range(3))
    text += "mappings:\n" + "".join(
        f"  - ref: M{i}\n    target: {{table: T{i}}}\n    sql: Q{i}\n    columns:\n"
        f"      - {{name: ID, type: INTEGER, key: 1, logic: SRC.ID}}\n"
        f"      - {{name: NAME, type: VARCHAR(20), logic: 'SELECT ID, NAME FROM T0',"
        f" lookup: {{key: ID, value: NAME}}}}\n"
        f"    job: {{schedules: [{{frequency: DL, hour: {i}, minute: 0}}]}}\n"
        for i in range(3)
    )
    import_mapping_file(dms_engine, parse_mapping_file(text))
    whole = load_catalog(dms_engine)
    one = load_mapping(dms_engine, "M1")
    assert list(one.mappings) == ["M1"] and one.mappings["M1"] == whole.mappings["M1"]
    assert list(one.source_sql) == ["Q1"] and one.params == whole.params
    named = load_catalog(dms_engine, lookups_only=True)
    assert list(named.mappings) == ["M0", "M1", "M2"]
    assert [[c.name for c in m.columns] for m in named.mappings.values()] == [["NAME"]] * 3
    with pytest.raises(NoSuchMapping, match="no current mapping named M9"):
        load_mapping(dms_engine, "M9")
