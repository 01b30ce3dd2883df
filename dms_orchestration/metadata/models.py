"""Frozen pydantic models of the DMS rows the runtime reads.

Fields carry readable names; the legacy column names are their aliases, so a row read
from the database (keys upper-cased) validates straight into a model.
"""

from __future__ import annotations

from datetime import date, datetime

from pydantic import Field

from dms_orchestration.db.connections import Connection, DmsRow

__all__ = [
    "Catalog",
    "Connection",
    "DmsRow",
    "FileColumn",
    "FileLoad",
    "Finding",
    "Job",
    "Mapping",
    "MappingColumn",
    "Report",
    "Schedule",
    "SourceSql",
]


class SourceSql(DmsRow):
    id: int = Field(alias="MAPRSQLID")
    code: str = Field(alias="MAPRSQLCD")
    description: str | None = Field(None, alias="MAPRSQLDESC")
    sql: str | None = Field(None, alias="MAPRSQL")
    connection_id: int | None = Field(None, alias="SQLCONID")


class MappingColumn(DmsRow):
    id: int = Field(alias="MAPDTLID")
    mapref: str = Field(alias="MAPREF")
    name: str | None = Field(None, alias="TRGCLNM")
    data_type: str | None = Field(None, alias="TRGCLDTYP")
    key_flag: str | None = Field(None, alias="TRGKEYFLG")
    key_seq: int | None = Field(None, alias="TRGKEYSEQ")
    description: str | None = Field(None, alias="TRGCLDESC")
    logic: str | None = Field(None, alias="MAPLOGIC")
    lookup_key: str | None = Field(None, alias="KEYCLNM")
    lookup_value: str | None = Field(None, alias="VALCLNM")
    combine: str | None = Field(None, alias="MAPCMBCD")
    order: int | None = Field(None, alias="EXCSEQ")
    scd_type: str | None = Field(None, alias="SCDTYP")
    verified: str | None = Field(None, alias="LGVRFYFLG")

    @property
    def is_key(self) -> bool:
        return (self.key_flag or "").upper() == "Y"

    @property
    def is_lookup(self) -> bool:
        return bool(self.lookup_key or self.lookup_value)


class Schedule(DmsRow):
    id: int = Field(alias="JOBSCHID")
    job_id: int | None = Field(None, alias="JOBID")
    mapref: str | None = Field(None, alias="MAPREF")
    frequency: str | None = Field(None, alias="FRQCD")
    day: str | None = Field(None, alias="FRQDD")
    hour: int | None = Field(None, alias="FRQHH")
    minute: int | None = Field(None, alias="FRQMI")
    enabled_flag: str | None = Field(None, alias="ENABLEFLG")
    depends_on_id: int | None = Field(None, alias="DPND_JOBSCHID")
    start: datetime | date | None = Field(None, alias="STRDT")
    end: datetime | date | None = Field(None, alias="ENDDT")
    # the MAPREF of the schedule DPND_JOBSCHID names (resolved by the catalog)
    depends_on_mapref: str | None = None

    @property
    def enabled(self) -> bool:
        return (self.enabled_flag or "Y").upper() == "Y"


class Job(DmsRow):
    id: int = Field(alias="JOBID")
    mapref: str = Field(alias="MAPREF")
    description: str | None = Field(None, alias="JOBDESC")
    status: str | None = Field(None, alias="STFLG")
    schedules: tuple[Schedule, ...] = ()

    @property
    def active(self) -> bool:
        return (self.status or "A").upper() == "A"


class Finding(DmsRow):
    mapref: str = Field(alias="MAPREF")
    column: str | None = Field(None, alias="TRGCLNM")
    severity: str = Field(alias="ERRTYP")  # ERROR | WARNING
    message: str = Field(alias="ERRMSG")


class Mapping(DmsRow):
    id: int = Field(alias="MAPID")
    ref: str = Field(alias="MAPREF")
    description: str | None = Field(None, alias="MAPDESC")
    source_system: str | None = Field(None, alias="SRCSYS")
    target_table: str | None = Field(None, alias="TRGTBNM")
    target_type: str | None = Field(None, alias="TRGTBTYP")
    target_schema: str | None = Field(None, alias="TRGSCHM")
    frequency: str | None = Field(None, alias="FRQCD")
    bulk_rows: int | None = Field(None, alias="BLKPRCROWS")
    target_connection_id: int | None = Field(None, alias="TRGCONID")
    source_sql_code: str | None = Field(None, alias="MAPRSQLCD")
    checkpoint_strategy: str | None = Field(None, alias="CHKPNTSTRTGY")
    checkpoint_column: str | None = Field(None, alias="CHKPNTCLNM")
    checkpoint_function: str | None = Field(None, alias="CHKPNTFN")
    delete_handling: str | None = Field(None, alias="DELHNDL")
    # assembled by the catalog from the other tables
    columns: tuple[MappingColumn, ...] = ()
    source: SourceSql | None = None
    source_connection: Connection | None = None
    target_connection: Connection | None = None
    jobs: tuple[Job, ...] = ()
    findings: tuple[Finding, ...] = ()

    @property
    def business_key(self) -> tuple[MappingColumn, ...]:
        keys = [c for c in self.columns if c.is_key]
        return tuple(sorted(keys, key=lambda c: (c.key_seq or 0, (c.name or "").upper())))

    @property
    def columns_in_order(self) -> tuple[MappingColumn, ...]:
        """EXCSEQ order, ties by TRGCLNM: evaluation order and printing order."""
        return tuple(
            sorted(
                self.columns, key=lambda c: (c.order is None, c.order or 0, (c.name or "").upper())
            )
        )


