"""The one place where DMS names become Dagster names: a mapping row in, its asset spec and
the names of its job, graph, checks, schedules and sensors out; always valid, stable and
distinct, whatever the row holds.

DmsTranslator says what each mapping would like to be called (override any get_* method,
as with dagster-dbt's DagsterDbtTranslator); name_catalog makes the answers valid and
distinct over the whole catalog. A name that is valid as it is stays (lower case); one
that needs cleaning keeps a short hash of the original, so two names that clean up alike
still differ; where two mappings still ask for one name, the one whose MAPREF sorts first
keeps it and the others get a suffix of their own.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable
from collections.abc import Mapping as MappingOf
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import dagster as dg
from dagster._core.definitions.utils import has_valid_name_chars, is_valid_name

from dms_orchestration.db.dialects import DBTYP_TO_DIALECT
from dms_orchestration.metadata.models import Catalog, Finding, Mapping, Schedule
from dms_orchestration.settings import ConfigError, Settings, import_object

TAG_VALUE = re.compile(r"^[A-Za-z0-9_.-]{0,63}$")  # Dagster's strict tag values
MAX_NAME = 60  # the cleaned part of a hashed name
_Owner = TypeVar("_Owner", bound=Hashable)
KINDS = {"postgresql": "postgres", "sqlite": "sqlite", "oracle": "oracle"}
# nodes every mapping's graph holds (defs/assets.py): no graph or checks may take them
STEP_NAMES = ("dms_plan", "dms_commit")
# sensors defined once for the code location (defs/sensors.py)
FIXED_SENSORS = ("dms_request_queue", "dms_close_failed_runs", "dms_close_stopped_runs")


def short_hash(text: str) -> str:
    """8 hex digits of the text: the same text gives the same digits in every process."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def _slug(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9_]+", "_", ascii_text.lower()).strip("_")[:MAX_NAME]


def dagster_name(text: str | None, empty: str = "") -> str:
    """A DMS name as a Dagster name ([a-z0-9_]): the name in lower case when it is valid
    as it is, else its letters and digits with a hash of the original (`CRM-EU` ->
    `crm_eu_1f0c4a7e`, distinct from `CRM_EU` -> `crm_eu`). NULL or blank gives `empty`."""
    if text is None or not str(text).strip():
        return empty
    text = str(text)
    return text.lower() if has_valid_name_chars(text) else _hashed(text)


def _hashed(text: str) -> str:
    return f"{_slug(text) or 'x'}_{short_hash(text)}"


def tag_value(text: str | None) -> str:
    """A value for an asset tag (Dagster's strict alphabet, at most 63 characters)."""
    name = dagster_name(text)
    return name if TAG_VALUE.match(name) else f"{name[:54]}_{short_hash(name)}"


def valid_name(name: Any) -> str:
    """What a translator returned as a job/op/schedule/sensor name, made valid."""
    text = str(name)
    return text if is_valid_name(text) else _hashed(text)


