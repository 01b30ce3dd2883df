"""Writes of the legacy log tables: DMS_PRCLOG (one per process run), DMS_JOBLOG (row
counts per chunk and per load) and DMS_JOBERR (errors with traceback).

Each write is its own short transaction on its own connection, so the log of a load
survives when the load's own transaction rolls back. A load's DMS_JOBLOG rows are written
while it runs: the whole-load row (CHUNKNO NULL) when it is planned, a chunk's row when
the chunk starts, both IP with the rows done so far, then finished PC, FL or ST.
"""

from __future__ import annotations

import contextlib
import copy
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from dms_orchestration.db import session_lock
from dms_orchestration.db.connect import (
    database_key,
    unwaiting_write_transaction,
    write_transaction,
)
from dms_orchestration.db.schema import dms_joberr, dms_joblog, dms_prclog
from dms_orchestration.db.sqltext import param_number
from dms_orchestration.ids.provider import next_id
from dms_orchestration.settings import dms_now
from dms_orchestration.vocabulary import Status

PROCESS_STATUSES = (Status.IP, Status.PC, Status.FL, Status.ST)
FINAL_STATUSES = (Status.PC, Status.FL, Status.ST)
ERROR_TYPES = ("TRANSIENT", "PERMANENT", "VALIDATION", "DATA")
MESSAGE_LIMIT = 4000
COUNT_COLUMNS = ("srcrows", "insrows", "updrows", "exprows", "delrows", "unchrows", "errrows")
_CUT_MARK = " ...[truncated; full text in ERRDTL]"


class LogError(ValueError):
    pass


class LoadLocked(RuntimeError):
    """Another load of the same mapping is in progress."""


@dataclass(frozen=True)
class LoadCounts:
    srcrows: int = 0
    insrows: int = 0
    updrows: int = 0
    exprows: int = 0
    delrows: int = 0
    unchrows: int = 0
    errrows: int = 0

    def __add__(self, other: LoadCounts) -> LoadCounts:
        a, b = asdict(self), asdict(other)
        return LoadCounts(**{k: a[k] + b[k] for k in a})


