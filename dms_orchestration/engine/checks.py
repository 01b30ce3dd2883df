"""Data checks of a loaded target, for the orchestrator's asset checks: exactly one
current row per business key (SCD2), and source keys vs current target rows; and the
target's row count a materialization reports."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from dms_orchestration.db.dialects import dialect_of
from dms_orchestration.db.sqltext import bound_text, escape_binds
from dms_orchestration.engine.plan import resolve
from dms_orchestration.metadata.models import Mapping
from dms_orchestration.settings import Settings


@dataclass(frozen=True)
class CurrentRowCheck:
    keys_with_several_current_rows: int
    sample: list[str]

    @property
    def passed(self) -> bool:
        return self.keys_with_several_current_rows == 0


@dataclass(frozen=True)
class Reconciliation:
    source_keys: int
    target_rows: int  # current rows

    @property
    def difference(self) -> int:
        return self.target_rows - self.source_keys


def current_rows(mapping: Mapping, settings: Settings) -> CurrentRowCheck:
    spec, _src, tgt = resolve(mapping, settings)
    d = dialect_of(tgt)
    keys = ", ".join(d.quote(k.name) for k in spec.keys)
    where = " WHERE CURFLG = 'Y'" if spec.scd2 else ""
    sql = (
        f"SELECT {keys} FROM {d.qualified(spec.schema, spec.table)}{where} "
        f"GROUP BY {keys} HAVING COUNT(*) > 1"
    )
    with tgt.connect() as conn:
        rows = conn.execute(sa.text(sql)).all()
    return CurrentRowCheck(len(rows), ["/".join(str(v) for v in r) for r in rows[:5]])


def reconcile(mapping: Mapping, settings: Settings, params: dict | None = None) -> Reconciliation:
    """Distinct business keys of the full source extract vs current target rows."""
    spec, src, tgt = resolve(mapping, settings)
    td = dialect_of(tgt)
    source_sql = escape_binds(spec.source_sql)[0]
    keys = ", ".join(k.logic for k in spec.keys)
    count_src = f"SELECT COUNT(*) FROM (SELECT {keys} FROM ({source_sql}) SRC GROUP BY {keys}) K"
    where = " WHERE CURFLG = 'Y'" if spec.scd2 else ""
    count_tgt = f"SELECT COUNT(*) FROM {td.qualified(spec.schema, spec.table)}{where}"
    with src.connect() as conn:
        source_keys = int(conn.execute(bound_text(count_src, params or {})).scalar() or 0)
    with tgt.connect() as conn:
        target_rows = int(conn.execute(sa.text(count_tgt)).scalar() or 0)
    return Reconciliation(source_keys, target_rows)


def target_rows(mapping: Mapping, settings: Settings) -> int:
    """The rows of the target table, every version of an SCD2 target's keys included (the
    current ones are the reconciliation's business)."""
    spec, _src, tgt = resolve(mapping, settings)
    table = dialect_of(tgt).qualified(spec.schema, spec.table)
    with tgt.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT COUNT(*) FROM {table}")).scalar() or 0)
