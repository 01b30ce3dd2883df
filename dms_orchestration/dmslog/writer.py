"""Writes of the legacy log tables: DMS_PRCLOG (one per process run), DMS_JOBLOG (row
counts per chunk and per load) and DMS_JOBERR (errors with traceback).

Each write is its own short transaction on its own connection, so the log of a load
survives when the load's own transaction rolls back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime

import sqlalchemy as sa

from dms_orchestration.db import session_lock
from dms_orchestration.db.connect import write_transaction
from dms_orchestration.db.schema import dms_joberr, dms_joblog, dms_prclog
from dms_orchestration.db.sqltext import param_number
from dms_orchestration.ids.provider import next_id
from dms_orchestration.settings import dms_now

PROCESS_STATUSES = ("IP", "PC", "FL", "ST")
FINAL_STATUSES = ("PC", "FL", "ST")
ERROR_TYPES = ("TRANSIENT", "PERMANENT", "VALIDATION", "DATA")
MESSAGE_LIMIT = 4000
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
        prcsts="IP",
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
) -> bool:
    """IP -> PC | FL | ST. Returns False when the run was no longer IP (closed already,
    e.g. stopped): the first final status wins and is never overwritten - except that a
    load whose failed chunk was re-run and then committed may turn FL into PC
    (reopen_failed)."""
    _require(status, FINAL_STATUSES, "DMS_PRCLOG status")
    try:
        return _close(engine, prcid, status, message, reopen_failed)
    finally:
        session_lock.release(prcid)  # this process's lock of the load, if it holds it


def _close(
    engine: sa.Engine, prcid: int, status: str, message: str | None, reopen_failed: bool
) -> bool:
    with engine.begin() as conn:
        result = conn.execute(
            sa.update(dms_prclog)
            .where(
                dms_prclog.c.prcid == prcid,
                dms_prclog.c.prcsts.in_(("IP", "FL") if reopen_failed else ("IP",)),
            )
            .values(prcsts=status, enddt=dms_now(), prcmsg=fit_message(message))
        )
        if result.rowcount == 0:
            exists = conn.execute(
                sa.select(dms_prclog.c.prcid).where(dms_prclog.c.prcid == prcid)
            ).first()
            if exists is None:
                raise LogError(f"DMS_PRCLOG has no process {prcid}")
    return result.rowcount == 1


def close_run(engine: sa.Engine, runid: str, status: str, message: str | None = None) -> int:
    """Close every process of an orchestrator run that is still IP (a run that failed or
    was stopped outside the load's own code); returns how many were closed."""
    _require(status, FINAL_STATUSES, "DMS_PRCLOG status")
    with engine.begin() as conn:
        return conn.execute(
            sa.update(dms_prclog)
            .where(dms_prclog.c.runid == runid, dms_prclog.c.prcsts == "IP")
            .values(prcsts=status, enddt=dms_now(), prcmsg=fit_message(message))
        ).rowcount


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
) -> int:
    """One DMS_JOBLOG row: a chunk (chunkno set) or the whole load (chunkno None)."""
    _require(status, PROCESS_STATUSES, "DMS_JOBLOG status")
    if chkpntval is not None and (chunkno is not None or status != "PC"):
        raise LogError("CHKPNTVAL belongs on the whole-load row of a successful load only")
    joblogid = next_id(engine, "DMS_JOBLOG")
    with engine.begin() as conn:
        conn.execute(
            sa.insert(dms_joblog).values(
                joblogid=joblogid,
                prcid=prcid,
                jobid=jobid,
                mapref=mapref,
                chunkno=chunkno,
                chunkcnt=chunkcnt,
                chkpntval=chkpntval,
                strtdt=start,
                enddt=end or dms_now(),
                jobsts=status,
                **asdict(counts),
            )
        )
    return joblogid


def undo_chunk_rows(engine: sa.Engine, prcid: int) -> int:
    """The chunk rows of a load whose committed chunks were taken back out (a first load
    that met a duplicate key at commit) become FL: their counts were not kept."""
    with engine.begin() as conn:
        return conn.execute(
            sa.update(dms_joblog)
            .where(
                dms_joblog.c.prcid == prcid,
                dms_joblog.c.chunkno.is_not(None),
                dms_joblog.c.jobsts == "PC",
            )
            .values(jobsts="FL")
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
