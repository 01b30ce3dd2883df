"""Data checks of a loaded target, for the orchestrator's asset checks: exactly one
current row per business key (SCD2), and source keys vs current target rows; and the
target's row count a materialization reports."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa

from dms_orchestration.db.dialects import Dialect, dialect_of
from dms_orchestration.db.interrupt import cancel_statement, cancellable
from dms_orchestration.db.sqltext import bound_text
from dms_orchestration.engine import sqlgen
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
    with tgt.connect() as conn:
        rows = conn.execute(sa.text(sqlgen.keys_with_several_current_rows(d, spec))).all()
    return CurrentRowCheck(len(rows), ["/".join(str(v) for v in r) for r in rows[:5]])


def reconcile(
    mapping: Mapping,
    settings: Settings,
    params: dict[str, str | None] | None = None,
    source_keys: int | None = None,
    current: int | None = None,
) -> Reconciliation:
    """Distinct business keys of the full source extract vs current target rows.
    `source_keys`: those a load just read of the whole extract, `current`: the current
    rows counted after it (neither is counted again)."""
    spec, src, tgt = resolve(mapping, settings)
    counted = source_keys is None
    if counted:
        count_src = bound_text(sqlgen.source_key_count(spec), params or {})
        with src.connect() as conn:
            source_keys = int(conn.execute(count_src).scalar() or 0)
    if current is None:
        count_tgt = sa.text(sqlgen.current_row_count(dialect_of(tgt), spec))
        with tgt.connect() as conn:
            current = int(conn.execute(count_tgt).scalar() or 0)
    assert source_keys is not None  # (counted above when not given)
    return Reconciliation(source_keys, current, counted)


@dataclass(frozen=True)
class TableRows:
    rows: int  # every version of an SCD2 target's keys
    current: int  # the current ones (all rows of an SCD1 target)


def target_rows(mapping: Mapping, settings: Settings) -> TableRows:
    """The rows of the target table and its current rows, in one scan."""
    spec, _src, tgt = resolve(mapping, settings)
    with tgt.connect() as conn:
        return _counted(conn, dialect_of(tgt), spec)


def _counted(conn: sa.Connection, d: Dialect, spec: LoadSpec) -> TableRows:
    rows, now = conn.execute(sa.text(sqlgen.target_row_counts(d, spec))).one()
    return TableRows(int(rows or 0), int(now or 0))


def target_rows_as_of(
    mapping: Mapping, settings: Settings, taken: Callable[[Callable[[], None]], None]
) -> TableRows:
    """The target's rows and current rows as they were when `taken` is called: a read
    snapshot of the target is taken first, then counted, and whatever commits meanwhile
    is not seen. `taken` gets a function that cancels the count (from any thread).
    Run `cancellable` (engine.progress): beside a load's chunks, whose transactions set
    and unset psycopg2's wait callback for the whole process."""
    spec, _src, tgt = resolve(mapping, settings)
    d = dialect_of(tgt)
    with cancellable(tgt), tgt.connect() as conn, conn.begin():
        for stmt in d.read_snapshot_session():
            conn.exec_driver_sql(stmt)
        conn.execute(sa.text(sqlgen.first_target_row(d, spec))).first()
        dbapi = conn.connection.dbapi_connection
        taken(lambda: cancel_statement(dbapi))
        return _counted(conn, d, spec)


# ------------------------------------------------------------------ the unique rule's index

_CURRENT_ONLY = re.compile(r"""[\s()"`]|::[a-z ]+""", re.IGNORECASE)


def rule_index(tgt: sa.Engine, d: Dialect, spec: LoadSpec) -> str | None:
    """The name of the target's unique index that refuses a second (current) row per
    business key, when it is there as the engine builds it: unique, valid, on the key
    columns in order, over current rows only for SCD2. PostgreSQL and SQLite; None
    elsewhere, or when it is missing or different."""
    names = [name for name, _stmt, unique in index_statements(d, spec) if unique]
    if len(names) != 1:
        return None
    [name] = names
    try:
        with tgt.connect() as conn:
            found = d.unique_index(conn, spec.schema, spec.table, name)
    except sa.exc.SQLAlchemyError:  # no table yet, no rights: count the rows instead
        return None
    if found is None:
        return None
    columns, predicate = found
    if [c.lower() for c in columns] != [k.name.lower() for k in spec.keys]:
        return None
    current_only = bool(predicate and _CURRENT_ONLY.sub("", predicate).lower() == "curflg='y'")
    return name if (current_only if spec.scd2 else not predicate) else None
