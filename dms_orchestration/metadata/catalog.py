"""Read every current mapping with its columns, source SQL, connections, jobs, schedules
and findings in a fixed number of queries (one per table), whatever the mapping count.

Any content reads: a value of the wrong type (SQLite keeps whatever it is given) is left
out, and a second current DMS_MAPR row of one MAPREF (a legacy schema without the unique
index) replaces the first; both become ERROR findings of the mapping (read_findings).
"""

from __future__ import annotations

from collections import defaultdict
from typing import TypeVar

import sqlalchemy as sa
from pydantic import BaseModel, ValidationError

from dms_orchestration.db import schema as s
from dms_orchestration.metadata.models import (
    Catalog,
    Connection,
    FileColumn,
    FileLoad,
    Finding,
    Job,
    Mapping,
    MappingColumn,
    Report,
    Schedule,
    SourceSql,
)
from dms_orchestration.vocabulary import Severity

CATALOG_QUERIES = 11
_Row = TypeVar("_Row", bound=BaseModel)


def _rows(
    conn: sa.Connection,
    table: sa.Table,
    *order: sa.ColumnElement,
    current_only: bool = True,
    where: sa.ColumnElement[bool] | None = None,
) -> list[dict]:
    query = sa.select(table)
    if current_only:
        query = query.where(table.c.curflg == "Y")
    if where is not None:
        query = query.where(where)
    result = conn.execute(query.order_by(*order))
    keys = [k.upper() for k in result.keys()]
    return [dict(zip(keys, row, strict=True)) for row in result]


def _model(
    model: type[_Row], row: dict, what: str, problems: list[str], fallback: dict | None = None
) -> _Row | None:
    """The model of a row without the values that do not fit their field (each one told in
    `problems`); a required one takes its `fallback` value, else the row is None."""
    try:
        return model.model_validate(row)
    except ValidationError as exc:
        errors = exc.errors()
    bad = {e["loc"][0] for e in errors if e["loc"]}
    for e in errors:
        column = e["loc"][0] if e["loc"] else "?"
        problems.append(f"{what}: {column} {repr(e.get('input'))[:60]} is left out: {e['msg']}")
    kept = {k: None if k in bad else v for k, v in row.items()}
    try:
        return model.model_validate(
            {**kept, **{k: v for k, v in (fallback or {}).items() if k in bad}}
        )
    except ValidationError:
        return None


def _maperr(row: dict) -> Finding | None:
    """A DMS_MAPERR row as a finding; a row without MAPREF belongs to no mapping."""
    if row["MAPREF"] is None:
        return None
    row = {**row, "ERRTYP": str(row["ERRTYP"] or "ERROR"), "ERRMSG": str(row["ERRMSG"] or "")}
    return _model(Finding, row, "DMS_MAPERR", [])


def _connections(
    conn: sa.Connection, by_connection: dict[str, list[str]]
) -> tuple[dict[int, Connection], dict[int, str]]:
    """The current connections by every CONID of theirs, and the CONNM of each CONID:
    references point at a CONID that a later edit may have versioned, resolved through
    the natural key (CONNM) to the current row. What reading a row found goes to
    `by_connection` under its CONNM."""
    all_connections = _rows(conn, s.dms_dbcondtls, s.dms_dbcondtls.c.conid, current_only=False)
    current_by_name = {}
    for r in all_connections:
        if r["CURFLG"] == "Y":
            what = f"connection {r['CONNM']!r} (DMS_DBCONDTLS {r['CONID']})"
            con = _model(Connection, r, what, by_connection[r["CONNM"]])
            if con is not None:
                current_by_name[r["CONNM"]] = con
    connections = {
        r["CONID"]: current_by_name[r["CONNM"]]
        for r in all_connections
        if r["CONNM"] in current_by_name
    }
    return connections, {r["CONID"]: r["CONNM"] for r in all_connections}


def current_connections(engine: sa.Engine) -> tuple[list[Connection], dict[str, list[str]]]:
    """The current connections of DMS_DBCONDTLS, and what reading their rows found, by
    CONNM (a row none of whose values can be used is only there)."""
    problems: dict[str, list[str]] = defaultdict(list)
    with engine.connect() as conn:
        by_id, _ = _connections(conn, problems)
    unique = {con.name: con for con in by_id.values()}
    return sorted(unique.values(), key=lambda c: c.name), dict(problems)


def _source_sql(
    conn: sa.Connection, where: sa.ColumnElement[bool] | None, by_sql: dict[object, list[str]]
) -> dict[str, SourceSql]:
    source_sql = {}
    for r in _rows(conn, s.dms_maprsql, s.dms_maprsql.c.maprsqlid, where=where):
        what = f"source SQL {r['MAPRSQLCD']!r} (DMS_MAPRSQL {r['MAPRSQLID']})"
        sql = _model(SourceSql, r, what, by_sql[r["MAPRSQLCD"]])
        if sql is not None:
            source_sql[r["MAPRSQLCD"]] = sql
    return source_sql


