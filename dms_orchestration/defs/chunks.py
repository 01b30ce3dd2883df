"""The chunks of one load inside its Dagster step: side by side as `dms run` runs them
(threads when the rows stay in one database, forked processes when they stream), each
with its own slot in its target database's pool, its own start / end / retry lines (and
rows so far) in the run's log, and its own retries of transient errors with exponential
backoff. The load's progress (chunks done, rows, rows/s, time left) is logged as it goes.

A step per chunk would cost a process and a definitions load per chunk; here the chunks
cost what they cost in `dms run`, and stay visible one by one.
"""

from __future__ import annotations

import contextlib
import itertools
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import dagster as dg

from dms_orchestration.db import interrupt
from dms_orchestration.db.connect import metadata_engine
from dms_orchestration.defs.dagster_internals import InstanceConcurrencyContext
from dms_orchestration.display import duration, progress_text
from dms_orchestration.engine import run_chunk
from dms_orchestration.engine.chunk import ChunkResult
from dms_orchestration.engine.errors import describe, is_transient
from dms_orchestration.engine.plan import LoadPlan
from dms_orchestration.engine.progress import ChunkProgress, LoadWatch
from dms_orchestration.engine.strategy import Staging
from dms_orchestration.engine.workers import process_pool, run_in_threads
from dms_orchestration.settings import Settings

_SLOT_POLL_S = 0.25  # how often a chunk waiting for its pool asks again
_STOP_POLL_S = 0.2  # how often a backoff looks whether the load was stopped
PROGRESS_EVERY_S = 5.0  # a line of the load's progress in the run's log, this often


@dataclass(frozen=True)
class ChunkRetry:
    """RETRY_MAX retries of a chunk's transient errors, the n-th after about
    RETRY_DELAY_SECONDS * 2**n (+/- 25%)."""

    max: int
    delay: float

    def wait(self, attempt: int) -> float:
        return self.delay * (2**attempt) * random.uniform(0.75, 1.25)


class ChunkLog:
    """One line per chunk start, end, retry and failure in the run's log."""

    def __init__(self, log: dg.DagsterLogManager, plan: LoadPlan) -> None:
        self.log, self.n = log, plan.chunk_count

    def name(self, index: int) -> str:
        return f"chunk {index + 1}/{self.n}"

    def started(self, index: int, attempt: int) -> None:
        again = f" (attempt {attempt + 1})" if attempt else ""
        self.log.info(f"{self.name(index)} started{again}")

    def finished(self, index: int, result: ChunkResult) -> None:
        c = result.counts
        self.log.info(
            f"{self.name(index)} done in {result.seconds:.2f} s: {c.srcrows} source rows, "
            f"{c.insrows} inserted, {c.updrows} updated, {c.exprows} expired, "
            f"{c.delrows} deleted, {c.unchrows} unchanged"
        )

    def retrying(self, index: int, retry: int, of: int, wait: float, exc: BaseException) -> None:
        self.log.warning(
            f"{self.name(index)}: transient error, retry {retry} of {of} in {wait:.1f} s: "
            f"{describe(exc)}"
        )

    def failed(self, index: int, exc: BaseException) -> None:
        self.log.error(f"{self.name(index)} failed: {describe(exc)}")

    def progress(self, progress: ChunkProgress) -> None:
        """A running chunk's rows so far (its start and end have lines of their own)."""
        if progress.step not in ("started", "done"):
            self.log.info(progress.describe())


def progress_lines(log: dg.DagsterLogManager, plan: LoadPlan, settings: Settings):
    """A tick for the chunks' waiting thread: the load's progress as DMS_JOBLOG tells it
    (chunks done / total, rows, rows/s, time left) in the run's log, at the first tick
    and then every PROGRESS_EVERY_S."""
    due = [0.0]

    def show(state) -> None:
        now = time.monotonic()
        if now >= due[0]:
            due[0] = now + PROGRESS_EVERY_S
            log.info(f"{plan.mapref}: {progress_text(state)}, {duration(state.seconds)} elapsed")

    return LoadWatch(metadata_engine(settings), plan.prcid, show).tick


