"""What a load would do, writing nothing: the first N rows of its transform (the target
columns after MAPLOGIC, lookups and MAPCMBCD, over the rows the next load reads), each
with what the load would do against the current target row (INSERT / UPDATE / EXPIRE /
UNCHANGED) and the columns that differ.

The rows are read from the source as a load streams them, then compared in the target
database by the load's own rules (its types, its NULL-safe comparison), as bound values:
no staging table, nothing written anywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from dms_orchestration.db.connect import metadata_engine
from dms_orchestration.db.dialects import dialect_of
from dms_orchestration.db.sqltext import bound_text
from dms_orchestration.engine import sqlgen
from dms_orchestration.engine.checkpoint import Window
from dms_orchestration.engine.plan import normalize_params, resolve
from dms_orchestration.engine.source import read_window, window_binds
from dms_orchestration.engine.spec import LoadSpec
from dms_orchestration.engine.target import table_columns
from dms_orchestration.metadata.models import Mapping
from dms_orchestration.settings import Settings, load_settings

ACTIONS = {"I": "INSERT", "U": "UPDATE", "V": "EXPIRE", "N": "UNCHANGED"}
MAX_ROWS = 1000


@dataclass(frozen=True)
class PreviewRow:
    action: str  # INSERT | UPDATE | EXPIRE (an SCD2 change: a new version) | UNCHANGED
    values: dict[str, Any]  # target column -> value, keys first, then EXCSEQ order
    changed: tuple[str, ...] = ()  # the columns that differ from the current row


@dataclass(frozen=True)
class Preview:
    mapref: str
    target: str  # the target table, qualified
    target_exists: bool
    read: str  # which source rows: "every source row", "the rows after checkpoint X"
    columns: tuple[str, ...]
    rows: tuple[PreviewRow, ...]

    def counts(self) -> dict[str, int]:
        return {a: n for a in ACTIONS.values() if (n := sum(r.action == a for r in self.rows))}

    def summary(self) -> str:
        what = ", ".join(f"{n} {a}" for a, n in self.counts().items()) or "no rows"
        table = self.target if self.target_exists else f"{self.target} (not created yet)"
        return (
            f"{self.mapref} -> {table}: {len(self.rows)} row(s) shown: {what} "
            f"(the load reads {self.read}); nothing written"
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "mapref": self.mapref,
            "target": self.target,
            "target_exists": self.target_exists,
            "read": self.read,
            "columns": list(self.columns),
            "rows": [
                {"action": r.action, "values": r.values, "changed": list(r.changed)}
                for r in self.rows
            ],
            "counts": self.counts(),
        }


def preview(
    mapping: Mapping,
    params: dict[str, str | None] | None = None,
    n: int = 20,
    *,
    full: bool = False,
    settings: Settings | None = None,
) -> Preview:
    """The first `n` rows the next load of `mapping` would write (`full`: a full
    extract's), refused as a load is (MappingInvalid) when its rows break the rules."""
    if not 1 <= n <= MAX_ROWS:
        raise ValueError(f"a preview shows 1 to {MAX_ROWS} rows, not {n}")
    settings = settings or load_settings()
    params = normalize_params(params)
    spec, src, tgt = resolve(mapping, settings)
    window = read_window(spec, src, metadata_engine(settings), params, full)
    sd, td = dialect_of(src), dialect_of(tgt)
    transform = sqlgen.transform_query(spec, sd, sqlgen.ChunkBounds.of(0, 1), window.windowed)
    first = sqlgen.first_rows(sd, spec, transform, n)
    with src.connect() as conn:
        staged = conn.execute(bound_text(first, window_binds(window, params))).all()
    names = tuple(c.name for c in spec.all_columns)
    target = td.qualified(spec.schema, spec.table)
    present = _target_columns(tgt, spec)
    if present is None or not staged:  # no table yet: every row is new
        rows = tuple(PreviewRow("INSERT", dict(zip(names, r, strict=False))) for r in staged)
    else:
        rows = _compared(tgt, spec, staged, present)
    return Preview(spec.mapref, target, present is not None, _read(window), names, rows)


def _read(window: Window) -> str:
    if window.reads_everything:
        return "every source row"
    after = f"after checkpoint {window.start}" if window.start is not None else ""
    upto = f"up to {window.end}" if window.bounded and window.end is not None else ""
    return " ".join(["the rows", *filter(None, [after, upto])])


def _target_columns(tgt: sa.Engine, spec: LoadSpec) -> set[str] | None:
    """The target table's columns (upper case); None when it does not exist yet."""
    columns = table_columns(tgt, spec.schema, spec.table)
    return None if columns is None else {name.upper() for name in columns}


def _compared(
    tgt: sa.Engine, spec: LoadSpec, staged: Sequence[Sequence[Any]], present: set[str]
) -> tuple[PreviewRow, ...]:
    d = dialect_of(tgt)
    rows = sqlgen.bound_rows(d, spec, len(staged))
    values = {f"dms_v{i}_{j}": v for i, row in enumerate(staged) for j, v in enumerate(row)}
    with tgt.connect() as conn:
        result = conn.execute(bound_text(sqlgen.preview_select(d, spec, rows, present), values))
        compared = result.all()
    width = len(spec.all_columns)
    out = []
    for row in compared:
        flags = row[width + 1 :]
        changed = tuple(c.name for c, flag in zip(spec.columns, flags, strict=True) if flag)
        values_of = dict(zip((c.name for c in spec.all_columns), row[:width], strict=True))
        out.append(PreviewRow(ACTIONS[row[width]], values_of, changed))
    return tuple(out)
