"""`dms mappings import` / `export`: mapping files <-> DMS rows, with legacy versioning.

An edit writes a new CURFLG='Y' row and sets the old one to 'N'; rows whose values are
unchanged are left alone, so importing an export changes nothing. The whole import is
one transaction: a bad file leaves the schema as it was.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

import sqlalchemy as sa
from pydantic import BaseModel

from dms_orchestration.db import schema as s
from dms_orchestration.db.connect import write_transaction
from dms_orchestration.ids.provider import next_ids
from dms_orchestration.metadata.authoring_fields import (
    CHECKPOINT,
    COLUMN,
    CONNECTION,
    FILE_COLUMN,
    FILE_LOAD,
    JOB,
    LOOKUP,
    MAPPING,
    MAPPING_TARGET,
    PARAM,
    REPORT,
    SCHEDULE,
    SOURCE_SQL,
    TARGET,
    file_values,
    row_values,
    timestamp,
)
from dms_orchestration.metadata.catalog import load_catalog
from dms_orchestration.metadata.mapping_file import (
    CheckpointSpec,
    ColumnSpec,
    ConnectionSpec,
    FileColumnSpec,
    FileLoadSpec,
    JobSpec,
    LookupSpec,
    MappingFile,
    MappingFileError,
    MappingSpec,
    ParamSpec,
    ReportSpec,
    ScheduleSpec,
    SourceSqlSpec,
    TargetSpec,
)
from dms_orchestration.metadata.models import (
    Catalog,
    Connection,
    FileLoad,
    Job,
    Mapping,
    MappingColumn,
    Report,
)
from dms_orchestration.settings import dms_now


def _norm(value):
    """Compare DB values and file values on equal terms."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else value
    if isinstance(value, date):
        return timestamp(value)
    if isinstance(value, str) and value == "":
        return None
    return value


@dataclass
class ImportReport:
    new: Counter = field(default_factory=Counter)
    changed: Counter = field(default_factory=Counter)
    unchanged: Counter = field(default_factory=Counter)
    retired: Counter = field(default_factory=Counter)

    @property
    def is_noop(self) -> bool:
        return not (self.new or self.changed or self.retired)

    def summary(self) -> list[tuple[str, int, int, int, int]]:
        tables = sorted(set(self.new) | set(self.changed) | set(self.unchanged) | set(self.retired))
        return [
            (t, self.new[t], self.changed[t], self.unchanged[t], self.retired[t]) for t in tables
        ]


class _Ids:
    """Ids reserved before the write transaction (on SQLite the provider's own
    transaction could not run while ours holds the write lock); unused ones are gaps."""

    def __init__(self, engine: sa.Engine, needs: dict[str, int]) -> None:
        self._ids = {entity: iter(next_ids(engine, entity, n)) for entity, n in needs.items() if n}

    def take(self, entity: str) -> int:
        return next(self._ids[entity])


class _Writer:
    def __init__(self, conn: sa.Connection, ids: _Ids, report: ImportReport) -> None:
        self.conn, self.ids, self.report, self.now = conn, ids, report, dms_now()

    def current(self, table: sa.Table, **natural_key) -> list[dict]:
        query = sa.select(table).where(table.c.curflg == "Y")
        for col, value in natural_key.items():
            query = query.where(table.c[col] == value)
        pk = list(table.primary_key.columns)[0]
        return [dict(r._mapping) for r in self.conn.execute(query.order_by(pk))]

    def retire(self, table: sa.Table, row: dict) -> None:
        pk = list(table.primary_key.columns)[0]
        values = {"curflg": "N"}
        if "recupdt" in table.c:
            values["recupdt"] = self.now
        self.conn.execute(sa.update(table).where(pk == row[pk.name]).values(**values))
        self.report.retired[table.name.upper()] += 1

    def upsert(self, table: sa.Table, existing: dict | None, values: dict) -> int:
        """Insert `values` as the current row unless `existing` already equals it."""
        name = table.name.upper()
        pk = list(table.primary_key.columns)[0]
        if existing is not None:
            if all(_norm(existing.get(k)) == _norm(v) for k, v in values.items()):
                self.report.unchanged[name] += 1
                return existing[pk.name]
            self.retire(table, existing)
            self.report.retired[name] -= 1
            self.report.changed[name] += 1
        else:
            self.report.new[name] += 1
        new_id = self.ids.take(name)
        row = {pk.name: new_id, **values, "curflg": "Y"}
        if "reccrdt" in table.c:
            row["reccrdt"] = self.now
        self.conn.execute(sa.insert(table).values(**row))
        return new_id


