"""Where each mapping's data comes from, in Dagster's terms: the tables its SQL reads that
no mapping writes become external source assets (the lineage graph starts there), and
its target columns get Dagster column lineage (`dagster/column_lineage`) to the columns
of those sources and of the upstream mappings' tables (metadata/sqllineage.py reads the
SQL). Nothing a row holds stops the code location: a mapping whose reading fails gets
no lineage and a WARNING finding.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import dagster as dg

from dms_orchestration.db.dialects import DBTYP_TO_DIALECT
from dms_orchestration.defs.assets import source_dialect
from dms_orchestration.defs.dagster_internals import TableMetadataSet
from dms_orchestration.defs.translator import (
    AUDIT_COLUMNS,
    SCD2_AUDIT_COLUMNS,
    CatalogNames,
    DmsTranslator,
    SourceTable,
)
from dms_orchestration.metadata.models import Catalog, Connection, Finding, Mapping
from dms_orchestration.metadata.sqllineage import ColumnRead, MappingReads, TableRead, mapping_reads
from dms_orchestration.vocabulary import Severity

# a source table: connection name, and its schema and table as one database sees them
_Identity = tuple[str, str | None, str]


@dataclass
class CatalogReads:
    """What the mappings of a catalog read, for the definitions."""

    # the external source tables, one definition each: Definitions would put all specs in
    # one, which every mapping job's resolution (defs/jobs.py) then walks whole
    sources: list[dg.AssetsDefinition] = field(default_factory=list)
    upstream: dict[str, list[dg.AssetKey]] = field(default_factory=dict)  # MAPREF -> sources
    metadata: dict[str, dict[str, Any]] = field(default_factory=dict)  # MAPREF -> lineage
    findings: list[Finding] = field(default_factory=list)


class _Writers:
    """Which mappings write a table, by the rule of upstream_mappings (defs/assets.py): the
    same table name, and the same schema where both name one."""

    def __init__(self, catalog: Catalog) -> None:
        self.by_table: dict[str, list[Mapping]] = defaultdict(list)
        for m in catalog.mappings.values():
            if m.target_table:
                self.by_table[m.target_table.upper()].append(m)

    def of(self, table: TableRead) -> list[Mapping]:
        schema, name = table.identity
        return [
            m
            for m in self.by_table.get(name, ())
            if schema is None or not m.target_schema or schema == m.target_schema.upper()
        ]


def _source_connection(mapping: Mapping, translator: DmsTranslator) -> Connection | None:
    """Where a mapping's source SQL (and lookups) run: SQLCONID's, else the metadata's."""
    if mapping.source_connection is not None or mapping.source is None:
        return mapping.source_connection
    if mapping.source.connection_id is None:
        return translator.metadata_database
    return None  # SQLCONID names no current connection (an ERROR finding of its own)


def _is_sqlite(con: Connection) -> bool:
    return DBTYP_TO_DIALECT.get(con.db_type.upper()) == "sqlite"


def _column_names(mapping: Mapping) -> dict[str, str]:
    """Upper case -> spelling of a target's columns (its own and the loader's)."""
    audit = [column[0] for column in AUDIT_COLUMNS + SCD2_AUDIT_COLUMNS]
    names = audit + [c.name for c in mapping.columns if c.name]
    return {n.upper(): n for n in names}


def _dep_order(dep: dg.TableColumnDep) -> tuple:
    return dep.asset_key.path, dep.column_name