def load_reports(engine: sa.Engine) -> dict[str, Report]:
    """The current reports alone, with their queries and connections (three queries)."""
    rprt = s.dms_rprt
    codes = sa.select(rprt.c.maprsqlcd).where(rprt.c.curflg == "Y")
    with engine.connect() as conn:
        connections, _ = _connections(conn, defaultdict(list))
        source_sql = _source_sql(conn, s.dms_maprsql.c.maprsqlcd.in_(codes), defaultdict(list))
        return _reports(conn, source_sql, connections)


def load_file_loads(engine: sa.Engine) -> dict[str, FileLoad]:
    """The current file load definitions alone, with their columns (three queries)."""
    with engine.connect() as conn:
        connections, _ = _connections(conn, defaultdict(list))
        return _file_loads(conn, connections)


def _file_loads(conn: sa.Connection, connections: dict[int, Connection]) -> dict[str, FileLoad]:
    """The current file loads by FLUPLDREF, with their columns and target connection, and
    what reading their rows found (`problems`)."""
    found: dict[str, list[str]] = defaultdict(list)
    columns: dict[str, list[FileColumn]] = defaultdict(list)
    detail = s.dms_fluplddtl
    for r in _rows(conn, detail, detail.c.flupldref, detail.c.excseq, detail.c.fluplddtlid):
        what = f"DMS_FLUPLDDTL {r['FLUPLDDTLID']}"
        if (column := _model(FileColumn, r, what, found[r["FLUPLDREF"]])) is not None:
            columns[column.ref].append(column)
    loads = {}
    for r in _rows(conn, s.dms_flupld, s.dms_flupld.c.flupldid):
        ref = r["FLUPLDREF"]
        row = {
            **r,
            "columns": tuple(columns.get(ref, ())),
            "target_connection": connections.get(r["TRGCONID"]),
        }
        fallback = {"FLUPLDID": 0, "FLUPLDREF": str(ref)}
        fl = _model(FileLoad, row, f"DMS_FLUPLD {r['FLUPLDID']}", found[ref], fallback)
        if fl is not None:
            loads[fl.ref] = fl.model_copy(update={"problems": tuple(found[ref])})
    return loads


def _reports(
    conn: sa.Connection,
    source_sql: dict[str, SourceSql],
    connections: dict[int, Connection],
) -> dict[str, Report]:
    """The current reports by RPRTREF, with their query and its connection, and what
    reading each row found (`problems`)."""
    reports = {}
    for r in _rows(conn, s.dms_rprt, s.dms_rprt.c.rprtid):
        source = source_sql.get(r["MAPRSQLCD"]) if r["MAPRSQLCD"] else None
        row = {
            **r,
            "source": source,
            "source_connection": connections.get(source.connection_id) if source else None,
        }
        found: list[str] = []
        fallback = {"RPRTID": 0, "RPRTREF": str(r["RPRTREF"])}
        report = _model(Report, row, f"DMS_RPRT {r['RPRTID']}", found, fallback)
        if report is not None:
            reports[report.ref] = report.model_copy(update={"problems": tuple(found)})
    return reports


def _of_mapping(table: sa.Table, mapref: str | None) -> sa.ColumnElement[bool] | None:
    return None if mapref is None else table.c.mapref == mapref


def _columns_read(mapref: str | None, lookups_only: bool) -> sa.ColumnElement[bool] | None:
    t = s.dms_maprdtl
    if lookups_only:
        return sa.or_(t.c.keyclnm.is_not(None), t.c.valclnm.is_not(None))
    return _of_mapping(t, mapref)


class NoSuchMapping(LookupError):
    """No current DMS_MAPR row has the MAPREF asked for."""


def load_mapping(engine: sa.Engine, mapref: str) -> Catalog:
    """The catalog of one mapping: its rows alone (and the connections, SQL and
    parameters it uses), read in as many queries whatever the catalog's size."""
    catalog = load_catalog(engine, mapref=mapref)
    if mapref not in catalog.mappings:
        raise NoSuchMapping(f"no current mapping named {mapref}")
    return catalog


def _params(conn: sa.Connection) -> dict[str, dict[str, str | None]]:
    """DMS_PARAMS: PRTYP -> PRCD -> PRVAL."""
    params: dict[str, dict[str, str | None]] = defaultdict(dict)
    for r in _rows(
        conn, s.dms_params, s.dms_params.c.prtyp, s.dms_params.c.prcd, current_only=False
    ):
        params[r["PRTYP"]][r["PRCD"]] = r["PRVAL"]
    return dict(params)


def load_params(engine: sa.Engine) -> Catalog:
    """A catalog of DMS_PARAMS alone: for a setting, without reading every mapping."""
    with engine.connect() as conn:
        return Catalog(params=_params(conn))


