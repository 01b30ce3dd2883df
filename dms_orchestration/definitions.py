"""The Dagster code location: DMS metadata -> Definitions (named in workspace.yaml).

The metadata is read once per code-server load and handed to run workers and step
processes as reconstruction metadata, so they never query it again. A mapping that is
invalid still appears as an asset that shows its findings (a run of it fails at once).
"""

from __future__ import annotations

import warnings

import dagster as dg
from dagster._core.definitions.definitions_load_context import (
    DefinitionsLoadContext,
    DefinitionsLoadType,
)

from dms_orchestration.db.connect import metadata_engine
from dms_orchestration.defs.assets import (
    LoadSteps,
    asset_key,
    mapping_asset,
    mapping_checks,
    upstream_assets,
)
from dms_orchestration.defs.jobs import mapping_job
from dms_orchestration.defs.resources import DmsResource
from dms_orchestration.defs.schedules import schedule_definition
from dms_orchestration.defs.sensors import (
    close_failed_runs,
    close_stopped_runs,
    dependency_cycles,
    dependency_sensor,
    job_name,
    queue_sensor,
)
from dms_orchestration.metadata.catalog import load_catalog
from dms_orchestration.metadata.frequency import FrequencyError
from dms_orchestration.metadata.models import Catalog, Finding
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


def build_definitions(catalog: Catalog, settings: Settings) -> dg.Definitions:
    # the rule checks need no database: an invalid mapping shows why before any validate run
    findings: dict[str, list[Finding]] = {
        ref: [f for f in rule_findings(m) if f not in m.findings]
        for ref, m in catalog.mappings.items()
    }
    edges: dict[str, set[str]] = {}
    for m in catalog.mappings.values():
        for row in (s for job in m.jobs for s in job.schedules):
            if row.depends_on_mapref:
                edges.setdefault(m.ref, set()).add(row.depends_on_mapref)
    in_cycle = set()
    for cycle in dependency_cycles(edges):
        in_cycle |= set(cycle)
        for ref in set(cycle) & set(findings):
            findings[ref].append(
                Finding(
                    mapref=ref, severity="ERROR", message=f"dependency cycle: {' -> '.join(cycle)}"
                )
            )
    dialect = settings.database_url.get_backend_name()
    assets, jobs, schedules, sensors = [], {}, [], []
    for m in catalog.mappings.values():
        active = [job for job in m.jobs if job.active]
        if active:
            jobs[m.ref] = mapping_job(
                job_name(m.ref),
                asset_key(m),
                description=active[0].description or f"Load {m.ref}",
                tags={"dms/mapref": m.ref, "dms/jobid": str(active[0].id)},
            )
        for row in (s for job in active for s in job.schedules if not s.depends_on_mapref):
            try:
                schedules.append(schedule_definition(jobs[m.ref], row, str(settings.timezone)))
            except FrequencyError as exc:
                findings[m.ref].append(
                    Finding(mapref=m.ref, severity="ERROR", message=f"schedule {row.id}: {exc}")
                )
    deps = upstream_assets(catalog, dialect)
    steps = LoadSteps(catalog, max((len(d) for d in deps.values()), default=0))
    for m in catalog.mappings.values():
        assets.append(mapping_asset(m, steps, deps[m.ref], findings[m.ref]))
        for row in (s for job in m.jobs if job.active for s in job.schedules):
            parent = row.depends_on_mapref
            if parent and m.ref not in in_cycle and parent in jobs and m.ref in jobs:
                sensors.append(dependency_sensor(jobs[parent], jobs[m.ref], row.id))
    sensors += [queue_sensor(list(jobs.values()), catalog), close_failed_runs, close_stopped_runs]
    return dg.Definitions(
        assets=assets,
        asset_checks=[mapping_checks(m) for m in catalog.mappings.values()],
        jobs=list(jobs.values()),
        schedules=schedules,
        sensors=sensors,
        resources={"dms": DmsResource()},
    )


def definitions(settings: Settings | None = None) -> dg.Definitions:
    settings = settings or load_settings()
    catalog = read_catalog(settings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)  # with_reconstruction_metadata
        return build_definitions(catalog, settings).with_reconstruction_metadata(
            {CATALOG_KEY: catalog.model_dump_json()}
        )


@dg.definitions
def defs() -> dg.Definitions:
    """What Dagster loads (workspace.yaml): built when the code location loads, not when
    this module is imported."""
    return definitions()
