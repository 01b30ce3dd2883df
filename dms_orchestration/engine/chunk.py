"""run_chunk(): one chunk of a load, set-based, in the target database.

Stage (INSERT ... SELECT, or a stream from the source), keep the keys that need a write
(work table A) and count the rest, check the keys, reserve surrogate keys, then apply in
ONE transaction: a chunk is applied whole or not at all, and re-running it is safe.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel

from dms_orchestration.db.connect import metadata_engine, write_turn
from dms_orchestration.db.dialects import Dialect, dialect_of
from dms_orchestration.db.interrupt import cancellable, stoppable, stopped
from dms_orchestration.db.sqltext import bound_text
from dms_orchestration.dmslog.writer import LoadCounts
from dms_orchestration.engine import sqlgen
from dms_orchestration.engine.checks import TableRows
from dms_orchestration.engine.errors import (
    DataError,
    describe,
    duplicate_key_error,
    null_key_error,
    record_chunk_end,
)
from dms_orchestration.engine.plan import LoadPlan, resolve
from dms_orchestration.engine.progress import ChunkProgressHook, ChunkReporter
from dms_orchestration.engine.spec import LoadSpec
from dms_orchestration.engine.strategy import Apply, Staging
from dms_orchestration.engine.target import unique_rule
from dms_orchestration.ids.provider import provider_for
from dms_orchestration.settings import Settings, dms_now, load_settings
from dms_orchestration.vocabulary import DeleteHandling


class ChunkResult(BaseModel):
    index: int
    counts: LoadCounts
    seconds: float
    # the target's rows in the chunk's key range after it, where the chunk counted them
    # on its way (a first load, an SCD1 target's full extract; engine.chunk._delta_load)
    target_rows: TableRows | None = None
    # the rows (and current rows) the chunk added to the target, less those it removed
    row_change: TableRows


def counts_target_rows(plan: LoadPlan, spec: LoadSpec) -> bool:
    """Whether the chunks of a load count the target's rows on their way: a first load
    (into an empty target) and an SCD1 target's full extract; see _delta_load."""
    return plan.strategy.apply is Apply.INSERT_ALL or (plan.strategy.full_extract and not spec.scd2)


@contextlib.contextmanager
def _load_transaction(
    conn: sa.Connection, tgt: sa.Engine, snapshot: bool = False, parallel: bool = False
) -> Iterator[None]:
    """A transaction of the chunk, cancellable on PostgreSQL; `snapshot`: its statements
    all read the same snapshot of the source and target; `parallel`: it reads a single
    chunk's parts side by side. (Otherwise the server's own settings plan the load: a
    bigger work_mem, tried, led its planner to slower hash joins.)"""
    d = dialect_of(tgt)
    with cancellable(tgt), conn.begin():
        for stmt in d.snapshot_session() if snapshot else []:
            conn.exec_driver_sql(stmt)
        for stmt in (d.parallel_read_session() or []) if parallel else []:
            conn.exec_driver_sql(stmt)
        yield


def _execute(
    conn: sa.Connection, sql: str, values: dict[str, Any]
) -> sa.CursorResult[*tuple[Any, ...]]:
    return conn.execute(bound_text(sql, values))


def _stream_into(
    src: sa.Engine,
    conn: sa.Connection,
    td: Dialect,
    spec: LoadSpec,
    transform: str,
    staging: str,
    values: dict[str, Any],
    progress: ChunkReporter,
) -> None:
    """Rows from a server-side cursor on the source, BLKPRCROWS at a time, into the
    staging table: memory holds one batch, whatever the table size."""
    columns = sqlgen.staging_columns(td, spec)
    streamed = 0
    with src.connect() as sconn:
        result = _execute(
            sconn.execution_options(stream_results=True, max_row_buffer=spec.batch_rows),
            transform,
            values,
        )
        for batch in result.partitions(spec.batch_rows):
            td.bulk_insert(conn, staging, columns, batch)
            streamed += len(batch)
            progress.report("streamed", srcrows=streamed)


