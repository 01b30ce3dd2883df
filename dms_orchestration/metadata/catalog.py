"""Read every current mapping with its columns, source SQL, connections, jobs, schedules
and findings in a fixed number of queries (one per table), whatever the mapping count."""

from __future__ import annotations

from collections import defaultdict

import sqlalchemy as sa

from dms_orchestration.db import schema as s
from dms_orchestration.metadata.models import (
    Catalog,
    Connection,
    Finding,
    Job,
    Mapping,
    MappingColumn,
    Schedule,
    SourceSql,
)

CATALOG_QUERIES = 8


def _rows(
    conn: sa.Connection, table: sa.Table, *order: sa.ColumnElement, current_only: bool = True
) -> list[dict]:
    query = sa.select(table)
    if current_only:
        query = query.where(table.c.curflg == "Y")
    result = conn.execute(query.order_by(*order))
    keys = [k.upper() for k in result.keys()]
    return [dict(zip(keys, row, strict=True)) for row in result]


def load_catalog(engine: sa.Engine) -> Catalog:
    with engine.connect() as conn:
        # references point at a CONID / JOBSCHID that a later edit may have versioned:
        # resolve them through the natural key (CONNM, MAPREF) to the current row
        all_connections = _rows(conn, s.dms_dbcondtls, s.dms_dbcondtls.c.conid, current_only=False)
        current_by_name = {
            r["CONNM"]: Connection.model_validate(r) for r in all_connections if r["CURFLG"] == "Y"
        }
        connections = {
            r["CONID"]: current_by_name[r["CONNM"]]
            for r in all_connections
            if r["CONNM"] in current_by_name
        }
        source_sql = {
            r["MAPRSQLCD"]: SourceSql.model_validate(r)
            for r in _rows(conn, s.dms_maprsql, s.dms_maprsql.c.maprsqlid)
        }
        columns: dict[str, list[MappingColumn]] = defaultdict(list)
        for r in _rows(conn, s.dms_maprdtl, s.dms_maprdtl.c.mapdtlid):
            columns[r["MAPREF"]].append(MappingColumn.model_validate(r))
        all_schedules = _rows(conn, s.dms_jobsch, s.dms_jobsch.c.jobschid, current_only=False)
        schedule_mapref = {r["JOBSCHID"]: r["MAPREF"] for r in all_schedules}
        schedules: dict[str, list[Schedule]] = defaultdict(list)
        for r in all_schedules:
            if r["CURFLG"] == "Y":
                parent = schedule_mapref.get(r["DPND_JOBSCHID"]) if r["DPND_JOBSCHID"] else None
                schedules[r["MAPREF"]].append(
                    Schedule.model_validate({**r, "depends_on_mapref": parent})
                )
        jobs: dict[str, list[Job]] = defaultdict(list)
        for r in _rows(conn, s.dms_job, s.dms_job.c.jobid):
            jobs[r["MAPREF"]].append(
                Job.model_validate({**r, "schedules": tuple(schedules.get(r["MAPREF"], ()))})
            )
        findings: dict[str, list[Finding]] = defaultdict(list)
        for r in _rows(conn, s.dms_maperr, s.dms_maperr.c.maperrid, current_only=False):
            findings[r["MAPREF"]].append(Finding.model_validate(r))
        params: dict[str, dict[str, str | None]] = defaultdict(dict)
        for r in _rows(
            conn, s.dms_params, s.dms_params.c.prtyp, s.dms_params.c.prcd, current_only=False
        ):
            params[r["PRTYP"]][r["PRCD"]] = r["PRVAL"]
        mappings = {}
        for r in _rows(conn, s.dms_mapr, s.dms_mapr.c.mapid):
            ref = r["MAPREF"]
            source = source_sql.get(r["MAPRSQLCD"]) if r["MAPRSQLCD"] else None
            mappings[ref] = Mapping.model_validate(
                {
                    **r,
                    "columns": tuple(columns.get(ref, ())),
                    "source": source,
                    "source_connection": connections.get(source.connection_id) if source else None,
                    "target_connection": connections.get(r["TRGCONID"]),
                    "jobs": tuple(jobs.get(ref, ())),
                    "findings": tuple(findings.get(ref, ())),
                }
            )
    return Catalog(
        mappings=mappings, connections=connections, source_sql=source_sql, params=dict(params)
    )
