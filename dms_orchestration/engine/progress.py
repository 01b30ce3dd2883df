"""Progress of a load while it runs (the legacy Phase 4 plan's "progress tracking across
parallel workers").

A chunk reports the rows it has done at each step boundary: rows staged, each streamed
batch, rows classified, each applied slice. The reports go to the chunk's own DMS_JOBLOG
row (IP) and, summed, to the load's row, at most once per progress interval of the log
writer (2 s unless the `dms_log` resource says otherwise) per load and process, in short
transactions of their own on the metadata database: never inside the chunk's
transaction, never waiting for a lock (a report that cannot be written at once is
dropped; a later one carries its rows). Chunk threads, forked chunk processes and Dagster
steps all report the same way, so the log tables are where a load's progress comes
together: `LoadWatch` reads it back for `dms run`, as `dms status` and legacy screens do.

A chunk's log writes run `cancellable`: psycopg2's wait callback is one for the process,
set while any thread is inside, and a statement that began while it was set fails ("wait
callback not available") when the last thread leaves before the statement waits. The
watch's reads do not: they must not set it under a chunk's statements (a COPY fails while
it is set); a read that fails so is simply made again a moment later.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa

from dms_orchestration.db.interrupt import cancellable
from dms_orchestration.dmslog.reader import LoadState, load_state
from dms_orchestration.dmslog.writer import LoadCounts, log_writer
from dms_orchestration.engine.workers import TICK_S
from dms_orchestration.settings import dms_now
from dms_orchestration.vocabulary import Status

if TYPE_CHECKING:
    from dms_orchestration.engine.plan import LoadPlan

log = logging.getLogger(__name__)

WATCH_INTERVAL_S = 1.0  # `dms run` reads its load's progress back this often


@dataclass(frozen=True)
class ChunkProgress:
    """What a running chunk has done so far."""

    mapref: str
    prcid: int
    index: int
    chunk_count: int
    step: str  # started | staged | streamed | classified | applied | done
    counts: LoadCounts
    seconds: float

    @property
    def rows_per_second(self) -> float:
        return self.counts.srcrows / self.seconds if self.seconds > 0 else 0.0

    def describe(self) -> str:
        c = self.counts
        written = c.insrows + c.updrows + c.exprows + c.delrows
        return (
            f"{self.mapref} chunk {self.index + 1}/{self.chunk_count}: {self.step}, "
            f"{c.srcrows:,} source rows, {written:,} rows written, "
            f"{self.rows_per_second:,.0f} rows/s, {self.seconds:.1f} s"
        )


ChunkProgressHook = Callable[[ChunkProgress], None]


class _LoadReports:
    """Reports of one load's chunks in this process, not yet written."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.last_write = time.monotonic()
        self.pending: dict[int, LoadCounts] = {}  # JOBLOGID -> rows so far
        self.chunks: set[int] = set()  # JOBLOGIDs of its running chunks


_loads: dict[int, _LoadReports] = {}
_loads_lock = threading.Lock()


def _forget_after_fork() -> None:
    """A forked chunk process starts with no reports (a lock held by a thread of the
    parent stays held in the child)."""
    global _loads_lock
    _loads_lock = threading.Lock()
    _loads.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


