"""DMS_PRCREQ, the request queue: read open requests, claim them atomically, record what
became of them (REQSTS NEW -> CLAIMED -> DONE | FAILED | DEAD, RUNID, ERRMSG, RETRYCNT).

Outside tools write REQSTS and REQTYP in any case and with spaces: they are compared
trimmed and in upper case (an expression index, DMS_PRCREQ_IX2, keeps the polling cheap);
what the orchestrator writes is upper case."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from pydantic import Field

from dms_orchestration.db.connections import DmsRow
from dms_orchestration.db.schema import dms_prcreq
from dms_orchestration.dmslog.writer import fit_message
from dms_orchestration.metadata.models import Catalog
from dms_orchestration.settings import ConfigError, dms_now
from dms_orchestration.vocabulary import RequestStatus, RequestType

RUN_TYPES = (RequestType.IMMEDIATE, RequestType.HISTORY)  # the requests that launch runs
OPEN_STATUSES = (RequestStatus.NEW, RequestStatus.CLAIMED)

# DMS_PARAMS DMSCONFIG keys of the queue: (default, smallest value allowed)
QUEUE_PARAMS = {
    "RETRY_MAX": (3, 0),
    "CLAIM_TIMEOUT_SECONDS": (60, 1),
    "HISTORY_MAX_DAYS": (366, 1),
}


def code_of(value: str | None) -> str:
    """A status or type as written by anyone (' new ') in the form compared ('NEW')."""
    return (value or "").strip().upper()


@dataclass(frozen=True)
class QueueSettings:
    retry_max: int
    claim_timeout: timedelta
    history_max_days: int


def _queue_param(catalog: Catalog, code: str) -> int:
    default, least = QUEUE_PARAMS[code]
    raw = catalog.param(code)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        value = None
    if value is None or value < least:
        raise ConfigError(f"DMS_PARAMS DMSCONFIG {code}={raw!r} is not an integer >= {least}")
    return value


def queue_settings(catalog: Catalog) -> QueueSettings:
    """The queue's DMS_PARAMS, checked: a bad value is an error naming its key."""
    return QueueSettings(
        retry_max=_queue_param(catalog, "RETRY_MAX"),
        claim_timeout=timedelta(seconds=_queue_param(catalog, "CLAIM_TIMEOUT_SECONDS")),
        history_max_days=_queue_param(catalog, "HISTORY_MAX_DAYS"),
    )


def history_range_error(first: date, last: date, max_days: int) -> str | None:
    """Why a HISTORY range cannot be served, or None."""
    if last < first:
        return f"HISTORY needs HSTFRMDT <= HSTTODT, got {first} .. {last}"
    days = (last - first).days + 1
    if days > max_days:
        return (
            f"HISTORY range {first} .. {last} has {days} days, more than "
            f"HISTORY_MAX_DAYS={max_days} (DMS_PARAMS DMSCONFIG): split it into shorter requests"
        )
    return None


def _day(value: date | datetime | None) -> date | None:
    return value.date() if isinstance(value, datetime) else value


class Request(DmsRow):
    id: int = Field(alias="PRCREQID")
    type: str | None = Field(None, alias="REQTYP")
    job_id: int | None = Field(None, alias="JOBID")
    mapref: str | None = Field(None, alias="MAPREF")
    param1: str | None = Field(None, alias="PARAM1")
    param2: str | None = Field(None, alias="PARAM2")
    param3: str | None = Field(None, alias="PARAM3")
    param4: str | None = Field(None, alias="PARAM4")
    param5: str | None = Field(None, alias="PARAM5")
    param6: str | None = Field(None, alias="PARAM6")
    param7: str | None = Field(None, alias="PARAM7")
    param8: str | None = Field(None, alias="PARAM8")
    param9: str | None = Field(None, alias="PARAM9")
    param10: str | None = Field(None, alias="PARAM10")
    history_from: date | datetime | None = Field(None, alias="HSTFRMDT")
    history_to: date | datetime | None = Field(None, alias="HSTTODT")
    target_request_id: int | None = Field(None, alias="TRGPRCREQID")
    status: str | None = Field(None, alias="REQSTS")
    run_id: str | None = Field(None, alias="RUNID")
    error: str | None = Field(None, alias="ERRMSG")
    retry_count: int | None = Field(None, alias="RETRYCNT")
    updated: datetime | None = Field(None, alias="RECUPDT")

    @property
    def kind(self) -> str:
        return code_of(self.type)

    @property
    def state(self) -> str:
        return code_of(self.status)

    @property
    def params(self) -> dict[str, str]:
        values = {f"PARAM{i}": getattr(self, f"param{i}") for i in range(1, 11)}
        return {k: v for k, v in values.items() if v is not None}

    @property
    def history_range(self) -> tuple[date, date] | None:
        """(first, last) day of a HISTORY request, as written (maybe reversed)."""
        first, last = _day(self.history_from), _day(self.history_to)
        return None if first is None or last is None else (first, last)

    def history_days(self) -> Iterator[date]:
        """The days of a HISTORY request, oldest first, one at a time (never a list:
        a range may be huge)."""
        if self.history_range is None:
            return
        day, last = self.history_range
        while day <= last:
            yield day
            day += timedelta(days=1)

    def claim_is_stale(self, timeout: timedelta) -> bool:
        """Claimed (RECUPDT, on the DMS clock) longer ago than `timeout`; a claim with no
        RECUPDT was not written by us and nobody follows it."""
        return self.updated is None or self.updated <= dms_now() - timeout