def load_catalog(
    engine: sa.Engine, *, mapref: str | None = None, lookups_only: bool = False
) -> Catalog:
    """`mapref`: that mapping's rows only (load_mapping). `lookups_only`: of the columns,
    only those that look up (KEYCLNM / VALCLNM), which say what a mapping reads besides
    its SQL: enough to name and index a catalog (a run reads its mapping whole)."""
    # what reading the rows found, by MAPREF, CONNM and MAPRSQLCD
    problems: dict[str, list[str]] = defaultdict(list)
    by_connection: dict[str, list[str]] = defaultdict(list)
    by_sql: dict[object, list[str]] = defaultdict(list)
    with engine.connect() as conn:
        connections, name_of = _connections(conn, by_connection)
        used_sql = None
        if mapref is not None:  # the SQL of that mapping's current row
            mapr = s.dms_mapr
            code = sa.select(mapr.c.maprsqlcd).where(mapr.c.mapref == mapref, mapr.c.curflg == "Y")
            used_sql = s.dms_maprsql.c.maprsqlcd.in_(code)
        source_sql = _source_sql(conn, used_sql, by_sql)
        columns: dict[str, list[MappingColumn]] = defaultdict(list)
        read = _columns_read(mapref, lookups_only)
        for r in _rows(conn, s.dms_maprdtl, s.dms_maprdtl.c.mapdtlid, where=read):
            what = f"column {r['TRGCLNM']!r} (DMS_MAPRDTL {r['MAPDTLID']})"
            column = _model(MappingColumn, r, what, problems[r["MAPREF"]])
            if column is not None:
                columns[r["MAPREF"]].append(column)
        all_schedules = _rows(conn, s.dms_jobsch, s.dms_jobsch.c.jobschid, current_only=False)
        schedule_mapref = {r["JOBSCHID"]: r["MAPREF"] for r in all_schedules}
        schedules: dict[str, list[Schedule]] = defaultdict(list)
        for r in all_schedules:
            if r["CURFLG"] == "Y" and (mapref is None or r["MAPREF"] == mapref):
                parent = schedule_mapref.get(r["DPND_JOBSCHID"]) if r["DPND_JOBSCHID"] else None
                what = f"schedule DMS_JOBSCH {r['JOBSCHID']}"
                row = {**r, "depends_on_mapref": parent}
                schedule = _model(Schedule, row, what, problems[r["MAPREF"]])
                if schedule is not None:
                    schedules[r["MAPREF"]].append(schedule)
        jobs: dict[str, list[Job]] = defaultdict(list)
        for r in _rows(conn, s.dms_job, s.dms_job.c.jobid, where=_of_mapping(s.dms_job, mapref)):
            row = {**r, "schedules": tuple(schedules.get(r["MAPREF"], ()))}
            job = _model(Job, row, f"job DMS_JOB {r['JOBID']}", problems[r["MAPREF"]])
            if job is not None:
                jobs[r["MAPREF"]].append(job)
        findings: dict[str, list[Finding]] = defaultdict(list)
        errors = _of_mapping(s.dms_maperr, mapref)
        for r in _rows(
            conn, s.dms_maperr, s.dms_maperr.c.maperrid, current_only=False, where=errors
        ):
            if (finding := _maperr(r)) is not None:
                findings[finding.mapref].append(finding)
        params = _params(conn)
        reports = {} if mapref is not None else _reports(conn, source_sql, connections)
        file_loads = {} if mapref is not None else _file_loads(conn, connections)
        mappings: dict[str, Mapping] = {}
        for r in _rows(conn, s.dms_mapr, s.dms_mapr.c.mapid, where=_of_mapping(s.dms_mapr, mapref)):
            ref = r["MAPREF"]
            if ref in mappings:
                problems[ref].append(
                    f"DMS_MAPR has another current row for {ref} (MAPID {mappings[ref].id}): "
                    f"the later one, MAPID {r['MAPID']}, is used"
                )
            source = source_sql.get(r["MAPRSQLCD"]) if r["MAPRSQLCD"] else None
            source_con = source.connection_id if source else None
            names = {name_of.get(source_con), name_of.get(r["TRGCONID"])} - {None}
            problems[ref] += by_sql.get(r["MAPRSQLCD"], [])
            problems[ref] += [p for name in sorted(names) for p in by_connection.get(name, [])]
            row = {
                **r,
                "columns": tuple(columns.get(ref, ())),
                "source": source,
                "source_connection": connections.get(source_con) if source else None,
                "target_connection": connections.get(r["TRGCONID"]),
                "jobs": tuple(jobs.get(ref, ())),
                "findings": tuple(findings.get(ref, ())),
            }
            mappings[ref] = _model(
                Mapping,
                row,
                f"DMS_MAPR {r['MAPID']}",
                problems[ref],
                {"MAPID": 0, "MAPREF": str(ref)},
            )
    return Catalog(
        mappings=mappings,
        reports=reports,
        file_loads=file_loads,
        connections=connections,
        source_sql=source_sql,
        params=params,
        read_findings={
            ref: tuple(
                Finding(mapref=ref, severity=Severity.ERROR, message=m) for m in problems[ref]
            )
            for ref in mappings
            if problems.get(ref)
        },
    )
