"""Target tables: created from the mapping's column types plus the audit columns, with a
business-key index and (SCD2) one current row per key; columns added in metadata are
added to the table, columns widened in metadata (VARCHAR(10) -> VARCHAR(40)) are widened;
a type the table cannot hold is an error, never a silent cast."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import sqlalchemy as sa

from dms_orchestration.db.dialects import Dialect, dialect_of
from dms_orchestration.db.schema import IndexSpec
from dms_orchestration.engine import sqlgen
from dms_orchestration.engine.spec import LoadSpec, TargetColumn
from dms_orchestration.metadata.datatypes import DataType
from dms_orchestration.vocabulary import Family

WORK_TABLE = re.compile(r"^dms_[sa]_(\d+)_\d+$")


class SchemaDrift(ValueError):
    """The target table and the mapping disagree in a way the loader will not paper over."""


def _audit_columns(spec: LoadSpec, primary_key: bool = True) -> list[sa.Column[Any]]:
    cols: list[sa.Column[Any]] = [
        sa.Column(
            "skey", sa.BigInteger, primary_key=primary_key, nullable=False, autoincrement=False
        ),
        sa.Column("rwhkey", sa.String(32)),
        # TIMESTAMP, not DateTime (DATE on Oracle): versions keep the microseconds
        sa.Column("reccrdt", sa.TIMESTAMP),
        sa.Column("recupdt", sa.TIMESTAMP),
    ]
    if spec.scd2:
        cols += [
            sa.Column("curflg", sa.String(1), nullable=False),
            sa.Column("vldfrm", sa.TIMESTAMP),
            sa.Column("vldto", sa.TIMESTAMP),
        ]
    return cols


def table_model(spec: LoadSpec, primary_key: bool = True) -> sa.Table:
    """The target table; without `primary_key` the SKEY constraint comes later
    (ensure_indexes), after a first load: cheaper than maintaining it row by row."""
    md = sa.MetaData(schema=spec.schema.lower() if spec.schema else None)
    mapped = [
        sa.Column(c.name.lower(), c.dtype.sqlalchemy_type(), nullable=not c.is_key)
        for c in spec.all_columns
    ]
    # SCD targets are updated in place: room on each page keeps those updates cheap
    return sa.Table(
        spec.table.lower(),
        md,
        *mapped,
        *_audit_columns(spec, primary_key),
        postgresql_with={"fillfactor": 90},
    )


def _index_name(table: str, suffix: str) -> str:
    return f"{table.lower()[:50]}_{suffix}"


def index_statements(
    d: Dialect, spec: LoadSpec, if_not_exists: bool = False
) -> list[tuple[str, str, bool]]:
    """(name, CREATE INDEX, unique) of the target's indexes."""
    table = d.qualified(spec.schema, spec.table)
    keys = tuple(d.quote(k.name) for k in spec.keys)
    bk = _index_name(spec.table, "bk")

    def create(index: IndexSpec) -> str:
        return d.create_index(table, index, if_not_exists)

    if not spec.scd2:
        return [(bk, create(IndexSpec(bk, keys, unique=True)), True)]
    # one index on the business key, unique among current rows: the rule, and the index
    # lookups of the current row use. No second index over all versions: every closed and
    # every new version would write it too (benchmarks/README.md) - except where
    # the rule's index cannot serve lookups by key (Oracle: it indexes CASE expressions)
    cur = _index_name(spec.table, "cur")
    rule = (cur, create(IndexSpec(cur, keys, unique=True, current_only=True)), True)
    if d.capabilities.partial_indexes:
        return [rule]
    return [(bk, create(IndexSpec(bk, keys)), False), rule]


def _primary_key_name(spec: LoadSpec) -> str:
    return _index_name(spec.table, "pkey")  # PostgreSQL's own name for it


def unique_rule(d: Dialect, spec: LoadSpec) -> list[str]:
    """CREATE INDEX statements of the rule that refuses duplicate business keys."""
    return [stmt for _name, stmt, unique in index_statements(d, spec) if unique]