def _check_null_keys(
    conn: sa.Connection, td: Dialect, spec: LoadSpec, rows: str, values: dict[str, Any]
) -> None:
    """NULL business keys fail the load with a DATA error (`rows`: work table or staged)."""
    nulls = _execute(conn, sqlgen.null_keys(td, spec, rows), values).scalar()
    if nulls:
        raise null_key_error(spec, nulls, [k.name for k in spec.keys])


def _name_duplicates(
    conn: sa.Connection, td: Dialect, spec: LoadSpec, staged: str, values: dict[str, Any]
) -> None:
    """Raise the DATA error naming some duplicate business keys of the staged rows."""
    dups = _execute(conn, sqlgen.duplicate_staged_keys(td, spec, staged), values).all()
    if dups:
        raise duplicate_key_error(spec, dups)


# a value its column cannot hold: PostgreSQL string_data_right_truncation and
# numeric_value_out_of_range; Oracle "value too large for column" and "value larger than
# specified precision"
_UNFIT_SQLSTATES = ("22001", "22003")
_UNFIT_ORACLE = re.compile(r"\bORA-(12899|01438)\b")


def _is_unfit_value(exc: Exception) -> bool:
    """(A driver's own error too: COPY runs on the raw cursor, outside SQLAlchemy.)"""
    orig = getattr(exc, "orig", None) or exc
    code = getattr(orig, "pgcode", None)
    return code in _UNFIT_SQLSTATES or bool(_UNFIT_ORACLE.search(str(orig)))


def _unfit_rows(
    src: sa.Engine, td: Dialect, spec: LoadSpec, transform: str, values: dict[str, Any]
) -> Sequence[Sequence[Any]]:
    """Some rows of the chunk's transform with a value the target cannot hold (their key,
    then the column); none when the query cannot tell (the database's error stands)."""
    sql = sqlgen.unfit_values(dialect_of(src), td, spec, transform)
    if sql is None:
        return []
    try:
        with src.connect() as sconn:
            return _execute(sconn, sql, values).all()
    except sa.exc.DBAPIError:
        return []


def _unfit_value_error(spec: LoadSpec, rows: Sequence[Sequence[Any]], exc: Exception) -> DataError:
    keys = ["/".join(str(v) for v in row[:-1]) for row in rows]
    by_column: dict[str, list[str]] = {}
    for key, row in zip(keys, rows, strict=True):
        by_column.setdefault(row[-1], []).append(key)
    types = {c.name: c.dtype for c in spec.all_columns}
    key_names = ", ".join(k.name for k in spec.keys)
    faults = "; ".join(
        f"{name} ({types[name]}): {key_names} = {', '.join(found)}"
        for name, found in by_column.items()
    )
    return DataError(
        f"mapping {spec.mapref}: values the target cannot hold ({faults}"
        f"{' ...' if len(rows) == 5 else ''}); fix the source, or widen the column in the "
        f"mapping ({describe(exc)})",
        keys,
    )


@contextlib.contextmanager
def _naming_unfit_values(
    src: sa.Engine, td: Dialect, spec: LoadSpec, transform: str, values: dict[str, Any]
) -> Iterator[None]:
    """A value the target refuses (too long, numeric overflow) fails the chunk as a DATA
    error naming the column and some keys at fault, like a duplicate key. (SQLite stores
    such values whole: nothing is cut, nothing refused.)"""
    try:
        yield
    except Exception as exc:
        rows = _unfit_rows(src, td, spec, transform, values) if _is_unfit_value(exc) else []
        if not rows:
            raise
        raise _unfit_value_error(spec, rows, exc) from exc


def _drop(tgt: sa.Engine, names: list[str]) -> None:
    for name in names:
        try:
            with tgt.begin() as conn:
                conn.exec_driver_sql(sqlgen.drop_table(name))
        except sa.exc.DBAPIError:
            pass  # never created; a leftover is dropped by the mapping's next load