class Report(DmsRow):
    """A DMS_RPRT row: a query (DMS_MAPRSQL) written to a file, on demand or on its own
    clock (FRQCD ... ENABLEFLG, the codes of DMS_JOBSCH)."""

    id: int = Field(alias="RPRTID")
    ref: str = Field(alias="RPRTREF")
    description: str | None = Field(None, alias="RPRTDESC")
    source_sql_code: str | None = Field(None, alias="MAPRSQLCD")
    output_format: str | None = Field(None, alias="OUTFMT")
    output_path: str | None = Field(None, alias="OUTPATH")
    frequency: str | None = Field(None, alias="FRQCD")
    day: str | None = Field(None, alias="FRQDD")
    hour: int | None = Field(None, alias="FRQHH")
    minute: int | None = Field(None, alias="FRQMI")
    enabled_flag: str | None = Field(None, alias="ENABLEFLG")
    # resolved by the catalog: the query and the connection it runs on
    source: SourceSql | None = None
    source_connection: Connection | None = None
    problems: tuple[str, ...] = ()  # what reading the row found (a value left out)

    @property
    def schedule(self) -> Schedule | None:
        """Its clock as a schedule row (None: no FRQCD, on demand only)."""
        if not (self.frequency or "").strip():
            return None
        return Schedule(
            JOBSCHID=self.id,
            MAPREF=self.ref,
            FRQCD=self.frequency,
            FRQDD=self.day,
            FRQHH=self.hour,
            FRQMI=self.minute,
            ENABLEFLG=self.enabled_flag,
        )


class FileColumn(DmsRow):
    """A DMS_FLUPLDDTL row: where a target column's value comes from in the file."""

    id: int = Field(alias="FLUPLDDTLID")
    ref: str = Field(alias="FLUPLDREF")
    source: str | None = Field(None, alias="SRCCLNM")
    name: str | None = Field(None, alias="TRGCLNM")
    data_type: str | None = Field(None, alias="TRGCLDTYP")
    key_flag: str | None = Field(None, alias="TRGKEYFLG")
    required_flag: str | None = Field(None, alias="RQRDFLG")
    default: str | None = Field(None, alias="DFLTVAL")
    transform: str | None = Field(None, alias="TRNSFRM")
    order: int | None = Field(None, alias="EXCSEQ")


class FileLoad(DmsRow):
    """A DMS_FLUPLD row with its columns: landed files (FLPATH, a glob) loaded into a
    table."""

    id: int = Field(alias="FLUPLDID")
    ref: str = Field(alias="FLUPLDREF")
    description: str | None = Field(None, alias="FLUPLDDESC")
    file_type: str | None = Field(None, alias="FLTYP")
    path: str | None = Field(None, alias="FLPATH")
    archive_path: str | None = Field(None, alias="ARCHPATH")
    # CSV: the delimiter (default ","); XLSX: the sheet to read (default: the first)
    delimiter: str | None = Field(None, alias="DELIM")
    header_flag: str | None = Field(None, alias="HDRFLG")
    target_connection_id: int | None = Field(None, alias="TRGCONID")
    target_schema: str | None = Field(None, alias="TRGSCHM")
    target_table: str | None = Field(None, alias="TRGTBNM")
    load_type: str | None = Field(None, alias="LDTYP")
    columns: tuple[FileColumn, ...] = ()
    target_connection: Connection | None = None
    problems: tuple[str, ...] = ()  # what reading its rows found (a value left out)


class Catalog(DmsRow):
    """Everything the runtime reads from the DMS schema, from one fixed set of queries."""

    mappings: dict[str, Mapping] = {}
    reports: dict[str, Report] = {}
    file_loads: dict[str, FileLoad] = {}
    connections: dict[int, Connection] = {}
    source_sql: dict[str, SourceSql] = {}
    params: dict[str, dict[str, str | None]] = {}
    # MAPREF -> what reading its rows found (a duplicate current row, a value of the wrong
    # type): ERROR findings, the mapping does not load until they are fixed
    read_findings: dict[str, tuple[Finding, ...]] = {}

    def param(self, code: str, default: str | None = None, prtyp: str = "DMSCONFIG") -> str | None:
        value = self.params.get(prtyp, {}).get(code)
        return default if value is None else value

    def int_param(self, code: str, default: int) -> int:
        """A whole-number DMSCONFIG value; the default when it is empty or not a number."""
        try:
            return int(str(self.param(code, str(default))).strip())
        except ValueError:
            return default

    @property
    def jobs(self) -> tuple[Job, ...]:
        return tuple(job for m in self.mappings.values() for job in m.jobs)
