"""The Dagster code location: DMS metadata -> Definitions (named in workspace.yaml).

The metadata is read once per code-server load and handed to run workers as
reconstruction metadata: each mapping on its own, and an index of what the whole catalog
says of each (its Dagster names, the mappings it reads, its findings), each mapping's
entry on its own too. A run worker builds the definitions of the one mapping whose job
it runs from its entries alone (and unpacks no other): a run costs the same with 4 or
2,000 mappings, and never queries the metadata database for its definitions
(`dagster job execute`, with no code server, reads the catalog's rows once). A mapping
that is invalid still appears as an asset that shows its findings (a run of it fails at
once).
"""

from __future__ import annotations

import base64
import gc
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from collections.abc import Mapping as ReadOnly
from dataclasses import dataclass, field
from functools import cached_property
from itertools import chain
from typing import Any, TypeVar

import dagster as dg
from pydantic import BaseModel, Field

import dms_orchestration._gc  # noqa: F401 (first of ours: see there)
from dms_orchestration.db.connect import metadata_engine
from dms_orchestration.defs.assets import (
    MappingLoad,
    chunk_retry,
    mapping_asset,
    source_dialect,
    upstream_mappings,
)
from dms_orchestration.defs.catalog_file import read_catalog, write_catalog
from dms_orchestration.defs.dagster_internals import (
    IMPLICIT_ASSET_JOB_NAME,
    SINGLETON_REPOSITORY_NAME,
    DefinitionsLoadContext,
    DefinitionsLoadType,
    UnresolvedAssetJobDefinition,
)
from dms_orchestration.defs.file_loads import (
    FileLoadEntry,
    file_load_definitions,
    file_load_entries,
)
from dms_orchestration.defs.jobs import mapping_job, run_executor
from dms_orchestration.defs.lineage import CatalogReads, MappingReader, catalog_reads
from dms_orchestration.defs.operations import JOB as OPERATIONS_JOB
from dms_orchestration.defs.operations import operations_definitions
from dms_orchestration.defs.reports import ReportEntry, report_definitions, report_entries
from dms_orchestration.defs.resources import default_resources
from dms_orchestration.defs.schedules import schedule_definition
from dms_orchestration.defs.sensors import (
    alert_failed_runs,
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
    MappingNames,
    mapping_spec,
    metadata_connection,
    name_catalog,
    translator_from_settings,
)
from dms_orchestration.metadata.catalog import load_catalog, load_mapping
from dms_orchestration.metadata.frequency import FrequencyError, clock_for
from dms_orchestration.metadata.models import Catalog, Finding, Mapping
from dms_orchestration.metadata.validation import rule_findings
from dms_orchestration.settings import Settings, load_settings
from dms_orchestration.vocabulary import Severity

# reconstruction metadata: the catalog without its mappings, the index without its
# mappings' entries, each mapping, each mapping's index entry
CATALOG_KEY = "dms_orchestration/catalog"
INDEX_KEY = "dms_orchestration/index"
MAPPING_KEY = "dms_orchestration/mapping/"  # + MAPREF
ENTRY_KEY = "dms_orchestration/entry/"  # + MAPREF
# one mapping's JSON (and one entry's), the dictionary every mapping (entry) is compressed
# with: mappings are much alike, so each packs to ~300 bytes instead of ~700 on its own
DICTIONARY_KEY = "dms_orchestration/dictionary"
ENTRY_DICTIONARY_KEY = "dms_orchestration/entry dictionary"
FILE_KEY = "dms_orchestration/catalog file"  # the file that holds all of the above
_KEYS = (CATALOG_KEY, INDEX_KEY, DICTIONARY_KEY, ENTRY_DICTIONARY_KEY, FILE_KEY)
_PREFIXES = (MAPPING_KEY, ENTRY_KEY)
_Model = TypeVar("_Model", bound=BaseModel)


def _json(model: BaseModel) -> bytes:
    return model.model_dump_json(exclude_defaults=True).encode()


