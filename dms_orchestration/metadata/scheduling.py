"""The legacy scheduling API (the old PKGDWPRC package) with its validations: schedules,
dependencies, enable / disable, and requests queued in DMS_PRCREQ.

Every function returns the id it wrote. Schedules keep the legacy history (a changed
schedule is a new CURFLG='Y' row); requests are picked up by the queue sensor.
"""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa

from dms_orchestration.db import schema as s
from dms_orchestration.db.connect import write_transaction
from dms_orchestration.db.sqltext import param_number
from dms_orchestration.ids.provider import next_id
from dms_orchestration.metadata.catalog import load_catalog
from dms_orchestration.metadata.frequency import FrequencyError, clock_for
from dms_orchestration.metadata.models import Catalog, Job, Schedule
from dms_orchestration.metadata.requests import history_range_error, queue_settings
from dms_orchestration.settings import dms_now
from dms_orchestration.vocabulary import RequestStatus, RequestType


class SchedulingError(ValueError):
    pass


def _of_one(engine: sa.Engine, mapref: str) -> Catalog:
    """The catalog as far as one mapping goes (its rows, DMS_PARAMS): a request or a
    schedule of one mapping costs the same with 4 or 2,000 mappings."""
    return load_catalog(engine, mapref=mapref)


def _job(catalog: Catalog, mapref: str) -> Job:
    mapping = catalog.mappings.get(mapref)
    if mapping is None:
        raise SchedulingError(f"no current mapping named {mapref}")
    active = [j for j in mapping.jobs if j.active]
    if not active:
        raise SchedulingError(f"mapping {mapref} has no active job (DMS_JOB STFLG='A')")
    return active[0]


def _ensure_job(engine: sa.Engine, catalog: Catalog, mapref: str) -> int:
    """The mapping's active job; created (DMS_JOB) when the mapping has none yet."""
    mapping = catalog.mappings.get(mapref)
    if mapping is None:
        raise SchedulingError(f"no current mapping named {mapref}")
    active = [j for j in mapping.jobs if j.active]
    if active:
        return active[0].id
    if mapping.jobs:
        raise SchedulingError(f"the job of mapping {mapref} is inactive (STFLG='N')")
    jobid = next_id(engine, "DMS_JOB")
    with write_transaction(engine) as conn:
        conn.execute(
            sa.insert(s.dms_job).values(
                jobid=jobid,
                mapref=mapref,
                jobdesc=f"Load {mapref}",
                stflg="A",
                curflg="Y",
                reccrdt=dms_now(),
            )
        )
    return jobid


def _as_datetime(value: date | datetime | None) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime(value.year, value.month, value.day)


def create_job_schedule(
    engine: sa.Engine,
    mapref: str,
    frequency: str,
    day: str | None = None,
    hour: int | None = None,
    minute: int | None = None,
    start: date | datetime | None = None,
    end: date | datetime | None = None,
) -> int:
    """Set the mapping's clock schedule (a new version replaces the current one)."""
    catalog = _of_one(engine, mapref)
    code = (frequency or "").strip().upper()
    start, end = _as_datetime(start), _as_datetime(end)
    if start and end and end < start:
        raise SchedulingError(f"end {end:%Y-%m-%d} is before start {start:%Y-%m-%d}")
    candidate = Schedule(
        JOBSCHID=0, FRQCD=code, FRQDD=day, FRQHH=hour, FRQMI=minute, STRDT=start, ENDDT=end
    )
    try:
        clock_for(candidate)
    except FrequencyError as exc:
        raise SchedulingError(f"mapping {mapref}: {exc}") from None
    jobid = _ensure_job(engine, catalog, mapref)
    # the mapping's current clock schedules: the new one replaces them
    clocks = [
        r for j in catalog.mappings[mapref].jobs for r in j.schedules if not r.depends_on_mapref
    ]
    jobschid = next_id(engine, "DMS_JOBSCH")
    with write_transaction(engine) as conn:
        for old in clocks:
            conn.execute(
                sa.update(s.dms_jobsch)
                .where(s.dms_jobsch.c.jobschid == old.id)
                .values(curflg="N", recupdt=dms_now())
            )
        conn.execute(
            sa.insert(s.dms_jobsch).values(
                jobschid=jobschid,
                jobid=jobid,
                mapref=mapref,
                frqcd=code,
                frqdd=day,
                frqhh=hour,
                frqmi=minute,
                enableflg="Y",
                strdt=start,
                enddt=end,
                curflg="Y",
                reccrdt=dms_now(),
            )
        )
    return jobschid


