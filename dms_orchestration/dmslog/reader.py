"""Reading the log tables back: what each load of a run did (DMS_PRCLOG + DMS_JOBLOG)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa

from dms_orchestration.db.schema import dms_joblog, dms_prclog


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
        .where(j.prcid == prcid, j.chunkno.is_not(None), j.jobsts == "PC")
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
