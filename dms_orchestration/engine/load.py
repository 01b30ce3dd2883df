"""commit() and load(): the end of a load, and plan -> chunks -> commit in one call.

commit writes the whole-load DMS_JOBLOG row with the checkpoint and closes DMS_PRCLOG
(PC). load() runs the chunks here, one after another, or in parallel processes.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from multiprocessing import get_all_start_methods, get_context

import sqlalchemy as sa

from dms_orchestration.db.connect import after_fork, dispose_all, metadata_engine
from dms_orchestration.db.dialects import dialect_of
from dms_orchestration.dmslog.writer import (
    LoadCounts,
    close_process,
    undo_chunk_rows,
    write_joblog,
)
from dms_orchestration.engine import sqlgen
from dms_orchestration.engine.chunk import ChunkResult, run_chunk
from dms_orchestration.engine.errors import (
    DataError,
    describe,
    duplicate_key_error,
    record_load_end,
)
from dms_orchestration.engine.plan import LoadPlan, plan, resolve
from dms_orchestration.engine.target import ensure_indexes
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
            conn.exec_driver_sql(f"DELETE FROM {table}")
        named = duplicate_key_error(spec, dups) if dups else DataError(describe(exc))
        error = DataError(f"{named}; the rows of this first load were removed again", named.keys)
        undo_chunk_rows(meta, plan.prcid)
        record_load_end(meta, prcid=plan.prcid, mapref=plan.mapref, jobid=plan.jobid, exc=error)
        raise error from exc


def commit(
    plan: LoadPlan, results: list[ChunkResult], settings: Settings | None = None
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
    if plan.initial:  # a first load builds the indexes once its rows are in
        _index_first_load(plan, meta, settings)
    checkpoint = plan.window.record if plan.windowed else None
    end = dms_now()
    write_joblog(
        meta,
        prcid=plan.prcid,
        mapref=plan.mapref,
        jobid=plan.jobid,
        chunkcnt=plan.chunk_count,
        counts=total,
        status="PC",
        start=plan.load_time,
        end=end,
        chkpntval=checkpoint,
    )
    close_process(
        meta,
        plan.prcid,
        "PC",
        f"{total.srcrows} source rows: {total.insrows} inserted, {total.updrows} "
        f"updated, {total.exprows} expired, {total.delrows} deleted, "
        f"{total.unchrows} unchanged",
        reopen_failed=True,  # a failed chunk re-run on its own completes the load
    )
    return LoadResult(
        plan.mapref,
        plan.prcid,
        plan.chunk_count,
        total,
        checkpoint,
        (datetime.now() - plan.started_at).total_seconds(),
        plan.estimated_rows,
    )


def _chunk_in_process(plan_json: str, index: int, settings: Settings) -> ChunkResult:
    return run_chunk(LoadPlan.model_validate_json(plan_json), index, settings)


def _process_pool(n: int) -> ProcessPoolExecutor:
    """Forked processes where the platform has fork: a child starts with the modules
    loaded (a spawned one imports them again, measured +0.6 s a chunk). No pooled
    connection may cross: the parent's pools are emptied first, the child opens its own."""
    if "fork" not in get_all_start_methods():
        return ProcessPoolExecutor(n, mp_context=get_context("spawn"))
    dispose_all()
    return ProcessPoolExecutor(n, mp_context=get_context("fork"), initializer=after_fork)


def run_chunks(
    plan: LoadPlan,
    settings: Settings,
    parallel: bool = False,
    processes: bool = False,
) -> list[ChunkResult]:
    """Every chunk of a plan: here one after another, or in parallel. When the rows stay
    in one database the work is all in the server: threads (each with its own
    connection) start at once. Streaming between databases, or `processes`, runs each
    chunk in its own process (COPY cannot share the process with a cancellable
    statement; Dagster runs chunks as processes too), forked where the platform can."""
    if not parallel or plan.chunk_count == 1:
        return [run_chunk(plan, i, settings) for i in range(plan.chunk_count)]
    if plan.same_database and not processes:
        with ThreadPoolExecutor(plan.chunk_count) as pool:
            futures = [pool.submit(run_chunk, plan, i, settings) for i in range(plan.chunk_count)]
            return [f.result() for f in futures]
    data = plan.model_dump_json()
    with _process_pool(plan.chunk_count) as pool:
        futures = [
            pool.submit(_chunk_in_process, data, i, settings) for i in range(plan.chunk_count)
        ]
        return [f.result() for f in futures]


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
    **log_ids,
) -> LoadResult:
    """plan -> every chunk -> commit. A failure leaves DMS_PRCLOG FL (the failed chunk
    logged its error), an interruption ST."""
    settings = settings or load_settings(url)
    the_plan = plan(mapping, params, chunks=chunks, full=full, settings=settings, **log_ids)
    try:
        results = run_chunks(the_plan, settings, parallel, processes)
    except BaseException as exc:
        record_load_end(
            metadata_engine(settings),
            prcid=the_plan.prcid,
            mapref=mapping.ref,
            jobid=the_plan.jobid,
            exc=exc,
            logged=True,
        )
        raise
    return commit(the_plan, results, settings)
