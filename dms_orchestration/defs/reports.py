"""Each current DMS_RPRT row as a Dagster asset (group `reports`, key reports/<rprtref>)
with its job and, when it has a clock (FRQCD ... ENABLEFLG), a schedule; a DMS_PRCREQ
REPORT request runs its job through the queue sensor. Materializing the asset writes the
file (engine/report.py); its path, row count and size are the materialization's
metadata. The asset depends on the mappings whose tables its query reads."""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg
from pydantic import BaseModel, Field

from dms_orchestration.defs.assets import TAG, findings_text, run_options, tables_read
from dms_orchestration.defs.dagster_internals import UnresolvedAssetJobDefinition
from dms_orchestration.defs.jobs import mapping_job
from dms_orchestration.defs.resources import RESOURCE_KEYS, dms_services
from dms_orchestration.defs.run_config import check_run_tags
from dms_orchestration.defs.schedules import schedule_definition
from dms_orchestration.defs.translator import dagster_name
from dms_orchestration.engine.report import report_findings, run_report
from dms_orchestration.files.writers import WRITERS
from dms_orchestration.metadata.models import Catalog, Finding, Report
from dms_orchestration.vocabulary import Severity

GROUP = "reports"


class ReportEntry(BaseModel):
    """What the code location calls a report, and the mappings' assets it reads."""

    key: list[str]
    job: str
    schedule: str
    deps: list[list[str]] = Field(default_factory=list)


def report_entries(
    catalog: Catalog, keys_of: dict[str, dg.AssetKey], jobs_taken: set[str]
) -> dict[str, ReportEntry]:
    """reports/<rprtref> and <rprtref>_report (plus _<RPRTID> where a mapping's asset or
    job, or another report, has the name already), by RPRTREF. `keys_of`: the mappings'
    asset keys by MAPREF."""
    keys_taken = {tuple(k.path) for k in keys_of.values()}
    entries = {}
    for ref, report in sorted(catalog.reports.items()):
        base = dagster_name(ref, "blank")
        key, job = [GROUP, base], f"{base}_report"
        if tuple(key) in keys_taken or job in jobs_taken:
            key, job = [GROUP, f"{base}_{report.id}"], f"{base}_{report.id}_report"
        keys_taken.add(tuple(key))
        jobs_taken.add(job)
        deps = [list(k.path) for k in _deps(report, catalog, keys_of)]
        entries[ref] = ReportEntry(key=key, job=job, schedule=f"{job}_schedule", deps=deps)
    return entries


def _deps(report: Report, catalog: Catalog, keys_of: dict[str, dg.AssetKey]) -> list:
    """The assets of the mappings whose target tables the report's query reads."""
    if report.source is None or not report.source.sql:
        return []
    read = {table for _, table in tables_read(report.source.sql, "")}
    return sorted(
        {
            keys_of[m.ref]
            for m in catalog.mappings.values()
            if m.target_table and m.target_table.upper() in read and m.ref in keys_of
        },
        key=lambda k: k.path,
    )


def report_definitions(
    report: Report, entry: ReportEntry, metadata_dialect: str, timezone: str
) -> tuple[dg.AssetsDefinition, UnresolvedAssetJobDefinition, dg.ScheduleDefinition | None]:
    """The report's asset, job and schedule; a clock its codes do not make is an ERROR
    finding on the asset (no schedule)."""
    job = report_job(report, entry)
    try:
        schedule, problem = report_schedule(report, job, entry, timezone), None
    except Exception as exc:  # any row: no schedule, never the location
        schedule, problem = None, f"no schedule: {exc}"
    deps = [dg.AssetKey(k) for k in entry.deps]
    asset = report_asset(report, entry, deps, metadata_dialect, [problem] if problem else [])
    return asset, job, schedule


def report_asset(
    report: Report,
    entry: ReportEntry,
    deps: Sequence[dg.AssetKey],
    metadata_dialect: str,
    problems: Sequence[str] = (),
) -> dg.AssetsDefinition:
    findings = [
        Finding(mapref=report.ref, severity=Severity.ERROR, message=m)
        for m in [*report_findings(report, metadata_dialect), *problems]
    ]
    fmt = (report.output_format or "").strip().upper()
    sql = report.source.sql if report.source else "(missing)"

    @dg.asset(
        key=dg.AssetKey(entry.key),
        group_name=GROUP,
        deps=deps,
        description=report.description or f"DMS report {report.ref}",
        kinds={fmt.lower()} if fmt in WRITERS else None,
        metadata={
            "dms/rprtref": report.ref,
            "dms/output path": report.output_path or "",
            "dms/query": dg.MetadataValue.md(f"```sql\n{sql}\n```"),
            "dms/findings": dg.MetadataValue.md(findings_text(findings)),
        },
        tags={"dms/rprtref": dagster_name(report.ref, "blank")},
        required_resource_keys=RESOURCE_KEYS,
    )
    def write_report(context) -> dg.MaterializeResult:  # (no annotation: Dagster reads it)
        check_run_tags(context.run.tags)
        options = run_options(dict(context.run.tags))
        with dms_services(context.resources) as settings:
            done = run_report(
                report,
                options["params"],
                settings=settings,
                runid=context.run.run_id,
                prcreqid=options["prcreqid"],
            )
        context.log.info(f"{report.ref}: {done.rows} rows to {done.path}")
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": done.rows,
                "path": dg.MetadataValue.path(str(done.path)),
                "bytes": done.bytes,
                "seconds": round(done.seconds, 3),
                "dms/prcid": str(done.prcid),
            }
        )

    return write_report


def report_job(report: Report, entry: ReportEntry) -> UnresolvedAssetJobDefinition:
    return mapping_job(
        entry.job,
        dg.AssetKey(entry.key),
        description=report.description or f"Write report {report.ref}",
        tags={f"{TAG}rprtref": report.ref},
    )


def report_schedule(
    report: Report, job: UnresolvedAssetJobDefinition, entry: ReportEntry, timezone: str
) -> dg.ScheduleDefinition | None:
    """The report's own clock (None: on demand only); raises FrequencyError for codes
    that make no clock."""
    row = report.schedule
    if row is None:
        return None
    return schedule_definition(
        job, row, timezone, entry.schedule, source=f"DMS_RPRT {report.id}", run_tags={}
    )