def _pack(model: BaseModel | bytes, dictionary: bytes = b"") -> str:
    """A model as reconstruction metadata: JSON without its defaults, compressed (it
    travels with every run: a 2,000-mapping catalog is 16 MB of JSON, ~1 MB packed),
    with `dictionary` as zlib's preset dictionary if given."""
    data = model if isinstance(model, bytes) else _json(model)
    packer = zlib.compressobj(9, zdict=dictionary) if dictionary else zlib.compressobj(9)
    return base64.b64encode(packer.compress(data) + packer.flush()).decode("ascii")


def _unpack(model: type[_Model], text: str, dictionary: bytes = b"") -> _Model:
    unpacker = zlib.decompressobj(zdict=dictionary) if dictionary else zlib.decompressobj()
    data = unpacker.decompress(base64.b64decode(text)) + unpacker.flush()
    return model.model_validate_json(data)


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


def _job(m: Mapping, names: MappingNames) -> UnresolvedAssetJobDefinition | None:
    """The mapping's job, when it has an active DMS_JOB row (the first one)."""
    active = [job for job in m.jobs if job.active]
    if not active:
        return None
    return mapping_job(
        names.job,
        names.key,
        description=active[0].description or f"Load {m.ref}",
        tags={"dms/mapref": m.ref, "dms/jobid": str(active[0].id)},
    )


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
        job = _job(m, names.mappings[m.ref])
        if job is not None:
            jobs[m.ref] = job
    return jobs, findings


def _schedules(
    catalog: Catalog, names: CatalogNames, jobs: dict, timezone: str, build: bool = True
) -> tuple[list[dg.ScheduleDefinition], list[Finding]]:
    """A schedule per clock row of an active job; a row that makes none is a finding.
    `build=False`: the findings alone (a run needs no schedule)."""
    schedules, findings = [], []
    for m in catalog.mappings.values():
        active = [job for job in m.jobs if job.active]
        rows = {s.id: s for job in active for s in job.schedules if s.depends_on_id is None}
        for row in rows.values():
            try:
                name = names.schedules[row.id]
                if not build:
                    clock_for(row)
                    continue
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


class IndexEntry(BaseModel):
    """What the whole catalog says of one mapping: its Dagster names, the mappings it
    reads, its findings, and (once its asset was built) the rule checks of its rows."""

    key: list[str]
    job: str
    graph: str
    pool: str
    # (lists made by a factory: pydantic deep-copies a default [] for every entry)
    upstream: list[str] = Field(default_factory=list)
    # the keys of the source tables it reads; None: not read yet (no code server)
    sources: list[list[str]] | None = None
    lineage: str | None = None  # its column lineage metadata, serialized by Dagster
    findings: list[Finding] = Field(default_factory=list)
    rules: list[Finding] | None = None  # the rule checks' findings, when made


class LocationIndex(BaseModel):
    """The index of a catalog, by MAPREF; `jobs`: job name -> MAPREF."""

    mappings: dict[str, IndexEntry] = Field(default_factory=dict)
    jobs: dict[str, str] = Field(default_factory=dict)
    reports: dict[str, ReportEntry] = Field(default_factory=dict)  # by RPRTREF
    file_loads: dict[str, FileLoadEntry] = Field(default_factory=dict)  # by FLUPLDREF

    def report_of(self, job_name: str) -> str | None:
        """The RPRTREF whose job this is, if any."""
        return next((ref for ref, e in self.reports.items() if e.job == job_name), None)

    def file_load_of(self, job_name: str) -> str | None:
        """The FLUPLDREF whose job this is, if any."""
        return next((ref for ref, e in self.file_loads.items() if e.job == job_name), None)

    def other_jobs(self) -> list[str]:
        """The jobs of the reports and the file loads."""
        return [*(e.job for e in self.reports.values()), *(e.job for e in self.file_loads.values())]


