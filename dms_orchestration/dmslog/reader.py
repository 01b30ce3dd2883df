"""Reading the log tables back: what each load of a run did (DMS_PRCLOG + DMS_JOBLOG)."""

from __future__ import annotations

from collections.abc import Sequence

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