def _column_values(mapref: str, spec: ColumnSpec) -> dict:
    """A DMS_MAPRDTL row: the declared fields, the lookup's columns and the key's flag
    and position (TRGKEYSEQ)."""
    return dict(
        mapref=mapref,
        **row_values(COLUMN, spec),
        **row_values(LOOKUP, spec.lookup),
        trgkeyflg="Y" if spec.key is not None else "N",
        trgkeyseq=spec.key,
    )


def _schedule_values(mapref: str, job_id: int, spec: ScheduleSpec, parent: int | None) -> dict:
    """A DMS_JOBSCH row: the declared fields, the job and the parent schedule's id."""
    return dict(jobid=job_id, mapref=mapref, **row_values(SCHEDULE, spec), dpnd_jobschid=parent)


def _id_needs(file: MappingFile) -> dict[str, int]:
    columns = sum(len(m.columns) for m in file.mappings)
    jobs = [m for m in file.mappings if m.job]
    return {
        "DMS_DBCONDTLS": len(file.connections),
        "DMS_MAPRSQL": len(file.sql),
        "DMS_MAPR": len(file.mappings),
        "DMS_MAPRDTL": columns,
        "DMS_JOB": len(jobs),
        "DMS_JOBSCH": sum(len(m.job.schedules) for m in jobs),
        "DMS_JOBDTL": sum(len(m.columns) for m in jobs),
        "DMS_RPRT": len(file.reports),
        "DMS_FLUPLD": len(file.file_loads),
        "DMS_FLUPLDDTL": sum(len(f.columns) for f in file.file_loads),
    }


# the DMS column each field of the file is stored in: spec -> (table, {field: column})
_STORED_IN: dict[type, tuple[str, dict[str, str]]] = {
    ParamSpec: (
        "DMS_PARAMS",
        {"code": "PRCD", "value": "PRVAL", "type": "PRTYP", "description": "PRDESC"},
    ),
    ConnectionSpec: (
        "DMS_DBCONDTLS",
        {
            "name": "CONNM",
            "host": "DBHOST",
            "port": "DBPORT",
            "service_name": "DBSID",
            "database": "DBNM",
            "user": "DBUSR",
            "password_env": "DBPSWDENV",
            "url": "DBURL",
        },
    ),
    SourceSqlSpec: ("DMS_MAPRSQL", {"code": "MAPRSQLCD", "description": "MAPRSQLDESC"}),
    MappingSpec: (
        "DMS_MAPR",
        {
            "ref": "MAPREF",
            "description": "MAPDESC",
            "source_system": "SRCSYS",
            "sql": "MAPRSQLCD",
            "bulk_rows": "BLKPRCROWS",
        },
    ),
    TargetSpec: ("DMS_MAPR", {"table": "TRGTBNM", "schema_": "TRGSCHM"}),
    CheckpointSpec: ("DMS_MAPR", {"column": "CHKPNTCLNM", "function": "CHKPNTFN"}),
    ColumnSpec: (
        "DMS_MAPRDTL",
        {
            "name": "TRGCLNM",
            "type": "TRGCLDTYP",
            "description": "TRGCLDESC",
            "key": "TRGKEYSEQ",
            "order": "EXCSEQ",
        },
    ),
    LookupSpec: ("DMS_MAPRDTL", {"key": "KEYCLNM", "value": "VALCLNM"}),
    JobSpec: ("DMS_JOB", {"description": "JOBDESC"}),
    ScheduleSpec: ("DMS_JOBSCH", {"day": "FRQDD"}),
    FileLoadSpec: (
        "DMS_FLUPLD",
        {
            "ref": "FLUPLDREF",
            "description": "FLUPLDDESC",
            "path": "FLPATH",
            "archive": "ARCHPATH",
            "delimiter": "DELIM",
        },
    ),
    FileColumnSpec: (
        "DMS_FLUPLDDTL",
        {"name": "TRGCLNM", "type": "TRGCLDTYP", "source": "SRCCLNM", "default": "DFLTVAL"},
    ),
    ReportSpec: (
        "DMS_RPRT",
        {
            "ref": "RPRTREF",
            "description": "RPRTDESC",
            "sql": "MAPRSQLCD",
            "path": "OUTPATH",
            "day": "FRQDD",
        },
    ),
}
INT_LIMIT = 2**31 - 1  # an INT column (PostgreSQL INTEGER, the narrowest of the three)