def _skey(
    plan: LoadPlan,
    meta: sa.Engine,
    td: Dialect,
    spec: LoadSpec,
    new_rows: int,
    values: dict[str, Any],
) -> str:
    """The SQL of a new SKEY: the target's sequence, or a DMS_IDPOOL range reserved now."""
    if plan.skey_mode == "SEQUENCE":
        return td.next_sequence_value(td.qualified(spec.schema, f"{spec.table}_SEQ"))
    if new_rows:
        with cancellable(meta):  # (engine.progress: beside other chunks' transactions)
            reserved = provider_for(meta).reserve_range(spec.table, new_rows)
        values["dms_skey0"] = reserved.start - 1
    return sqlgen.pool_skey(td, spec)


def _initial_load(
    conn: sa.Connection,
    tgt: sa.Engine,
    meta: sa.Engine,
    plan: LoadPlan,
    spec: LoadSpec,
    staged: str,
    values: dict[str, Any],
) -> LoadCounts:
    """Into an empty target every row is new: insert straight from the staged rows."""
    td = dialect_of(tgt)
    new_rows = 0
    if plan.skey_mode != "SEQUENCE":
        with conn.begin():  # ended before the reservation (on SQLite it holds the lock)
            counts = _execute(conn, sqlgen.staged_counts(staged), values).first()
            assert counts is not None  # (aggregates: one row)
            new_rows = int(counts[0] or 0)
    skey = _skey(plan, meta, td, spec, new_rows, values)
    try:
        with _load_transaction(conn, tgt):
            inserted = _execute(
                conn, sqlgen.initial_insert(td, spec, staged, skey), values
            ).rowcount
            for stmt in unique_rule(td, spec) if plan.builds_unique_rule_in_chunk else []:
                conn.exec_driver_sql(stmt)  # fails on a duplicate key: nothing is kept
    except sa.exc.IntegrityError as exc:  # duplicate or NULL business keys: name them
        with conn.begin():
            _check_null_keys(conn, td, spec, staged, values)
            _name_duplicates(conn, td, spec, staged, values)
        raise DataError(f"mapping {spec.mapref}: {describe(exc)}") from exc
    return LoadCounts(srcrows=inserted, insrows=inserted)


def _apply(
    conn: sa.Connection,
    td: Dialect,
    spec: LoadSpec,
    work: str,
    skey: str,
    values: dict[str, Any],
    rows: int,
    progress: ChunkReporter,
) -> Counter[str]:
    """Run the apply statements over the work table, slice after slice (the DELETE in
    the first only: it is not sliced); rows written by each. Reserved surrogate keys
    (:dms_skey0 + row number) go on from slice to slice."""
    statements = sqlgen.apply_statements(td, spec, work, skey)
    done: Counter[str] = Counter()
    for i, part in enumerate(td.work_slices(conn, work, rows)):
        binds = {**values, **part}
        if values.get("dms_skey0") is not None:
            binds["dms_skey0"] = values["dms_skey0"] + done["insert"]
        for name, stmt in statements:
            if name != "delete" or i == 0:
                done[name] += _execute(conn, stmt, binds).rowcount
        progress.report(
            "applied",
            insrows=done["insert"],
            updrows=done["update"],
            exprows=done["expire"],
            delrows=done["delete"],
        )
    return done


def _check_applied(spec: LoadSpec, done: Counter[str], acts: dict[str, int]) -> None:
    """Every statement wrote exactly the rows the work table holds for it; else the
    target changed under the load (or a slice was missed): fail, nothing is kept."""
    for name, expected in sqlgen.applied_rows(spec, acts).items():
        if done[name] != expected:
            raise RuntimeError(
                f"mapping {spec.mapref}: the {name} step wrote {done[name]} rows of table "
                f"{spec.table}, the work table holds {expected}; the chunk was rolled back"
            )


