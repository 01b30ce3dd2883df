"""The codes of the DMS metadata contract, spelled once: each a `StrEnum` whose members
are the strings the tables hold (a member equals its code: `Status.PC == "PC"`).
Validation, the mapping file's models (and so its JSON Schema), the engine, the log
tables and the request queue all use these. `codes(E)` is the tuple of a code set's
values, for messages and for membership tests of a cell's (any) text."""

from __future__ import annotations

from enum import StrEnum


def codes(kind: type[StrEnum]) -> tuple[str, ...]:
    """The values of a code set, in their declared order."""
    return tuple(member.value for member in kind)


class Status(StrEnum):
    """DMS_PRCLOG.PRCSTS and DMS_JOBLOG.STATUS (and a run's outcome in the log tables)."""

    IP = "IP"  # in progress
    PC = "PC"  # process completed
    FL = "FL"  # failed
    ST = "ST"  # stopped


class RequestType(StrEnum):
    """DMS_PRCREQ.REQTYP."""

    IMMEDIATE = "IMMEDIATE"  # run a mapping's job now
    HISTORY = "HISTORY"  # run it over a range of dates (HSTFRMDT..HSTTODT)
    STOP = "STOP"  # stop a running load
    REPORT = "REPORT"  # run a report


class RequestStatus(StrEnum):
    """DMS_PRCREQ.REQSTS."""

    NEW = "NEW"
    CLAIMED = "CLAIMED"  # the queue sensor took it; its run is being launched
    DONE = "DONE"
    FAILED = "FAILED"


class ScdType(StrEnum):
    """DMS_MAPRDTL.SCDTYP."""

    OVERWRITE = "1"  # SCD Type 1: the current row is updated in place
    HISTORY = "2"  # SCD Type 2: a change closes the current version and opens a new one


class DeleteHandling(StrEnum):
    """DMS_MAPR.DELHNDL: what a full extract does to keys absent from it."""

    IGNORE = "IGNORE"
    EXPIRE = "EXPIRE"  # SCD2: the current version is closed
    DELETE = "DELETE"  # every version is deleted


class Combine(StrEnum):
    """DMS_MAPRDTL.MAPCMBCD: how rows that share a business key are combined."""

    SUM = "SUM"
    MIN = "MIN"
    MAX = "MAX"
    COUNT = "COUNT"
    AVG = "AVG"
    FIRST = "FIRST"  # (the smallest value: an extract has no row order)
    LAST = "LAST"  # (the largest value)


class Frequency(StrEnum):
    """DMS_JOBSCH.FRQCD and DMS_RPRT.FRQCD (metadata.frequency says each in cron)."""

    YR = "YR"  # yearly
    HY = "HY"  # half-yearly
    QT = "QT"  # quarterly
    MN = "MN"  # monthly
    FN = "FN"  # fortnightly
    WK = "WK"  # weekly
    DL = "DL"  # daily
    ID = "ID"  # intraday: every FRQMI minutes or FRQHH hours


class CheckpointStrategy(StrEnum):
    """DMS_MAPR.CHKPNTSTRTGY."""

    NONE = "NONE"
    KEY = "KEY"  # rows above the last load's highest CHKPNTCLNM value
    AUTO = "AUTO"  # KEY when CHKPNTCLNM is set, else NONE
    PYTHON = "PYTHON"  # a registered checkpoint function (CHKPNTFN) gives the window


class TargetType(StrEnum):
    """DMS_MAPR.TRGTBTYP."""

    DIMENSION = "DIMENSION"
    FACT = "FACT"
    STAGING = "STAGING"


class Family(StrEnum):
    """The family of a TRGCLDTYP, as metadata.datatypes parses it."""

    STRING = "STRING"
    CHAR = "CHAR"
    TEXT = "TEXT"
    INTEGER = "INTEGER"
    DECIMAL = "DECIMAL"
    FLOAT = "FLOAT"
    DATE = "DATE"
    TIMESTAMP = "TIMESTAMP"
    BOOLEAN = "BOOLEAN"


STRING_FAMILIES = (Family.STRING, Family.CHAR, Family.TEXT)


class Severity(StrEnum):
    """DMS_MAPERR.ERRTYP of a validation finding."""

    ERROR = "ERROR"
    WARNING = "WARNING"


class DbType(StrEnum):
    """DMS_DBCONDTLS.DBTYP."""

    ORACLE = "ORACLE"
    POSTGRESQL = "POSTGRESQL"
    SQLITE = "SQLITE"


class ReportFormat(StrEnum):
    """DMS_RPRT.OUTFMT."""

    CSV = "CSV"
    XLSX = "XLSX"
    PARQUET = "PARQUET"


class FileType(StrEnum):
    """DMS_FLUPLD.FLTYP."""

    CSV = "CSV"
    XLSX = "XLSX"
    JSON = "JSON"


class LoadType(StrEnum):
    """DMS_FLUPLD.LDTYP: how a file's rows reach its target table."""

    APPEND = "APPEND"
    TRUNCATE = "TRUNCATE"  # the table's rows are replaced
    UPSERT = "UPSERT"  # rows are matched on the key columns: updated, or inserted
