"""The Dagster code location: DMS metadata -> Definitions (named in workspace.yaml).

The metadata is read once per code-server load and handed to run workers and step
processes as reconstruction metadata, so they never query it again. A mapping that is
invalid still appears as an asset that shows its findings (a run of it fails at once).
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Iterator
from itertools import chain

import dagster as dg
from dagster._core.definitions.definitions_load_context import (
    DefinitionsLoadContext,
    DefinitionsLoadType,
)

from dms_orchestration.db.connect import metadata_engine
from dms_orchestration.defs.assets import (
    LoadSteps,
    mapping_asset,
    mapping_checks,
    source_dialect,
    upstream_mappings,
)
from dms_orchestration.defs.jobs import mapping_job
from dms_orchestration.defs.lineage import catalog_reads
from dms_orchestration.defs.resources import DmsResource
from dms_orchestration.defs.schedules import schedule_definition
from dms_orchestration.defs.sensors import (
    close_failed_runs,
    close_stopped_runs,
    dependency_cycles,
    dependency_sensor,
    queue_sensor,
    use_job_names,
)
from dms_orchestration.defs.translator import (
    CatalogNames,
    DmsTranslator,
    metadata_connection,
    name_catalog,
    translator_from_settings,
)
from dms_orchestration.metadata.catalog import load_catalog
from dms_orchestration.metadata.frequency import FrequencyError
from dms_orchestration.metadata.models import Catalog, Finding, Mapping
from dms_orchestration.metadata.validation import rule_findings
from dms_orchestration.settings import Settings, load_settings

CATALOG_KEY = "dms_orchestration/catalog"


def read_catalog(settings: Settings) -> Catalog:
    """The catalog: from the database on a code-server load, from the reconstruction
    metadata in run workers and step processes."""
    context = DefinitionsLoadContext.get()
    if (
        context.load_type == DefinitionsLoadType.RECONSTRUCTION
        and CATALOG_KEY in context.reconstruction_metadata
    ):
        catalog = Catalog.model_validate_json(context.reconstruction_metadata[CATALOG_KEY])
    else:
        catalog = load_catalog(metadata_engine(settings))
    context.add_to_pending_reconstruction_metadata(CATALOG_KEY, catalog.model_dump_json())
    return catalog


def _finding(ref: str, message: str, severity: str = "ERROR") -> Finding:
    return Finding(mapref=ref, severity=severity, message=message)


def _shared_tables(catalog: Catalog) -> Iterator[Finding]:
    """One table, one mapping: each mapping that writes a table another one writes."""
    writers: dict[tuple, list[str]] = defaultdict(list)
    for m in catalog.mappings.values():
        if m.target_table and m.target_table.strip():
            con = m.target_connection.name if m.target_connection else m.target_connection_id
            schema = (m.target_schema or "").strip().upper()
            writers[(con, schema, m.target_table.strip().upper())].append(m.ref)
    for (_, schema, table), refs in writers.items():
        where = f"{schema}.{table}" if schema else table
        for ref in refs if len(refs) > 1 else ():
            named = ", ".join([r for r in refs[:6] if r != ref][:5])
            if len(refs) > 6:
                named += f" and {len(refs) - 6} more"
            yield _finding(
                ref, f"mapping {named} also writes target table {where}: one table, one mapping"
            )


def _dependencies(catalog: Catalog, active: set[str]) -> tuple[dict, list[Finding]]:
    """The dependencies that can become sensors, (child, parent) -> DMS_JOBSCH row, and the
    findings of DPND_JOBSCHID rows (a parent that does not exist, a cycle, a repeat)."""
    findings, usable = [], {}
    edges: dict[str, set[str]] = defaultdict(set)
    for m in catalog.mappings.values():
        for row in {s.id: s for job in m.jobs for s in job.schedules}.values():
            parent = row.depends_on_mapref
            where = f"schedule {row.id}: DPND_JOBSCHID {row.depends_on_id}"
            if row.depends_on_id is None:
                continue
            if parent is None:
                findings.append(_finding(m.ref, f"{where} names no schedule of a mapping"))
            elif parent not in catalog.mappings:
                findings.append(
                    _finding(m.ref, f"{where} names a schedule of {parent}, not a current mapping")
                )
            elif (m.ref, parent) in usable:
                first = usable[(m.ref, parent)].id
                message = f"{where} repeats the dependency on {parent} of schedule {first}: ignored"
                findings.append(_finding(m.ref, message, "WARNING"))
            else:
                edges[m.ref].add(parent)
                usable[(m.ref, parent)] = row
                if parent not in active:
                    message = f"{where}: {parent} has no active job, so nothing runs after it"
                    findings.append(_finding(m.ref, message, "WARNING"))
    in_cycle = set()
    for cycle in dependency_cycles(edges):
        in_cycle |= set(cycle)
        for ref in sorted(set(cycle)):
            findings.append(_finding(ref, f"dependency cycle: {' -> '.join(cycle)}"))
    return {pair: row for pair, row in usable.items() if pair[0] not in in_cycle}, findings


def _lineage(catalog: Catalog, dialect: str) -> tuple[dict[str, list[str]], list[Finding]]:
    """MAPREF -> the mappings it reads, without the reads that close a cycle (Dagster's
    asset graph has none): those are warnings."""
    deps = upstream_mappings(catalog, dialect)
    findings = []
    for cycle in dependency_cycles({ref: set(parents) for ref, parents in deps.items()}):
        child, parent = cycle[-2], cycle[-1]
        if parent in deps[child]:
            deps[child].remove(parent)
            message = (
                f"its source reads the table of {parent}, which reads its own (lineage "
                f"cycle {' -> '.join(cycle)}): that dependency is left out of the asset graph"
            )
            findings.append(_finding(child, message, "WARNING"))
    return deps, findings


def _jobs(catalog: Catalog, names: CatalogNames) -> tuple[dict, list[Finding]]:
    jobs, findings = {}, []
    for m in catalog.mappings.values():
        active = [job for job in m.jobs if job.active]
        if len(active) > 1:
            message = (
                f"{len(active)} active DMS_JOB rows (JOBID "
                f"{', '.join(str(j.id) for j in active)}): JOBID {active[0].id} is the job"
            )
            findings.append(_finding(m.ref, message, "WARNING"))
        if active:
            jobs[m.ref] = mapping_job(
                names.mappings[m.ref].job,
                names.mappings[m.ref].key,
                description=active[0].description or f"Load {m.ref}",
                tags={"dms/mapref": m.ref, "dms/jobid": str(active[0].id)},
            )
    return jobs, findings


def _schedules(
    catalog: Catalog, names: CatalogNames, jobs: dict, timezone: str
) -> tuple[list[dg.ScheduleDefinition], list[Finding]]:
    """A schedule per clock row of an active job; a row that makes none is a finding."""
    schedules, findings = [], []
    for m in catalog.mappings.values():
        active = [job for job in m.jobs if job.active]
        rows = {s.id: s for job in active for s in job.schedules if s.depends_on_id is None}
        for row in rows.values():
            try:
                name = names.schedules[row.id]
                schedules.append(schedule_definition(jobs[m.ref], row, timezone, name))
            except FrequencyError as exc:
                findings.append(_finding(m.ref, f"schedule {row.id}: {exc}"))
            except Exception as exc:  # any row: one schedule lost, never the location
                findings.append(_finding(m.ref, f"schedule {row.id} is not a schedule: {exc}"))
    return schedules, findings


def _rule_findings(mapping: Mapping, metadata_dialect: str) -> list[Finding]:
    try:
        return rule_findings(mapping, source_dialect(mapping, metadata_dialect))
    except Exception as exc:  # any row content: a finding, never the code location
        return [_finding(mapping.ref, f"the rule checks failed on this mapping: {exc}")]


def build_definitions(
    catalog: Catalog, settings: Settings, translator: DmsTranslator | None = None
) -> dg.Definitions:
    """Every mapping as an asset, whatever its rows hold: what cannot become a Dagster
    object is an ERROR finding on the asset, and a run of it fails at once with them."""
    translator = translator or translator_from_settings(settings)
    translator.metadata_database = metadata_connection(settings)
    names = name_catalog(catalog, translator)
    use_job_names(names.job_names())
    jobs, job_findings = _jobs(catalog, names)
    schedules, schedule_findings = _schedules(catalog, names, jobs, str(settings.timezone))
    dependencies, dependency_findings = _dependencies(catalog, set(jobs))
    backend = settings.database_url.get_backend_name()
    deps, lineage_findings = _lineage(catalog, backend)
    reads = catalog_reads(catalog, names, deps, backend, translator)
    found: dict[str, list[Finding]] = defaultdict(list)
    for f in chain(
        (f for fs in catalog.read_findings.values() for f in fs),
        (f for fs in names.findings.values() for f in fs),
        _shared_tables(catalog),
        job_findings,
        schedule_findings,
        dependency_findings,
        lineage_findings,
        reads.findings,
    ):
        found[f.mapref].append(f)
    blocking = {ref: [f for f in fs if f.severity == "ERROR"] for ref, fs in found.items()}
    upstream = {
        ref: [*(names.mappings[r].key for r in deps[ref]), *reads.upstream.get(ref, [])]
        for ref in catalog.mappings
    }
    steps = LoadSteps(catalog, names, blocking, max(map(len, upstream.values()), default=0))
    assets, checks = [], []
    for m in catalog.mappings.values():
        # the rule checks need no database: an invalid mapping shows why before any validate run
        rules = [f for f in _rule_findings(m, backend) if f not in m.findings]
        shown = [*m.findings, *rules, *found.get(m.ref, [])]
        lineage = reads.metadata.get(m.ref, {})
        assets.append(mapping_asset(names.mappings[m.ref], steps, upstream[m.ref], shown, lineage))
        checks.append(mapping_checks(m, names.mappings[m.ref]))
    sensors = [
        dependency_sensor(jobs[parent], jobs[child], row.id, names.sensors[row.id])
        for (child, parent), row in dependencies.items()
        if child in jobs and parent in jobs
    ]
    sensors += [queue_sensor(list(jobs.values()), catalog), close_failed_runs, close_stopped_runs]
    return dg.Definitions(
        assets=[*assets, *reads.sources],
        asset_checks=checks,
        jobs=list(jobs.values()),
        schedules=schedules,
        sensors=sensors,
        resources={"dms": DmsResource()},
    )


def definitions(
    settings: Settings | None = None, translator: DmsTranslator | None = None
) -> dg.Definitions:
    """The code location; `translator` names the Dagster objects (default: the one
    DMS_TRANSLATOR names, else DmsTranslator)."""
    settings = settings or load_settings()
    catalog = read_catalog(settings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)  # with_reconstruction_metadata
        return build_definitions(catalog, settings, translator).with_reconstruction_metadata(
            {CATALOG_KEY: catalog.model_dump_json()}
        )


@dg.definitions
def defs() -> dg.Definitions:
    """What Dagster loads (workspace.yaml): built when the code location loads, not when
    this module is imported."""
    return definitions()