class _Reading:
    """Walks the catalog once: source tables found, column lineage made."""

    def __init__(self, catalog, names, deps, translator, mapping_of=None) -> None:
        self.catalog, self.names, self.deps = catalog, names, deps
        # a mapping with all its columns (the catalog may hold only what names it)
        self.mapping_of = mapping_of or catalog.mappings.__getitem__
        self.translator, self.default = translator, DmsTranslator()
        self.default.metadata_database = translator.metadata_database
        self.writers = _Writers(catalog)
        self.mapping_keys = {n.key for n in names.mappings.values()}
        self.out = CatalogReads()
        self.source_keys: dict[_Identity, dg.AssetKey] = {}
        self.sources: dict[dg.AssetKey, SourceTable] = {}
        self.read_by: dict[dg.AssetKey, set[str]] = defaultdict(set)
        self._column_names: dict[str, dict[str, str]] = {}

    def mapping(self, m: Mapping, reads: MappingReads) -> None:
        con = _source_connection(m, self.translator)
        keys = {}
        for table in sorted(reads.tables, key=lambda t: (t.schema or "", t.table)):
            if not self.writers.of(table) and con is not None:
                keys[table.identity] = self.source_key(m, con, table)
        self.out.upstream[m.ref] = sorted(set(keys.values()), key=lambda k: k.path)
        lineage = {}
        for column, column_reads in reads.columns.items():
            column_deps = {d for r in column_reads for d in self.column_deps(m, r, keys)}
            if column_deps:
                lineage[column] = sorted(column_deps, key=_dep_order)
        if lineage:
            column_lineage = dg.TableColumnLineage(deps_by_column=lineage)
            self.out.metadata[m.ref] = dict(TableMetadataSet(column_lineage=column_lineage))

    def source_key(self, m: Mapping, con: Connection, table: TableRead) -> dg.AssetKey:
        if _is_sqlite(con) and (table.schema or "").lower() == "main":
            table = TableRead(None, table.table)  # SQLite's main is its default schema
        identity = (con.name, *table.identity)
        if identity not in self.source_keys:
            source = SourceTable(con, table.schema, table.table)
            key = self.ask(m, "get_source_asset_key", source)
            if not isinstance(key, dg.AssetKey) or key in self.mapping_keys:
                key = self.default.get_source_asset_key(source)  # (never a mapping's key)
            self.source_keys[identity] = key
            self.sources.setdefault(key, source)
        key = self.source_keys[identity]
        self.read_by[key].add(m.ref)
        return key

    def column_deps(self, m: Mapping, read: ColumnRead, sources: dict) -> list[dg.TableColumnDep]:
        """The columns of upstream assets a target column reads: a mapping's table (one
        this mapping depends on) or a source table."""
        writers = self.writers.of(read.table_read)
        if not writers:
            key = sources.get(read.table_read.identity)
            return [dg.TableColumnDep(asset_key=key, column_name=read.column)] if key else []
        return [
            dg.TableColumnDep(
                asset_key=self.names.mappings[w.ref].key,
                column_name=self.column_names(w).get(read.column.upper(), read.column),
            )
            for w in writers
            if w.ref in self.deps.get(m.ref, ())
        ]

    def column_names(self, mapping: Mapping) -> dict[str, str]:
        if mapping.ref not in self._column_names:
            self._column_names[mapping.ref] = _column_names(self.mapping_of(mapping.ref))
        return self._column_names[mapping.ref]

    def ask(self, m: Mapping, method: str, *args):
        """The translator's answer, else the default's (and a WARNING finding)."""
        try:
            return getattr(self.translator, method)(*args)
        except Exception as exc:  # the user's translator: one table, never the location
            if type(self.translator) is DmsTranslator:
                raise
            label = f"{type(self.translator).__name__}.{method}"
            self.warn(m.ref, f"{label} failed, the default is used: {exc}")
            return getattr(self.default, method)(*args)

    def warn(self, ref: str, message: str) -> None:
        self.out.findings.append(Finding(mapref=ref, severity=Severity.WARNING, message=message))

    def source_assets(self) -> list[dg.AssetsDefinition]:
        assets = []
        for key, source in sorted(self.sources.items(), key=lambda kv: kv[0].path):
            source = replace(source, read_by=tuple(sorted(self.read_by[key])))
            first = self.catalog.mappings[source.read_by[0]]
            try:
                spec = self.ask(first, "get_source_asset_spec", source)
                # the key the mappings depend on, whatever the spec says
                assets.append(dg.AssetsDefinition(specs=[spec.replace_attributes(key=key)]))
            except Exception as exc:  # an answer Dagster refuses: the default spec
                if type(self.translator) is DmsTranslator:
                    raise
                self.warn(first.ref, f"the spec of source table {source.table} is refused: {exc}")
                spec = self.default.get_source_asset_spec(source).replace_attributes(key=key)
                assets.append(dg.AssetsDefinition(specs=[spec]))
        return assets


def catalog_reads(
    catalog: Catalog,
    names: CatalogNames,
    deps: dict[str, list[str]],
    metadata_dialect: str,
    translator: DmsTranslator,
) -> CatalogReads:
    """The source tables of a catalog as external assets, each mapping's source keys and
    column lineage. `deps`: MAPREF -> the mappings it depends on (lineage never points
    to a mapping it does not depend on, such as the one of a cycle left out)."""
    reading = _Reading(catalog, names, deps, translator)
    for m in catalog.mappings.values():
        _read_mapping(reading, m, metadata_dialect)
    reading.out.sources = reading.source_assets()
    return reading.out


def _read_mapping(reading: _Reading, m: Mapping, metadata_dialect: str) -> None:
    try:
        reading.mapping(m, mapping_reads(m, source_dialect(m, metadata_dialect)))
    except Exception as exc:  # any SQL text or row: no lineage, never the location
        reading.warn(m.ref, f"the tables and columns its SQL reads could not be read: {exc}")
        reading.out.upstream.setdefault(m.ref, [])


class MappingReader:
    """What one mapping at a time reads, as catalog_reads finds it: for a process that
    runs one mapping without a code server (`dagster job execute`), which need not read
    the SQL of every other mapping. `read(ref)`: its source keys, its column lineage
    metadata and the findings of reading it. `mapping_of`: a mapping with all its columns,
    when the catalog holds only what names and indexes it."""

    def __init__(
        self,
        catalog: Catalog,
        names: CatalogNames,
        deps: dict[str, list[str]],
        metadata_dialect: str,
        translator: DmsTranslator,
        mapping_of: Callable[[str], Mapping] | None = None,
    ) -> None:
        self.reading = _Reading(catalog, names, deps, translator, mapping_of)
        self.dialect = metadata_dialect

    def read(self, ref: str) -> tuple[list[dg.AssetKey], dict[str, Any], list[Finding]]:
        out = self.reading.out
        before = len(out.findings)
        _read_mapping(self.reading, self.reading.mapping_of(ref), self.dialect)
        found = [f for f in out.findings[before:] if f.mapref == ref]
        return out.upstream.get(ref, []), out.metadata.get(ref, {}), found