def _rows(conn: sa.Connection, query) -> list[Request]:
    result = conn.execute(query)
    keys = [k.upper() for k in result.keys()]
    return [Request.model_validate(dict(zip(keys, row, strict=True))) for row in result]


def _code(column: sa.ColumnElement) -> sa.ColumnElement:
    """A REQSTS / REQTYP column as compared: UPPER(TRIM(..)), the expression of the index."""
    return sa.func.upper(sa.func.trim(column))


def requests_in(engine: sa.Engine, status: str, limit: int = 100) -> list[Request]:
    """The oldest `limit` requests in `status`, however its case and spaces are written."""
    q = sa.select(dms_prcreq).where(_code(dms_prcreq.c.reqsts) == status)
    with engine.connect() as conn:
        return _rows(conn, q.order_by(dms_prcreq.c.prcreqid).limit(limit))


def count_in(engine: sa.Engine, status: str) -> int:
    """How many requests are in `status`, however it is written."""
    q = sa.select(sa.func.count()).where(_code(dms_prcreq.c.reqsts) == status)
    with engine.connect() as conn:
        return conn.execute(q).scalar_one()


def stale_claims(engine: sa.Engine, timeout: timedelta) -> list[Request]:
    """CLAIMED requests whose claim (RECUPDT) is older than `timeout`: a live queue sensor
    has served them again by then, unless their run is still going."""
    return [
        r
        for r in requests_in(engine, RequestStatus.CLAIMED, limit=1000)
        if r.claim_is_stale(timeout)
    ]


def claim(engine: sa.Engine, prcreqid: int) -> bool:
    """NEW -> CLAIMED in one statement: of two daemons, exactly one gets True."""
    with engine.begin() as conn:
        return (
            conn.execute(
                sa.update(dms_prcreq)
                .where(
                    dms_prcreq.c.prcreqid == prcreqid,
                    _code(dms_prcreq.c.reqsts) == RequestStatus.NEW,
                )
                .values(reqsts=RequestStatus.CLAIMED, recupdt=dms_now())
            ).rowcount
            == 1
        )


def count_retry(engine: sa.Engine, request: Request) -> bool:
    """RETRYCNT + 1 on a CLAIMED request, and its claim renewed (RECUPDT), in one statement
    that holds only if nobody counted it since `request` was read: of two daemons, exactly
    one serves the retry."""
    attempt = request.retry_count or 0
    with engine.begin() as conn:
        return (
            conn.execute(
                sa.update(dms_prcreq)
                .where(
                    dms_prcreq.c.prcreqid == request.id,
                    _code(dms_prcreq.c.reqsts) == RequestStatus.CLAIMED,
                    sa.func.coalesce(dms_prcreq.c.retrycnt, 0) == attempt,
                )
                .values(retrycnt=attempt + 1, recupdt=dms_now())
            ).rowcount
            == 1
        )


def update_request(engine: sa.Engine, prcreqid: int, **values) -> None:
    """Set REQSTS / RUNID / ERRMSG / RETRYCNT of a request."""
    if "errmsg" in values:
        values["errmsg"] = fit_message(values["errmsg"])
    with engine.begin() as conn:
        conn.execute(
            sa.update(dms_prcreq)
            .where(dms_prcreq.c.prcreqid == prcreqid)
            .values(recupdt=dms_now(), **values)
        )


def _queued_before(stop: Request, mapref: str | None, job_ids: Collection[int]):
    """The WHERE of the IMMEDIATE / HISTORY requests a STOP cancels: still NEW or CLAIMED,
    queued before it, and the request it names, else its mapping's (by MAPREF, or by JOBID
    when MAPREF is empty)."""
    c = dms_prcreq.c
    if stop.target_request_id is not None:
        whose = c.prcreqid == stop.target_request_id
    elif mapref:
        no_mapref = sa.or_(c.mapref.is_(None), c.mapref == "")
        whose = sa.or_(c.mapref == mapref, sa.and_(no_mapref, c.jobid.in_(list(job_ids))))
    else:
        return None
    return sa.and_(
        c.prcreqid < stop.id,
        _code(c.reqsts).in_(OPEN_STATUSES),
        _code(c.reqtyp).in_(RUN_TYPES),
        whose,
    )


def cancel_queued(
    engine: sa.Engine, stop: Request, mapref: str | None, job_ids: Collection[int]
) -> list[int]:
    """FAILED, naming the STOP, for the requests it cancels (see _queued_before); returns
    their ids."""
    where = _queued_before(stop, mapref, job_ids)
    if where is None:
        return []
    with engine.begin() as conn:
        ids = list(conn.execute(sa.select(dms_prcreq.c.prcreqid).where(where)).scalars())
        if ids:
            conn.execute(
                sa.update(dms_prcreq)
                .where(where)
                .values(
                    reqsts=RequestStatus.FAILED,
                    errmsg=f"canceled by STOP request {stop.id}",
                    recupdt=dms_now(),
                )
            )
    return ids