def _too_big(value, table: str, column: str, dialect: str) -> str | None:
    """Why `value` does not fit its DMS column, or None. Oracle's VARCHAR2(n) counts
    bytes; PostgreSQL counts characters (SQLite would keep it whole, and so differ)."""
    spec = s.TABLES_BY_NAME[table].column(column)
    where = f"{table}.{column}"
    if isinstance(value, str) and spec.kind == "VC":
        size, unit = len(value), "characters"
        if dialect == "oracle":
            size, unit = len(value.encode("utf-8")), "bytes"
        if size > spec.size:
            return f"{size} {unit}, longer than {where} (VARCHAR({spec.size}))"
    if isinstance(value, int) and spec.kind == "INT" and abs(value) > INT_LIMIT:
        return f"{value} is larger than {where} holds ({INT_LIMIT})"
    return None


def _label(item, index: int):
    """A list item's name in a fault's path, as the file's own checks write it."""
    names = (getattr(item, k, None) for k in ("ref", "name", "code"))
    return next((n for n in names if n), index)


def _oversized(node: BaseModel, path: str, dialect: str) -> Iterator[str]:
    """`path.field: why` of every value too long (or large) for its DMS column."""
    table, columns = _STORED_IN.get(type(node), ("", {}))
    for name, info in type(node).model_fields.items():
        value = getattr(node, name)
        where = ".".join(p for p in (path, info.alias or name) if p)
        if isinstance(value, BaseModel):
            yield from _oversized(value, where, dialect)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                yield from _oversized(item, f"{where}[{_label(item, i)}]", dialect)
        elif name in columns and value is not None:
            why = _too_big(value, table, columns[name], dialect)
            if why:
                yield f"{where}: {why}"


def _check_sizes(file: MappingFile, dialect: str) -> None:
    """Refuse values longer than their DMS columns, naming the field (rather than a
    database error, or a value cut or kept whole depending on the database)."""
    problems = list(_oversized(file, "", dialect))
    if problems:
        raise MappingFileError(
            "the mapping file has values too long for their DMS columns:\n  "
            + "\n  ".join(problems)
        )


def _duplicate_columns(m: MappingSpec) -> list[str]:
    """Target columns named twice (without regard to case, as validation compares them)."""
    spellings: dict[str, list[str]] = defaultdict(list)
    for col in m.columns:
        spellings[col.name.upper()].append(col.name)
    return [
        f"mapping {m.ref}: column {' / '.join(names)} appears {len(names)} times"
        for names in spellings.values()
        if len(names) > 1
    ]


def _check_references(file: MappingFile, catalog: Catalog) -> None:
    """Names a file refers to must exist in the file or already in the schema."""
    connections = {c.name for c in file.connections} | {
        c.name for c in catalog.connections.values()
    }
    sql_codes = {q.code for q in file.sql} | set(catalog.source_sql)
    maprefs = {m.ref for m in file.mappings} | set(catalog.mappings)
    problems = []
    for q in file.sql:
        if q.connection and q.connection not in connections:
            problems.append(f"sql {q.code}: unknown connection {q.connection!r}")
    for m in file.mappings:
        if m.target.connection and m.target.connection not in connections:
            problems.append(f"mapping {m.ref}: unknown target connection {m.target.connection!r}")
        if m.sql not in sql_codes:
            problems.append(f"mapping {m.ref}: unknown sql code {m.sql!r}")
        for sch in m.job.schedules if m.job else ():
            if sch.depends_on and sch.depends_on not in maprefs:
                problems.append(f"mapping {m.ref}: depends_on unknown mapping {sch.depends_on!r}")
        problems += _duplicate_columns(m)
    for r in file.reports:
        if r.sql not in sql_codes:
            problems.append(f"report {r.ref}: unknown sql code {r.sql!r}")
    for f in file.file_loads:
        if f.target.connection and f.target.connection not in connections:
            problems.append(f"file load {f.ref}: unknown target connection {f.target.connection!r}")
        names = Counter(c.name.upper() for c in f.columns)
        problems += [
            f"file load {f.ref}: column {n} appears twice" for n, k in names.items() if k > 1
        ]
    for kind, names in (
        ("connection", [c.name for c in file.connections]),
        ("sql", [q.code for q in file.sql]),
        ("mapping", [m.ref for m in file.mappings]),
        ("report", [r.ref for r in file.reports]),
        ("file load", [f.ref for f in file.file_loads]),
    ):
        for name, count in Counter(names).items():
            if count > 1:
                problems.append(f"{kind} {name!r} appears {count} times in the file")
    if problems:
        raise MappingFileError(
            "the mapping file does not fit together:\n  " + "\n  ".join(problems)
        )


