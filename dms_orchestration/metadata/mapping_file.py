"""The mapping file: how authors write connections, source SQL, mappings, jobs and
schedules as YAML. The pydantic models here are the format; its JSON Schema (for
editors) is generated from them into dms_orchestration/schemas/mappings.schema.json."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from dms_orchestration.db.connections import PASSWORD_ADVICE, has_literal_password
from dms_orchestration.vocabulary import (
    CheckpointStrategy,
    Combine,
    DbType,
    DeleteHandling,
    FileType,
    Frequency,
    LoadType,
    ReportFormat,
    TargetType,
)

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "mappings.schema.json"


class MappingFileError(ValueError):
    pass


class _Spec(BaseModel):
    # (the codes are vocabulary enums, so the JSON Schema lists them; a spec holds their
    # plain text)
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=True)


class ParamSpec(_Spec):
    """A DMS_PARAMS row."""

    code: str = Field(description="PRCD, e.g. ID_BLOCK_SIZE or MIN_ROWS_FOR_PARALLEL")
    value: str | None = Field(None, description="PRVAL")
    type: str = Field("DMSCONFIG", description="PRTYP")
    description: str | None = Field(None, description="PRDESC")


class ConnectionSpec(_Spec):
    """A DMS_DBCONDTLS row. Passwords are never written here: name an environment variable."""

    name: str = Field(description="CONNM, unique")
    type: DbType = Field(description="DBTYP")
    host: str | None = Field(None, description="DBHOST")
    port: int | None = Field(None, description="DBPORT")
    service_name: str | None = Field(None, description="DBSID (Oracle service name)")
    database: str | None = Field(
        None, description="DBNM: PostgreSQL database, or SQLite file (relative to DMS_HOME)"
    )
    user: str | None = Field(None, description="DBUSR")
    password_env: str | None = Field(
        None, description="DBPSWDENV: the environment variable that holds the password"
    )
    url: str | None = Field(
        None, description="DBURL: SQLAlchemy URL; ${NAME} is filled from the environment"
    )

    @field_validator("url")
    @classmethod
    def _no_password(cls, url: str | None) -> str | None:
        if has_literal_password(url):
            raise ValueError(f"DBURL holds a password; {PASSWORD_ADVICE}")
        return url


class SourceSqlSpec(_Spec):
    """A DMS_MAPRSQL row: one SELECT in the source connection's dialect."""

    code: str = Field(description="MAPRSQLCD")
    description: str | None = Field(None, description="MAPRSQLDESC")
    connection: str | None = Field(
        None, description="CONNM of the source connection; omitted = the metadata database"
    )
    sql: str = Field(description="MAPRSQL; :p1..:p10 bind PARAM1..PARAM10")


class LookupSpec(_Spec):
    key: str = Field(description="KEYCLNM: the lookup query's column matched to the business key")
    value: str = Field(description="VALCLNM: the lookup query's column that gives the value")


class ColumnSpec(_Spec):
    """A DMS_MAPRDTL row: one target column."""

    name: str = Field(description="TRGCLNM")
    type: str = Field(description="TRGCLDTYP, e.g. VARCHAR(100), NUMBER(12,2), DATE")
    key: int | None = Field(
        None, description="TRGKEYSEQ: position in the business key (sets TRGKEYFLG='Y')"
    )
    description: str | None = Field(None, description="TRGCLDESC")
    logic: str | None = Field(
        None,
        description="MAPLOGIC: SQL expression over the source query (alias SRC), or "
        "a lookup SELECT when lookup is set",
    )
    lookup: LookupSpec | None = None
    combine: Combine | None = Field(None, description="MAPCMBCD")
    order: int | None = Field(None, description="EXCSEQ")
    scd: Literal[1, 2] | None = Field(None, description="SCDTYP")


class ScheduleSpec(_Spec):
    """A DMS_JOBSCH row: a clock (frequency) or a dependency (depends_on), not both."""

    frequency: Frequency | None = Field(None, description="FRQCD")
    day: str | None = Field(
        None, description="FRQDD: MM-DD (YR/HY/QT), day of month or L (MN), MON..SUN (WK/FN)"
    )
    hour: int | None = Field(None, ge=0, le=23, description="FRQHH")
    minute: int | None = Field(None, ge=0, le=59, description="FRQMI")
    enabled: bool = Field(True, description="ENABLEFLG")
    start: datetime | date | None = Field(None, description="STRDT")
    end: datetime | date | None = Field(None, description="ENDDT")
    depends_on: str | None = Field(
        None, description="MAPREF of the parent job: run after its schedule succeeds"
    )


class JobSpec(_Spec):
    """The mapping's DMS_JOB row and its schedules."""

    description: str | None = Field(None, description="JOBDESC")
    active: bool = Field(True, description="STFLG 'A' (active) or 'N'")
    schedules: list[ScheduleSpec] = []