@dataclass
class CatalogFacts:
    """What the definitions make of the whole catalog before any asset is built."""

    names: CatalogNames
    jobs: dict[str, UnresolvedAssetJobDefinition]
    schedules: list[dg.ScheduleDefinition]
    dependencies: dict  # (child, parent) -> the DMS_JOBSCH row of a dependency sensor
    upstream: dict[str, list[str]]  # MAPREF -> the mappings it reads (lineage)
    # the source tables, and what each mapping reads of them (None: not read)
    reads: CatalogReads | None
    found: dict[str, list[Finding]]  # MAPREF -> findings, the rule checks aside
    reports: dict[str, ReportEntry] = field(default_factory=dict)  # by RPRTREF
    file_loads: dict[str, FileLoadEntry] = field(default_factory=dict)  # by FLUPLDREF

    def sources(self, ref: str) -> list[list[str]] | None:
        if self.reads is None:
            return None
        return [list(k.path) for k in self.reads.upstream.get(ref, [])]

    def lineage(self, ref: str) -> str | None:
        return _lineage_text(self.reads.metadata.get(ref) if self.reads else None)

    def index(self) -> LocationIndex:
        entries = {
            ref: IndexEntry(
                key=list(n.key.path),
                job=n.job,
                graph=n.graph,
                pool=n.pool,
                upstream=self.upstream[ref],
                sources=self.sources(ref),
                lineage=self.lineage(ref),
                findings=self.found.get(ref, []),
            )
            for ref, n in self.names.mappings.items()
        }
        return LocationIndex(
            mappings=entries,
            jobs={job.name: ref for ref, job in self.jobs.items()},
            reports=self.reports,
            file_loads=self.file_loads,
        )


def _lineage_text(metadata: dict | None) -> str | None:
    return dg.serialize_value(metadata) if metadata else None


def catalog_facts(
    catalog: Catalog, settings: Settings, translator: DmsTranslator, reads: bool = True
) -> CatalogFacts:
    """Names, jobs, schedules, dependencies and lineage of every mapping, and what could
    not become a Dagster object: a finding on the mapping's asset. `reads=False`: what
    the index of one run needs: not what each mapping's SQL reads (MappingReader reads it
    for the one mapping run), and no schedules (what their rows get wrong only)."""
    names = name_catalog(catalog, translator)
    use_job_names(names.job_names())
    jobs, job_findings = _jobs(catalog, names)
    timezone = str(settings.timezone)
    schedules, schedule_findings = _schedules(catalog, names, jobs, timezone, build=reads)
    dependencies, dependency_findings = _dependencies(catalog, set(jobs))
    backend = settings.database_url.get_backend_name()
    upstream, lineage_findings = _lineage(catalog, backend)
    read = catalog_reads(catalog, names, upstream, backend, translator) if reads else None
    found: dict[str, list[Finding]] = defaultdict(list)
    for f in chain(
        (f for fs in catalog.read_findings.values() for f in fs),
        (f for fs in names.findings.values() for f in fs),
        _shared_tables(catalog),
        job_findings,
        schedule_findings,
        dependency_findings,
        lineage_findings,
        read.findings if read else (),
    ):
        found[f.mapref].append(f)
    keys_of = {ref: n.key for ref, n in names.mappings.items()}
    taken = set(names.job_names().values())
    reports = report_entries(catalog, keys_of, taken)
    keys_taken = {tuple(k.path) for k in keys_of.values()}
    file_loads = file_load_entries(catalog, keys_taken, taken | set(names.sensors.values()))
    return CatalogFacts(
        names, jobs, schedules, dependencies, upstream, read, dict(found), reports, file_loads
    )


