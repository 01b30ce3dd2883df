"""Target tables: created from the mapping's column types plus the audit columns, with a
business-key index and (SCD2) one current row per key; columns added in metadata are
added to the table; a type the table cannot hold is an error, never a silent cast."""

from __future__ import annotations

import re

import sqlalchemy as sa

from dms_orchestration.db.dialects import Dialect, dialect_of
from dms_orchestration.db.schema import IndexSpec
from dms_orchestration.engine.spec import LoadSpec, TargetColumn
from dms_orchestration.metadata.datatypes import DataType

WORK_TABLE = re.compile(r"^dms_[sa]_(\d+)_\d+$")


class SchemaDrift(ValueError):
    """The target table and the mapping disagree in a way the loader will not paper over."""


def _audit_columns(spec: LoadSpec) -> list[sa.Column]:
    cols = [
        sa.Column("skey", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("rwhkey", sa.String(32)),
        sa.Column("reccrdt", sa.DateTime),
        sa.Column("recupdt", sa.DateTime),
    ]
    if spec.scd2:
        cols += [
            sa.Column("curflg", sa.String(1), nullable=False),
            sa.Column("vldfrm", sa.DateTime),
            sa.Column("vldto", sa.DateTime),
        ]
    return cols


def table_model(spec: LoadSpec) -> sa.Table:
    md = sa.MetaData(schema=spec.schema.lower() if spec.schema else None)
    mapped = [
        sa.Column(c.name.lower(), c.dtype.sqlalchemy_type(), nullable=not c.is_key)
        for c in spec.all_columns
    ]
    # SCD targets are updated in place: room on each page keeps those updates cheap
    return sa.Table(
        spec.table.lower(), md, *mapped, *_audit_columns(spec), postgresql_with={"fillfactor": 90}
    )


def _index_name(table: str, suffix: str) -> str:
    return f"{table.lower()[:50]}_{suffix}"


def index_statements(d: Dialect, spec: LoadSpec) -> list[tuple[str, str, bool]]:
    """(name, CREATE INDEX, unique) of the target's indexes."""
    table = d.qualified(spec.schema, spec.table)
    keys = tuple(d.quote(k.name) for k in spec.keys)
    bk = _index_name(spec.table, "bk")
    if spec.scd2:
        cur = _index_name(spec.table, "cur")
        return [
            (bk, d.create_index(table, IndexSpec(bk, keys)), False),
            (
                cur,
                d.create_index(table, IndexSpec(cur, keys, unique=True, current_only=True)),
                True,
            ),
        ]
    return [(bk, d.create_index(table, IndexSpec(bk, keys, unique=True)), True)]


def ensure_indexes(engine: sa.Engine, spec: LoadSpec) -> list[str]:
    """Create the target's indexes that are missing (a first load builds the non-unique
    ones after its rows are in: cheaper than maintaining them row by row)."""
    schema = spec.schema.lower() if spec.schema else None
    d = dialect_of(engine)
    with engine.begin() as conn:
        present = {
            ix["name"].lower() for ix in sa.inspect(conn).get_indexes(spec.table.lower(), schema)
        }
        made = []
        for name, stmt, _unique in index_statements(d, spec):
            if name.lower() not in present:
                if d.index_if_not_exists:  # reflection of a just-made SQLite index can lag
                    stmt = stmt.replace("INDEX ", "INDEX IF NOT EXISTS ", 1)
                conn.exec_driver_sql(stmt)
                made.append(name)
    return made


def _holds(existing: sa.types.TypeEngine, want: DataType) -> bool:
    """Whether a column of the existing type stores every value of the mapping's type."""
    f = want.family
    if f in ("STRING", "CHAR", "TEXT"):
        if not isinstance(existing, sa.String):
            return False
        if f == "TEXT":
            return existing.length is None
        return existing.length is None or (want.length or 0) <= existing.length
    if f in ("INTEGER", "DECIMAL"):
        if isinstance(existing, sa.Integer):
            return f == "INTEGER" or (want.scale or 0) == 0
        if isinstance(existing, sa.Float) or not isinstance(existing, sa.Numeric):
            return False
        if existing.precision is None:
            return True
        scale = 0 if f == "INTEGER" else (want.scale or 0)
        digits = (want.precision or 38) - scale
        return (existing.scale or 0) == scale and existing.precision - (
            existing.scale or 0
        ) >= digits
    if f == "FLOAT":
        return isinstance(existing, sa.Float | sa.Numeric)
    if f == "DATE":
        return isinstance(existing, sa.Date | sa.DateTime)
    if f == "TIMESTAMP":
        return isinstance(existing, sa.DateTime)
    if f == "BOOLEAN":
        return isinstance(existing, sa.Boolean | sa.Integer)
    return False


def ensure_target(engine: sa.Engine, spec: LoadSpec) -> list[str]:
    """Create the target table, or add the columns metadata gained; what was done."""
    d = dialect_of(engine)
    schema = spec.schema.lower() if spec.schema else None
    table = d.qualified(spec.schema, spec.table)
    with engine.begin() as conn:
        inspector = sa.inspect(conn)
        if not inspector.has_table(spec.table.lower(), schema=schema):
            table_model(spec).create(conn)
            # the unique rule from the start (it refuses duplicate keys); the rest once
            # the first load is in (ensure_indexes at commit)
            for _name, stmt, unique in index_statements(d, spec):
                if unique:
                    conn.exec_driver_sql(stmt)
            return [f"created table {table}"]
        existing = {
            c["name"].lower(): c["type"] for c in inspector.get_columns(spec.table.lower(), schema)
        }
        missing_audit = [c.name for c in _audit_columns(spec) if c.name not in existing]
        if missing_audit:
            raise SchemaDrift(
                f"mapping {spec.mapref}: table {table} lacks the audit column(s) "
                f"{', '.join(c.upper() for c in missing_audit)}; it was not made by this loader "
                f"(or is SCD1 while the mapping now has SCD2 columns)"
            )
        done = []
        for col in spec.all_columns:
            current = existing.get(col.name.lower())
            if current is None:
                type_sql = d.type_sql(col.dtype.sqlalchemy_type())
                conn.exec_driver_sql(f"ALTER TABLE {table} ADD {d.quote(col.name)} {type_sql}")
                done.append(f"added column {col.name}")
            elif not _holds(current, col.dtype):
                raise _drift(spec, table, col, current)
        return done


def _drift(spec: LoadSpec, table: str, col: TargetColumn, current) -> SchemaDrift:
    return SchemaDrift(
        f"mapping {spec.mapref}: column {col.name} is {current} in table {table} but "
        f"{col.dtype} in the mapping; change the table or the mapping (no silent cast)"
    )


def leftover_work_tables(engine: sa.Engine, spec: LoadSpec) -> list[str]:
    """Work tables of chunks that died before their cleanup: name -> PRCID in the name."""
    schema = spec.schema.lower() if spec.schema else None
    return [
        name
        for name in sa.inspect(engine).get_table_names(schema=schema)
        if WORK_TABLE.match(name.lower())
    ]


def is_empty(engine: sa.Engine, spec: LoadSpec) -> bool:
    d = dialect_of(engine)
    sql = d.limit(f"SELECT 1 FROM {d.qualified(spec.schema, spec.table)}", 1)
    with engine.connect() as conn:
        return conn.execute(sa.text(sql)).first() is None
