"""The one place where DMS names become Dagster names: a mapping row in, its asset spec and
the names of its job, graph, checks, schedules and sensors out; always valid, stable and
distinct, whatever the row holds. Also the specs of the source tables mapping SQL reads.

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
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, TypeVar

import dagster as dg

from dms_orchestration.db.dialects import DBTYP_TO_DIALECT
from dms_orchestration.defs.dagster_internals import (
    TableMetadataSet,
    has_valid_name_chars,
    is_valid_name,
)
from dms_orchestration.metadata.models import (
    Catalog,
    Connection,
    Finding,
    Mapping,
    MappingColumn,
    Schedule,
)
from dms_orchestration.settings import ConfigError, Settings, import_object
from dms_orchestration.vocabulary import Severity

TAG_VALUE = re.compile(r"^[A-Za-z0-9_.-]{0,63}$")  # Dagster's strict tag values
MAX_NAME = 60  # the cleaned part of a hashed name
_Owner = TypeVar("_Owner", bound=Hashable)
KINDS = {"postgresql": "postgres", "sqlite": "sqlite", "oracle": "oracle"}
# sensors defined once for the code location (defs/sensors.py)
FIXED_SENSORS = (
    "dms_request_queue",
    "dms_close_failed_runs",
    "dms_close_stopped_runs",
    "dms_alert_failed_runs",
)
# the name the metadata database goes by where a connection's is wanted (NULL TRGCONID,
# NULL SQLCONID)
METADATA_CONNECTION = "DMS_METADATA"
# the columns the loader adds to every target (engine/target.py), and to SCD2 targets
_PRIMARY_KEY = dg.TableColumnConstraints(nullable=False, unique=True, other=["primary key"])
_NOT_NULL = dg.TableColumnConstraints(nullable=False)
AUDIT_COLUMNS = (
    ("SKEY", "BIGINT", "surrogate key: one per row (version) the loader writes", _PRIMARY_KEY),
    ("RWHKEY", "VARCHAR(32)", "hash of the compared columns: tells a changed row", None),
    ("RECCRDT", "TIMESTAMP", "when the loader inserted the row", None),
    ("RECUPDT", "TIMESTAMP", "when the loader last updated the row", None),
)
SCD2_AUDIT_COLUMNS = (
    ("CURFLG", "VARCHAR(1)", "Y on the current version of a business key, else N", _NOT_NULL),
    ("VLDFRM", "TIMESTAMP", "the version is valid from", None),
    ("VLDTO", "TIMESTAMP", "the version is valid until (open on the current one)", None),
)


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


@dataclass(frozen=True)
class SourceTable:
    """A table that mapping SQL reads and no mapping writes: an external asset."""

    connection: Connection  # where the SQL runs: SQLCONID's, else the metadata database
    schema: str | None  # as the SQL spells it (None: the SQL names no schema)
    table: str
    read_by: tuple[str, ...] = ()  # MAPREFs; not known yet when its key is asked for


class DmsTranslator:
    """How a mapping appears in Dagster. Subclass it, override any get_* method, and name
    the subclass in DMS_TRANSLATOR=package.module:ClassName (or pass an instance to
    definitions(translator=...)). The definitions layer makes every answer valid and
    distinct; an answer it cannot use (or an exception) falls back to these defaults and
    shows as an ERROR finding on the mapping's asset."""

    # the metadata database as a connection (no password): where a mapping without
    # TRGCONID writes and source SQL without SQLCONID runs. The definitions layer sets it
    # from the settings before it asks anything (definitions.py).
    metadata_database: Connection | None = None

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
        """Dagster's table metadata (the UI shows it in its own places: table name, the
        Columns tab) and the DMS facts that have no standard key, under their DMS names
        (the definitions layer adds `dagster/column_lineage` and `dms/findings`)."""
        sql = mapping.source.sql if mapping.source else "(missing)"
        return {
            **TableMetadataSet(
                table_name=self.get_table_name(mapping), column_schema=column_schema(mapping)
            ),
            "dms/mapref": mapping.ref,
            "dms/table type": mapping.target_type or "",
            "dms/column logic": dg.MetadataValue.md(logic_table(mapping)),
            "dms/source sql": dg.MetadataValue.md(f"```sql\n{sql}\n```"),
            "dms/delete handling": mapping.delete_handling or "IGNORE",
            "dms/checkpoint": mapping.checkpoint_strategy or "NONE",
        }

    def get_table_name(self, mapping: Mapping) -> str:
        """The target as its database names it: database.schema.table on PostgreSQL,
        schema.table on Oracle, the SQLite file's table (file.table: the loader puts a
        SQLite target in its connection's file, TRGSCHM aside)."""
        con = self.target_database(mapping)
        sqlite = con is not None and DBTYP_TO_DIALECT.get(con.db_type.upper()) == "sqlite"
        schema = None if sqlite else mapping.target_schema
        return table_name(con, schema, mapping.target_table or mapping.ref)

    def get_tags(self, mapping: Mapping) -> dict[str, str]:
        return {"dms/mapref": tag_value(mapping.ref) or "blank"}

    def get_kinds(self, mapping: Mapping) -> set[str]:
        """sql, and the target database (postgres / sqlite / oracle): TRGCONID's, else the
        metadata database's."""
        return {"sql", *database_kind(self.target_database(mapping))}

    def target_database(self, mapping: Mapping) -> Connection | None:
        """The connection a mapping writes (None: TRGCONID names no current connection)."""
        if mapping.target_connection is None and mapping.target_connection_id is None:
            return self.metadata_database
        return mapping.target_connection

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
        """The step that loads the mapping (plan -> chunks -> commit) and checks it: the
        MAPREF, so a run's step reads `dim_customer`."""
        return self._ref(mapping)

    def get_schedule_name(self, mapping: Mapping, schedule: Schedule) -> str:
        frequency = dagster_name(schedule.frequency)
        return f"{self.get_job_name(mapping)}_{frequency}_{schedule.id}"

    def get_dependency_sensor_name(self, child: Mapping, parent: Mapping, row: Schedule) -> str:
        """The sensor that runs `child` after `parent` succeeds (DMS_JOBSCH `row`)."""
        return f"{self.get_job_name(child)}_after_{self.get_job_name(parent)}"

    def get_source_asset_spec(self, source: SourceTable) -> dg.AssetSpec:
        """A table mapping SQL reads (and no mapping writes): an external asset, in a
        group per connection, so the lineage graph starts at the sources."""
        name = table_name(source.connection, source.schema, source.table)
        return dg.AssetSpec(
            key=self.get_source_asset_key(source),
            group_name=self.get_source_group_name(source),
            description=f"Source table {name} on connection {source.connection.name}",
            metadata={
                **TableMetadataSet(table_name=name),
                "dms/connection": source.connection.name,
                "dms/read by": ", ".join(source.read_by),
            },
            kinds={"table", *database_kind(source.connection)},
        )

    def get_source_asset_key(self, source: SourceTable) -> dg.AssetKey:
        """["source", connection, schema, table] (`default` where the SQL names no schema)."""
        return dg.AssetKey(
            [
                "source",
                dagster_name(source.connection.name, "blank"),
                dagster_name(source.schema, "default"),
                dagster_name(source.table, "blank"),
            ]
        )

    def get_source_group_name(self, source: SourceTable) -> str:
        return dagster_name(source.connection.name, "sources")

    def _ref(self, mapping: Mapping) -> str:
        return dagster_name(mapping.ref, "blank")


