"""What went wrong in a load, in DMS_JOBERR's words (TRANSIENT | PERMANENT | VALIDATION |
DATA), and how a failure or a stop is written to the log tables."""

from __future__ import annotations

import traceback
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from dms_orchestration.db.errorcodes import error_code
from dms_orchestration.dmslog.reader import committed_chunks
from dms_orchestration.dmslog.writer import LoadCounts, log_writer
from dms_orchestration.engine.checkpoint import CheckpointError
from dms_orchestration.engine.spec import LoadSpec, MappingInvalid
from dms_orchestration.engine.target import SchemaDrift
from dms_orchestration.settings import ConfigError, dms_now
from dms_orchestration.vocabulary import Status


class DataError(ValueError):
    """The extract itself is wrong (duplicate or NULL business keys, a value the target
    cannot hold); `keys` names some of the rows at fault."""

    def __init__(self, message: str, keys: list[str] | None = None) -> None:
        super().__init__(message)
        self.keys = keys or []


def null_key_error(spec: LoadSpec, nulls: int, columns: list[str]) -> DataError:
    return DataError(
        f"mapping {spec.mapref}: {nulls} source row(s) have a NULL business key "
        f"({', '.join(columns)})"
    )


def duplicate_key_error(spec: LoadSpec, rows: Sequence[Sequence[Any]]) -> DataError:
    """The DATA error naming duplicate keys: `rows` are (key part..., count), at most 5."""
    keys = ["/".join(str(v) for v in row[:-1]) for row in rows]
    why = (
        "a lookup returns several rows for one key"
        if spec.aggregated
        else "give the non-key columns a MAPCMBCD to aggregate them, or fix the source"
    )
    return DataError(
        f"mapping {spec.mapref}: duplicate business keys in the source extract "
        f"({', '.join(k.name for k in spec.keys)} = {', '.join(keys)}"
        f"{' ...' if len(rows) == 5 else ''}); {why}",
        keys,
    )


def error_type(exc: BaseException) -> str:
    if isinstance(exc, MappingInvalid | SchemaDrift | CheckpointError | ConfigError):
        return "VALIDATION"
    if isinstance(exc, DataError | sa.exc.DataError | sa.exc.IntegrityError):
        return "DATA"
    # by the database's code, never the message: connection lost, deadlock, lock timeout,
    # serialization failure, too many connections, SQLite busy -- a retry may pass
    code = error_code(exc)
    if isinstance(exc, TimeoutError) or (code is not None and code.transient):
        return "TRANSIENT"
    return "PERMANENT"


def is_transient(exc: BaseException) -> bool:
    return error_type(exc) == "TRANSIENT"


def is_interruption(exc: BaseException) -> bool:
    """A stop (Ctrl-C, a terminated run), not a failure."""
    return not isinstance(exc, Exception)


def error_text(exc: BaseException) -> str:
    """What an error says: the driver's own words for a database error."""
    return str(getattr(exc, "orig", None) or exc).strip()


def describe(exc: BaseException) -> str:
    text = error_text(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"


def record_chunk_end(
    meta: sa.Engine,
    *,
    prcid: int,
    mapref: str,
    jobid: int | None,
    chunk: int,
    chunks: int,
    exc: BaseException,
    start: datetime,
    stopped: bool = False,
    joblogid: int | None = None,
) -> None:
    """The DMS_JOBLOG row (FL or ST: the chunk's IP row `joblogid`, or a new one) and, for
    a failure, the DMS_JOBERR row of a chunk; `stopped`: the load was stopped (its
    statement cancelled from another thread)."""
    status = Status.ST if stopped or is_interruption(exc) else Status.FL
    writer = log_writer(meta)
    if joblogid is not None:
        writer.finish_chunk_row(joblogid, prcid, counts=LoadCounts(), status=status)
    else:
        writer.write_joblog(
            prcid=prcid,
            mapref=mapref,
            jobid=jobid,
            chunkno=chunk,
            chunkcnt=chunks,
            counts=LoadCounts(),
            status=status,
            start=start,
            end=dms_now(),
        )
    if status == Status.FL:
        writer.write_joberr(
            prcid=prcid,
            mapref=mapref,
            jobid=jobid,
            chunkno=chunk,
            **_joberr_fields(exc),
        )


def _joberr_fields(exc: BaseException) -> dict[str, str | None]:
    """DMS_JOBERR's words for an exception: type, database error code (SQLSTATE,
    ORA-nnnnn, SQLITE_...), message, traceback, keys at fault."""
    code = error_code(exc)
    return dict(
        errtyp=error_type(exc),
        errcd=code.code if code else None,
        message=describe(exc),
        detail="".join(traceback.format_exception(exc)),
        keyval=", ".join(getattr(exc, "keys", [])) or None,
    )


def record_load_end(
    meta: sa.Engine,
    *,
    prcid: int,
    mapref: str,
    jobid: int | None,
    exc: BaseException,
    logged: bool = False,
) -> None:
    """Close DMS_PRCLOG as FL (with DMS_JOBERR unless a chunk logged it) or ST, and the
    load's DMS_JOBLOG rows still IP (no chunk runs any more); the message says which
    chunks had committed their rows, if any did."""
    applied, writer = _applied(meta, prcid), log_writer(meta)
    if is_interruption(exc):
        writer.close_process(
            prcid, Status.ST, f"stopped: {describe(exc)}{applied}", chunks_over=True
        )
        return
    if not logged:
        writer.write_joberr(
            prcid=prcid,
            mapref=mapref,
            jobid=jobid,
            **_joberr_fields(exc),
        )
    writer.close_process(prcid, Status.FL, f"{describe(exc)}{applied}", chunks_over=True)


def _applied(meta: sa.Engine, prcid: int) -> str:
    try:
        chunks = committed_chunks(meta, prcid)
    except sa.exc.SQLAlchemyError:
        return ""  # the log write that follows reports the database's trouble
    if not chunks:
        return ""
    return (
        f"; chunk(s) {', '.join(map(str, chunks))} had committed their rows before "
        "(they stay applied; the next load applies the rest)"
    )