class MappingParts:
    """The asset (with its checks) and job of one mapping at a time, from the index and
    its rows: what every mapping's definitions are made of, all of them for the code
    location, one (and the assets it reads) for a run worker."""

    def __init__(
        self,
        index: LocationIndex,
        mapping_of: Callable[[str], Mapping],
        catalog: Catalog,
        settings: Settings,
        translator: DmsTranslator,
        names: CatalogNames | None = None,
        resources: dict[str, Any] | None = None,
        reader: MappingReader | None = None,
    ) -> None:
        self.index, self.mapping_of, self.translator = index, mapping_of, translator
        self.names_given, self.reader = names, reader
        # the resource layer (defs/resources.py), with any of its resources swapped
        self.resources = {**default_resources(), **(resources or {})}
        self.retry = chunk_retry(catalog)
        self.backend = settings.database_url.get_backend_name()
        self.catalog, self.timezone = catalog, str(settings.timezone)
        self.assets: dict[str, dg.AssetsDefinition] = {}

    def names(self, ref: str) -> MappingNames:
        if self.names_given is not None:
            return self.names_given.mappings[ref]
        e = self.index.mappings[ref]
        spec = mapping_spec(self.mapping_of(ref), self.translator)
        key = dg.AssetKey(e.key)
        return MappingNames(key, spec, e.job, e.graph, e.pool)

    def asset(self, ref: str) -> dg.AssetsDefinition:
        if ref not in self.assets:  # once: also the upstream asset of other mappings
            self.assets[ref] = self._asset(ref)
        return self.assets[ref]

    def _asset(self, ref: str) -> dg.AssetsDefinition:
        m, entry, names = self.mapping_of(ref), self.index.mappings[ref], self.names(ref)
        # the rule checks need no database: an invalid mapping shows why before any validate
        # run; made once per code-server load, then kept in the index for the run workers
        if entry.rules is None:
            entry.rules = [f for f in _rule_findings(m, self.backend) if f not in m.findings]
        rules = entry.rules
        if entry.sources is None:  # what its SQL reads, read for it alone
            sources, lineage, found = self.reader.read(ref) if self.reader else ([], {}, [])
            entry.sources = [list(k.path) for k in sources]
            entry.lineage, entry.findings = _lineage_text(lineage), [*entry.findings, *found]
        blocking = [f for f in entry.findings if f.severity == Severity.ERROR]
        load = MappingLoad(m, blocking, names.pool, self.retry)
        upstream = [
            *(dg.AssetKey(self.index.mappings[r].key) for r in entry.upstream),
            *(dg.AssetKey(path) for path in entry.sources),
        ]
        lineage = dg.deserialize_value(entry.lineage, dict) if entry.lineage else {}
        shown = [*m.findings, *rules, *entry.findings]
        return mapping_asset(names, load, upstream, shown, lineage)

    def report(self, rprtref: str) -> tuple:
        """The report's asset, job and schedule (None: on demand only)."""
        report, entry = self.catalog.reports[rprtref], self.index.reports[rprtref]
        return report_definitions(report, entry, self.backend, self.timezone)

    def file_load(self, ref: str) -> tuple:
        """The file load's asset, job and sensor."""
        fl, entry = self.catalog.file_loads[ref], self.index.file_loads[ref]
        return file_load_definitions(fl, entry, self.backend)

    def file_job_definitions(self, ref: str) -> dg.Definitions:
        asset, job, _ = self.file_load(ref)
        return dg.Definitions(assets=[asset], jobs=[job], resources=self.resources)

    def report_job_definitions(self, rprtref: str) -> dg.Definitions:
        """A report's job in definitions of its own: its asset and the mappings' it reads."""
        asset, job, _ = self.report(rprtref)
        deps = [dg.AssetsDefinition(specs=[dg.AssetSpec(k)]) for k in asset.dependency_keys]
        return dg.Definitions(assets=[asset, *deps], jobs=[job], resources=self.resources)

    def job_definitions(self, ref: str) -> dg.Definitions:
        """The job of one mapping in definitions of its own: its asset (with its checks) and
        the assets it reads (the part of the location's asset graph its job resolves in): the
        mappings' and the source tables' (as keys: a run needs no more of them)."""
        entry, asset = self.index.mappings[ref], self.asset(ref)  # (its sources read)
        upstream = [self.asset(r) for r in entry.upstream]
        sources = [dg.AssetsDefinition(specs=[dg.AssetSpec(path)]) for path in entry.sources]
        return dg.Definitions(
            assets=[asset, *upstream, *sources],
            jobs=[_job(self.mapping_of(ref), self.names(ref))],
            resources=self.resources,
        )


