"""run_report(): a DMS_RPRT row's query written to its file, streamed (a server-side
cursor, a batch at a time into the file's writer: no whole result in memory), logged as
a process (DMS_PRCLOG, MAPREF = RPRTREF) with its row count (DMS_JOBLOG).

The file is written beside its final name and moved there once complete: a report
that fails leaves no half-written file, and readers never see one.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa

from dms_orchestration.db.connect import metadata_engine
from dms_orchestration.db.connections import connection_engine
from dms_orchestration.db.dialects import dialect_of, sqlglot_dialect
from dms_orchestration.db.sqltext import text_with_params
from dms_orchestration.dmslog.writer import LoadCounts, fit_message, log_writer
from dms_orchestration.engine.errors import error_text
from dms_orchestration.engine.plan import normalize_params
from dms_orchestration.files.writers import EXTENSIONS, WRITERS
from dms_orchestration.metadata.models import Report
from dms_orchestration.metadata.sqlcheck import parse_query, strip_sql
from dms_orchestration.settings import Settings, dms_now, load_settings
from dms_orchestration.vocabulary import ReportFormat, Status

BATCH_ROWS = 10_000
PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
PLACEHOLDERS = ("RPRTREF", "RUNDATE", "PRCID")


class ReportInvalid(ValueError):
    """The report's row breaks the rules; the message names the report and each finding."""

    def __init__(self, rprtref: str, findings: list[str]) -> None:
        super().__init__(f"report {rprtref} is not valid: {'; '.join(findings)}")
        self.rprtref, self.findings = rprtref, findings


@dataclass(frozen=True)
class ReportResult:
    rprtref: str
    prcid: int
    rows: int
    path: Path
    bytes: int
    seconds: float


def report_findings(report: Report, metadata_dialect: str = "") -> list[str]:
    """What keeps a report from running: its format, its path pattern, its query (one
    read-only SELECT in its connection's dialect) and the values its row lost."""
    findings = list(report.problems)
    fmt = _format(report)
    if fmt not in WRITERS:
        findings.append(f"OUTFMT {report.output_format!r} is not one of {', '.join(WRITERS)}")
    if not (report.output_path or "").strip():
        findings.append("OUTPATH is empty")
    else:
        assert report.output_path is not None  # (not empty)
        unknown = [p for p in PLACEHOLDER.findall(report.output_path) if p not in PLACEHOLDERS]
        if unknown:
            findings.append(
                f"OUTPATH names {', '.join('{' + p + '}' for p in unknown)}: only "
                f"{', '.join('{' + p + '}' for p in PLACEHOLDERS)} are filled in"
            )
    if report.source is None or not (report.source.sql or "").strip():
        findings.append(f"MAPRSQLCD {report.source_sql_code!r} names no current DMS_MAPRSQL row")
    else:
        assert report.source.sql is not None  # (not empty)
        _, problem = parse_query(
            report.source.sql, sqlglot_dialect(report.source_connection, metadata_dialect)
        )
        if problem:
            findings.append(f"its query ({report.source_sql_code}) {problem}")
    return findings


def output_path(report: Report, prcid: int, run_date: datetime, home: Path) -> Path:
    """OUTPATH with {RPRTREF}, {RUNDATE} (YYYYMMDD) and {PRCID} filled in, and the
    format's extension when it has none; a relative path is under DMS_HOME."""
    values = {"RPRTREF": report.ref, "RUNDATE": f"{run_date:%Y%m%d}", "PRCID": str(prcid)}
    path = Path(PLACEHOLDER.sub(lambda m: values[m.group(1)], report.output_path or ""))
    if not path.suffix:
        path = path.with_name(path.name + EXTENSIONS[_format(report)])
    return path if path.is_absolute() else home / path


def _format(report: Report) -> str:
    return (report.output_format or "").strip().upper()


def run_report(
    report: Report,
    params: dict[str, str | None] | None = None,
    *,
    settings: Settings | None = None,
    runid: str | None = None,
    prcreqid: int | None = None,
) -> ReportResult:
    """Write the report's file; its DMS_PRCLOG row says PC, or FL with the reason."""
    settings = settings or load_settings()
    meta = metadata_engine(settings)
    log = log_writer(meta)
    params = normalize_params(params)
    values = [params.get(f"p{i}") for i in range(1, 11)]
    prcid = log.open_process(mapref=report.ref, runid=runid, prcreqid=prcreqid, params=values)
    started, t0 = dms_now(), time.perf_counter()
    try:
        findings = report_findings(report, dialect_of(meta).name)
        if findings:
            raise ReportInvalid(report.ref, findings)
        path = output_path(report, prcid, started, settings.dms_home)
        rows = _write(report, connection_engine(report.source_connection, settings), params, path)
    except BaseException as exc:
        status = Status.FL if isinstance(exc, Exception) else Status.ST  # (ST: stopped)
        message = f"report {report.ref} failed: {error_text(exc)}" if status == Status.FL else None
        log.write_joblog(
            prcid=prcid, mapref=report.ref, counts=LoadCounts(), status=status, start=started
        )
        log.close_process(prcid, status, fit_message(message or "report stopped"))
        raise
    counts = LoadCounts(srcrows=rows, insrows=rows)
    log.write_joblog(prcid=prcid, mapref=report.ref, counts=counts, status=Status.PC, start=started)
    log.close_process(prcid, Status.PC, f"report {report.ref}: {rows} rows to {path}")
    return ReportResult(
        report.ref, prcid, rows, path, path.stat().st_size, time.perf_counter() - t0
    )


def _write(report: Report, source: sa.Engine, params: dict[str, str | None], path: Path) -> int:
    """The query's rows into `path`, through a file beside it (moved when complete)."""
    fmt = _format(report)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.part")
    # (report_findings refused a report without its query)
    assert report.source is not None and report.source.sql is not None
    query = text_with_params(strip_sql(report.source.sql), params)
    try:
        with source.connect() as conn:
            # a CSV by the source database itself where it can (PostgreSQL's COPY)
            rows = (
                dialect_of(conn).copy_csv_out(conn, query, partial)
                if fmt == ReportFormat.CSV
                else None
            )
            if rows is None:
                streamed = conn.execution_options(stream_results=True, max_row_buffer=BATCH_ROWS)
                result = streamed.execute(query)
                rows = WRITERS[fmt](partial, list(result.keys()), result.partitions(BATCH_ROWS))
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return rows
