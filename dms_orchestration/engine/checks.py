"""Data checks of a loaded target, for the orchestrator's asset checks: exactly one
current row per business key (SCD2), and source keys vs current target rows; and the
target's row count a materialization reports."""

from __future__ import annotations

import re
from dataclasses import dataclass

import sqlalchemy as sa

from dms_orchestration.db.dialects import Dialect, dialect_of
from dms_orchestration.db.sqltext import bound_text, escape_binds
from dms_orchestration.engine.plan import resolve
from dms_orchestration.engine.spec import LoadSpec
from dms_orchestration.engine.target import index_statements
from dms_orchestration.metadata.models import Mapping
from dms_orchestration.settings import Settings


@dataclass(frozen=True)
class CurrentRowCheck:
    keys_with_several_current_rows: int
    sample: list[str]
    enforced_by: str | None = None  # the unique index that answered, if one did

    @property
    def passed(self) -> bool:
        return self.keys_with_several_current_rows == 0


@dataclass(frozen=True)
class Reconciliation:
    source_keys: int
    target_rows: int  # current rows
    source_counted: bool = True  # False: the source keys are a load's, not counted here

    @property
    def difference(self) -> int:
        return self.target_rows - self.source_keys


def current_rows(mapping: Mapping, settings: Settings) -> CurrentRowCheck:
    """Keys with more than one current row: none when the target's unique rule index
    (the engine builds it) is there and valid, since the database then refuses a second
    one (answered from the catalog, whatever the table's size); else counted."""
    spec, _src, tgt = resolve(mapping, settings)
    d = dialect_of(tgt)
    index = rule_index(tgt, d, spec)
    if index is not None:
        return CurrentRowCheck(0, [], enforced_by=index)
    keys = ", ".join(d.quote(k.name) for k in spec.keys)
    where = " WHERE CURFLG = 'Y'" if spec.scd2 else ""
    sql = (
        f"SELECT {keys} FROM {d.qualified(spec.schema, spec.table)}{where} "
        f"GROUP BY {keys} HAVING COUNT(*) > 1"
    )
    with tgt.connect() as conn:
        rows = conn.execute(sa.text(sql)).all()
    return CurrentRowCheck(len(rows), ["/".join(str(v) for v in r) for r in rows[:5]])


def reconcile(
    mapping: Mapping,
    settings: Settings,
    params: dict | None = None,
    source_keys: int | None = None,
    current: int | None = None,
) -> Reconciliation:
    """Distinct business keys of the full source extract vs current target rows.
    `source_keys`: those a load just read of the whole extract, `current`: the current
    rows counted after it (neither is counted again)."""
    spec, src, tgt = resolve(mapping, settings)
    td = dialect_of(tgt)
    where = " WHERE CURFLG = 'Y'" if spec.scd2 else ""
    count_tgt = f"SELECT COUNT(*) FROM {td.qualified(spec.schema, spec.table)}{where}"
    counted = source_keys is None
    if counted:
        source_sql = escape_binds(spec.source_sql)[0]
        keys = ", ".join(k.logic for k in spec.keys)
        count_src = (
            f"SELECT COUNT(*) FROM (SELECT {keys} FROM ({source_sql}) SRC GROUP BY {keys}) K"
        )
        with src.connect() as conn:
            source_keys = int(conn.execute(bound_text(count_src, params or {})).scalar() or 0)
    if current is None:
        with tgt.connect() as conn:
            current = int(conn.execute(sa.text(count_tgt)).scalar() or 0)
    return Reconciliation(source_keys, current, counted)


@dataclass(frozen=True)
class TableRows:
    rows: int  # every version of an SCD2 target's keys
    current: int  # the current ones (all rows of an SCD1 target)


def target_rows(mapping: Mapping, settings: Settings) -> TableRows:
    """The rows of the target table and its current rows, in one scan."""
    spec, _src, tgt = resolve(mapping, settings)
    table = dialect_of(tgt).qualified(spec.schema, spec.table)
    current = "COUNT(CASE WHEN CURFLG = 'Y' THEN 1 END)" if spec.scd2 else "COUNT(*)"
    with tgt.connect() as conn:
        rows, now = conn.execute(sa.text(f"SELECT COUNT(*), {current} FROM {table}")).one()
    return TableRows(int(rows or 0), int(now or 0))


# ------------------------------------------------------------------ the unique rule's index

_PG_INDEX = """
SELECT i.indisunique AND i.indisvalid AND i.indisready,
       pg_get_expr(i.indpred, i.indrelid),
       ARRAY(SELECT a.attname::text
             FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
             ORDER BY k.ord)
FROM pg_index i
WHERE i.indexrelid = to_regclass(:index) AND i.indrelid = to_regclass(:table)
"""
_CURRENT_ONLY = re.compile(r"""[\s()"`]|::[a-z ]+""", re.IGNORECASE)


def rule_index(tgt: sa.Engine, d: Dialect, spec: LoadSpec) -> str | None:
    """The name of the target's unique index that refuses a second (current) row per
    business key, when it is there as the engine builds it: unique, valid, on the key
    columns in order, over current rows only for SCD2. PostgreSQL and SQLite; None
    elsewhere, or when it is missing or different."""
    names = [name for name, _stmt, unique in index_statements(d, spec) if unique]
    if len(names) != 1 or d.name not in ("postgresql", "sqlite"):
        return None
    [name] = names
    try:
        with tgt.connect() as conn:
            found = (
                _pg_index(conn, d, spec, name)
                if d.name == "postgresql"
                else _sqlite_index(conn, d, spec, name)
            )
    except sa.exc.SQLAlchemyError:  # no table yet, no rights: count the rows instead
        return None
    if found is None:
        return None
    columns, predicate = found
    if [c.lower() for c in columns] != [k.name.lower() for k in spec.keys]:
        return None
    current_only = bool(predicate) and _CURRENT_ONLY.sub("", predicate).lower() == "curflg='y'"
    return name if (current_only if spec.scd2 else not predicate) else None


def _pg_index(conn, d: Dialect, spec: LoadSpec, name: str):
    row = conn.execute(
        sa.text(_PG_INDEX),
        {"index": d.qualified(spec.schema, name), "table": d.qualified(spec.schema, spec.table)},
    ).first()
    if row is None or not row[0]:
        return None
    return list(row[2]), row[1]


def _sqlite_index(conn, d: Dialect, spec: LoadSpec, name: str):
    listed = conn.exec_driver_sql(f"PRAGMA index_list({d.quote(spec.table)})").all()
    row = next((r for r in listed if str(r[1]).lower() == name.lower()), None)
    if row is None or not row[2]:  # (seq, name, unique, origin, partial)
        return None
    columns = [r[2] for r in conn.exec_driver_sql(f"PRAGMA index_info({d.quote(row[1])})")]
    if any(c is None for c in columns):  # an expression
        return None
    sql = conn.execute(
        sa.text("SELECT sql FROM sqlite_master WHERE type = 'index' AND name = :name"),
        {"name": row[1]},
    ).scalar()
    parts = re.split(r"\bWHERE\b", sql or "", maxsplit=1, flags=re.IGNORECASE)
    return columns, parts[1] if len(parts) > 1 else None