def _location(catalog: Catalog, facts: CatalogFacts, parts: MappingParts) -> dg.Definitions:
    jobs = facts.jobs
    sensors = [
        dependency_sensor(
            jobs[parent], jobs[child], row.id, facts.names.sensors[row.id], row.enabled
        )
        for (child, parent), row in facts.dependencies.items()
        if child in jobs and parent in jobs
    ]
    reports = {ref: parts.report(ref) for ref in catalog.reports}
    report_jobs = {ref: job for ref, (_, job, _) in reports.items()}
    files = [parts.file_load(ref) for ref in catalog.file_loads]
    queue = queue_sensor(list(jobs.values()), catalog, report_jobs)
    operations = operations_definitions(parts.resources, parts.timezone)
    sensors += [
        queue,
        close_failed_runs,
        close_stopped_runs,
        alert_failed_runs,
        *(s for _, _, s in files),
    ]
    return dg.Definitions(
        assets=[
            *(parts.asset(ref) for ref in catalog.mappings),
            *facts.reads.sources,
            *(asset for asset, _, _ in reports.values()),
            *(asset for asset, _, _ in files),
            *operations.assets,
        ],
        jobs=[
            *jobs.values(),
            *report_jobs.values(),
            *(job for _, job, _ in files),
            *operations.jobs,
        ],
        schedules=[
            *facts.schedules,
            *(s for _, _, s in reports.values() if s is not None),
            *operations.schedules,
        ],
        sensors=sensors,
        resources=parts.resources,
        # a run of assets picked in the UI (Dagster's own asset job) as a mapping's job:
        # in its run worker, each load's chunks side by side inside its step
        executor=run_executor(),
    )


def _built(
    catalog: Catalog,
    settings: Settings,
    translator: DmsTranslator | None,
    known: LocationIndex | None = None,
    resources: dict[str, Any] | None = None,
) -> tuple[dg.Definitions, LocationIndex]:
    """The whole location and its index (with the rule checks of every mapping, taken
    from `known` where it has them)."""
    translator = _translator(settings, translator)
    facts = catalog_facts(catalog, settings, translator)
    index = facts.index()
    for ref, entry in index.mappings.items():
        kept = known.mappings.get(ref) if known else None
        entry.rules = kept.rules if kept else None
    parts = MappingParts(
        index, catalog.mappings.__getitem__, catalog, settings, translator, facts.names, resources
    )
    return _location(catalog, facts, parts), index


def _translator(settings: Settings, translator: DmsTranslator | None) -> DmsTranslator:
    """The translator asked for (else DMS_TRANSLATOR's), told of the metadata database."""
    translator = translator or translator_from_settings(settings)
    translator.metadata_database = metadata_connection(settings)
    return translator


def build_definitions(
    catalog: Catalog,
    settings: Settings,
    translator: DmsTranslator | None = None,
    resources: dict[str, Any] | None = None,
) -> dg.Definitions:
    """Every mapping as an asset, whatever its rows hold: what cannot become a Dagster
    object is an ERROR finding on the asset, and a run of it fails at once with them."""
    return _built(catalog, settings, translator, resources=resources)[0]


# ------------------------------------------------------------------ reconstruction metadata


class _Packed(ReadOnly[str, _Model]):
    """MAPREF -> a model, each unpacked when first asked for: a run worker unpacks the few
    it needs, not all 2,000."""

    def __init__(self, model: type[_Model], packed: dict[str, str], dictionary: bytes) -> None:
        self.model, self.packed, self.dictionary = model, packed, dictionary
        self.unpacked: dict[str, _Model] = {}

    def __getitem__(self, ref: str) -> _Model:
        if ref not in self.unpacked:
            self.unpacked[ref] = _unpack(self.model, self.packed[ref], self.dictionary)
        return self.unpacked[ref]

    def __iter__(self) -> Iterator[str]:
        return iter(self.packed)

    def __len__(self) -> int:
        return len(self.packed)


def _by_prefix(metadata: dict[str, str], prefix: str) -> dict[str, str]:
    return {k[len(prefix) :]: v for k, v in metadata.items() if k.startswith(prefix)}