class ChunkReporter:
    """The DMS_JOBLOG row of one running chunk, from start (IP) to end, and its reports."""

    def __init__(
        self,
        meta: sa.Engine,
        plan: LoadPlan,  # (engine.plan imports this module's users)
        index: int,
        start: datetime,
        hook: ChunkProgressHook | None = None,
    ) -> None:
        self.meta, self.plan, self.index, self.start, self.hook = meta, plan, index, start, hook
        self.writer = log_writer(meta)
        self.interval = self.writer.progress_interval_s
        self.counts = LoadCounts()
        self.joblogid: int | None = None
        self._began = time.perf_counter()
        self._hook_due = time.monotonic() + self.interval
        with _loads_lock:
            self._load = _loads.setdefault(plan.prcid, _LoadReports())

    def open(self) -> None:
        """The chunk's IP row, as it starts."""
        p = self.plan
        with cancellable(self.meta):
            self.joblogid = self.writer.write_joblog(
                prcid=p.prcid,
                mapref=p.mapref,
                jobid=p.jobid,
                chunkno=self.index,
                chunkcnt=p.chunk_count,
                counts=LoadCounts(),
                status=Status.IP,
                start=self.start,
            )
        with self._load.lock:
            self._load.chunks.add(self.joblogid)
        self._tell("started")

    def report(self, step: str, **counts: int) -> None:
        """Rows done so far (each count replaces the one of the same name reported
        before); written with the load's other reports once they are due."""
        self.counts = dataclasses.replace(self.counts, **counts)
        if self.joblogid is None:
            return
        now, due = time.monotonic(), None
        with self._load.lock:
            self._load.pending[self.joblogid] = self.counts
            if now - self._load.last_write >= self.interval:
                self._load.last_write = now
                due, self._load.pending = self._load.pending, {}
        if due:
            self._write(due)
        if self.hook is not None and now >= self._hook_due:
            self._hook_due = now + self.interval
            self._tell(step)

    def _write(self, due: dict[int, LoadCounts]) -> None:
        try:
            with cancellable(self.meta):
                self.writer.report_progress(self.plan.prcid, due)
        except sa.exc.SQLAlchemyError as exc:  # busy, or the server away: the next one
            log.debug("progress of load %s not written now: %s", self.plan.prcid, exc)

    def finish(self, counts: LoadCounts) -> None:
        """The chunk committed: its row PC with its counts."""
        self.counts = counts
        assert self.joblogid is not None  # open() wrote the row before the chunk ran
        with cancellable(self.meta):
            self.writer.finish_chunk_row(
                self.joblogid, self.plan.prcid, counts=counts, status=Status.PC
            )
        self._tell("done")

    def forget(self) -> None:
        """The chunk is over (done, failed or stopped): no more reports of it."""
        with self._load.lock:
            if self.joblogid is not None:  # (None: open() wrote no row, nothing reported)
                self._load.pending.pop(self.joblogid, None)
                self._load.chunks.discard(self.joblogid)
            idle = not self._load.chunks
        if idle:
            with _loads_lock:
                if _loads.get(self.plan.prcid) is self._load and not self._load.chunks:
                    del _loads[self.plan.prcid]

    def _tell(self, step: str) -> None:
        if self.hook is None:
            return
        p, seconds = self.plan, time.perf_counter() - self._began
        self.hook(
            ChunkProgress(p.mapref, p.prcid, self.index, p.chunk_count, step, self.counts, seconds)
        )


class LoadWatch:
    """A running load's progress as the log tables tell it, for `on_progress`: read back
    at most every WATCH_INTERVAL_S (a tick in between passes the last reading on, with
    the time moved on)."""

    def __init__(
        self, meta: sa.Engine, prcid: int, on_progress: Callable[[LoadState], None]
    ) -> None:
        self.meta, self.prcid, self.on_progress = meta, prcid, on_progress
        self.state: LoadState | None = None
        self._next_read = 0.0

    def tick(self) -> None:
        now = time.monotonic()
        if now >= self._next_read:
            self._next_read = now + WATCH_INTERVAL_S
            try:  # (not `cancellable`: the chunks' statements run beside it, see above)
                self.state = load_state(self.meta, self.prcid) or self.state
            except sa.exc.SQLAlchemyError as exc:  # shown again at the next reading
                log.debug("progress of load %s not read now: %s", self.prcid, exc)
        if self.state is not None:
            self.on_progress(dataclasses.replace(self.state, as_of=dms_now()))


@contextlib.contextmanager
def ticking(tick: Callable[[], None] | None) -> Iterator[None]:
    """tick() every TICK_S on a thread of its own while chunks run in this thread. (Not
    while one forks chunk processes: a fork copies the locks a thread holds; nor while one
    streams into PostgreSQL: COPY fails while another thread has the wait callback set.)"""
    if tick is None:
        yield
        return
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(TICK_S):
            try:
                tick()
            except Exception:  # a display that fails must not stop the load
                log.warning("progress display failed", exc_info=True)
                return

    thread = threading.Thread(target=run, name="dms-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