def import_mapping_file(engine: sa.Engine, file: MappingFile) -> ImportReport:
    _check_sizes(file, engine.dialect.name)
    _check_references(file, load_catalog(engine))
    ids = _Ids(engine, _id_needs(file))
    report = ImportReport()
    with write_transaction(engine) as conn:
        w = _Writer(conn, ids, report)
        _import_params(w, file.params)
        con_ids = {}
        for spec in file.connections:
            rows = w.current(s.dms_dbcondtls, connm=spec.name)
            con_ids[spec.name] = w.upsert(
                s.dms_dbcondtls, rows[0] if rows else None, row_values(CONNECTION, spec)
            )
        for spec in file.sql:
            _import_source_sql(w, con_ids, spec)
        for spec in file.mappings:
            _import_mapping(w, con_ids, spec)
        for spec in file.mappings:
            if spec.job:
                _import_job(w, spec)
        for spec in file.reports:
            _import_report(w, spec)
        for spec in file.file_loads:
            _import_file_load(w, con_ids, spec)
    return report


def _import_source_sql(w: _Writer, con_ids: dict[str, int], spec: SourceSqlSpec) -> None:
    rows = w.current(s.dms_maprsql, maprsqlcd=spec.code)
    values = dict(
        **row_values(SOURCE_SQL, spec),
        sqlconid=_connection_id(w, con_ids, spec.connection),
    )
    w.upsert(s.dms_maprsql, rows[0] if rows else None, values)


def _import_file_load(w: _Writer, con_ids: dict[str, int], spec: FileLoadSpec) -> None:
    rows = w.current(s.dms_flupld, flupldref=spec.ref)
    values = dict(
        **row_values(FILE_LOAD, spec),
        **row_values(TARGET, spec.target),
        trgconid=_connection_id(w, con_ids, spec.target.connection),
    )
    w.upsert(s.dms_flupld, rows[0] if rows else None, values)
    existing = {
        r["trgclnm"].upper(): r
        for r in w.current(s.dms_fluplddtl, flupldref=spec.ref)
        if r["trgclnm"]
    }
    for i, col in enumerate(spec.columns, start=1):
        column = dict(flupldref=spec.ref, **row_values(FILE_COLUMN, col))
        if col.order is None:
            column["excseq"] = i  # no order given: the column's place in the file
        w.upsert(s.dms_fluplddtl, existing.pop(col.name.upper(), None), column)
    for row in existing.values():
        w.retire(s.dms_fluplddtl, row)


def _import_report(w: _Writer, spec: ReportSpec) -> None:
    rows = w.current(s.dms_rprt, rprtref=spec.ref)
    w.upsert(s.dms_rprt, rows[0] if rows else None, row_values(REPORT, spec))


def _connection_id(w: _Writer, con_ids: dict[str, int], name: str | None) -> int | None:
    if name is None:
        return None
    if name not in con_ids:
        con_ids[name] = w.current(s.dms_dbcondtls, connm=name)[0]["conid"]
    return con_ids[name]


def _import_params(w: _Writer, params: list[ParamSpec]) -> None:
    t = s.dms_params
    for p in params:
        values = row_values(PARAM, p)
        key = (t.c.prtyp == p.type) & (t.c.prcd == p.code)
        edits = {col: v for col, v in values.items() if col not in ("prtyp", "prcd")}
        row = w.conn.execute(sa.select(t).where(key)).first()
        if row is None:
            w.conn.execute(sa.insert(t).values(**values, reccrdt=w.now))
            w.report.new["DMS_PARAMS"] += 1
        elif any(row._mapping[col] != v for col, v in edits.items()):
            # DMS_PARAMS has no history columns: its rows are edited in place
            w.conn.execute(sa.update(t).where(key).values(**edits, recupdt=w.now))
            w.report.changed["DMS_PARAMS"] += 1
        else:
            w.report.unchanged["DMS_PARAMS"] += 1


