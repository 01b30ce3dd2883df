"""Where each field of the mapping file is kept: its DMS column and its catalog attribute.

`dms mappings import` writes a spec's declared fields to their columns (`row_values`);
`export` reads them back from the catalog's models (`file_values`). A field is declared
once here and both directions follow. Fields kept some other way (a connection named in
the file but stored as its id, a parent schedule, a part with a model of its own) are
listed in HANDLED_OTHERWISE and written out in authoring.py.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, time
from typing import Any, NamedTuple

from pydantic import BaseModel

from dms_orchestration.metadata.mapping_file import (
    CheckpointSpec,
    ColumnSpec,
    ConnectionSpec,
    FileColumnSpec,
    FileLoadSpec,
    JobSpec,
    LookupSpec,
    MappingFile,
    MappingSpec,
    ParamSpec,
    ReportSpec,
    ScheduleSpec,
    SourceSqlSpec,
    TargetSpec,
)


def timestamp(value):
    """A date or date-time as DMS timestamps are written and compared: whole seconds, no
    time zone, a date at midnight. Other values are returned as they are."""
    if isinstance(value, datetime):
        return value.replace(microsecond=0, tzinfo=None)
    if isinstance(value, date):
        return datetime.combine(value, time())
    return value


def _date_out(value):
    """A timestamp at midnight goes out as a date."""
    if isinstance(value, datetime) and value.time() == time():
        return value.date()
    return value


def _same(value):
    return value


class Convert(NamedTuple):
    """How a value changes on its way from the file to the row, and back to the file."""

    to_row: Callable[[Any], Any] = _same
    to_file: Callable[[Any], Any] = _same


def filled(absent: str) -> Convert:
    """A field the file requires: an empty column is exported as `absent`."""
    return Convert(to_file=lambda value: value or absent)


def code(absent: str = "") -> Convert:
    """A code the file spells in upper case: an empty column is exported as `absent`."""
    return Convert(to_file=lambda value: (value or absent).upper())


def flag(yes: str = "Y", absent: str = "Y") -> Convert:
    """A yes/no field: `yes` or 'N' in the row; an empty column reads as `absent`."""
    return Convert(
        to_row=lambda value: yes if value else "N",
        to_file=lambda value: (value or absent).upper() == yes,
    )


SAME = Convert()
TEXT = filled("")
# HDRFLG: anything but 'N' is a header row
Y_UNLESS_N = Convert(
    to_row=lambda value: "Y" if value else "N",
    to_file=lambda value: (value or "Y").upper() != "N",
)
# SCDTYP holds '1' / '2'; any other value is exported as no SCD type
SCD_TYPE = Convert(
    to_row=lambda value: str(value) if value is not None else None,
    to_file=lambda value: int(value) if value in ("1", "2") else None,
)
TIMESTAMP = Convert(to_row=timestamp, to_file=_date_out)


class Stored(NamedTuple):
    """One field of a spec: the DMS column it is written to and the catalog attribute
    it is read back from, with the conversion between them."""

    field: str
    column: str
    attribute: str
    convert: Convert = SAME


def row_values(fields: tuple[Stored, ...], spec: BaseModel | None) -> dict:
    """The columns of `spec`'s declared fields (all None when the part is absent)."""
    return {
        f.column: f.convert.to_row(getattr(spec, f.field)) if spec is not None else None
        for f in fields
    }


def file_values(fields: tuple[Stored, ...], item: Any) -> dict:
    """The file's fields, read from a catalog model's (or a DMS row's) attributes."""
    return {f.field: f.convert.to_file(getattr(item, f.attribute)) for f in fields}