class PoolSlots:
    """Slots of one pool for the chunks of one load, as Dagster gives one to a step: the
    pools of dagster.yaml cap the chunks writing to one database, across runs. One
    claim context per load (the pools are read once), shared by its chunks' threads."""

    def __init__(self, context: dg.AssetExecutionContext, pool: str) -> None:
        self.pool, self.lock = pool, threading.Lock()
        self.claims = InstanceConcurrencyContext(context.instance, context.run)

    def __enter__(self) -> PoolSlots:
        self.claims.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        with self.lock:
            self.claims.__exit__(*exc)  # frees the claims still pending

    @contextlib.contextmanager
    def slot(self, key: str, stopped: Callable[[], bool]) -> Iterator[None]:
        while True:
            with self.lock:
                if self.claims.claim(self.pool, key):
                    break
            if stopped():
                raise KeyboardInterrupt(f"{key} was stopped while it waited for pool {self.pool}")
            time.sleep(_SLOT_POLL_S)
        try:
            yield
        finally:
            with self.lock:
                self.claims.free_step(key)


def _sleep_unless_stopped(seconds: float, stopped: Callable[[], bool]) -> None:
    end = time.monotonic() + seconds
    while not stopped() and time.monotonic() < end:
        time.sleep(min(_STOP_POLL_S, max(0.0, end - time.monotonic())))


def _with_retries(
    index: int,
    attempt: Callable[[int], ChunkResult],
    retry: ChunkRetry,
    log: ChunkLog,
    stopped: Callable[[], bool],
) -> ChunkResult:
    """Chunk `index`, again after each transient error (never once the load was stopped)."""
    for number in itertools.count():
        log.started(index, number)
        try:
            result = attempt(index)
        except Exception as exc:
            if is_transient(exc) and number < retry.max and not stopped():
                wait = retry.wait(number)
                log.retrying(index, number + 1, retry.max, wait, exc)
                _sleep_unless_stopped(wait, stopped)
                continue
            log.failed(index, exc)
            raise
        log.finished(index, result)
        return result
    raise AssertionError("unreachable")


def _chunk_in_process(plan_json: str, settings: Settings, index: int) -> ChunkResult:
    return run_chunk(LoadPlan.model_validate_json(plan_json), index, settings)


def run_visible_chunks(
    context: dg.AssetExecutionContext,
    plan: LoadPlan,
    settings: Settings,
    retry: ChunkRetry,
    pool: str,
) -> list[ChunkResult]:
    """Every chunk of the plan, at most MAX_PARALLEL_CHUNKS at once; a chunk's failure
    after its retries is raised once the others have ended (they stay applied)."""
    n, limit = plan.chunk_count, max(1, min(plan.chunk_count, plan.parallel_limit))
    log = ChunkLog(context.log, plan)

    def stopped() -> bool:
        return interrupt.stopped(plan.prcid)

    step = str(context.op_execution_context.op_handle)
    tick = progress_lines(context.log, plan, settings)

    def visible(slots: PoolSlots, run: Callable[[int], ChunkResult]) -> Callable[[int], Any]:
        def each(index: int) -> ChunkResult:
            with slots.slot(f"{step}[c{index:04d}]", stopped):
                return _with_retries(index, run, retry, log, stopped)

        return each

    with PoolSlots(context, pool) as slots:
        if plan.strategy.staging is not Staging.STREAMED:
            run = visible(slots, lambda i: run_chunk(plan, i, settings, log.progress))
            tick()
            return run_in_threads(run, n, limit, plan.prcid, tick=tick)
        # rows stream between databases: each chunk in a process (COPY cannot share one
        # with a cancellable statement), handed its work by a thread that reports and
        # retries it
        with process_pool(limit) as children:
            children.submit(int).result()  # fork the children now, from this thread
            data = plan.model_dump_json()
            tick()

            def in_child(index: int) -> ChunkResult:
                return children.submit(_chunk_in_process, data, settings, index).result()

            return run_in_threads(
                visible(slots, in_child), n, limit, plan.prcid, tick=tick, children=children
            )
