"""A mapping as the loader needs it: typed target columns in EXCSEQ order, the business
key, SCD kind, delete handling and checkpoint settings. Built once per load from the
metadata models; refuses a mapping whose rules are broken, naming every finding."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from dms_orchestration.db.dialects import has_schemas
from dms_orchestration.metadata.datatypes import DataType, parse_data_type
from dms_orchestration.metadata.models import Mapping
from dms_orchestration.metadata.sqlcheck import strip_sql
from dms_orchestration.metadata.validation import rule_findings
from dms_orchestration.vocabulary import (
    CheckpointStrategy,
    Combine,
    DeleteHandling,
    Family,
    Severity,
)

# FIRST / LAST need a row order that a SQL extract does not have: they take the
# smallest / largest value, which is deterministic on every database
# (looked up by a column's MAPCMBCD: None where it has none)
AGGREGATES: dict[str | None, str] = {
    Combine.SUM: "SUM",
    Combine.MIN: "MIN",
    Combine.MAX: "MAX",
    Combine.COUNT: "COUNT",
    Combine.AVG: "AVG",
    Combine.FIRST: "MIN",
    Combine.LAST: "MAX",
}


class MappingInvalid(ValueError):
    """The mapping breaks the metadata rules; the message lists every finding."""

    def __init__(self, mapref: str, findings: list[str]) -> None:
        self.mapref = mapref
        self.findings = findings
        super().__init__(f"mapping {mapref} is not valid:\n  " + "\n  ".join(findings))


@dataclass(frozen=True)
class TargetColumn:
    name: str  # upper case, as in DMS_MAPRDTL
    dtype: DataType
    logic: str
    is_key: bool = False
    scd: int = 1
    combine: str | None = None
    lookup_key: str | None = None
    lookup_value: str | None = None

    @property
    def is_lookup(self) -> bool:
        return self.lookup_key is not None

    @property
    def hash_type(self) -> tuple[str, int | None]:
        return self.dtype.family, self.dtype.scale if self.dtype.family == Family.DECIMAL else None


@dataclass(frozen=True)
class LoadSpec:
    mapref: str
    schema: str | None
    table: str
    keys: tuple[TargetColumn, ...]
    columns: tuple[TargetColumn, ...]  # the non-key columns, EXCSEQ order
    source_sql: str
    delete_handling: str  # IGNORE | EXPIRE | DELETE
    checkpoint_strategy: str  # NONE | KEY | PYTHON (AUTO resolved)
    checkpoint_column: str | None
    checkpoint_function: str | None
    batch_rows: int

    @property
    def scd2(self) -> bool:
        return any(c.scd == 2 for c in self.columns)

    @property
    def aggregated(self) -> bool:
        return any(c.combine for c in self.columns)

    @property
    def all_columns(self) -> tuple[TargetColumn, ...]:
        return self.keys + self.columns


DEFAULT_BATCH_ROWS = 10_000


def _code(value: str | None, default: str) -> str:
    return (value or "").strip().upper() or default


def load_spec(
    mapping: Mapping,
    target_dialect: str = "",
    default_schema: str | None = None,
    source_dialect: str | None = None,
) -> LoadSpec:
    """The mapping for the loader, refused (MappingInvalid, every finding named) when it
    breaks the rules - the SQL text rules in the source's sqlglot dialect included, so no
    statement ever runs a cell that validation would refuse. SQLite has no schemas: a
    SQLite target's table lives in its connection's database file, TRGSCHM aside.
    Elsewhere TRGSCHM, else CDR_SCHEMA."""
    errors = [
        (f"{f.column}: " if f.column else "") + f.message
        for f in rule_findings(mapping, source_dialect)
        if f.severity == Severity.ERROR
    ]
    if mapping.source is None or not (mapping.source.sql or "").strip():
        errors.append(f"source SQL {mapping.source_sql_code!r} is missing")
    if errors:
        raise MappingInvalid(mapping.ref, errors)
    cols = []
    for c in mapping.columns_in_order:
        assert c.name is not None  # (the rules refuse a column without TRGCLNM)
        cols.append(
            TargetColumn(
                name=c.name.upper(),
                dtype=parse_data_type(c.data_type),
                logic=strip_sql(c.logic or ""),
                is_key=c.is_key,
                scd=0 if c.is_key else int(c.scd_type or 1),
                combine=_code(c.combine, "") or None,
                lookup_key=c.lookup_key.strip() if c.lookup_key else None,
                lookup_value=c.lookup_value.strip() if c.lookup_value else None,
            )
        )
    # (a key column is one of the columns above: it has a name)
    keys = tuple(
        next(t for t in cols if t.name == cast(str, k.name).upper()) for k in mapping.business_key
    )
    strategy = _code(mapping.checkpoint_strategy, CheckpointStrategy.NONE)
    if strategy == CheckpointStrategy.AUTO:
        strategy = CheckpointStrategy.KEY if mapping.checkpoint_column else CheckpointStrategy.NONE
    # (both refused above: no source SQL, no target table)
    assert mapping.source is not None and mapping.source.sql is not None
    assert mapping.target_table is not None
    return LoadSpec(
        mapref=mapping.ref,
        schema=(mapping.target_schema or default_schema if has_schemas(target_dialect) else None),
        table=mapping.target_table.upper(),
        keys=keys,
        columns=tuple(c for c in cols if not c.is_key),
        source_sql=strip_sql(mapping.source.sql),
        delete_handling=_code(mapping.delete_handling, DeleteHandling.IGNORE),
        checkpoint_strategy=strategy,
        checkpoint_column=mapping.checkpoint_column,
        checkpoint_function=mapping.checkpoint_function,
        batch_rows=mapping.bulk_rows or DEFAULT_BATCH_ROWS,
    )