def database_kind(con: Connection | None) -> list[str]:
    """The kind of a connection's database (postgres / sqlite / oracle), if known."""
    dialect = DBTYP_TO_DIALECT.get((con.db_type if con else "").upper())
    return [KINDS[dialect]] if dialect in KINDS else []


def table_name(con: Connection | None, schema: str | None, table: str) -> str:
    """A table as its database names it: database.schema.table on PostgreSQL, the file's
    stem for SQLite's database (its `main` schema left out), schema.table elsewhere."""
    dialect = DBTYP_TO_DIALECT.get((con.db_type if con else "").upper())
    database = None
    if dialect == "sqlite":
        database = Path(con.database).stem if con.database else None
        schema = None if (schema or "").lower() == "main" else schema
    elif dialect == "postgresql":
        database = con.database
    return ".".join(part for part in (database, schema, table) if part)


def metadata_connection(settings: Settings) -> Connection:
    """The metadata database as a connection row (no password)."""
    url = settings.database_url
    dbtyp = {d: t for t, d in DBTYP_TO_DIALECT.items()}.get(url.get_backend_name(), "")
    return Connection(
        id=0,
        name=METADATA_CONNECTION,
        db_type=dbtyp or url.get_backend_name().upper(),
        host=url.host,
        port=url.port,
        database=url.database,
        user=url.username,
        service_name=url.query.get("service_name"),
    )