class TargetSpec(_Spec):
    table: str = Field(description="TRGTBNM")
    schema_: str | None = Field(None, alias="schema", description="TRGSCHM")
    type: TargetType = Field(TargetType.DIMENSION.value, description="TRGTBTYP")
    connection: str | None = Field(
        None, description="CONNM of the target connection; omitted = the metadata database"
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class CheckpointSpec(_Spec):
    strategy: CheckpointStrategy = Field(description="CHKPNTSTRTGY")
    column: str | None = Field(None, description="CHKPNTCLNM")
    function: str | None = Field(None, description="CHKPNTFN: a registered function's name")


class MappingSpec(_Spec):
    """A DMS_MAPR row with its columns and job."""

    ref: str = Field(description="MAPREF")
    description: str | None = Field(None, description="MAPDESC")
    source_system: str | None = Field(None, description="SRCSYS")
    target: TargetSpec
    sql: str = Field(description="MAPRSQLCD of the main source query")
    frequency: Frequency | None = Field(None, description="FRQCD")
    bulk_rows: int | None = Field(None, ge=1, description="BLKPRCROWS")
    checkpoint: CheckpointSpec | None = None
    delete_handling: DeleteHandling | None = Field(None, description="DELHNDL")
    columns: list[ColumnSpec]
    job: JobSpec | None = None


class ReportSpec(_Spec):
    """A DMS_RPRT row: a query written to a file, on demand (`dms report run`, a REPORT
    request) and, with a frequency, on its own clock."""

    ref: str = Field(description="RPRTREF")
    description: str | None = Field(None, description="RPRTDESC")
    sql: str = Field(description="MAPRSQLCD of its query (PARAM1..PARAM10 bound as :p1..:p10)")
    format: ReportFormat = Field(description="OUTFMT")
    path: str = Field(
        description="OUTPATH: may hold {RPRTREF} {RUNDATE} {PRCID}; relative = under DMS_HOME"
    )
    frequency: Frequency | None = Field(None, description="FRQCD")
    day: str | None = Field(None, description="FRQDD, as in a schedule")
    hour: int | None = Field(None, ge=0, le=23, description="FRQHH")
    minute: int | None = Field(None, ge=0, le=59, description="FRQMI")
    enabled: bool = Field(True, description="ENABLEFLG")


class FileColumnSpec(_Spec):
    """A DMS_FLUPLDDTL row: a target column and where its value comes from in the file."""

    name: str = Field(description="TRGCLNM")
    type: str = Field(description="TRGCLDTYP, e.g. VARCHAR(100), INTEGER, DATE, NUMBER(12,2)")
    source: str | None = Field(None, description="SRCCLNM: the file's column (header name)")
    transform: str | None = Field(
        None, description="TRNSFRM: a SQL expression over the file's columns (alias SRC)"
    )
    key: bool = Field(False, description="TRGKEYFLG: part of the key UPSERT matches on")
    required: bool = Field(False, description="RQRDFLG: an empty value is a bad row")
    default: str | None = Field(None, description="DFLTVAL: the value of an empty field")
    order: int | None = Field(None, description="EXCSEQ")


class FileLoadSpec(_Spec):
    """A DMS_FLUPLD row and its columns: landed files loaded into a table."""

    ref: str = Field(description="FLUPLDREF")
    description: str | None = Field(None, description="FLUPLDDESC")
    type: FileType = Field(description="FLTYP")
    path: str = Field(description="FLPATH: a glob of the files to load; relative = under DMS_HOME")
    archive: str | None = Field(None, description="ARCHPATH: where loaded files move")
    delimiter: str | None = Field(
        None, description="DELIM: a CSV's delimiter (default ,); an XLSX's sheet (default: first)"
    )
    header: bool = Field(True, description="HDRFLG: the first row names the columns")
    target: TargetSpec
    load_type: LoadType = Field(description="LDTYP")
    columns: list[FileColumnSpec]


class MappingFile(_Spec):
    params: list[ParamSpec] = []
    connections: list[ConnectionSpec] = []
    sql: list[SourceSqlSpec] = []
    mappings: list[MappingSpec] = []
    reports: list[ReportSpec] = []
    file_loads: list[FileLoadSpec] = []


def json_schema() -> dict:
    schema = MappingFile.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "DMS mapping file"
    return schema


def write_json_schema(path: Path = SCHEMA_PATH) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(json_schema(), indent=2) + "\n")
    return path


def parse_mapping_file(text: str, source: str = "<text>") -> MappingFile:
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise MappingFileError(f"{source}: not valid YAML: {exc}") from None
    try:
        return MappingFile.model_validate(data)
    except ValidationError as exc:
        lines = [f"  {_where(data, err['loc'])}: {err['msg']}" for err in exc.errors()]
        raise MappingFileError(
            f"{source}: not a valid mapping file:\n" + "\n".join(lines)
        ) from None


def _where(data, loc: tuple) -> str:
    """A pydantic error location with list items named by their ref / name / code,
    e.g. mappings[DIM_PERSON].columns[CITY].scd instead of mappings.0.columns.2.scd."""
    parts, node = [], data
    for step in loc:
        if isinstance(step, int) and isinstance(node, list) and step < len(node):
            node = node[step]
            label = step
            if isinstance(node, dict):
                label = next((node[k] for k in ("ref", "name", "code") if node.get(k)), step)
            parts.append(f"{parts.pop() if parts else ''}[{label}]")
            continue
        parts.append(str(step))
        node = node.get(step) if isinstance(node, dict) else None
    return ".".join(parts)


def read_mapping_file(path: Path) -> MappingFile:
    return parse_mapping_file(Path(path).read_text(), str(path))


class _Dumper(yaml.SafeDumper):
    pass


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    # SQL reads best as a literal block (PyYAML falls back to quotes where it cannot)
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str_representer)


def dump_mapping_file(file: MappingFile) -> str:
    data = file.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True)
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


if __name__ == "__main__":
    print(write_json_schema())