class DmsTranslator:
    """How a mapping appears in Dagster. Subclass it, override any get_* method, and name
    the subclass in DMS_TRANSLATOR=package.module:ClassName (or pass an instance to
    definitions(translator=...)). The definitions layer makes every answer valid and
    distinct; an answer it cannot use (or an exception) falls back to these defaults and
    shows as an ERROR finding on the mapping's asset."""

    def get_asset_spec(self, mapping: Mapping) -> dg.AssetSpec:
        return dg.AssetSpec(
            key=self.get_asset_key(mapping),
            group_name=self.get_group_name(mapping),
            description=self.get_description(mapping),
            metadata=self.get_metadata(mapping),
            tags=self.get_tags(mapping),
            kinds=self.get_kinds(mapping),
            owners=self.get_owners(mapping),
        )

    def get_asset_key(self, mapping: Mapping) -> dg.AssetKey:
        """[TRGSCHM, TRGTBNM] (`default` without a schema, MAPREF without a table)."""
        schema = dagster_name(mapping.target_schema, "default")
        return dg.AssetKey([schema, dagster_name(mapping.target_table) or self._ref(mapping)])

    def get_group_name(self, mapping: Mapping) -> str:
        return dagster_name(mapping.source_system, "dms")

    def get_description(self, mapping: Mapping) -> str:
        return mapping.description or f"DMS mapping {mapping.ref}"

    def get_metadata(self, mapping: Mapping) -> dict[str, Any]:
        """The DMS facts of the mapping, under their DMS names (the definitions layer adds
        `dms/findings`)."""
        sql = mapping.source.sql if mapping.source else "(missing)"
        return {
            "dms/mapref": mapping.ref,
            "dms/target": f"{mapping.target_schema or ''}.{mapping.target_table}".lstrip("."),
            "dms/table type": mapping.target_type or "",
            "dms/columns": dg.MetadataValue.md(column_table(mapping)),
            "dms/source sql": dg.MetadataValue.md(f"```sql\n{sql}\n```"),
            "dms/delete handling": mapping.delete_handling or "IGNORE",
            "dms/checkpoint": mapping.checkpoint_strategy or "NONE",
        }

    def get_tags(self, mapping: Mapping) -> dict[str, str]:
        return {"dms/mapref": tag_value(mapping.ref) or "blank"}

    def get_kinds(self, mapping: Mapping) -> set[str]:
        """sql, and the target database (postgres / sqlite / oracle) when TRGCONID names a
        connection of a known type."""
        con = mapping.target_connection
        dialect = DBTYP_TO_DIALECT.get((con.db_type if con else "").upper())
        return {"sql", *([KINDS[dialect]] if dialect in KINDS else [])}

    def get_owners(self, mapping: Mapping) -> list[str]:
        return []

    def get_pool(self, mapping: Mapping) -> str:
        """The concurrency pool of the chunk steps: one per target database (dagster.yaml
        caps each)."""
        con = mapping.target_connection
        return f"dms_{dagster_name(con.name, 'blank') if con else 'metadata'}"

    def get_job_name(self, mapping: Mapping) -> str:
        return f"{self._ref(mapping)}_job"

    def get_graph_name(self, mapping: Mapping) -> str:
        """The graph of plan -> chunks -> commit that materializes the asset."""
        return self.get_asset_key(mapping).to_python_identifier()

    def get_checks_name(self, mapping: Mapping) -> str:
        # upper case: never the name of a mapping's graph (lower case)
        return f"{self.get_graph_name(mapping)}__CHECKS"

    def get_schedule_name(self, mapping: Mapping, schedule: Schedule) -> str:
        frequency = dagster_name(schedule.frequency)
        return f"{self.get_job_name(mapping)}_{frequency}_{schedule.id}"

    def get_dependency_sensor_name(self, child: Mapping, parent: Mapping, row: Schedule) -> str:
        """The sensor that runs `child` after `parent` succeeds (DMS_JOBSCH `row`)."""
        return f"{self.get_job_name(child)}_after_{self.get_job_name(parent)}"

    def _ref(self, mapping: Mapping) -> str:
        return dagster_name(mapping.ref, "blank")


def column_table(mapping: Mapping) -> str:
    rows = ["| column | type | key | SCD | combine | logic |", "|---|---|---|---|---|---|"]
    for c in mapping.columns_in_order:
        logic = (c.logic or "").replace("|", "\\|").replace("\n", " ")
        if c.is_lookup:
            logic = f"lookup {c.lookup_value} by {c.lookup_key}: {logic}"
        rows.append(
            f"| {c.name} | {c.data_type or ''} | {c.key_seq or 'Y' if c.is_key else ''} | "
            f"{'' if c.is_key else c.scd_type or 1} | {c.combine or ''} | `{logic}` |"
        )
    return "\n".join(rows)


def translator_from_settings(settings: Settings) -> DmsTranslator:
    """The translator DMS_TRANSLATOR names, else DmsTranslator."""
    if not settings.translator:
        return DmsTranslator()
    cls = import_object(settings.translator, "DMS_TRANSLATOR")
    if not (isinstance(cls, type) and issubclass(cls, DmsTranslator)):
        raise ConfigError(
            f"DMS_TRANSLATOR={settings.translator!r} is not a subclass of "
            "dms_orchestration.defs.translator.DmsTranslator"
        )
    try:
        return cls()
    except Exception as exc:
        raise ConfigError(f"DMS_TRANSLATOR={settings.translator!r} fails to start: {exc}") from exc


# ------------------------------------------------------------------ the whole catalog


