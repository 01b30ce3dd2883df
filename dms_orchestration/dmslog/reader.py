"""Reading the log tables back: what each load of a run did, and how far running and
recent loads have got (DMS_PRCLOG + DMS_JOBLOG)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from dms_orchestration.db.schema import dms_joblog, dms_prclog
from dms_orchestration.dmslog.writer import COUNT_COLUMNS, RUNNING_ESTIMATE, LoadCounts
from dms_orchestration.settings import dms_now
from dms_orchestration.vocabulary import Status


def load_summaries(engine: sa.Engine, runids: Sequence[str]) -> list[dict]:
    """One row per process of the given runs: status and the whole-load counts."""
    p, j = dms_prclog, dms_joblog
    query = (
        sa.select(
            p.c.runid,
            p.c.prcid,
            p.c.mapref,
            p.c.prcsts,
            j.c.chunkcnt,
            j.c.srcrows,
            j.c.insrows,
            j.c.updrows,
            j.c.exprows,
            j.c.delrows,
            j.c.unchrows,
            j.c.chkpntval,
        )
        .select_from(p.outerjoin(j, (j.c.prcid == p.c.prcid) & j.c.chunkno.is_(None)))
        .where(p.c.runid.in_(list(runids)))
        .order_by(p.c.prcid)
    )
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def committed_chunks(engine: sa.Engine, prcid: int) -> list[int]:
    """The chunks of a load that committed their rows (DMS_JOBLOG PC chunk rows)."""
    j = dms_joblog.c
    query = (
        sa.select(j.chunkno)
        .where(j.prcid == prcid, j.chunkno.is_not(None), j.jobsts == Status.PC)
        .order_by(j.chunkno)
    )
    with engine.connect() as conn:
        return [int(n) for n in conn.execute(query).scalars()]


def last_load_start(engine: sa.Engine, mapref: str) -> datetime | None:
    """When the mapping's latest load (or chunk of one) started: no version a load
    wrote is younger (a load's VLDFRM is its start, its chunks start after it)."""
    j = dms_joblog.c
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.max(j.strtdt)).where(j.mapref == mapref)).scalar()


@dataclass(frozen=True)
class LoadState:
    """A load as the log tables tell it, while it runs (rows so far) or after."""

    prcid: int
    mapref: str | None
    status: str  # DMS_PRCLOG.PRCSTS: IP | PC | FL | ST
    chunks: int | None
    chunks_done: int
    counts: LoadCounts
    estimated_rows: int | None  # the plan's, while the load runs
    started: datetime | None
    ended: datetime | None
    run_id: str | None
    message: str | None
    as_of: datetime  # when read, on the DMS clock

    @property
    def running(self) -> bool:
        return self.status == Status.IP

    @property
    def rows(self) -> int:
        """Source rows read so far (all of them, once the load committed)."""
        return self.counts.srcrows

    @property
    def settled_rows(self) -> int:
        """Source rows whose outcome is written: unchanged (known once classified),
        inserted (a new key or version) or updated in place, slice by slice."""
        c = self.counts
        return min(self.rows, c.unchrows + c.insrows + c.updrows)

    @property
    def seconds(self) -> float:
        if self.started is None:
            return 0.0
        return max(0.0, ((self.ended or self.as_of) - self.started).total_seconds())

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    @property
    def progress(self) -> float | None:
        """0..1: half for the source rows read, half for the rows settled, against the
        plan's estimate (a chunk reads, then writes); or chunks done over chunks,
        whichever is further; 1.0 only once the load committed."""
        if self.status == Status.PC:
            return 1.0
        done = [self.chunks_done / self.chunks] if self.chunks else []
        if self.estimated_rows:
            expected = max(self.estimated_rows, self.rows)
            done.append((self.rows + self.settled_rows) / (2 * expected))
        if not done:
            return None
        return min(max(done), 0.99) if self.running else max(done)

    @property
    def eta_seconds(self) -> float | None:
        """Time left at the pace so far, while the load runs."""
        done = self.progress
        if not self.running or not done or not self.seconds:
            return None
        return self.seconds * (1 - done) / done

    def as_json(self) -> dict:
        """The fields of `dms status --json` (names documented in the README)."""
        c = self.counts
        stamp = lambda t: t.isoformat(sep=" ") if t else None  # noqa: E731
        rounded = lambda v, n=1: None if v is None else round(v, n)  # noqa: E731
        return {
            "prcid": self.prcid,
            "mapref": self.mapref,
            "status": self.status,
            "running": self.running,
            "chunks": self.chunks,
            "chunks_done": self.chunks_done,
            "progress": rounded(self.progress, 4),
            "rows": self.rows,
            "estimated_rows": self.estimated_rows,
            "rows_per_second": rounded(self.rows_per_second),
            "eta_seconds": rounded(self.eta_seconds),
            "inserted": c.insrows,
            "updated": c.updrows,
            "expired": c.exprows,
            "deleted": c.delrows,
            "unchanged": c.unchrows,
            "started": stamp(self.started),
            "ended": stamp(self.ended),
            "duration_seconds": rounded(self.seconds, 3),
            "run_id": self.run_id,
            "message": self.message,
        }


