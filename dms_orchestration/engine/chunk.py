"""run_chunk(): one chunk of a load, set-based, in the target database.

Stage (INSERT ... SELECT, or a stream from the source), classify every key against the
current target rows, check the keys, reserve surrogate keys, then apply in ONE
transaction: a chunk is applied whole or not at all, and re-running it is safe.
"""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel

from dms_orchestration.db.connect import metadata_engine
from dms_orchestration.db.dialects import Dialect, dialect_of
from dms_orchestration.db.interrupt import cancellable
from dms_orchestration.dmslog.writer import LoadCounts, write_joblog
from dms_orchestration.engine import sqlgen
from dms_orchestration.engine.errors import DataError, record_chunk_end
from dms_orchestration.engine.plan import LoadPlan, resolve
from dms_orchestration.engine.spec import LoadSpec
from dms_orchestration.ids.provider import provider_for
from dms_orchestration.settings import Settings, dms_now, load_settings


class ChunkResult(BaseModel):
    index: int
    counts: LoadCounts
    seconds: float


def _execute(conn: sa.Connection, sql: str, values: dict[str, Any]) -> sa.CursorResult:
    clause = sa.text(sql)
    return conn.execute(clause, {name: values.get(name) for name in clause._bindparams})


def _stream_into(
    src: sa.Engine,
    conn: sa.Connection,
    td: Dialect,
    spec: LoadSpec,
    transform: str,
    staging: str,
    values: dict[str, Any],
) -> None:
    """Rows from a server-side cursor on the source, BLKPRCROWS at a time, into the
    staging table: memory holds one batch, whatever the table size."""
    columns = sqlgen.staging_columns(td, spec)
    with src.connect() as sconn:
        result = _execute(
            sconn.execution_options(stream_results=True, max_row_buffer=spec.batch_rows),
            transform,
            values,
        )
        for batch in result.partitions(spec.batch_rows):
            td.bulk_insert(conn, staging, columns, batch)


def _check_keys(conn: sa.Connection, td: Dialect, spec: LoadSpec, work: str) -> None:
    nulls = conn.execute(sa.text(sqlgen.null_keys(td, spec, work))).scalar()
    if nulls:
        names = ", ".join(k.name for k in spec.keys)
        raise DataError(
            f"mapping {spec.mapref}: {nulls} source row(s) have a NULL business key ({names})"
        )
    dups = conn.execute(sa.text(sqlgen.duplicate_keys(td, spec, work))).all()
    if dups:
        keys = ["/".join(str(v) for v in row[:-1]) for row in dups]
        why = (
            "a lookup returns several rows for one key"
            if spec.aggregated
            else "give the non-key columns a MAPCMBCD to aggregate them, or fix the source"
        )
        raise DataError(
            f"mapping {spec.mapref}: duplicate business keys in the source extract "
            f"({', '.join(k.name for k in spec.keys)} = {', '.join(keys)}"
            f"{' ...' if len(dups) == 5 else ''}); {why}",
            keys,
        )


def _drop(tgt: sa.Engine, names: list[str]) -> None:
    for name in names:
        try:
            with tgt.begin() as conn:
                conn.exec_driver_sql(sqlgen.drop_table(name))
        except sa.exc.DBAPIError:
            pass  # never created; a leftover is dropped by the mapping's next load


def run_chunk(plan: LoadPlan, index: int, settings: Settings | None = None) -> ChunkResult:
    settings = settings or load_settings()
    meta = metadata_engine(settings)
    start = dms_now()
    mapping = plan.mapping
    spec, src, tgt = resolve(mapping, settings)
    sd, td = dialect_of(src), dialect_of(tgt)
    bounds = sqlgen.ChunkBounds.of(index, plan.chunk_count)
    values = plan.binds(index)
    transform = sqlgen.transform_query(spec, sd, bounds, plan.windowed)
    work = sqlgen.work_table(td, spec, "a", plan.prcid, index)
    staging = sqlgen.work_table(td, spec, "s", plan.prcid, index)
    made: list[str] = []
    began = time.perf_counter()
    try:
        _drop(tgt, [work, staging])  # a failed earlier try of this same chunk
        with tgt.connect() as conn:
            conn = conn.execution_options(dms_write_lock=True)
            with conn.begin():
                if plan.same_database:
                    staged = f"({transform})"
                else:
                    conn.exec_driver_sql(sqlgen.create_staging(td, spec, staging))
                    made.append(staging)
                    _stream_into(src, conn, td, spec, transform, staging, values)
                    staged = staging
                made.append(work)
                with cancellable(tgt):
                    classify = sqlgen.classify(td, spec, staged, work, bounds, plan.full_extract)
                    _execute(conn, classify, values)
            with cancellable(tgt), conn.begin():
                if td.name == "postgresql":  # fresh statistics for the apply statements' plans
                    conn.exec_driver_sql(f"ANALYZE {work}")
                _check_keys(conn, td, spec, work)
                acts = {
                    r[0]: (int(r[1]), int(r[2] or 0))
                    for r in conn.execute(sa.text(sqlgen.action_counts(work)))
                }
            new_rows = acts.get("I", (0, 0))[0] + acts.get("V", (0, 0))[0]
            if plan.skey_mode == "SEQUENCE":
                skey = td.next_sequence_value(td.qualified(spec.schema, f"{spec.table}_SEQ"))
            else:
                skey = sqlgen.pool_skey(td, spec)
                if new_rows:
                    values["dms_skey0"] = (
                        provider_for(meta).reserve_range(spec.table, new_rows).start - 1
                    )
            written = {}
            with cancellable(tgt), conn.begin():
                for name, stmt in sqlgen.apply_statements(td, spec, work, skey):
                    written[name] = written.get(name, 0) + _execute(conn, stmt, values).rowcount
        _drop(tgt, made)
        counts = LoadCounts(
            srcrows=sum(srccnt for act, (_, srccnt) in acts.items() if act != "D"),
            insrows=written.get("insrows", 0),
            updrows=written.get("updrows", 0),
            exprows=written.get("exprows", 0),
            delrows=written.get("delrows", 0),
            unchrows=acts.get("N", (0, 0))[0],
        )
        write_joblog(
            meta,
            prcid=plan.prcid,
            mapref=plan.mapref,
            jobid=plan.jobid,
            chunkno=index,
            chunkcnt=plan.chunk_count,
            counts=counts,
            status="PC",
            start=start,
        )
        return ChunkResult(index=index, counts=counts, seconds=time.perf_counter() - began)
    except BaseException as exc:
        _drop(tgt, made)
        record_chunk_end(
            meta,
            prcid=plan.prcid,
            mapref=plan.mapref,
            jobid=plan.jobid,
            chunk=index,
            chunks=plan.chunk_count,
            exc=exc,
            start=start,
        )
        raise