# DMS_PARAMS is exported from its rows: its attributes are its columns
PARAM = (
    Stored("type", "prtyp", "prtyp"),
    Stored("code", "prcd", "prcd"),
    Stored("value", "prval", "prval"),
    Stored("description", "prdesc", "prdesc"),
)
CONNECTION = (
    Stored("name", "connm", "name"),
    Stored("type", "dbtyp", "db_type", code()),
    Stored("host", "dbhost", "host"),
    Stored("port", "dbport", "port"),
    Stored("service_name", "dbsid", "service_name"),
    Stored("database", "dbnm", "database"),
    Stored("user", "dbusr", "user"),
    Stored("password_env", "dbpswdenv", "password_env"),
    Stored("url", "dburl", "url"),
)
SOURCE_SQL = (
    Stored("code", "maprsqlcd", "code"),
    Stored("description", "maprsqldesc", "description"),
    Stored("sql", "maprsql", "sql", TEXT),
)
MAPPING = (
    Stored("ref", "mapref", "ref"),
    Stored("description", "mapdesc", "description"),
    Stored("source_system", "srcsys", "source_system"),
    Stored("sql", "maprsqlcd", "source_sql_code", TEXT),
    Stored("frequency", "frqcd", "frequency"),
    Stored("bulk_rows", "blkprcrows", "bulk_rows"),
    Stored("delete_handling", "delhndl", "delete_handling"),
)
# a target: the mapping's (DMS_MAPR) and the file load's (DMS_FLUPLD, which keeps no type)
TARGET = (
    Stored("table", "trgtbnm", "target_table", TEXT),
    Stored("schema_", "trgschm", "target_schema"),
)
MAPPING_TARGET = (*TARGET, Stored("type", "trgtbtyp", "target_type", filled("DIMENSION")))
CHECKPOINT = (
    Stored("strategy", "chkpntstrtgy", "checkpoint_strategy"),
    Stored("column", "chkpntclnm", "checkpoint_column"),
    Stored("function", "chkpntfn", "checkpoint_function"),
)
COLUMN = (
    Stored("name", "trgclnm", "name", TEXT),
    Stored("type", "trgcldtyp", "data_type", TEXT),
    Stored("description", "trgcldesc", "description"),
    Stored("logic", "maplogic", "logic"),
    Stored("combine", "mapcmbcd", "combine"),
    Stored("order", "excseq", "order"),
    Stored("scd", "scdtyp", "scd_type", SCD_TYPE),
)
LOOKUP = (
    Stored("key", "keyclnm", "lookup_key"),
    Stored("value", "valclnm", "lookup_value"),
)
JOB = (
    Stored("description", "jobdesc", "description"),
    Stored("active", "stflg", "status", flag(yes="A", absent="A")),
)
# a clock, as DMS_JOBSCH and DMS_RPRT both keep it
CLOCK = (
    Stored("frequency", "frqcd", "frequency"),
    Stored("day", "frqdd", "day"),
    Stored("hour", "frqhh", "hour"),
    Stored("minute", "frqmi", "minute"),
    Stored("enabled", "enableflg", "enabled_flag", flag()),
)
SCHEDULE = (
    *CLOCK,
    Stored("start", "strdt", "start", TIMESTAMP),
    Stored("end", "enddt", "end", TIMESTAMP),
)
REPORT = (
    Stored("ref", "rprtref", "ref"),
    Stored("description", "rprtdesc", "description"),
    Stored("sql", "maprsqlcd", "source_sql_code", TEXT),
    Stored("format", "outfmt", "output_format", code("CSV")),
    Stored("path", "outpath", "output_path", TEXT),
    *CLOCK,
)
FILE_LOAD = (
    Stored("ref", "flupldref", "ref"),
    Stored("description", "fluplddesc", "description"),
    Stored("type", "fltyp", "file_type", code("CSV")),
    Stored("path", "flpath", "path", TEXT),
    Stored("archive", "archpath", "archive_path"),
    Stored("delimiter", "delim", "delimiter"),
    Stored("header", "hdrflg", "header_flag", Y_UNLESS_N),
    Stored("load_type", "ldtyp", "load_type", code("APPEND")),
)
FILE_COLUMN = (
    Stored("name", "trgclnm", "name", TEXT),
    Stored("type", "trgcldtyp", "data_type", TEXT),
    Stored("source", "srcclnm", "source"),
    Stored("transform", "trnsfrm", "transform"),
    Stored("key", "trgkeyflg", "key_flag", flag(absent="N")),
    Stored("required", "rqrdflg", "required_flag", flag(absent="N")),
    Stored("default", "dfltval", "default"),
    # an import without an order writes the column's place in the file (authoring.py)
    Stored("order", "excseq", "order"),
)

# each spec model's declared fields
DECLARED: dict[type[BaseModel], tuple[Stored, ...]] = {
    ParamSpec: PARAM,
    ConnectionSpec: CONNECTION,
    SourceSqlSpec: SOURCE_SQL,
    MappingSpec: MAPPING,
    TargetSpec: MAPPING_TARGET,
    CheckpointSpec: CHECKPOINT,
    ColumnSpec: COLUMN,
    LookupSpec: LOOKUP,
    JobSpec: JOB,
    ScheduleSpec: SCHEDULE,
    ReportSpec: REPORT,
    FileLoadSpec: FILE_LOAD,
    FileColumnSpec: FILE_COLUMN,
}
# the fields authoring.py imports and exports by its own code
HANDLED_OTHERWISE: dict[type[BaseModel], frozenset[str]] = {
    # each list's items, one by one
    MappingFile: frozenset({"params", "connections", "sql", "mappings", "reports", "file_loads"}),
    # a connection's name, stored as its id (SQLCONID / TRGCONID)
    SourceSqlSpec: frozenset({"connection"}),
    TargetSpec: frozenset({"connection"}),
    # parts with models of their own
    MappingSpec: frozenset({"target", "checkpoint", "columns", "job"}),
    JobSpec: frozenset({"schedules"}),
    FileLoadSpec: frozenset({"target", "columns"}),
    # key: TRGKEYFLG and TRGKEYSEQ; lookup: a part, present when both its columns are set
    ColumnSpec: frozenset({"key", "lookup"}),
    # the parent's MAPREF, stored as the id of its schedule (DPND_JOBSCHID)
    ScheduleSpec: frozenset({"depends_on"}),
}