def _time(value) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def _counts(row) -> LoadCounts:
    return LoadCounts(**{name: int(getattr(row, name) or 0) for name in COUNT_COLUMNS})


def _sum(rows) -> LoadCounts:
    total = LoadCounts()
    for row in rows:
        total = total + _counts(row)
    return total


def _state(process, rows: list, as_of: datetime) -> LoadState:
    """One load from its DMS_PRCLOG row and its DMS_JOBLOG rows (JOBLOGID order)."""
    whole = [r for r in rows if r.chunkno is None]
    chunk_rows = [r for r in rows if r.chunkno is not None]
    load_row = whole[-1] if whole else None
    if process.prcsts == Status.IP:  # rows so far
        counts = _sum(r for r in chunk_rows if r.jobsts in (Status.IP, Status.PC))
    elif load_row is not None and load_row.jobsts != Status.IP:  # the load's own final row
        counts = _counts(load_row)
    else:  # over, its row never finished: what committed
        counts = _sum(r for r in chunk_rows if r.jobsts == Status.PC)
    chunks = (load_row.chunkcnt if load_row else None) or max(
        (r.chunkcnt or 0 for r in chunk_rows), default=None
    )
    estimate = RUNNING_ESTIMATE.match(process.prcmsg or "") if process.prcsts == Status.IP else None
    return LoadState(
        prcid=int(process.prcid),
        mapref=process.mapref,
        status=process.prcsts,
        chunks=chunks or None,
        chunks_done=len({r.chunkno for r in chunk_rows if r.jobsts == Status.PC}),
        counts=counts,
        estimated_rows=int(estimate.group(1)) if estimate else None,
        started=_time(process.strtdt),
        ended=_time(process.enddt),
        run_id=process.runid,
        message=process.prcmsg,
        as_of=as_of,
    )


def _joblog_rows(conn: sa.Connection, prcids: list[int]) -> dict[int, list]:
    j = dms_joblog.c
    found: dict[int, list] = {p: [] for p in prcids}
    for start in range(0, len(prcids), 500):  # (Oracle takes 1000 values in an IN list)
        query = (
            sa.select(j.prcid, j.chunkno, j.chunkcnt, j.jobsts, *(j[n] for n in COUNT_COLUMNS))
            .where(j.prcid.in_(prcids[start : start + 500]))
            .order_by(j.joblogid)
        )
        for row in conn.execute(query):
            found[int(row.prcid)].append(row)
    return found


def _process_columns() -> list:
    p = dms_prclog.c
    return [p.prcid, p.mapref, p.prcsts, p.runid, p.strtdt, p.enddt, p.prcmsg]


def load_state(engine: sa.Engine, prcid: int) -> LoadState | None:
    """How far one load has got (None: no such process)."""
    with engine.connect() as conn:
        process = conn.execute(
            sa.select(*_process_columns()).where(dms_prclog.c.prcid == prcid)
        ).first()
        if process is None:
            return None
        return _state(process, _joblog_rows(conn, [prcid])[prcid], dms_now())


def recent_loads(
    engine: sa.Engine,
    since: datetime,
    maprefs: Sequence[str] = (),
    limit: int = 50,
) -> list[LoadState]:
    """Running loads and those started since `since` (DMS clock), newest first, at most
    `limit`; only the given mappings when some are named."""
    p = dms_prclog.c
    query = sa.select(*_process_columns()).where(sa.or_(p.prcsts == Status.IP, p.strtdt >= since))
    if maprefs:
        query = query.where(p.mapref.in_(list(maprefs)))
    query = query.order_by(p.strtdt.desc(), p.prcid.desc()).limit(limit)
    with engine.connect() as conn:
        processes = conn.execute(query).all()
        rows = _joblog_rows(conn, [int(r.prcid) for r in processes])
    as_of = dms_now()
    return [_state(r, rows[int(r.prcid)], as_of) for r in processes]