def _import_mapping(w: _Writer, con_ids: dict[str, int], spec: MappingSpec) -> None:
    rows = w.current(s.dms_mapr, mapref=spec.ref)
    values = dict(
        **row_values(MAPPING, spec),
        **row_values(MAPPING_TARGET, spec.target),
        **row_values(CHECKPOINT, spec.checkpoint),
        trgconid=_connection_id(w, con_ids, spec.target.connection),
    )
    w.upsert(s.dms_mapr, rows[0] if rows else None, values)
    existing = {
        r["trgclnm"].upper(): r for r in w.current(s.dms_maprdtl, mapref=spec.ref) if r["trgclnm"]
    }
    for col in spec.columns:
        w.upsert(s.dms_maprdtl, existing.pop(col.name.upper(), None), _column_values(spec.ref, col))
    for row in existing.values():
        w.retire(s.dms_maprdtl, row)


def _import_job(w: _Writer, spec: MappingSpec) -> None:
    job = spec.job
    rows = w.current(s.dms_job, mapref=spec.ref)
    changed_before = w.report.new["DMS_MAPRDTL"] + w.report.changed["DMS_MAPRDTL"]
    job_id = w.upsert(
        s.dms_job, rows[0] if rows else None, dict(mapref=spec.ref, **row_values(JOB, job))
    )
    for extra in rows[1:]:
        w.retire(s.dms_job, extra)
    _freeze_job_columns(w, spec, job_id, rows[0]["jobid"] if rows else None, changed_before)
    existing = w.current(s.dms_jobsch, mapref=spec.ref)
    for i, sch in enumerate(job.schedules):
        parent = _parent_schedule_id(w, sch.depends_on) if sch.depends_on else None
        old = existing[i] if i < len(existing) else None
        if old is not None and parent is not None and _same_parent(w, old, sch.depends_on):
            parent = old["dpnd_jobschid"]  # still the same parent job: keep the link as is
        w.upsert(s.dms_jobsch, old, _schedule_values(spec.ref, job_id, sch, parent))
    for old in existing[len(job.schedules) :]:
        w.retire(s.dms_jobsch, old)


def _freeze_job_columns(
    w: _Writer, spec: MappingSpec, job_id: int, old_job_id: int | None, columns_changed: int
) -> None:
    """DMS_JOBDTL: the mapping's columns as they were when the job was (re)created."""
    current = w.current(s.dms_jobdtl, mapref=spec.ref)
    if current and job_id == old_job_id and not columns_changed:
        return
    for row in current:
        w.retire(s.dms_jobdtl, row)
    for col in spec.columns:
        v = _column_values(spec.ref, col)
        w.conn.execute(
            sa.insert(s.dms_jobdtl).values(
                jobdtlid=w.ids.take("DMS_JOBDTL"),
                jobid=job_id,
                mapref=spec.ref,
                trgclnm=v["trgclnm"],
                trgcldtyp=v["trgcldtyp"],
                trgkeyflg=v["trgkeyflg"],
                trgkeyseq=v["trgkeyseq"],
                maplogic=v["maplogic"],
                scdtyp=v["scdtyp"],
                excseq=v["excseq"],
                curflg="Y",
            )
        )
        w.report.new["DMS_JOBDTL"] += 1


def _parent_schedule_id(w: _Writer, parent_mapref: str) -> int:
    rows = w.current(s.dms_jobsch, mapref=parent_mapref)
    if not rows:
        raise MappingFileError(
            f"depends_on {parent_mapref!r}: that mapping's job has no schedule to depend on"
        )
    return rows[0]["jobschid"]


def _same_parent(w: _Writer, old: dict, parent_mapref: str) -> bool:
    if old["dpnd_jobschid"] is None:
        return False
    row = w.conn.execute(
        sa.select(s.dms_jobsch.c.mapref).where(s.dms_jobsch.c.jobschid == old["dpnd_jobschid"])
    ).first()
    return row is not None and row.mapref == parent_mapref


# ---------------------------------------------------------------- export


