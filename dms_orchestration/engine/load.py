"""commit() and load(): the end of a load, and plan -> chunks -> commit in one call.

commit finishes the whole-load DMS_JOBLOG row (PC, with the checkpoint) and closes
DMS_PRCLOG (PC). load() runs the chunks here, one after another, or in parallel threads or
processes, and can pass the load's progress on as it goes (`on_progress`).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from dms_orchestration.db.connect import metadata_engine
from dms_orchestration.db.dialects import dialect_of
from dms_orchestration.dmslog.reader import LoadState
from dms_orchestration.dmslog.writer import LoadCounts, log_writer
from dms_orchestration.engine import sqlgen
from dms_orchestration.engine.checks import TableRows, target_rows_as_of
from dms_orchestration.engine.chunk import ChunkResult, counts_target_rows, run_chunk
from dms_orchestration.engine.errors import (
    DataError,
    describe,
    duplicate_key_error,
    record_load_end,
)
from dms_orchestration.engine.plan import LoadPlan, plan, resolve
from dms_orchestration.engine.progress import LoadWatch, ticking
from dms_orchestration.engine.strategy import Staging
from dms_orchestration.engine.target import ensure_indexes
from dms_orchestration.engine.workers import run_in_processes, run_in_threads
from dms_orchestration.metadata.models import Mapping
from dms_orchestration.settings import Settings, dms_now, load_settings


class IncompleteLoad(RuntimeError):
    pass


@dataclass(frozen=True)
class LoadResult:
    mapref: str
    prcid: int
    chunk_count: int
    counts: LoadCounts
    checkpoint: str | None
    seconds: float
    estimated_rows: int
    note: str | None = None  # e.g. a partial extract: absent keys were left alone
    # it read the whole source extract (no window, no parameters): its source rows are
    # the extract's business keys, each once (a duplicate or NULL key fails the load)
    full_extract: bool = False
    # the target's rows after the load where its chunks counted them on their way (a
    # first load, an SCD1 target's full extract), or where the load counted them before
    # its chunks wrote (count_rows), so nobody has to count them again
    target_rows: TableRows | None = None


def _target_rows(results: list[ChunkResult], before: TableRows | None) -> TableRows | None:
    """The whole target's rows after the load: those its chunks counted (their key
    ranges cover every key), else those `before` it and what its chunks changed."""
    if not results:
        return None
    counted = [r.target_rows for r in results if r.target_rows is not None]
    if len(counted) == len(results):
        return TableRows(sum(r.rows for r in counted), sum(r.current for r in counted))
    if before is None:
        return None
    changes = [r.row_change for r in results]
    return TableRows(
        before.rows + sum(c.rows for c in changes), before.current + sum(c.current for c in changes)
    )


@contextlib.contextmanager
def _counting_before(
    plan: LoadPlan, settings: Settings, beside: bool
) -> Iterator[Callable[[], TableRows | None]]:
    """The target's rows before the chunks write: a read snapshot of the target is taken
    before this yields (the load lock keeps other loads of the mapping out), counted by a
    thread of its own while the chunks run (`beside`), else before this yields (chunk
    processes are forked: none may take a copy of the count's connection). Yields what
    waits for the count (None if it failed); a failure of the chunks cancels it."""
    taken, cancel = threading.Event(), []

    def on_taken(stop: Callable[[], None]) -> None:
        cancel.append(stop)
        taken.set()

    def result() -> TableRows | None:
        try:
            return counting.result()
        except Exception:  # a report only: the target is counted after the load instead
            return None

    with ThreadPoolExecutor(1, thread_name_prefix=f"dms-count-{plan.prcid}") as pool:
        counting = pool.submit(target_rows_as_of, plan.mapping, settings, on_taken)
        counting.add_done_callback(lambda _: taken.set())  # (a count that failed first)
        taken.wait()  # the snapshot is taken
        if not beside:
            wait_for([counting])
        try:
            yield result
        except BaseException:
            for stop in cancel:
                stop()
            raise


def _index_first_load(plan: LoadPlan, meta: sa.Engine, settings: Settings) -> None:
    spec, _src, tgt = resolve(plan.mapping, settings)
    try:
        ensure_indexes(tgt, spec)
    except sa.exc.IntegrityError as exc:
        # a duplicate business key (the plan of a first load does not look for them):
        # name some, and take the first load back out (the target was empty, under the
        # load lock)
        d = dialect_of(tgt)
        table = d.qualified(spec.schema, spec.table)
        with tgt.begin() as conn:
            dups = conn.execute(sa.text(sqlgen.duplicate_staged_keys(d, spec, table))).all()
            conn.exec_driver_sql(sqlgen.delete_all(table))
        named = duplicate_key_error(spec, dups) if dups else DataError(describe(exc))
        error = DataError(f"{named}; the rows of this first load were removed again", named.keys)
        log_writer(meta).undo_chunk_rows(plan.prcid)
        record_load_end(meta, prcid=plan.prcid, mapref=plan.mapref, jobid=plan.jobid, exc=error)
        raise error from exc


def commit(
    plan: LoadPlan,
    results: list[ChunkResult],
    settings: Settings | None = None,
    rows_before: TableRows | None = None,
) -> LoadResult:
    settings = settings or load_settings()
    meta = metadata_engine(settings)
    missing = sorted(set(range(plan.chunk_count)) - {r.index for r in results})
    if missing:
        exc = IncompleteLoad(
            f"mapping {plan.mapref}: chunk(s) {missing} of {plan.chunk_count} did not finish"
        )
        record_load_end(meta, prcid=plan.prcid, mapref=plan.mapref, jobid=plan.jobid, exc=exc)
        raise exc
    total = LoadCounts()
    for r in results:
        total = total + r.counts
    if plan.strategy.initial:  # a first load builds the indexes once its rows are in
        _index_first_load(plan, meta, settings)
    checkpoint = plan.window.record if plan.windowed else None
    end, writer = dms_now(), log_writer(meta)
    writer.commit_load(
        prcid=plan.prcid,
        mapref=plan.mapref,
        jobid=plan.jobid,
        chunkcnt=plan.chunk_count,
        counts=total,
        start=plan.load_time,
        end=end,
        chkpntval=checkpoint,
        message=f"{total.srcrows} source rows: {total.insrows} inserted, {total.updrows} "
        f"updated, {total.exprows} expired, {total.delrows} deleted, "
        f"{total.unchrows} unchanged" + (f"; {plan.partial_note}" if plan.partial_note else ""),
    )
    return LoadResult(
        plan.mapref,
        plan.prcid,
        plan.chunk_count,
        total,
        checkpoint,
        (datetime.now() - plan.started_at).total_seconds(),
        plan.estimated_rows,
        plan.partial_note,
        plan.strategy.full_extract,
        _target_rows(results, rows_before),
    )


def _chunk_in_process(plan_json: str, settings: Settings, index: int) -> ChunkResult:
    return run_chunk(LoadPlan.model_validate_json(plan_json), index, settings)


def run_chunks(
    plan: LoadPlan,
    settings: Settings,
    parallel: bool = False,
    processes: bool = False,
    tick: Callable[[], None] | None = None,
) -> list[ChunkResult]:
    """Every chunk of a plan: here one after another, or side by side, at most
    MAX_PARALLEL_CHUNKS at once. When the rows stay in one database the work is all in
    the server: threads (each with its own connection) start at once. Streaming between
    databases, or `processes`, runs each chunk in its own process (COPY cannot share the
    process with a cancellable statement; Dagster runs chunks as processes too), which
    dies with this one (engine.workers). `tick()` is called every moment meanwhile: by
    the waiting thread, or by a thread of its own while the chunks run in this one."""
    if not parallel or plan.chunk_count == 1:
        if plan.strategy.staging is not Staging.STREAMED or tick is None:
            with ticking(tick):
                return [run_chunk(plan, i, settings) for i in range(plan.chunk_count)]
        # a chunk that streams may COPY, which no other thread may disturb (ticking):
        # its own reports tick, every batch or so
        hook = lambda _progress: tick()  # noqa: E731
        return [run_chunk(plan, i, settings, hook) for i in range(plan.chunk_count)]
    n, limit = plan.chunk_count, plan.parallel_limit
    if plan.strategy.staging is not Staging.STREAMED and not processes:
        chunk = lambda i: run_chunk(plan, i, settings)  # noqa: E731
        return run_in_threads(chunk, n, limit, plan.prcid, tick)
    data = (plan.model_dump_json(), settings)
    return run_in_processes(_chunk_in_process, data, n, limit, tick)


def load(
    mapping: Mapping,
    params: dict[str, str | None] | None = None,
    *,
    chunks: int | None = None,
    full: bool = False,
    parallel: bool = False,
    processes: bool = False,
    settings: Settings | None = None,
    url: str | None = None,
    on_progress: Callable[[LoadState], None] | None = None,
    count_rows: bool = False,
    **log_ids: Any,
) -> LoadResult:
    """plan -> every chunk -> commit. A failure leaves DMS_PRCLOG FL (the failed chunk
    logged its error), an interruption ST. `on_progress` gets the load's progress as the
    log tables tell it: once planned, then about every second while the chunks run.
    `count_rows`: the result tells the target's rows after the load (run_and_commit)."""
    settings = settings or load_settings(url)
    the_plan = plan(mapping, params, chunks=chunks, full=full, settings=settings, **log_ids)
    tick = None
    if on_progress is not None:
        tick = LoadWatch(metadata_engine(settings), the_plan.prcid, on_progress).tick

    def run() -> list[ChunkResult]:
        if tick is not None:
            tick()
        return run_chunks(the_plan, settings, parallel, processes, tick)

    return run_and_commit(the_plan, settings, run, count_rows, processes)


def run_and_commit(
    the_plan: LoadPlan,
    settings: Settings,
    run: Callable[[], list[ChunkResult]],
    count_rows: bool = False,
    forks: bool = False,
) -> LoadResult:
    """The chunks of a plan (`run()`), then the commit; a failure or a stop of the
    chunks closes the load FL / ST (each chunk logged its own). `count_rows`: the
    result's target_rows tells the target's rows after the load (None if they could not
    be counted): counted by the chunks on their way where they can, else counted before
    the chunks write (beside them, unless `run()` forks chunk processes: `forks`, or
    rows that stream) plus what they changed."""
    # (the spec only when asked: `dms run` does not ask for the rows)
    counting = count_rows and not counts_target_rows(
        the_plan, resolve(the_plan.mapping, settings)[0]
    )
    beside = not forks and the_plan.strategy.staging is not Staging.STREAMED
    try:
        not_counting = contextlib.nullcontext(lambda: None)
        with _counting_before(the_plan, settings, beside) if counting else not_counting as before:
            results = run()
            rows_before = before()
    except BaseException as exc:
        record_load_end(
            metadata_engine(settings),
            prcid=the_plan.prcid,
            mapref=the_plan.mapref,
            jobid=the_plan.jobid,
            exc=exc,
            logged=True,
        )
        raise
    return commit(the_plan, results, settings, rows_before)