@dataclass
class _Stored:
    """The catalog as reconstruction metadata holds it: each mapping unpacked when asked."""

    rest: Catalog  # the catalog without its mappings
    index: LocationIndex | None  # its entries unpacked when asked
    mappings: _Packed[Mapping]

    def mapping(self, ref: str) -> Mapping:
        return self.mappings[ref]

    def catalog(self) -> Catalog:
        return self.rest.model_copy(update={"mappings": dict(self.mappings)})


def _stored(context: DefinitionsLoadContext, settings: Settings) -> _Stored | None:
    """What the code-server load left for this reconstruction, if anything (None, too,
    when the file it left cannot be read)."""
    if context.load_type != DefinitionsLoadType.RECONSTRUCTION:
        return None
    metadata = context.reconstruction_metadata
    if FILE_KEY in metadata:
        metadata = read_catalog(settings.dms_home, metadata[FILE_KEY]) or {}
    if CATALOG_KEY not in metadata:
        return None
    index = _unpack(LocationIndex, metadata[INDEX_KEY]) if INDEX_KEY in metadata else None
    entries = _by_prefix(metadata, ENTRY_KEY)
    if index is not None and entries:  # (an index packed whole, before: its own entries)
        dictionary = base64.b64decode(metadata.get(ENTRY_DICTIONARY_KEY, ""))
        index.mappings = _Packed(IndexEntry, entries, dictionary)  # type: ignore[assignment]
    dictionary = base64.b64decode(metadata.get(DICTIONARY_KEY, ""))
    mappings = _Packed(Mapping, _by_prefix(metadata, MAPPING_KEY), dictionary)
    return _Stored(_unpack(Catalog, metadata[CATALOG_KEY]), index, mappings)


def _packed_each(prefix: str, models: dict[str, BaseModel]) -> tuple[bytes, dict[str, str]]:
    """Each model packed on its own, with the first one's JSON as the dictionary."""
    texts = {ref: _json(m) for ref, m in sorted(models.items())}
    dictionary = next(iter(texts.values()), b"")[-32768:]  # (zlib's window)
    return dictionary, {prefix + ref: _pack(text, dictionary) for ref, text in texts.items()}


def _packed(catalog: Catalog, index: LocationIndex) -> dict[str, str]:
    """The catalog and its index as reconstruction metadata."""
    dictionary, mappings = _packed_each(MAPPING_KEY, dict(catalog.mappings))
    entry_dictionary, entries = _packed_each(ENTRY_KEY, dict(index.mappings))
    return {
        CATALOG_KEY: _pack(catalog.model_copy(update={"mappings": {}})),
        INDEX_KEY: _pack(index.model_copy(update={"mappings": {}})),
        DICTIONARY_KEY: base64.b64encode(dictionary).decode("ascii"),
        ENTRY_DICTIONARY_KEY: base64.b64encode(entry_dictionary).decode("ascii"),
        **mappings,
        **entries,
    }


def _in_file(settings: Settings, metadata: dict[str, str]) -> dict[str, str]:
    """The metadata as the name of the file that holds it, when that can be written."""
    name = write_catalog(settings.dms_home, metadata)
    return metadata if name is None else {FILE_KEY: name}


def _leave(context: DefinitionsLoadContext, metadata: dict[str, str]) -> None:
    """Leave the catalog and its index for the run workers."""
    for key, value in metadata.items():
        context.add_to_pending_reconstruction_metadata(key, value)


def _keep_stored(context: DefinitionsLoadContext) -> None:
    """A reconstruction passes on what it was given, as it was given."""
    _leave(
        context,
        {
            key: value
            for key, value in context.reconstruction_metadata.items()
            if key in _KEYS or key.startswith(_PREFIXES)
        },
    )