def _column(c: MappingColumn, key_count: int, position: int) -> dg.TableColumn:
    """A DMS_MAPRDTL row as a column of the target: TRGCLDTYP, TRGCLDESC, the business
    key (NOT NULL, as the loader creates it) or the SCD type, lookup and combine codes."""
    notes, tags = [], {}
    if c.is_key:
        notes.append("business key" + (f" ({position} of {key_count})" if key_count > 1 else ""))
        tags["dms/key"] = str(position)
    else:
        scd = (c.scd_type or "1").strip() or "1"
        notes.append(f"SCD{scd}: " + ("history kept" if scd == "2" else "overwritten"))
        tags["dms/scd"] = scd
    if c.is_lookup:
        notes.append(f"lookup of {c.lookup_value} by {c.lookup_key}")
    if c.combine:
        notes.append(f"combined with {c.combine}")
    return dg.TableColumn(
        name=c.name or "",
        type=(c.data_type or "").strip() or "unknown",
        description=c.description,
        constraints=_constraints(not c.is_key, tuple(notes)),
        tags=tags,
    )


@lru_cache(maxsize=1024)
def _constraints(nullable: bool, other: tuple[str, ...]) -> dg.TableColumnConstraints:
    # a few distinct values over a whole catalog: made once (Dagster checks each one made)
    return dg.TableColumnConstraints(nullable=nullable, other=list(other))


def column_schema(mapping: Mapping) -> dg.TableSchema:
    """The target's columns: DMS_MAPRDTL's in EXCSEQ order, then the loader's own."""
    keys = [c.name or "?" for c in mapping.business_key]
    scd2 = any((c.scd_type or "").strip() == "2" for c in mapping.columns if not c.is_key)
    audit = AUDIT_COLUMNS + (SCD2_AUDIT_COLUMNS if scd2 else ())
    columns = [
        _column(c, len(keys), keys.index(c.name) + 1 if c.is_key else 0)
        for c in mapping.columns_in_order
        if c.name
    ] + [
        dg.TableColumn(name, kind, f"{what} (added by the loader)", constraints)
        for name, kind, what, constraints in audit
    ]
    rule = "one current row per" if scd2 else "unique"
    constraints = [f"{rule} business key ({', '.join(keys)})"] if keys else []
    return dg.TableSchema(columns=columns, constraints=dg.TableConstraints(other=constraints))


def logic_table(mapping: Mapping) -> str:
    """Each column's MAPLOGIC (types, keys and SCD are in the column schema)."""
    rows = ["| column | combine | logic |", "|---|---|---|"]
    for c in mapping.columns_in_order:
        logic = (c.logic or "").replace("|", "\\|").replace("\n", " ")
        if c.is_lookup:
            logic = f"lookup {c.lookup_value} by {c.lookup_key}: {logic}"
        rows.append(f"| {c.name} | {c.combine or ''} | `{logic}` |")
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
    pool: str


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
        self.findings[ref].append(Finding(mapref=ref, severity=Severity.ERROR, message=message))

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


def _checked_pool(pool: Any) -> str:
    text = str(pool)
    return text if re.fullmatch(r"\S+", text) else dagster_name(text, "dms_blank")


def name_catalog(catalog: Catalog, translator: DmsTranslator) -> CatalogNames:
    """Every mapping's asset spec and names, valid and distinct over the catalog."""
    asking = _Asking(translator)
    asking.default.metadata_database = translator.metadata_database
    mappings = catalog.mappings

    def ask_each(method: str, check: Callable[[Any], Any]) -> dict[str, Any]:
        return {ref: asking.ask(ref, method, m, check=check) for ref, m in mappings.items()}

    specs = {ref: asking.spec(ref, m) for ref, m in mappings.items()}
    keys = distinct({ref: s.key for ref, s in specs.items()}, _key_suffix)
    pools = ask_each("get_pool", _checked_pool)
    jobs = distinct(ask_each("get_job_name", valid_name), _name_suffix, ("__ASSET_JOB",))
    graphs = distinct(ask_each("get_graph_name", valid_name), _name_suffix)
    schedules, sensors = _schedule_names(catalog, asking)
    return CatalogNames(
        mappings={
            ref: MappingNames(
                key=keys[ref],
                spec=specs[ref],
                job=jobs[ref],
                graph=graphs[ref],
                pool=pools[ref],
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
