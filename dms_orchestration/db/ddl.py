"""DDL for the DMS schema per dialect, and `dms db init`: create what is missing, only that.

The files in metadata_sql/<dialect>/dms_schema.sql are rendered from db.schema by
`python -m dms_orchestration.db.ddl`; a test keeps them equal to the rendering.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from dms_orchestration.db.connect import dms_schema, write_transaction
from dms_orchestration.db.dialects import DIALECTS, Dialect, dialect_of
from dms_orchestration.db.schema import TABLES, TableSpec

HEADER = (
    "-- DMS metadata schema ({dialect}). Rendered from dms_orchestration/db/schema.py by\n"
    "-- `python -m dms_orchestration.db.ddl`; `dms db init` runs the same statements,\n"
    "-- creating only the objects that are missing.\n"
)


def table_statements(dialect: Dialect, spec: TableSpec, schema: str | None = None) -> list[str]:
    table = _in_schema(spec.name, schema)
    return [dialect.create_table(spec, schema)] + [
        dialect.create_index(table, ix) for ix in spec.indexes
    ]


def render(dialect: Dialect) -> str:
    parts = [HEADER.format(dialect=dialect.name)]
    for spec in TABLES:
        parts.extend(s + ";\n" for s in table_statements(dialect, spec))
    if dialect.capabilities.sequences:
        parts.append(
            "\n-- SEQUENCE-mode ids, one per entity (DMS_IDPOOL serves TABLE_COUNTER mode)\n"
        )
        parts.extend(dialect.create_sequence(t.sequence) + ";\n" for t in TABLES if t.sequence)
    return "\n".join(parts)


def ddl_path(root: Path, dialect: Dialect) -> Path:
    return root / "metadata_sql" / dialect.name / "dms_schema.sql"


@dataclass
class InitReport:
    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    # columns of the contract that an existing (legacy) table lacks; reported, not added
    missing_columns: dict[str, list[str]] = field(default_factory=dict)
    # contract indexes an existing table could not get (e.g. duplicate rows): why
    index_problems: dict[str, str] = field(default_factory=dict)


def _max_id(conn: sa.Connection, spec: TableSpec, schema: str | None) -> int:
    assert spec.id_column is not None  # a table with a sequence has an id column
    table = sa.table(spec.name.lower(), sa.column(spec.id_column.lower()), schema=schema)
    return conn.execute(sa.select(sa.func.max(table.c[spec.id_column.lower()]))).scalar() or 0


def init_schema(engine: sa.Engine) -> InitReport:
    """Create the tables, indexes and sequences that are missing; touch nothing else."""
    dialect = dialect_of(engine)
    schema = dms_schema(engine)
    report = InitReport()
    with write_transaction(engine) as conn:
        create_schema = dialect.create_schema(schema) if schema else None
        if create_schema:
            conn.exec_driver_sql(create_schema)
        inspector = sa.inspect(conn)
        present = {n.upper() for n in inspector.get_table_names(schema=schema)}
        for spec in TABLES:
            if spec.name in present:
                report.existing.append(spec.name)
                cols = {c["name"].upper() for c in inspector.get_columns(spec.name.lower(), schema)}
                lacking = [c.name for c in spec.columns if c.name not in cols]
                if lacking:
                    report.missing_columns[spec.name] = lacking
                _add_missing_indexes(conn, dialect, spec, schema, cols, report)
                continue
            for stmt in table_statements(dialect, spec, schema):
                conn.exec_driver_sql(stmt)
            report.created.append(spec.name)
        if dialect.capabilities.sequences:
            for spec in TABLES:
                if not spec.sequence or dialect.sequence_exists(conn, spec.sequence, schema):
                    continue
                start = _max_id(conn, spec, schema) + 1
                name = _in_schema(spec.sequence, schema)
                conn.exec_driver_sql(dialect.create_sequence(name, start))
                report.created.append(spec.sequence)
    return report


def _add_missing_indexes(
    conn: sa.Connection,
    dialect: Dialect,
    spec: TableSpec,
    schema: str | None,
    columns: set[str],
    report: InitReport,
) -> None:
    """An existing (legacy) table gets the contract's indexes it lacks, when it has their
    columns; one that cannot be built (duplicate rows under a unique rule) is reported,
    not forced: the table and its rows stay as they are."""
    present = dialect.index_names(conn, spec.name.lower(), schema)
    for ix in spec.indexes:
        names = {c.name for c in spec.columns}
        used = set(re.findall(r"[A-Z_][A-Z0-9_]*", " ".join(ix.columns))) & names
        if ix.name in present or not used <= columns:
            continue
        try:
            with conn.begin_nested():
                conn.exec_driver_sql(dialect.create_index(_in_schema(spec.name, schema), ix))
            report.created.append(ix.name)
        except sa.exc.DBAPIError as exc:
            report.index_problems[ix.name] = str(exc.orig).strip().splitlines()[0]


def _in_schema(name: str, schema: str | None) -> str:
    """A DMS table's or sequence's name in the DMS schema (DMS_SCHEMA), if one is set."""
    return f"{schema}.{name}" if schema else name


def write_ddl_files(root: Path) -> list[Path]:
    paths = []
    for dialect in DIALECTS.values():
        path = ddl_path(root, dialect)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(dialect))
        paths.append(path)
    return paths


if __name__ == "__main__":
    for p in write_ddl_files(Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd()):
        print(p)