def _parents(catalog: Catalog) -> dict[str, set[str]]:
    return {
        m.ref: {r.depends_on_mapref for j in m.jobs for r in j.schedules if r.depends_on_mapref}
        for m in catalog.mappings.values()
    }


def create_job_dependency(engine: sa.Engine, child: str, parent: str) -> int:
    """Run CHILD after PARENT's job succeeds (DMS_JOBSCH.DPND_JOBSCHID)."""
    catalog = load_catalog(engine)
    if child == parent:
        raise SchedulingError(f"mapping {child} cannot depend on itself")
    parent_job = _job(catalog, parent)
    if not parent_job.schedules:
        raise SchedulingError(f"mapping {parent} has no schedule to depend on: schedule it first")
    parents = _parents(catalog)
    seen, todo = set(), [parent]
    while todo:  # would CHILD become its own ancestor?
        node = todo.pop()
        if node == child:
            raise SchedulingError(f"{child} -> {parent} would make a dependency cycle")
        if node not in seen:
            seen.add(node)
            todo += parents.get(node, ())
    jobid = _ensure_job(engine, catalog, child)
    jobschid = next_id(engine, "DMS_JOBSCH")
    with write_transaction(engine) as conn:
        conn.execute(
            sa.insert(s.dms_jobsch).values(
                jobschid=jobschid,
                jobid=jobid,
                mapref=child,
                dpnd_jobschid=parent_job.schedules[0].id,
                enableflg="Y",
                curflg="Y",
                reccrdt=dms_now(),
            )
        )
    return jobschid


def enable_disable_schedule(engine: sa.Engine, mapref: str, enabled: bool) -> list[int]:
    """Switch the mapping's current schedules on or off (they stay defined)."""
    job = _job(_of_one(engine, mapref), mapref)
    ids = [r.id for r in job.schedules]
    if not ids:
        raise SchedulingError(f"mapping {mapref} has no schedule")
    with engine.begin() as conn:
        conn.execute(
            sa.update(s.dms_jobsch)
            .where(s.dms_jobsch.c.jobschid.in_(ids))
            .values(enableflg="Y" if enabled else "N", recupdt=dms_now())
        )
    return ids


def _queue(engine: sa.Engine, **values) -> int:
    prcreqid = next_id(engine, "DMS_PRCREQ")
    with engine.begin() as conn:
        conn.execute(
            sa.insert(s.dms_prcreq).values(
                prcreqid=prcreqid, reqsts=RequestStatus.NEW, retrycnt=0, reccrdt=dms_now(), **values
            )
        )
    return prcreqid


def queue_immediate_job(
    engine: sa.Engine,
    mapref: str,
    params: dict[str, str | None] | None = None,
    requested_by: str | None = None,
) -> int:
    job = _job(_of_one(engine, mapref), mapref)
    columns = {f"param{param_number(name)}": value for name, value in (params or {}).items()}
    return _queue(
        engine,
        reqtyp=RequestType.IMMEDIATE,
        jobid=job.id,
        mapref=mapref,
        reqby=requested_by,
        **columns,
    )


def queue_history_job(
    engine: sa.Engine, mapref: str, start: date, end: date, requested_by: str | None = None
) -> int:
    catalog = _of_one(engine, mapref)
    job = _job(catalog, mapref)
    if end < start:
        raise SchedulingError(f"history range ends ({end}) before it starts ({start})")
    too_long = history_range_error(start, end, queue_settings(catalog).history_max_days)
    if too_long:
        raise SchedulingError(f"mapping {mapref}: {too_long}")
    return _queue(
        engine,
        reqtyp=RequestType.HISTORY,
        jobid=job.id,
        mapref=mapref,
        hstfrmdt=start,
        hsttodt=end,
        reqby=requested_by,
    )


def queue_stop_request(
    engine: sa.Engine,
    mapref: str | None = None,
    prcreqid: int | None = None,
    requested_by: str | None = None,
) -> int:
    if (mapref is None) == (prcreqid is None):
        raise SchedulingError("a STOP request names a mapping or a request, one of the two")
    jobid = None
    if prcreqid is not None:
        with engine.connect() as conn:
            target = conn.execute(
                sa.select(s.dms_prcreq.c.mapref, s.dms_prcreq.c.jobid).where(
                    s.dms_prcreq.c.prcreqid == prcreqid
                )
            ).first()
        if target is None:
            raise SchedulingError(f"no request {prcreqid} to stop")
        mapref, jobid = target.mapref, target.jobid
    else:
        jobid = _job(_of_one(engine, mapref), mapref).id
    return _queue(
        engine,
        reqtyp=RequestType.STOP,
        jobid=jobid,
        mapref=mapref,
        trgprcreqid=prcreqid,
        reqby=requested_by,
    )