def _require(value: str, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise LogError(f"{what} {value!r} is not one of {', '.join(allowed)}")


def fit_message(text: str | None, limit: int = MESSAGE_LIMIT) -> str | None:
    """A message cut to its VARCHAR2(4000) column, visibly marked when cut."""
    if text is None or len(text) <= limit:
        return text
    return text[: limit - len(_CUT_MARK)] + _CUT_MARK


def _params(params: Sequence[str | None] | Mapping[str, str | None] | None) -> dict:
    if params is None:
        return {}
    if isinstance(params, Mapping):
        return {f"param{param_number(k)}": v for k, v in params.items()}
    if len(params) > 10:
        raise LogError(f"{len(params)} parameters given: at most 10 (PARAM1..PARAM10)")
    return {f"param{i}": v for i, v in enumerate(params, start=1)}


def process_row(
    prcid: int,
    *,
    mapref: str | None,
    jobid: int | None = None,
    jobschid: int | None = None,
    prcreqid: int | None = None,
    runid: str | None = None,
    params: Sequence[str | None] | Mapping[str, str | None] | None = None,
    message: str | None = None,
) -> dict:
    """The values of a new DMS_PRCLOG row in status IP."""
    return dict(
        prcid=prcid,
        prcreqid=prcreqid,
        jobid=jobid,
        jobschid=jobschid,
        mapref=mapref,
        runid=runid,
        prcsts=Status.IP,
        strtdt=dms_now(),
        prcmsg=fit_message(message),
        **_params(params),
    )


def open_process(engine: sa.Engine, *, mapref: str | None, **row) -> int:
    """Open a DMS_PRCLOG row in status IP (no lock: a load opens its row through
    dmslog.lock.open_load); returns its PRCID."""
    prcid = next_id(engine, "DMS_PRCLOG")
    with write_transaction(engine) as conn:
        conn.execute(sa.insert(dms_prclog).values(**process_row(prcid, mapref=mapref, **row)))
    return prcid


def close_process(
    engine: sa.Engine,
    prcid: int,
    status: str,
    message: str | None = None,
    reopen_failed: bool = False,
    chunks_over: bool = False,
) -> bool:
    """IP -> PC | FL | ST. Returns False when the run was no longer IP (closed already,
    e.g. stopped): the first final status wins and is never overwritten - except that a
    load whose failed chunk was re-run and then committed may turn FL into PC
    (reopen_failed). The whole-load DMS_JOBLOG row, if still IP, closes with it;
    `chunks_over`: no chunk of the load runs any more, so chunk rows still IP are closed
    too (elsewhere, e.g. one failed Dagster step, the other chunks may still be running)."""
    _require(status, FINAL_STATUSES, "DMS_PRCLOG status")
    try:
        return _close(engine, prcid, status, message, reopen_failed, chunks_over)
    finally:
        session_lock.release(prcid)  # this process's lock of the load, if it holds it


def _close(
    engine: sa.Engine,
    prcid: int,
    status: str,
    message: str | None,
    reopen_failed: bool,
    chunks_over: bool,
) -> bool:
    with engine.begin() as conn:
        return _close_in(conn, prcid, status, message, reopen_failed, chunks_over)


def _close_in(
    conn: sa.Connection,
    prcid: int,
    status: str,
    message: str | None,
    reopen_failed: bool,
    chunks_over: bool,
) -> bool:
    result = conn.execute(
        sa.update(dms_prclog)
        .where(
            dms_prclog.c.prcid == prcid,
            dms_prclog.c.prcsts.in_((Status.IP, Status.FL) if reopen_failed else (Status.IP,)),
        )
        .values(prcsts=status, enddt=dms_now(), prcmsg=fit_message(message))
    )
    if result.rowcount == 0:
        exists = conn.execute(
            sa.select(dms_prclog.c.prcid).where(dms_prclog.c.prcid == prcid)
        ).first()
        if exists is None:
            raise LogError(f"DMS_PRCLOG has no process {prcid}")
    if chunks_over:
        end_unfinished_rows(conn, prcid, status)
    else:
        _sum_into_load_row(conn, prcid, of=(Status.PC,), status=status)
    return result.rowcount == 1


def close_run(engine: sa.Engine, runid: str, status: str, message: str | None = None) -> int:
    """Close every process of an orchestrator run that is still IP (a run that failed or
    was stopped outside the load's own code); returns how many were closed."""
    _require(status, FINAL_STATUSES, "DMS_PRCLOG status")
    p = dms_prclog.c
    with engine.begin() as conn:
        open_ones = p.runid == runid, p.prcsts == Status.IP
        prcids = conn.execute(sa.select(p.prcid).where(*open_ones)).scalars().all()
        closed = conn.execute(
            sa.update(dms_prclog)
            .where(*open_ones)
            .values(prcsts=status, enddt=dms_now(), prcmsg=fit_message(message))
        ).rowcount
        for prcid in prcids:  # the run is over: so are its loads' chunks
            end_unfinished_rows(conn, prcid, status)
        return closed


def write_joblog(
    engine: sa.Engine,
    *,
    prcid: int,
    mapref: str,
    counts: LoadCounts,
    status: str,
    start: datetime,
    end: datetime | None = None,
    jobid: int | None = None,
    chunkno: int | None = None,
    chunkcnt: int | None = None,
    chkpntval: str | None = None,
    message: str | None = None,
) -> int:
    """One DMS_JOBLOG row: a chunk (chunkno set) or the whole load (chunkno None); an
    IP row has no ENDDT yet. `message`: with a whole-load IP row, the running load's
    DMS_PRCLOG.PRCMSG, in the same transaction."""
    _require(status, PROCESS_STATUSES, "DMS_JOBLOG status")
    if chkpntval is not None and (chunkno is not None or status != Status.PC):
        raise LogError("CHKPNTVAL belongs on the whole-load row of a successful load only")
    joblogid = next_id(engine, "DMS_JOBLOG")
    with engine.begin() as conn:
        _insert_joblog(
            conn,
            joblogid=joblogid,
            prcid=prcid,
            jobid=jobid,
            mapref=mapref,
            chunkcnt=chunkcnt,
            start=start,
            chunkno=chunkno,
            chkpntval=chkpntval,
            enddt=end or (None if status == Status.IP else dms_now()),
            jobsts=status,
            **asdict(counts),
        )
        if status == Status.IP and chunkno is None and message is not None:
            conn.execute(
                sa.update(dms_prclog)
                .where(dms_prclog.c.prcid == prcid, dms_prclog.c.prcsts == Status.IP)
                .values(prcmsg=fit_message(message))
            )
    return joblogid


def _insert_joblog(
    conn: sa.Connection,
    *,
    joblogid: int,
    prcid: int,
    jobid: int | None,
    mapref: str,
    chunkcnt: int | None,
    start: datetime,
    **rest: Any,
) -> None:
    """A new DMS_JOBLOG row: the load's, its start; `rest`: status, end, counts, ..."""
    conn.execute(
        sa.insert(dms_joblog).values(
            joblogid=joblogid,
            prcid=prcid,
            jobid=jobid,
            mapref=mapref,
            chunkcnt=chunkcnt,
            strtdt=start,
            **rest,
        )
    )


def running_message(chunks: int, estimated_rows: int, method: str) -> str:
    """DMS_PRCLOG.PRCMSG while a load runs: what it set out to do (RUNNING_ESTIMATE reads
    the estimate back)."""
    return f"running: {chunks} chunk(s), ~{estimated_rows} source rows, by {method}"


RUNNING_ESTIMATE = re.compile(r"^running: .*~(\d+) source rows")


def open_load_row(
    engine: sa.Engine,
    *,
    prcid: int,
    mapref: str,
    jobid: int | None,
    chunkcnt: int,
    start: datetime,
    message: str,
) -> int:
    """The whole-load DMS_JOBLOG row of a planned load (IP; its chunks sum their rows into
    it as they go) and, in the same transaction, the running load's DMS_PRCLOG message."""
    return write_joblog(
        engine,
        prcid=prcid,
        mapref=mapref,
        jobid=jobid,
        chunkcnt=chunkcnt,
        counts=LoadCounts(),
        status=Status.IP,
        start=start,
        message=message,
    )


def _sum_into_load_row(
    conn: sa.Connection,
    prcid: int,
    of: tuple[str, ...] = (Status.IP, Status.PC),
    status: str | None = None,
) -> None:
    """The load's IP whole-load row gets the sums of its chunk rows in status `of` (and,
    given, its final `status`): a statement of its own, after any chunk row it locks, so
    writers of one load always lock chunk rows before the load's row."""
    j, c = dms_joblog, dms_joblog.alias("dms_chunk")
    chunk_rows = sa.and_(c.c.prcid == prcid, c.c.chunkno.is_not(None), c.c.jobsts.in_(of))
    sums = {
        name: sa.select(sa.func.coalesce(sa.func.sum(c.c[name]), 0))
        .where(chunk_rows)
        .scalar_subquery()
        for name in COUNT_COLUMNS
    }
    final = {"jobsts": status, "enddt": dms_now()} if status else {}
    conn.execute(
        sa.update(j)
        .where(j.c.prcid == prcid, j.c.chunkno.is_(None), j.c.jobsts == Status.IP)
        .values(**sums, **final)
    )


def report_progress(engine: sa.Engine, prcid: int, rows: Mapping[int, LoadCounts]) -> None:
    """Rows done so far by running chunks (JOBLOGID -> counts) onto their IP rows and, summed,
    onto the load's IP row. One short transaction that never waits for a lock: on SQLite,
    where a chunk may hold the file, it fails at once (the caller drops the report)."""
    j = dms_joblog
    with unwaiting_write_transaction(engine) as conn:
        for joblogid, counts in sorted(rows.items()):
            conn.execute(
                sa.update(j)
                .where(j.c.joblogid == joblogid, j.c.jobsts == Status.IP)
                .values(**asdict(counts))
            )
        _sum_into_load_row(conn, prcid)


def finish_chunk_row(
    engine: sa.Engine, joblogid: int, prcid: int, *, counts: LoadCounts, status: str
) -> None:
    """A chunk's row at its end: PC with its counts, or FL / ST (nothing kept: zeros),
    whatever a close of its load wrote meanwhile; the load's IP row sums it in."""
    _require(status, FINAL_STATUSES, "DMS_JOBLOG status")
    j = dms_joblog
    with write_transaction(engine) as conn:
        conn.execute(
            sa.update(j)
            .where(j.c.joblogid == joblogid)
            .values(jobsts=status, enddt=dms_now(), **asdict(counts))
        )
        _sum_into_load_row(conn, prcid)


def commit_load(
    engine: sa.Engine,
    *,
    prcid: int,
    mapref: str,
    counts: LoadCounts,
    start: datetime,
    end: datetime,
    message: str,
    jobid: int | None = None,
    chunkcnt: int | None = None,
    chkpntval: str | None = None,
) -> bool:
    """The end of a committed load, in one transaction, so no reader sees one half of it:
    its DMS_PRCLOG row PC with `message` (FL too: a failed chunk re-run on its own
    completes the load), chunk rows still IP closed (attempts that died), and the
    whole-load row PC with its counts and checkpoint (written anew when the load had none,
    e.g. planned before the row existed). Returns False when the process was closed
    already (stopped): the first final status stays."""
    j = dms_joblog
    load_row = sa.and_(j.c.prcid == prcid, j.c.chunkno.is_(None))
    with engine.connect() as conn:
        has_row = conn.execute(sa.select(j.c.joblogid).where(load_row)).first() is not None
    joblogid = None if has_row else next_id(engine, "DMS_JOBLOG")
    try:
        with write_transaction(engine) as conn:
            closed = _close_in(
                conn, prcid, Status.PC, message, reopen_failed=True, chunks_over=True
            )
            final = dict(jobsts=Status.PC, enddt=end, chkpntval=chkpntval, **asdict(counts))
            if joblogid is None:  # (chunk rows first, then the load's row: the lock order)
                conn.execute(sa.update(j).where(load_row).values(**final))
            else:
                _insert_joblog(
                    conn,
                    joblogid=joblogid,
                    prcid=prcid,
                    jobid=jobid,
                    mapref=mapref,
                    chunkcnt=chunkcnt,
                    start=start,
                    **final,
                )
    finally:
        session_lock.release(prcid)  # this process's lock of the load, if it holds it
    return closed


def end_unfinished_rows(conn: sa.Connection, prcid: int, status: str) -> None:
    """A load that is over (no chunk of it runs any more): chunk rows still IP (a chunk
    process killed outright) become FL, or ST for a stopped load, with no rows kept; the
    whole-load row, if still IP, gets `status` and the sums of the committed chunks."""
    j = dms_joblog
    conn.execute(
        sa.update(j)
        .where(j.c.prcid == prcid, j.c.chunkno.is_not(None), j.c.jobsts == Status.IP)
        .values(
            jobsts=Status.ST if status == Status.ST else Status.FL,
            enddt=dms_now(),
            **asdict(LoadCounts()),
        )
    )
    if status != Status.PC:  # (a committed load finished its row itself)
        _sum_into_load_row(conn, prcid, of=(Status.PC,), status=status)


def undo_chunk_rows(engine: sa.Engine, prcid: int) -> int:
    """The chunk rows of a load whose committed chunks were taken back out (a first load
    that met a duplicate key at commit) become FL: their counts were not kept."""
    with engine.begin() as conn:
        return conn.execute(
            sa.update(dms_joblog)
            .where(
                dms_joblog.c.prcid == prcid,
                dms_joblog.c.chunkno.is_not(None),
                dms_joblog.c.jobsts == Status.PC,
            )
            .values(jobsts=Status.FL)
        ).rowcount


def write_joberr(
    engine: sa.Engine,
    *,
    prcid: int | None,
    mapref: str | None,
    errtyp: str,
    message: str,
    detail: str | None = None,
    jobid: int | None = None,
    chunkno: int | None = None,
    errcd: str | None = None,
    keyval: str | None = None,
) -> int:
    """One DMS_JOBERR row; `detail` is the traceback (CLOB, kept whole)."""
    _require(errtyp, ERROR_TYPES, "DMS_JOBERR type")
    joberrid = next_id(engine, "DMS_JOBERR")
    if detail is None and len(message) > MESSAGE_LIMIT:
        detail = message
    with engine.begin() as conn:
        conn.execute(
            sa.insert(dms_joberr).values(
                joberrid=joberrid,
                prcid=prcid,
                jobid=jobid,
                mapref=mapref,
                chunkno=chunkno,
                errtyp=errtyp,
                errcd=errcd,
                errmsg=fit_message(message),
                errdtl=detail,
                keyval=fit_message(keyval),
                reccrdt=dms_now(),
            )
        )
    return joberrid


# ------------------------------------------------------------------ the writer of a database

PROGRESS_INTERVAL_S = 2.0  # a running load's progress rows, at most one write per this


class LogWriter:
    """The DMS log writes of one metadata database, as the engine makes them: a load's
    DMS_JOBLOG rows (at plan, while its chunks run, at commit), its DMS_JOBERR rows and
    the close of its DMS_PRCLOG row. The engine asks `log_writer(engine)` for it, so a
    subclass installed with `using_log_writer` (the Dagster resource `dms_log` does) sees
    and can add to every write. (The DMS_PRCLOG row a load opens is its load lock,
    dmslog/lock.py: written with the lock, not here; a report's is opened here.)"""

    def __init__(self, engine: sa.Engine, progress_interval_s: float | None = None) -> None:
        self.engine, self._progress_interval_s = engine, progress_interval_s

    @property
    def progress_interval_s(self) -> float:
        """How often a load's running chunks write their rows so far (per process)."""
        if self._progress_interval_s is None:
            return PROGRESS_INTERVAL_S
        return self._progress_interval_s

    def on(self, engine: sa.Engine) -> LogWriter:
        """This writer on another engine of its database (a forked child's)."""
        other = copy.copy(self)
        other.engine = engine
        return other

    def open_process(self, *, mapref: str | None, **row) -> int:
        return open_process(self.engine, mapref=mapref, **row)

    def close_process(self, prcid: int, status: str, message: str | None = None, **kw) -> bool:
        return close_process(self.engine, prcid, status, message, **kw)

    def close_run(self, runid: str, status: str, message: str | None = None) -> int:
        return close_run(self.engine, runid, status, message)

    def write_joblog(self, **row) -> int:
        return write_joblog(self.engine, **row)

    def open_load_row(self, **row) -> int:
        return open_load_row(self.engine, **row)

    def report_progress(self, prcid: int, rows: Mapping[int, LoadCounts]) -> None:
        report_progress(self.engine, prcid, rows)

    def finish_chunk_row(
        self, joblogid: int, prcid: int, *, counts: LoadCounts, status: str
    ) -> None:
        finish_chunk_row(self.engine, joblogid, prcid, counts=counts, status=status)

    def commit_load(self, **row) -> bool:
        return commit_load(self.engine, **row)

    def undo_chunk_rows(self, prcid: int) -> int:
        return undo_chunk_rows(self.engine, prcid)

    def write_joberr(self, **row) -> int:
        return write_joberr(self.engine, **row)


# metadata database -> the writer installed for it in this process (forked children keep
# it: their engines are their own, the database is the same)
_installed: dict[tuple[str, str | None], LogWriter] = {}
_installed_lock = threading.Lock()


def log_writer(engine: sa.Engine) -> LogWriter:
    """The writer of a metadata database: the one installed for it, else the plain one."""
    installed = _installed.get(database_key(engine))
    if installed is None:
        return LogWriter(engine)
    return installed if installed.engine is engine else installed.on(engine)


@contextlib.contextmanager
def using_log_writer(writer: LogWriter) -> Iterator[LogWriter]:
    """Every log write to `writer.engine` in this process goes through `writer` until the
    block ends (then the writer installed before, if any, again)."""
    key = database_key(writer.engine)
    with _installed_lock:
        before = _installed.get(key)
        _installed[key] = writer
    try:
        yield writer
    finally:
        with _installed_lock:
            if before is None:
                _installed.pop(key, None)
            else:
                _installed[key] = before
