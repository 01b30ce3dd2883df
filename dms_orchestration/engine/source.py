"""What a load's plan asks its source before any chunk runs: the checkpoint window, the
row estimate, whether the transform reads one table or has a unique key of its own, and
the key cuts between chunks (reads only)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from dms_orchestration.db.dialects import dialect_of
from dms_orchestration.db.sqltext import bound_text
from dms_orchestration.engine import sqlgen
from dms_orchestration.engine.checkpoint import (
    CheckpointError,
    Window,
    as_text,
    checkpoint_function,
    last_checkpoint,
)
from dms_orchestration.engine.errors import duplicate_key_error, null_key_error
from dms_orchestration.engine.spec import LoadSpec
from dms_orchestration.vocabulary import CheckpointStrategy, Family


def read_window(
    spec: LoadSpec, src: sa.Engine, meta: sa.Engine, params: dict[str, str | None], full: bool
) -> Window:
    """The checkpoint window of the next load: which source rows it reads (reads only)."""
    if spec.checkpoint_strategy == CheckpointStrategy.NONE:
        return Window(None, None, windowed=False)
    if spec.checkpoint_strategy == CheckpointStrategy.PYTHON:
        if not spec.checkpoint_column:
            raise CheckpointError(f"mapping {spec.mapref}: PYTHON checkpoints need CHKPNTCLNM")
        fn = checkpoint_function(spec.checkpoint_function or "")
        start, end = fn(None if full else last_checkpoint(meta, spec.mapref), dict(params))
        return Window(as_text(start), as_text(end), windowed=True, bounded=True)
    start = None if full else last_checkpoint(meta, spec.mapref)
    d = dialect_of(src)
    query = bound_text(sqlgen.checkpoint_max(d, spec), {"dms_chk_from": start, **params})
    with src.connect() as conn:
        end = conn.execute(query).scalar()
    return Window(start, as_text(end) if end is not None else start, windowed=True)


def window_binds(window: Window, params: dict[str, str | None]) -> dict[str, str | None]:
    """The binds of a plan-time query over the source rows: the window and the params."""
    return {"dms_chk_from": window.start, "dms_chk_to": window.end, **params}


@dataclass(frozen=True)
class SourceRead:
    """The source rows one load reads: its source database, its mapping's spec, its
    checkpoint window and its parameters (p1..p10)."""

    engine: sa.Engine
    spec: LoadSpec
    window: Window
    params: dict[str, str | None]

    @property
    def full_extract(self) -> bool:
        """The window reads every source row and no parameter narrows it."""
        return self.window.reads_everything and not any(self.params.values())

    def _bound(self, sql: str, **extra: Any) -> sa.TextClause:
        return bound_text(sql, {**extra, **window_binds(self.window, self.params)})

    def _extract(self) -> sa.TextClause:
        return self._bound(sqlgen.extract(dialect_of(self.engine), self.spec, self.window.windowed))

    def estimate(self) -> tuple[int, str]:
        """The rows the extract holds, and how the number was got."""
        d = dialect_of(self.engine)
        with self.engine.connect() as conn:
            return d.estimate_rows(conn, self._extract()), d.capabilities.estimate_method

    def reads_one_table(self) -> bool:
        """Whether the transform query reads one table. A same-database full extract that
        reads more is staged: its chunks would otherwise run the source query twice (the
        join, then the count of its rows)."""
        with self.engine.connect() as conn:
            return dialect_of(self.engine).reads_one_table(conn, self._extract())

    def unique_key(self) -> bool:
        """Whether one source row per business key is certain: one key column, no MAPCMBCD
        or lookup, and the source's own unique NOT NULL key on it (PostgreSQL tells)."""
        spec = self.spec
        if len(spec.keys) != 1 or spec.aggregated or any(c.is_lookup for c in spec.columns):
            return False
        d = dialect_of(self.engine)
        keys = self._bound(sqlgen.source_keys(d, spec, self.window.windowed))
        with self.engine.connect() as conn:
            return d.key_is_unique(conn, keys)

    def key_cuts(self, n: int, *, count_duplicates: bool, unique_key: bool) -> list[Any]:
        """Upper key bounds of key ranges 0..n-2 (chunks, or a single chunk's parts).
        Integer keys: n even steps between the smallest and largest key (an index answers
        MIN / MAX); other keys: n tiles of the sorted keys. NULL keys fail the load (they
        would fall between chunks). With `count_duplicates` either query also finds
        duplicate keys, which must fail the load before any chunk writes (a chunk finds
        only its own); keys of several columns or from lookups need a GROUP BY over the
        whole transform. Not on a first load: its unique rule is built at commit, and a
        duplicate then takes the first load back out (so integer keys are not sorted
        here); nor for the parts of a single chunk, which finds its duplicates itself. Nor
        when the source's own unique NOT NULL key is the business key (`unique_key`): MIN
        and MAX then come from its index."""
        spec, windowed = self.spec, self.window.windowed
        d = dialect_of(self.engine)
        with self.engine.connect() as conn:
            if spec.keys[0].dtype.family == Family.INTEGER:  # (the key as the target's integer)
                checks = "none" if unique_key else "all" if count_duplicates else "nulls"
                sql = sqlgen.key_range(d, spec, windowed, checks)
                row = conn.execute(self._bound(sql, dms_n=n)).first()
                assert row is not None  # (aggregates: one row)
                lo, hi, nulls, duplicates = row
                steps = [] if lo is None else _even_steps(int(lo), int(hi), n)
            else:
                sql = sqlgen.key_tiles(d, spec, windowed)
                tiles = conn.execute(self._bound(sql, dms_n=n)).all()
                nulls = sum(int(t[2] or 0) for t in tiles)
                duplicates = any(t[3] > 1 for t in tiles)
                steps = [_json_bound(t[1]) for t in tiles[:-1] if t[1] is not None]
            if nulls:
                raise null_key_error(spec, nulls, [spec.keys[0].name])
            if duplicates and _tiles_count_duplicates(spec):
                sql = sqlgen.duplicate_source_keys(d, spec, windowed)
                raise duplicate_key_error(spec, conn.execute(self._bound(sql, dms_n=n)).all())
            if count_duplicates and _keys_repeat_beyond_tiles(spec):
                sql = sqlgen.duplicate_transform_keys(d, spec, windowed)
                dups = conn.execute(self._bound(sql, dms_n=n)).all()
                if dups:
                    raise duplicate_key_error(spec, dups)
        return steps


def _json_bound(value: object) -> Any:
    """A key boundary as JSON that binds back to the same comparison."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else str(value)
    return as_text(value)


def _even_steps(lo: int, hi: int, n: int) -> list[int]:
    return sorted({lo + (hi - lo) * i // n for i in range(1, n)} - {hi})


def _tiles_count_duplicates(spec: LoadSpec) -> bool:
    """Whether the key tiles' counts cover every duplicate a chunk could stage: one key
    column, no aggregation, no lookup that could add rows."""
    return (
        len(spec.keys) == 1 and not spec.aggregated and not any(c.is_lookup for c in spec.columns)
    )


def _keys_repeat_beyond_tiles(spec: LoadSpec) -> bool:
    """Whether duplicate keys can hide from the first key column's counts: several key
    columns (without MAPCMBCD, which groups by all of them), or a lookup that returns
    several rows for a key. The plan then looks for them over the whole transform."""
    return any(c.is_lookup for c in spec.columns) or (len(spec.keys) > 1 and not spec.aggregated)