def definitions(
    settings: Settings | None = None,
    translator: DmsTranslator | None = None,
    resources: dict[str, Any] | None = None,
) -> dg.Definitions:
    """The whole code location; `translator` names the Dagster objects (default: the one
    DMS_TRANSLATOR names, else DmsTranslator); `resources` replace those of the resource
    layer with the same key (defs/resources.py)."""
    settings = settings or load_settings()
    context = DefinitionsLoadContext.get()
    stored = _stored(context, settings)
    if stored is not None:
        _keep_stored(context)
        return _built(stored.catalog(), settings, translator, stored.index, resources)[0]
    catalog = load_catalog(metadata_engine(settings))
    built, index = _built(catalog, settings, translator, resources=resources)
    _leave(context, _in_file(settings, _packed(catalog, index)))
    return built


class MappingRuns(dg.RepositoryData):
    """The definitions a run worker reconstructs: the job of a mapping is built from that
    mapping's entries alone (its asset and the assets it reads); anything else
    asked of it (another job, the schedules, the asset graph) builds the whole location."""

    def __init__(self, parts: MappingParts, whole: Callable[[], dg.Definitions]) -> None:
        self.parts, self.whole = parts, whole
        self.jobs: dict[str, dg.JobDefinition] = {}

    @cached_property
    def _all(self) -> dg.RepositoryDefinition:
        return self.whole().get_repository_def()

    @cached_property
    def _resources(self) -> dg.RepositoryDefinition:
        return dg.Definitions(resources=self.parts.resources).get_repository_def()

    def _mapping_job(self, ref: str, name: str) -> dg.JobDefinition:
        if name not in self.jobs:
            self.jobs[name] = self.parts.job_definitions(ref).get_repository_def().get_job(name)
        return self.jobs[name]

    def _own_job(self, name: str, definitions: Callable[[], dg.Definitions]) -> dg.JobDefinition:
        if name not in self.jobs:
            self.jobs[name] = definitions().get_repository_def().get_job(name)
        return self.jobs[name]

    def get_job(self, job_name: str) -> dg.JobDefinition:
        index, parts = self.parts.index, self.parts
        if (ref := index.jobs.get(job_name)) is not None:
            return self._mapping_job(ref, job_name)
        if (rprtref := index.report_of(job_name)) is not None:
            return self._own_job(job_name, lambda: parts.report_job_definitions(rprtref))
        if (flupldref := index.file_load_of(job_name)) is not None:
            return self._own_job(job_name, lambda: parts.file_job_definitions(flupldref))
        if job_name == OPERATIONS_JOB:
            return self._own_job(
                job_name, lambda: operations_definitions(parts.resources, parts.timezone)
            )
        return self._all.get_job(job_name)

    def has_job(self, job_name: str) -> bool:
        index = self.parts.index
        return (
            job_name in index.jobs
            or job_name in index.other_jobs()
            or job_name == OPERATIONS_JOB
            or self._all.has_job(job_name)
        )

    def get_job_names(self) -> Sequence[str]:
        # the mappings', reports' and file loads' jobs and the one Dagster adds for the
        # assets (the UI's materialize)
        index = self.parts.index
        return [*index.jobs, *index.other_jobs(), OPERATIONS_JOB, IMPLICIT_ASSET_JOB_NAME]

    def get_all_jobs(self) -> Sequence[dg.JobDefinition]:
        return self._all.get_all_jobs()

    def get_top_level_resources(self):
        return self._resources.get_top_level_resources()

    def get_env_vars_by_top_level_resource(self):
        return self._resources.get_env_vars_by_top_level_resource()

    def get_all_schedules(self) -> Sequence[dg.ScheduleDefinition]:
        return self._all.schedule_defs

    def get_all_sensors(self) -> Sequence[dg.SensorDefinition]:
        return self._all.sensor_defs

    def get_source_assets_by_key(self):
        return self._all.source_assets_by_key

    def get_assets_defs_by_key(self):
        return self._all.assets_defs_by_key

    def get_asset_checks_defs_by_key(self):
        return self._all.asset_checks_defs_by_key