def ensure_indexes(engine: sa.Engine, spec: LoadSpec) -> list[str]:
    """Create the target's primary key and indexes that are missing (a first load
    builds them after its rows are in: cheaper than maintaining them row by row). On
    PostgreSQL the builds run side by side, one connection each."""
    schema = spec.schema.lower() if spec.schema else None
    d = dialect_of(engine)
    with engine.connect() as conn:
        inspector = sa.inspect(conn)
        present = {  # (an index of these databases always has a name)
            cast(str, ix["name"]).lower()
            for ix in inspector.get_indexes(spec.table.lower(), schema)
        }
        has_key = bool(
            inspector.get_pk_constraint(spec.table.lower(), schema).get("constrained_columns")
        )
    table = d.qualified(spec.schema, spec.table)
    # IF NOT EXISTS where the database has it: reflection of a just-made SQLite index can
    # lag; a key's index may be left from a try that died before it became the key
    builds: list[str] = []
    after: list[str] = []
    if not has_key:
        builds, after = d.primary_key_statements(table, _primary_key_name(spec), "SKEY", True)
    builds += [
        stmt
        for name, stmt, _unique in index_statements(d, spec, if_not_exists=True)
        if name.lower() not in present
    ]
    if d.capabilities.parallel_index_builds and len(builds) > 1:
        with ThreadPoolExecutor(len(builds)) as pool:
            list(pool.map(lambda stmt: _run_ddl(engine, [*d.side_by_side_build(), stmt]), builds))
    else:
        _run_ddl(engine, builds)
    _run_ddl(engine, after)
    return builds + after


def _run_ddl(engine: sa.Engine, statements: list[str]) -> None:
    if statements:
        with engine.begin() as conn:
            for stmt in statements:
                conn.exec_driver_sql(stmt)


def _holds(existing: sa.types.TypeEngine[Any], want: DataType, d: Dialect) -> bool:
    """Whether a column of the existing type stores every value of the mapping's type."""
    f = want.family
    if f in (Family.STRING, Family.CHAR, Family.TEXT):
        if not isinstance(existing, sa.String):
            return False
        if f == Family.TEXT:
            return existing.length is None
        return existing.length is None or (want.length or 0) <= existing.length
    if f in (Family.INTEGER, Family.DECIMAL):
        if isinstance(existing, sa.Integer):
            if f == Family.INTEGER:
                return d.integer_max(want.sqlalchemy_type()) <= d.integer_max(existing)
            return (want.scale or 0) == 0 and 10 ** (want.precision or 38) - 1 <= d.integer_max(
                existing
            )
        if isinstance(existing, sa.Float) or not isinstance(existing, sa.Numeric):
            return False
        if existing.precision is None:
            return True
        scale = 0 if f == Family.INTEGER else (want.scale or 0)
        digits = (want.precision or 38) - scale
        return (existing.scale or 0) == scale and existing.precision - (
            existing.scale or 0
        ) >= digits
    if f == Family.FLOAT:
        return isinstance(existing, sa.Float | sa.Numeric)
    if f == Family.DATE:
        return isinstance(existing, sa.Date | sa.DateTime)
    if f == Family.TIMESTAMP:
        return isinstance(existing, sa.DateTime)
    if f == Family.BOOLEAN:
        return isinstance(existing, sa.Boolean | sa.Integer)
    return False


# changes of a column's type that keep every value as it is, by family (old, new); the
# new type must also hold every value of the old (_holds). An integer column counts as
# DECIMAL(digits of its largest value, 0). Anything else (VARCHAR -> INTEGER, CHAR ->
# VARCHAR, which drops trailing blanks, a scale changed, DATE -> TIMESTAMP) stays drift.
_WIDENINGS = {
    (Family.STRING, Family.STRING),
    (Family.STRING, Family.TEXT),
    (Family.CHAR, Family.CHAR),
    (Family.DECIMAL, Family.DECIMAL),
    (Family.DECIMAL, Family.INTEGER),
}