def _delta_load(
    conn: sa.Connection,
    tgt: sa.Engine,
    meta: sa.Engine,
    plan: LoadPlan,
    spec: LoadSpec,
    staged: str,
    work: str,
    bounds: sqlgen.ChunkBounds,
    values: dict[str, Any],
    sources: list[tuple[str, sqlgen.ChunkBounds]],
    progress: ChunkReporter,
) -> tuple[LoadCounts, TableRows, TableRows | None]:
    """Classify the keys that need a write (work table A) from `sources` (the staged
    rows, or a single chunk's parts), check the keys, apply A. With the counts, the rows
    the chunk added (current ones too) less those it removed, and the target's rows in
    the chunk's key range after it where they come free: an SCD1 target's full extract
    meets every row of the range (`met`), so its rows after are those plus its inserts
    less its deletes, and the first of several chunks adds the rows no range holds (a
    NULL first key, which no chunk writes). An SCD2 target's closed versions are not
    met on the way: the load counts its rows before the chunks write (engine.load)."""
    td = dialect_of(tgt)
    full = plan.strategy.full_extract
    # a full extract under the source's own unique key: one row per key, so its rows are
    # the current rows met, less the absent, plus the new; no second read of the source
    unique = full and plan.strategy.unique_source_key
    counts_rows = counts_target_rows(plan, spec)
    keyless = 0
    with _load_transaction(conn, tgt, snapshot=True, parallel=len(sources) > 1):
        _execute(conn, sqlgen.classify(td, spec, sources, work, full), values)
        if not unique:
            counted = staged if full else work  # (a window's work table keeps every row)
            counts = _execute(conn, sqlgen.staged_counts(counted), values).first()
            assert counts is not None  # (aggregates: one row)
            staged_rows, source_rows = counts
        met_count = _execute(conn, sqlgen.met_rows(td, spec, work, bounds, full), values).scalar()
        assert met_count is not None  # (a count)
        met = int(met_count)
        if counts_rows and bounds.upper and not bounds.lower:  # the first of several
            keyless = int(_execute(conn, sqlgen.rows_without_key(td, spec), {}).scalar() or 0)
    with _load_transaction(conn, tgt):
        _check_null_keys(conn, td, spec, work, {})
        acts = {r[0]: int(r[1]) for r in conn.execute(sa.text(sqlgen.action_counts(work)))}
        if unique:
            staged_rows = source_rows = met - acts.get("D", 0) + acts.get("I", 0)
            duplicates: bool | sa.Row[*tuple[Any, ...]] | None = False
        else:
            # every staged row that is not new meets one current row, none is met twice
            meeting = int(staged_rows or 0) - acts.get("I", 0)
            duplicates = (
                meeting > met - acts.get("D", 0)
                or _execute(conn, sqlgen.duplicate_new_keys(td, spec, work), {}).first()
            )
    if duplicates:
        with _load_transaction(conn, tgt, snapshot=True):
            _name_duplicates(conn, td, spec, staged, values)
        raise DataError(f"mapping {spec.mapref}: duplicate business keys in the source extract")
    inserts = acts.get("I", 0) + acts.get("V", 0)
    unchanged = int(staged_rows or 0) - inserts - acts.get("U", 0)
    progress.report("classified", srcrows=int(source_rows or 0), unchrows=unchanged)
    skey = _skey(plan, meta, td, spec, inserts, values)
    with _load_transaction(conn, tgt):
        done = _apply(conn, td, spec, work, skey, values, sum(acts.values()), progress)
        _check_applied(spec, done, acts)
    deleted = done.get("delete", 0)
    expired_absent = (
        acts.get("D", 0) if spec.scd2 and spec.delete_handling == DeleteHandling.EXPIRE else 0
    )
    loaded = LoadCounts(
        srcrows=int(source_rows or 0),
        insrows=inserts,
        updrows=acts.get("U", 0),
        exprows=acts.get("V", 0) + expired_absent,
        delrows=deleted,
        unchrows=unchanged,
    )
    # absent keys ('D', one current row each) lose it when deleted or expired
    deleted_absent = acts.get("D", 0) if spec.delete_handling == DeleteHandling.DELETE else 0
    change = TableRows(
        done["insert"] - done["delete"], acts.get("I", 0) - deleted_absent - expired_absent
    )
    if not counts_rows:
        return loaded, change, None
    after = met + keyless + change.rows
    return loaded, change, TableRows(after, after)