def run_repository(
    settings: Settings | None = None,
    translator: DmsTranslator | None = None,
    resources: dict[str, Any] | None = None,
) -> dg.RepositoryDefinition:
    """The code location as a run worker reconstructs it: lazily, one mapping's job at a
    time, from the reconstruction metadata; read from the database when there is none,
    as in `dagster job execute` (once per process, and what the mapping's SQL reads for
    that mapping alone)."""
    settings = settings or load_settings()
    translator = _translator(settings, translator)
    context = DefinitionsLoadContext.get()
    stored = _stored(context, settings)
    if stored is not None and stored.index is not None:
        _keep_stored(context)
        rest, index, mapping_of = stored.rest, stored.index, stored.mapping

        def whole() -> dg.Definitions:
            return _built(stored.catalog(), settings, translator, index, resources)[0]

        reader = None
    else:
        catalog, index, mapping_of, reader = _read_once(settings, translator)
        rest = catalog

        def whole() -> dg.Definitions:  # (the catalog read holds the lookups alone)
            full = load_catalog(metadata_engine(settings))
            return _built(full, settings, translator, index, resources)[0]

    parts = MappingParts(
        index, mapping_of, rest, settings, translator, resources=resources, reader=reader
    )
    return dg.RepositoryDefinition(
        SINGLETON_REPOSITORY_NAME, repository_data=MappingRuns(parts, whole)
    )


class WholeMappings:
    """The mappings of an index read whole (with all their columns) one at a time, when
    a run first needs them; what reading one finds joins its index entry's findings."""

    def __init__(self, settings: Settings, index: LocationIndex) -> None:
        self.settings, self.index = settings, index
        self.read: dict[str, Mapping] = {}

    def __call__(self, ref: str) -> Mapping:
        if ref not in self.read:
            catalog = load_mapping(metadata_engine(self.settings), ref)
            entry = self.index.mappings[ref]
            found = catalog.read_findings.get(ref, ())
            entry.findings = [*entry.findings, *(f for f in found if f not in entry.findings)]
            self.read[ref] = catalog.mappings[ref]
        return self.read[ref]


_read: dict[tuple, tuple[Catalog, LocationIndex, WholeMappings, MappingReader]] = {}


def _read_once(
    settings: Settings, translator: DmsTranslator
) -> tuple[Catalog, LocationIndex, WholeMappings, MappingReader]:
    """The catalog as far as naming and indexing it needs (the mappings without their
    columns, lookups aside), its index (without what each mapping's SQL reads), the
    mappings read whole when asked for, and a reader of what one mapping's SQL reads:
    made once per process when no code server read them, so that `dagster job execute`
    (which reconstructs the location four times) reads whole only the mapping it runs.
    A run worker always has a code server's reconstruction metadata. Nothing is left
    as reconstruction metadata: the catalog would travel with the run for nothing."""
    key = (settings, type(translator))
    if key not in _read:
        catalog = load_catalog(metadata_engine(settings), lookups_only=True)
        facts = catalog_facts(catalog, settings, translator, reads=False)
        index = facts.index()
        whole = WholeMappings(settings, index)
        backend = settings.database_url.get_backend_name()
        args = (catalog, facts.names, facts.upstream, backend, translator, whole)
        _read.clear()
        _read[key] = catalog, index, whole, MappingReader(*args)
    return _read[key]


def location(resources: dict[str, Any] | None = None):
    """The code location as Dagster loads it: every definition for the code server, the
    one mapping's job for a run worker. `resources` replace those of the resource layer:
    a module of your own returns `location(resources={"dms_log": MyWriter()})` from its
    @dg.definitions function."""
    if DefinitionsLoadContext.get().load_type == DefinitionsLoadType.RECONSTRUCTION:
        repository = run_repository(resources=resources)
        # a run worker (or `dagster job execute`) lives for one run: what is loaded by now
        # (Dagster, the engine, the definitions) stays, so the garbage collector need not
        # walk it again, during the run or at exit (benchmarks/README.md). Not
        # in the code server, which loads again on every reload.
        gc.freeze()
        return repository
    return definitions(resources=resources)


@dg.definitions
def defs() -> dg.Definitions:
    """What Dagster loads (workspace.yaml): built when the code location loads, not when
    this module is imported; a run worker builds only what its run needs."""
    return location()