def _column_type(existing: sa.types.TypeEngine[Any], d: Dialect) -> DataType | None:
    """The mapping type a table's column type stands for (None: no widening from it)."""
    if isinstance(existing, sa.CHAR):
        return DataType(Family.CHAR, length=existing.length) if existing.length else None
    if isinstance(existing, sa.String):
        return DataType(Family.STRING, length=existing.length) if existing.length else None
    if isinstance(existing, sa.Integer):
        return DataType(Family.DECIMAL, precision=len(str(d.integer_max(existing))), scale=0)
    if isinstance(existing, sa.Numeric) and not isinstance(existing, sa.Float):
        if existing.precision is not None:
            return DataType(Family.DECIMAL, precision=existing.precision, scale=existing.scale or 0)
    return None


def widens(existing: sa.types.TypeEngine[Any], want: DataType, d: Dialect) -> bool:
    """Whether changing the column to the mapping's type keeps every value it has."""
    old = _column_type(existing, d)
    if old is None or (old.family, want.family) not in _WIDENINGS:
        return False
    if want.family == "DECIMAL" and (want.precision is None or want.scale != old.scale):
        return False  # (an unbounded NUMBER, or another scale, could round values)
    return _holds(want.sqlalchemy_type(), old, d)


def _widen(
    conn: sa.Connection,
    spec: LoadSpec,
    table: str,
    col: TargetColumn,
    current: sa.types.TypeEngine[Any],
) -> list[str]:
    """Widen a column to the mapping's type (what was done: nothing where the database
    needs no ALTER), or refuse (SchemaDrift) when that could lose or change a value, or
    the database cannot do it in place."""
    d = dialect_of(conn)
    new_type = col.dtype.sqlalchemy_type()
    statements = d.widen_column(table, d.quote(col.name), new_type)
    if statements is None or not widens(current, col.dtype, d):
        raise _drift(spec, table, col, current)
    for stmt in statements:
        conn.exec_driver_sql(stmt)
    return [f"widened column {col.name} to {col.dtype}"] if statements else []


def table_columns(
    bind: sa.Engine | sa.Connection, schema: str | None, table: str
) -> dict[str, sa.types.TypeEngine[Any]] | None:
    """A table's columns (lower case name -> type); None when it does not exist."""
    schema = schema.lower() if schema else None
    inspector = sa.inspect(bind)
    if not inspector.has_table(table.lower(), schema=schema):
        return None
    return {c["name"].lower(): c["type"] for c in inspector.get_columns(table.lower(), schema)}


def ensure_target(engine: sa.Engine, spec: LoadSpec) -> list[str]:
    """Create the target table, or add the columns metadata gained and widen the ones it
    widened; what was done."""
    d = dialect_of(engine)
    table = d.qualified(spec.schema, spec.table)
    with engine.begin() as conn:
        existing = table_columns(conn, spec.schema, spec.table)
        if existing is None:
            # indexes (and the key, where a table can get one later) come with the
            # first load (plan, chunk or commit) or right after (ensure_indexes)
            table_model(spec, primary_key=not d.capabilities.adds_primary_key).create(conn)
            return [f"created table {table}"]
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
                conn.exec_driver_sql(sqlgen.add_column(d, spec, col.name, type_sql))
                done.append(f"added column {col.name}")
            elif not _holds(current, col.dtype, d):
                done += _widen(conn, spec, table, col, current)
        return done


def _drift(
    spec: LoadSpec, table: str, col: TargetColumn, current: sa.types.TypeEngine[Any]
) -> SchemaDrift:
    return SchemaDrift(
        f"mapping {spec.mapref}: column {col.name} is {current} in table {table} but "
        f"{col.dtype} in the mapping, a change that could lose or alter values; change the "
        f"table or the mapping (no silent cast; only widening changes are applied)"
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
    sql = sqlgen.any_row(d, spec)
    with engine.connect() as conn:
        return conn.execute(sa.text(sql)).first() is None