def distinct(
    wishes: MappingOf[_Owner, Hashable],
    suffixed: Callable[[_Owner, Any], Any],
    taken: Iterable[Hashable] = (),
) -> dict[_Owner, Any]:
    """owner -> name, no two alike and none `taken`: where owners wish one name, the first
    owner in sorted order keeps it, and each other gets `suffixed(owner, name)` (with a
    hash on top in the unlikely case that one is taken too)."""
    by_name: dict[Hashable, list[_Owner]] = defaultdict(list)
    for owner, name in wishes.items():
        by_name[name].append(owner)
    used, names, others = set(taken), {}, []
    for name, owners in by_name.items():
        first, *rest = sorted(owners, key=repr)
        if name in used:
            rest = [first, *rest]
        else:
            names[first] = name
            used.add(name)
        others += [(owner, name) for owner in rest]
    for owner, name in sorted(others, key=repr):
        new = suffixed(owner, name)
        while new in used:
            new = _again(new)
        names[owner] = new
        used.add(new)
    return names


def _again(name: Any) -> Any:
    if isinstance(name, dg.AssetKey):
        return dg.AssetKey([*name.path[:-1], _again(name.path[-1])])
    return f"{name}_{short_hash(str(name))}"


def _name_suffix(owner: Hashable, name: str) -> str:
    return f"{name}_{short_hash(str(owner))}"


def _key_suffix(owner: Hashable, key: dg.AssetKey) -> dg.AssetKey:
    # the last part of the key takes the owner: main/dim_x__dim_x_v2
    return dg.AssetKey([*key.path[:-1], f"{key.path[-1]}__{dagster_name(str(owner), 'x')}"])


@dataclass(frozen=True)
class MappingNames:
    """What one mapping is called in Dagster."""

    key: dg.AssetKey
    spec: dg.AssetSpec  # the translator's: its key may be another mapping's too
    job: str
    graph: str
    checks: str
    pool: str
    chunk_step: str  # the op of the pool's chunk steps


@dataclass
class CatalogNames:
    """Every Dagster name of a catalog, by MAPREF; the findings made on the way (ERROR:
    a translator answer that could not be used)."""

    mappings: dict[str, MappingNames]
    schedules: dict[int, str]  # JOBSCHID -> schedule name
    sensors: dict[int, str]  # JOBSCHID -> dependency sensor name
    findings: dict[str, list[Finding]] = field(default_factory=dict)

    def job_names(self) -> dict[str, str]:
        return {ref: n.job for ref, n in self.mappings.items()}


class _Asking:
    """Asks the translator, falling back to the defaults (and an ERROR finding) when a
    method raises or its answer cannot be used."""

    def __init__(self, translator: DmsTranslator) -> None:
        self.translator, self.default = translator, DmsTranslator()
        self.findings: dict[str, list[Finding]] = defaultdict(list)
        self.label = type(translator).__name__

    def ask(self, ref: str, method: str, *args, check: Callable[[Any], Any] = lambda x: x):
        try:
            return check(getattr(self.translator, method)(*args))
        except Exception as exc:  # the user's translator: one bad answer, not the location
            if type(self.translator) is DmsTranslator:
                raise
            self.refused(ref, method, exc)
            return check(getattr(self.default, method)(*args))

    def refused(self, ref: str, method: str, exc: Exception) -> None:
        message = f"{self.label}.{method} failed, the default is used: {exc}"
        self.findings[ref].append(Finding(mapref=ref, severity="ERROR", message=message))

    def spec(self, ref: str, mapping: Mapping) -> dg.AssetSpec:
        """The translator's spec; when it makes none, one from its pieces, each piece that
        makes none replaced by the default's (so a bad group keeps the key)."""
        try:
            return _checked_spec(self.translator.get_asset_spec(mapping))
        except Exception as exc:
            if type(self.translator) is DmsTranslator:
                raise
            failure = exc
        before = len(self.findings[ref])
        pieces = {
            field: self.ask(ref, method, mapping, check=partial(_checked_piece, field))
            for method, field in SPEC_PIECES.items()
        }
        if len(self.findings[ref]) == before:  # not a piece: get_asset_spec itself
            self.refused(ref, "get_asset_spec", failure)
        try:
            return dg.AssetSpec(**pieces)
        except Exception as exc:
            self.refused(ref, "get_asset_spec", exc)
            return self.default.get_asset_spec(mapping)