def export_mapping_file(engine: sa.Engine, maprefs: list[str] | None = None) -> MappingFile:
    catalog = load_catalog(engine)
    if maprefs:
        missing = [r for r in maprefs if r not in catalog.mappings]
        if missing:
            raise MappingFileError(f"no current mapping named {', '.join(missing)}")
        chosen = [catalog.mappings[r] for r in maprefs]
    else:
        chosen = list(catalog.mappings.values())
    sql_codes = {m.source_sql_code for m in chosen}
    sql = [q for code, q in catalog.source_sql.items() if not maprefs or code in sql_codes]
    used_cons = {q.connection_id for q in sql} | {m.target_connection_id for m in chosen}
    connections = {
        c.name: c for cid, c in catalog.connections.items() if not maprefs or cid in used_cons
    }
    return MappingFile(
        params=[] if maprefs else _param_specs(engine),
        connections=[_connection_spec(c) for c in connections.values()],
        sql=[
            SourceSqlSpec(
                **file_values(SOURCE_SQL, q), connection=_con_name(catalog, q.connection_id)
            )
            for q in sql
        ],
        mappings=[_mapping_spec(catalog, m) for m in chosen],
        reports=[] if maprefs else [_report_spec(r) for r in catalog.reports.values()],
        file_loads=_file_load_specs(catalog, maprefs),
    )


def _file_load_specs(catalog: Catalog, maprefs: list[str] | None) -> list[FileLoadSpec]:
    """Every file load when the whole catalog is exported (none for chosen mappings)."""
    return [] if maprefs else [_file_load_spec(catalog, f) for f in catalog.file_loads.values()]


def _file_load_spec(catalog: Catalog, f: FileLoad) -> FileLoadSpec:
    return FileLoadSpec(
        **file_values(FILE_LOAD, f),
        target=TargetSpec(
            **file_values(TARGET, f), connection=_con_name(catalog, f.target_connection_id)
        ),
        columns=[FileColumnSpec(**file_values(FILE_COLUMN, c)) for c in f.columns],
    )


def _report_spec(r: Report) -> ReportSpec:
    return ReportSpec(**file_values(REPORT, r))


def _connection_spec(c: Connection) -> ConnectionSpec:
    if not c.password_in_url:
        return ConnectionSpec(**file_values(CONNECTION, c))
    # a legacy DBURL that spelled a password out goes out masked, as the catalog holds
    # it: importing the file back is refused until ${NAME} takes the password's place
    spec = ConnectionSpec(**{**file_values(CONNECTION, c), "url": None})
    return spec.model_copy(update={"url": c.url})


def _param_specs(engine: sa.Engine) -> list[ParamSpec]:
    t = s.dms_params
    with engine.connect() as conn:
        rows = conn.execute(sa.select(t).order_by(t.c.prtyp, t.c.prcd)).all()
    return [ParamSpec(**file_values(PARAM, r)) for r in rows]


def _con_name(catalog: Catalog, con_id: int | None) -> str | None:
    return catalog.connections[con_id].name if con_id in catalog.connections else None


def _mapping_spec(catalog: Catalog, m: Mapping) -> MappingSpec:
    job = m.jobs[0] if m.jobs else None
    return MappingSpec(
        **file_values(MAPPING, m),
        target=TargetSpec(
            **file_values(MAPPING_TARGET, m),
            connection=_con_name(catalog, m.target_connection_id),
        ),
        checkpoint=CheckpointSpec(**file_values(CHECKPOINT, m)) if m.checkpoint_strategy else None,
        columns=[_column_spec(c) for c in sorted(m.columns, key=lambda c: c.id)],
        job=_job_spec(job) if job else None,
    )


def _column_spec(c: MappingColumn) -> ColumnSpec:
    """A mapping column: the declared fields, the key's position (1 when a key column has
    none) and the lookup when both its columns are set."""
    return ColumnSpec(
        **file_values(COLUMN, c),
        key=(c.key_seq if c.key_seq is not None else 1) if c.is_key else None,
        lookup=LookupSpec(**file_values(LOOKUP, c)) if c.lookup_key and c.lookup_value else None,
    )


def _job_spec(job: Job) -> JobSpec:
    schedules = [
        ScheduleSpec(**file_values(SCHEDULE, sch), depends_on=sch.depends_on_mapref)
        for sch in job.schedules
    ]
    return JobSpec(**file_values(JOB, job), schedules=schedules)
