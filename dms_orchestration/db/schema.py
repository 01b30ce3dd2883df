"""The DMS metadata contract as data: every table, column, key, index and sequence.

One definition feeds three things: the SQLAlchemy tables the code queries through, the
DDL files in metadata_sql/ (rendered per dialect by db.ddl) and `dms db init`.
Names are lower case here so that SQLAlchemy renders them unquoted: plain SQL written
by people and other tools (`INSERT INTO DMS_PRCREQ ...`) then finds the same tables on
PostgreSQL (folds to lower case), Oracle (folds to upper case) and SQLite.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    kind: str  # ID | INT | NUM | VC | CLOB | TS | DATE
    size: int | None = None
    nullable: bool = True
    # SQL default, so that rows written with plain SQL get the values readers expect
    default: str | None = None


@dataclass(frozen=True)
class IndexSpec:
    name: str
    columns: tuple[str, ...]
    unique: bool = False
    # unique among current rows only (CURFLG='Y'): versioned tables keep old rows
    current_only: bool = False


@dataclass(frozen=True)
class TableSpec:
    name: str
    columns: tuple[ColumnSpec, ...]
    primary_key: tuple[str, ...]
    indexes: tuple[IndexSpec, ...] = ()
    # the id entity whose sequence / pool hands out this table's primary key
    id_column: str | None = None
    sequence: str | None = None
    notes: dict[str, str] = field(default_factory=dict)

    def column(self, name: str) -> ColumnSpec:
        return next(c for c in self.columns if c.name == name)


def _c(
    name: str, kind: str, size: int | None = None, nullable: bool = True, default: str | None = None
) -> ColumnSpec:
    return ColumnSpec(name, kind, size, nullable, default)


def _flag(name: str, default: str | None = None) -> ColumnSpec:
    return _c(name, "VC", 1, default=f"'{default}'" if default else None)


NOW = "CURRENT_TIMESTAMP"


def _audit() -> tuple[ColumnSpec, ...]:
    return (_flag("CURFLG", "Y"), _c("RECCRDT", "TS", default=NOW), _c("RECUPDT", "TS"))


PARAM_COLUMNS = tuple(_c(f"PARAM{i}", "VC", 4000) for i in range(1, 11))


def _table(
    name: str,
    columns: tuple[ColumnSpec, ...],
    pk: str | tuple[str, ...],
    indexes: tuple[IndexSpec, ...] = (),
    sequence: str | None = None,
) -> TableSpec:
    pk_cols = (pk,) if isinstance(pk, str) else pk
    cols = tuple(
        ColumnSpec(c.name, c.kind, c.size, False, c.default) if c.name in pk_cols else c
        for c in columns
    )
    id_column = pk if isinstance(pk, str) else None
    if id_column and sequence is None:
        sequence = f"{name}SEQ"
    return TableSpec(name, cols, pk_cols, indexes, id_column, sequence)


TABLES: tuple[TableSpec, ...] = (
    _table(
        "DMS_DBCONDTLS",
        (
            _c("CONID", "ID"),
            _c("CONNM", "VC", 100, nullable=False),
            _c("DBTYP", "VC", 20, nullable=False),
            _c("DBHOST", "VC", 255),
            _c("DBPORT", "INT"),
            _c("DBSID", "VC", 100),
            _c("DBNM", "VC", 1000),
            _c("DBUSR", "VC", 100),
            _c("DBPSWDENV", "VC", 100),
            _c("DBURL", "VC", 1000),
            *_audit(),
        ),
        "CONID",
        (IndexSpec("DMS_DBCONDTLS_UK1", ("CONNM",), unique=True, current_only=True),),
    ),
    _table(
        "DMS_PARAMS",
        (
            _c("PRTYP", "VC", 30),
            _c("PRCD", "VC", 100),
            _c("PRVAL", "VC", 4000),
            _c("PRDESC", "VC", 500),
            _c("RECCRDT", "TS", default=NOW),
            _c("RECUPDT", "TS"),
        ),
        ("PRTYP", "PRCD"),
    ),
    _table(
        "DMS_MAPRSQL",
        (
            _c("MAPRSQLID", "ID"),
            _c("MAPRSQLCD", "VC", 50, nullable=False),
            _c("MAPRSQLDESC", "VC", 500),
            _c("MAPRSQL", "CLOB"),
            _c("SQLCONID", "ID"),
            *_audit(),
        ),
        "MAPRSQLID",
        (IndexSpec("DMS_MAPRSQL_UK1", ("MAPRSQLCD",), unique=True, current_only=True),),
    ),
    _table(
        "DMS_MAPR",
        (
            _c("MAPID", "ID"),
            _c("MAPREF", "VC", 50, nullable=False),
            _c("MAPDESC", "VC", 500),
            _c("SRCSYS", "VC", 100),
            _c("TRGTBNM", "VC", 100),
            _c("TRGTBTYP", "VC", 20),
            _c("TRGSCHM", "VC", 100),
            _c("FRQCD", "VC", 10),
            _c("BLKPRCROWS", "INT"),
            _c("TRGCONID", "ID"),
            _c("MAPRSQLCD", "VC", 50),
            _c("CHKPNTSTRTGY", "VC", 10),
            _c("CHKPNTCLNM", "VC", 100),
            _c("CHKPNTFN", "VC", 200),
            _c("DELHNDL", "VC", 10),
            *_audit(),
        ),
        "MAPID",
        (IndexSpec("DMS_MAPR_UK1", ("MAPREF",), unique=True, current_only=True),),
    ),
    _table(
        "DMS_MAPRDTL",
        (
            _c("MAPDTLID", "ID"),
            _c("MAPREF", "VC", 50, nullable=False),
            _c("TRGCLNM", "VC", 100),
            _c("TRGCLDTYP", "VC", 50),
            _flag("TRGKEYFLG"),
            _c("TRGKEYSEQ", "INT"),
            _c("TRGCLDESC", "VC", 500),
            _c("MAPLOGIC", "CLOB"),
            _c("KEYCLNM", "VC", 100),
            _c("VALCLNM", "VC", 100),
            _c("MAPCMBCD", "VC", 20),
            _c("EXCSEQ", "INT"),
            _c("SCDTYP", "VC", 10),
            _flag("LGVRFYFLG"),
            *_audit(),
        ),
        "MAPDTLID",
        (IndexSpec("DMS_MAPRDTL_IX1", ("MAPREF", "CURFLG")),),
    ),
    _table(
        "DMS_MAPERR",
        (
            _c("MAPERRID", "ID"),
            _c("MAPREF", "VC", 50),
            _c("TRGCLNM", "VC", 100),
            _c("ERRTYP", "VC", 10),
            _c("ERRMSG", "VC", 4000),
            _c("RECCRDT", "TS", default=NOW),
        ),
        "MAPERRID",
        (IndexSpec("DMS_MAPERR_IX1", ("MAPREF",)),),
    ),
    _table(
        "DMS_JOB",
        (
            _c("JOBID", "ID"),
            _c("MAPREF", "VC", 50, nullable=False),
            _c("JOBDESC", "VC", 500),
            _flag("STFLG", "A"),
            *_audit(),
        ),
        "JOBID",
        (IndexSpec("DMS_JOB_IX1", ("MAPREF", "CURFLG")),),
    ),
    _table(
        "DMS_JOBDTL",
        (
            _c("JOBDTLID", "ID"),
            _c("JOBID", "ID"),
            _c("MAPREF", "VC", 50),
            _c("TRGCLNM", "VC", 100),
            _c("TRGCLDTYP", "VC", 50),
            _flag("TRGKEYFLG"),
            _c("TRGKEYSEQ", "INT"),
            _c("MAPLOGIC", "CLOB"),
            _c("SCDTYP", "VC", 10),
            _c("EXCSEQ", "INT"),
            _flag("CURFLG", "Y"),
        ),
        "JOBDTLID",
        (IndexSpec("DMS_JOBDTL_IX1", ("JOBID",)),),
    ),
    _table(
        "DMS_JOBFLW",
        (
            _c("JOBFLWID", "ID"),
            _c("JOBID", "ID"),
            _c("MAPREF", "VC", 50),
            _c("DWLOGIC", "CLOB"),
            _flag("CURFLG", "Y"),
            _c("RECCRDT", "TS", default=NOW),
        ),
        "JOBFLWID",
        (IndexSpec("DMS_JOBFLW_IX1", ("MAPREF", "CURFLG")),),
    ),
    _table(
        "DMS_JOBSCH",
        (
            _c("JOBSCHID", "ID"),
            _c("JOBID", "ID"),
            _c("MAPREF", "VC", 50),
            _c("FRQCD", "VC", 10),
            _c("FRQDD", "VC", 10),
            _c("FRQHH", "INT"),
            _c("FRQMI", "INT"),
            _flag("ENABLEFLG", "Y"),
            _c("DPND_JOBSCHID", "ID"),
            _c("STRDT", "TS"),
            _c("ENDDT", "TS"),
            *_audit(),
        ),
        "JOBSCHID",
        (IndexSpec("DMS_JOBSCH_IX1", ("JOBID",)),),
    ),
    _table(
        "DMS_PRCREQ",
        (
            _c("PRCREQID", "ID"),
            _c("REQTYP", "VC", 20),
            _c("JOBID", "ID"),
            _c("MAPREF", "VC", 50),
            *PARAM_COLUMNS,
            _c("HSTFRMDT", "DATE"),
            _c("HSTTODT", "DATE"),
            _c("TRGPRCREQID", "ID"),
            _c("REQSTS", "VC", 10, default="'NEW'"),
            _c("RUNID", "VC", 100),
            _c("ERRMSG", "VC", 4000),
            _c("RETRYCNT", "INT", default="0"),
            _c("REQBY", "VC", 100),
            _c("RECCRDT", "TS", default=NOW),
            _c("RECUPDT", "TS"),
        ),
        "PRCREQID",
        (
            IndexSpec("DMS_PRCREQ_IX1", ("REQSTS",)),
            # the queue polls REQSTS as outside tools may write it (' new '): trimmed, upper
            IndexSpec("DMS_PRCREQ_IX2", ("UPPER(TRIM(REQSTS))",)),
        ),
    ),
    _table(
        "DMS_PRCLOG",
        (
            _c("PRCID", "ID"),
            _c("PRCREQID", "ID"),
            _c("JOBID", "ID"),
            _c("JOBSCHID", "ID"),
            _c("MAPREF", "VC", 50),
            _c("RUNID", "VC", 100),
            _c("PRCSTS", "VC", 2),
            _c("STRTDT", "TS"),
            _c("ENDDT", "TS"),
            *PARAM_COLUMNS,
            _c("PRCMSG", "VC", 4000),
        ),
        "PRCID",
        (
            IndexSpec("DMS_PRCLOG_IX1", ("MAPREF", "STRTDT")),
            IndexSpec("DMS_PRCLOG_IX2", ("RUNID",)),
        ),
    ),
    _table(
        "DMS_JOBLOG",
        (
            _c("JOBLOGID", "ID"),
            _c("PRCID", "ID"),
            _c("JOBID", "ID"),
            _c("MAPREF", "VC", 50),
            _c("CHUNKNO", "INT"),
            _c("CHUNKCNT", "INT"),
            _c("SRCROWS", "ID"),
            _c("INSROWS", "ID"),
            _c("UPDROWS", "ID"),
            _c("EXPROWS", "ID"),
            _c("DELROWS", "ID"),
            _c("UNCHROWS", "ID"),
            _c("ERRROWS", "ID"),
            _c("CHKPNTVAL", "VC", 4000),
            _c("STRTDT", "TS"),
            _c("ENDDT", "TS"),
            _c("JOBSTS", "VC", 2),
        ),
        "JOBLOGID",
        (
            IndexSpec("DMS_JOBLOG_IX1", ("PRCID",)),
            IndexSpec("DMS_JOBLOG_IX2", ("MAPREF", "CHUNKNO")),
        ),
    ),
    _table(
        "DMS_JOBERR",
        (
            _c("JOBERRID", "ID"),
            _c("PRCID", "ID"),
            _c("JOBID", "ID"),
            _c("MAPREF", "VC", 50),
            _c("CHUNKNO", "INT"),
            _c("ERRTYP", "VC", 20),
            _c("ERRCD", "VC", 100),
            _c("ERRMSG", "VC", 4000),
            _c("ERRDTL", "CLOB"),
            _c("KEYVAL", "VC", 4000),
            _c("RECCRDT", "TS", default=NOW),
        ),
        "JOBERRID",
        (IndexSpec("DMS_JOBERR_IX1", ("PRCID",)),),
    ),
    _table(
        "DMS_IDPOOL",
        (
            _c("ENTITYNM", "VC", 100),
            _c("LASTVAL", "ID"),
            _c("BLKSZ", "ID"),
            _c("RECUPDT", "TS"),
        ),
        ("ENTITYNM",),
    ),
    _table(
        "DMS_IDMGR",
        (
            _c("PREFIX", "VC", 20),
            _c("LASTID", "VC", 60),
            _c("RECCRDT", "TS", default=NOW),
            _c("RECUPDT", "TS"),
        ),
        ("PREFIX",),
    ),
    _table(
        "DMS_FLUPLD",
        (
            _c("FLUPLDID", "ID"),
            _c("FLUPLDREF", "VC", 50, nullable=False),
            _c("FLUPLDDESC", "VC", 500),
            _c("FLTYP", "VC", 10),
            _c("FLPATH", "VC", 1000),
            _c("ARCHPATH", "VC", 1000),
            _c("DELIM", "VC", 10),
            _flag("HDRFLG"),
            _c("TRGCONID", "ID"),
            _c("TRGSCHM", "VC", 100),
            _c("TRGTBNM", "VC", 100),
            _c("LDTYP", "VC", 10),
            *_audit(),
        ),
        "FLUPLDID",
        (IndexSpec("DMS_FLUPLD_UK1", ("FLUPLDREF",), unique=True, current_only=True),),
    ),
    _table(
        "DMS_FLUPLDDTL",
        (
            _c("FLUPLDDTLID", "ID"),
            _c("FLUPLDREF", "VC", 50, nullable=False),
            _c("SRCCLNM", "VC", 100),
            _c("TRGCLNM", "VC", 100),
            _c("TRGCLDTYP", "VC", 50),
            _flag("TRGKEYFLG"),
            _flag("RQRDFLG"),
            _c("DFLTVAL", "VC", 4000),
            _c("TRNSFRM", "CLOB"),
            _c("EXCSEQ", "INT"),
            _flag("CURFLG", "Y"),
        ),
        "FLUPLDDTLID",
        (IndexSpec("DMS_FLUPLDDTL_IX1", ("FLUPLDREF", "CURFLG")),),
    ),
    _table(
        "DMS_RPRT",
        (
            _c("RPRTID", "ID"),
            _c("RPRTREF", "VC", 50, nullable=False),
            _c("RPRTDESC", "VC", 500),
            _c("MAPRSQLCD", "VC", 50),
            _c("OUTFMT", "VC", 10),
            _c("OUTPATH", "VC", 1000),
            _c("FRQCD", "VC", 10),
            _c("FRQDD", "VC", 10),
            _c("FRQHH", "INT"),
            _c("FRQMI", "INT"),
            _flag("ENABLEFLG", "Y"),
            *_audit(),
        ),
        "RPRTID",
        (IndexSpec("DMS_RPRT_UK1", ("RPRTREF",), unique=True, current_only=True),),
    ),
)

TABLES_BY_NAME = {t.name: t for t in TABLES}

# entity (the table whose key it fills) -> sequence, for the contract's own tables
ENTITY_SEQUENCES = {t.name: t.sequence for t in TABLES if t.sequence}


def _sa_type(col: ColumnSpec) -> sa.types.TypeEngine[Any]:
    types: dict[str, sa.types.TypeEngine[Any]] = {
        "ID": sa.BigInteger(),
        "INT": sa.Integer(),
        "NUM": sa.Numeric(),
        "VC": sa.String(col.size),
        "CLOB": sa.Text(),
        "TS": sa.DateTime(),
        "DATE": sa.Date(),
    }
    return types[col.kind]


def _sa_table(spec: TableSpec, md: sa.MetaData) -> sa.Table:
    return sa.Table(
        spec.name.lower(),
        md,
        *(
            sa.Column(
                c.name.lower(),
                _sa_type(c),
                primary_key=c.name in spec.primary_key,
                nullable=c.nullable,
                autoincrement=False,
                server_default=sa.text(c.default) if c.default else None,
            )
            for c in spec.columns
        ),
    )


METADATA = sa.MetaData()
T = {spec.name: _sa_table(spec, METADATA) for spec in TABLES}

dms_dbcondtls = T["DMS_DBCONDTLS"]
dms_params = T["DMS_PARAMS"]
dms_maprsql = T["DMS_MAPRSQL"]
dms_mapr = T["DMS_MAPR"]
dms_maprdtl = T["DMS_MAPRDTL"]
dms_maperr = T["DMS_MAPERR"]
dms_job = T["DMS_JOB"]
dms_jobdtl = T["DMS_JOBDTL"]
dms_jobflw = T["DMS_JOBFLW"]
dms_jobsch = T["DMS_JOBSCH"]
dms_prcreq = T["DMS_PRCREQ"]
dms_prclog = T["DMS_PRCLOG"]
dms_joblog = T["DMS_JOBLOG"]
dms_joberr = T["DMS_JOBERR"]
dms_idpool = T["DMS_IDPOOL"]
dms_idmgr = T["DMS_IDMGR"]
dms_flupld = T["DMS_FLUPLD"]
dms_fluplddtl = T["DMS_FLUPLDDTL"]
dms_rprt = T["DMS_RPRT"]