def run_chunk(
    plan: LoadPlan,
    index: int,
    settings: Settings | None = None,
    on_progress: ChunkProgressHook | None = None,
) -> ChunkResult:
    """Chunk `index` of a plan, once it is the chunk's turn to write its target (a SQLite
    file takes one writer at a time). Its DMS_JOBLOG row is IP from its start, with the
    rows done so far (engine.progress); `on_progress` hears of them too, as often."""
    settings = settings or load_settings()
    with write_turn(resolve(plan.mapping, settings)[2]):
        return _run_chunk(plan, index, settings, on_progress)


def _run_chunk(
    plan: LoadPlan, index: int, settings: Settings, on_progress: ChunkProgressHook | None
) -> ChunkResult:
    meta = metadata_engine(settings)
    start = dms_now()
    spec, src, tgt = resolve(plan.mapping, settings)
    sd, td = dialect_of(src), dialect_of(tgt)
    bounds = sqlgen.ChunkBounds.of(index, plan.chunk_count)
    values = plan.binds(index)
    transform = sqlgen.transform_query(spec, sd, bounds, plan.windowed)
    work = sqlgen.work_table(td, spec, "a", plan.prcid, index)
    staging = sqlgen.work_table(td, spec, "s", plan.prcid, index)
    made: list[str] = []
    began = time.perf_counter()
    progress = ChunkReporter(meta, plan, index, start, on_progress)
    try:
        progress.open()
        if stopped(plan.prcid):  # stopped while it waited for its turn
            raise KeyboardInterrupt(f"load {plan.prcid} was stopped")
        _drop(tgt, [work, staging])  # a failed earlier try of this same chunk
        with (
            _naming_unfit_values(src, td, spec, transform, values),
            tgt.connect() as conn,
            stoppable(conn, plan.prcid),
        ):
            conn = conn.execution_options(dms_write_lock=True)
            read = plan.strategy.staging
            if read is Staging.IN_PLACE:
                staged = f"({transform})"
            else:
                with conn.begin():
                    conn.exec_driver_sql(sqlgen.create_staging(td, spec, staging))
                    made.append(staging)
                    if read is Staging.STAGED:
                        stage = sqlgen.stage(td, spec, staging, transform)
                        staged_rows = _execute(conn, stage, values).rowcount
                    else:
                        _stream_into(src, conn, td, spec, transform, staging, values, progress)
                if read is Staging.STAGED:
                    progress.report("staged", srcrows=staged_rows)
                staged = staging
            if plan.strategy.apply is Apply.INSERT_ALL:  # into an empty target
                counts = _initial_load(conn, tgt, meta, plan, spec, staged, values)
                change = TableRows(counts.insrows, counts.insrows)
                rows: TableRows | None = change
            else:
                made.append(work)
                sources = [(staged, bounds)]
                if plan.parts:  # (one chunk, its source in this database)
                    sources = [
                        (f"({sqlgen.transform_query(spec, sd, part, plan.windowed)})", part)
                        for part in sqlgen.ChunkBounds.parts(len(plan.parts) + 1)
                    ]
                counts, change, rows = _delta_load(
                    conn, tgt, meta, plan, spec, staged, work, bounds, values, sources, progress
                )
        _drop(tgt, made)
        progress.finish(counts)
        return ChunkResult(
            index=index,
            counts=counts,
            seconds=time.perf_counter() - began,
            target_rows=rows,
            row_change=change,
        )
    except BaseException as exc:
        _drop(tgt, made)
        with cancellable(meta):
            record_chunk_end(
                meta,
                prcid=plan.prcid,
                mapref=plan.mapref,
                jobid=plan.jobid,
                chunk=index,
                chunks=plan.chunk_count,
                exc=exc,
                start=start,
                stopped=stopped(plan.prcid),
                joblogid=progress.joblogid,
            )
        raise
    finally:
        progress.forget()