# translator method -> the AssetSpec field it answers
SPEC_PIECES = {
    "get_asset_key": "key",
    "get_group_name": "group_name",
    "get_description": "description",
    "get_metadata": "metadata",
    "get_tags": "tags",
    "get_kinds": "kinds",
    "get_owners": "owners",
}


def _checked_piece(field: str, value: Any) -> Any:
    """A piece of a spec that Dagster takes (it checks it in a spec of its own)."""
    dg.AssetSpec(**{"key": "piece", field: value})
    return value


def _checked_spec(spec: Any) -> dg.AssetSpec:
    if not isinstance(spec, dg.AssetSpec):
        raise TypeError(f"get_asset_spec returned {type(spec).__name__}, not an AssetSpec")
    return spec


def _chunk_step_name(pool: str) -> str:
    return valid_name(f"dms_chunk_{dagster_name(pool.removeprefix('dms_'), 'x')}")


def _checked_pool(pool: Any) -> str:
    text = str(pool)
    return text if re.fullmatch(r"\S+", text) else dagster_name(text, "dms_blank")


def name_catalog(catalog: Catalog, translator: DmsTranslator) -> CatalogNames:
    """Every mapping's asset spec and names, valid and distinct over the catalog."""
    asking = _Asking(translator)
    mappings = catalog.mappings

    def ask_each(method: str, check: Callable[[Any], Any]) -> dict[str, Any]:
        return {ref: asking.ask(ref, method, m, check=check) for ref, m in mappings.items()}

    specs = {ref: asking.spec(ref, m) for ref, m in mappings.items()}
    keys = distinct({ref: s.key for ref, s in specs.items()}, _key_suffix)
    pools = ask_each("get_pool", _checked_pool)
    chunk_steps = distinct(
        {pool: _chunk_step_name(pool) for pool in set(pools.values())}, _name_suffix, STEP_NAMES
    )
    jobs = distinct(ask_each("get_job_name", valid_name), _name_suffix, ("__ASSET_JOB",))
    graphs = ask_each("get_graph_name", valid_name)
    checks = ask_each("get_checks_name", valid_name)
    nodes = distinct(
        {("graph", ref): n for ref, n in graphs.items()}
        | {("checks", ref): n for ref, n in checks.items()},
        _name_suffix,
        (*STEP_NAMES, *chunk_steps.values()),
    )
    schedules, sensors = _schedule_names(catalog, asking)
    return CatalogNames(
        mappings={
            ref: MappingNames(
                key=keys[ref],
                spec=specs[ref],
                job=jobs[ref],
                graph=nodes[("graph", ref)],
                checks=nodes[("checks", ref)],
                pool=pools[ref],
                chunk_step=chunk_steps[pools[ref]],
            )
            for ref in mappings
        },
        schedules=schedules,
        sensors=sensors,
        findings=dict(asking.findings),
    )


def _schedule_names(catalog: Catalog, asking: _Asking) -> tuple[dict[int, str], dict[int, str]]:
    """Schedule and dependency sensor names by JOBSCHID (one namespace: Dagster keeps
    schedules and sensors apart by name only)."""
    wishes: dict[tuple[str, int], str] = {}
    for ref, m in catalog.mappings.items():
        for row in {s.id: s for job in m.jobs for s in job.schedules}.values():
            parent = None
            if row.depends_on_mapref is not None:
                parent = catalog.mappings.get(row.depends_on_mapref)
            if parent is not None:
                args = ("get_dependency_sensor_name", m, parent, row)
                wishes[("sensor", row.id)] = asking.ask(ref, *args, check=valid_name)
            elif row.depends_on_id is None:
                args = ("get_schedule_name", m, row)
                wishes[("schedule", row.id)] = asking.ask(ref, *args, check=valid_name)
    names = distinct(wishes, lambda owner, name: f"{name}_{owner[1]}", FIXED_SENSORS)
    return (
        {jobschid: n for (kind, jobschid), n in names.items() if kind == "schedule"},
        {jobschid: n for (kind, jobschid), n in names.items() if kind == "sensor"},
    )


def mapping_spec(mapping: Mapping, translator: DmsTranslator) -> dg.AssetSpec:
    """One mapping's spec as name_catalog asks for it (the findings of a bad answer are
    left out: name_catalog made them): a run worker builds its mapping's asset alone."""
    return _Asking(translator).spec(mapping.ref, mapping)
