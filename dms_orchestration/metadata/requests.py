"""DMS_PRCREQ, the request queue: read new requests, claim them atomically, record what
became of them (REQSTS NEW -> CLAIMED -> DONE | FAILED | DEAD, RUNID, ERRMSG, RETRYCNT)."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import sqlalchemy as sa
from pydantic import Field

from dms_orchestration.db.connections import DmsRow
from dms_orchestration.db.schema import dms_prcreq
from dms_orchestration.dmslog.writer import fit_message
from dms_orchestration.settings import dms_now

REQUEST_TYPES = ("IMMEDIATE", "HISTORY", "STOP", "REPORT")


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

    @property
    def params(self) -> dict[str, str]:
        values = {f"PARAM{i}": getattr(self, f"param{i}") for i in range(1, 11)}
        return {k: v for k, v in values.items() if v is not None}

    @property
    def history_days(self) -> list[date]:
        """The days of a HISTORY request, oldest first."""
        if self.history_from is None or self.history_to is None:
            return []
        first, last = (
            d.date() if isinstance(d, datetime) else d for d in (self.history_from, self.history_to)
        )
        return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _rows(conn: sa.Connection, query) -> list[Request]:
    result = conn.execute(query)
    keys = [k.upper() for k in result.keys()]
    return [Request.model_validate(dict(zip(keys, row, strict=True))) for row in result]


def requests_in(engine: sa.Engine, status: str, limit: int = 100) -> list[Request]:
    q = sa.select(dms_prcreq).where(dms_prcreq.c.reqsts == status)
    with engine.connect() as conn:
        return _rows(conn, q.order_by(dms_prcreq.c.prcreqid).limit(limit))


def claim(engine: sa.Engine, prcreqid: int) -> bool:
    """NEW -> CLAIMED in one statement: of two daemons, exactly one gets True."""
    with engine.begin() as conn:
        return (
            conn.execute(
                sa.update(dms_prcreq)
                .where(dms_prcreq.c.prcreqid == prcreqid, dms_prcreq.c.reqsts == "NEW")
                .values(reqsts="CLAIMED", recupdt=dms_now())
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
