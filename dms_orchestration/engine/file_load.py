"""load_file(): one landed file into the target table of its DMS_FLUPLD definition, in
one transaction of the target database.

The file is read as records, streamed (files/readers.py); each record's mapped values
get their default (DFLTVAL), are checked (RQRDFLG, the TRGCLDTYP of a column loaded as
it is) and staged as text in a temporary table, a batch at a time (COPY on PostgreSQL);
TRNSFRM expressions and the casts to the target's types then run in the target database
(alias SRC: the file's columns), never in Python. LDTYP APPEND inserts, TRUNCATE empties
the table first, UPSERT updates the rows whose TRGKEYFLG columns match and inserts the
others (a key the file repeats is a bad row). Bad rows go to DMS_JOBERR (ERRTYP DATA,
the line and the key) and to a reject file beside the archive; the good rows load,
unless there are more bad rows than DMS_PARAMS FILE_MAX_BAD_ROWS (default 0: any bad
row rejects the whole file). The file moves to ARCHPATH only after the commit.

A CSV file into PostgreSQL takes a fast path first (engine/file_copy.py): the server
reads it by COPY, straight into the target when the file's columns are the target's as
they are (checked side by side by a second session), else into a staging table of text;
a file with a bad row falls back to the reader here, which names each bad line.
"""

from __future__ import annotations

import csv
import hashlib
import re
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import sqlalchemy as sa
import sqlglot
from sqlglot import exp

from dms_orchestration.db import schema as s
from dms_orchestration.db.connect import metadata_engine
from dms_orchestration.db.connections import connection_engine
from dms_orchestration.db.dialects import Dialect, dialect_of, sqlglot_dialect
from dms_orchestration.dmslog.writer import LoadCounts, fit_message, log_writer
from dms_orchestration.engine import file_sql as sql
from dms_orchestration.engine.errors import error_text
from dms_orchestration.engine.file_copy import (
    CopyOptions,
    FileCheck,
    checked_column,
    copy_file,
    copy_into,
    same_types,
)
from dms_orchestration.engine.file_sql import LINE
from dms_orchestration.engine.file_values import value_check
from dms_orchestration.engine.sqlgen import delete_all, drop_table
from dms_orchestration.engine.target import table_columns
from dms_orchestration.files.readers import (
    FORMATS,
    FileFormatError,
    Record,
    csv_delimiter,
    read_records,
)
from dms_orchestration.metadata.datatypes import DataType, UnknownDataType, parse_data_type
from dms_orchestration.metadata.models import FileColumn, FileLoad
from dms_orchestration.metadata.sqlcheck import expression_problem
from dms_orchestration.settings import Settings, dms_now, load_settings
from dms_orchestration.vocabulary import FileType, LoadType, Status, codes

if TYPE_CHECKING:
    import _csv

LOAD_TYPES = codes(LoadType)
BATCH_ROWS = 10_000
JOBERR_ROWS = 1_000  # DMS_JOBERR rows per file at most; the reject file has every bad row
IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_$#]*$"


class FileLoadInvalid(ValueError):
    """The definition breaks the rules; the message names the file load and each fault."""

    def __init__(self, ref: str, findings: list[str]) -> None:
        super().__init__(f"file load {ref} is not valid: {'; '.join(findings)}")


class TooManyBadRows(ValueError):
    pass


@dataclass(frozen=True)
class Target:
    """A target column: where its value comes from and how it is checked."""

    name: str
    dtype: DataType
    source: str | None  # the file's column (SRCCLNM), when loaded as it is
    transform: str | None  # TRNSFRM, an expression over SRC
    required: bool
    default: str | None
    key: bool


@dataclass(frozen=True)
class FilePlan:
    targets: tuple[Target, ...]
    staged: tuple[str, ...]  # the file's columns staged (upper case): those the load reads
    load_type: str
    transformed: frozenset[str] = frozenset()  # the file's columns TRNSFRM reads (upper case)

    @property
    def keys(self) -> tuple[Target, ...]:
        return tuple(t for t in self.targets if t.key)


@dataclass
class FileResult:
    flupldref: str
    file: Path
    status: str  # PC | FL
    rows: int = 0
    bad: int = 0
    seconds: float = 0.0
    prcid: int | None = None
    message: str = ""
    archived: Path | None = None
    rejects: Path | None = None
    digest: str = ""

    def line(self) -> str:
        return (
            f"{self.flupldref} {self.file} {self.status} ROWS={self.rows} BAD={self.bad} "
            f"SECONDS={self.seconds:.2f}"
        )


@dataclass
class _Bad:
    """The bad rows of one file: counted, written to the reject file as found, the
    first JOBERR_ROWS kept for DMS_JOBERR."""

    path: Path
    columns: list[str]
    count: int = 0
    kept: list[tuple[int, str, str | None]] = field(default_factory=list)
    _file: TextIO | None = None
    _writer: _csv.Writer | None = None

    def add(self, line: int, reason: str, key: str | None, values: dict[str, str | None]) -> None:
        self.count += 1
        if len(self.kept) < JOBERR_ROWS:
            self.kept.append((line, reason, key))
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("w", newline="", encoding="utf-8")
            self._writer = csv.writer(self._file)
            self._writer.writerow(["LINE", "REASON", *self.columns])
        self._writer.writerow([line, reason, *(values.get(c) for c in self.columns)])

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


# ------------------------------------------------------------------ the definition


def _target(c: FileColumn, dialect: str, problems: list[str]) -> Target | None:
    name = (c.name or "").strip()
    if not sa_identifier(name):
        problems.append(f"TRGCLNM {c.name!r} is not a column name")
        return None
    try:
        dtype = parse_data_type(c.data_type)
    except UnknownDataType as exc:
        problems.append(f"{name}: {exc}")
        return None
    transform = (c.transform or "").strip() or None
    source = (c.source or "").strip() or None
    if transform:
        if problem := expression_problem(transform, dialect):
            problems.append(f"{name}: TRNSFRM {problem.removeprefix('MAPLOGIC ')}")
    elif source is None:
        problems.append(f"{name}: neither SRCCLNM nor TRNSFRM says where its value comes from")
    return Target(
        name=name.upper(),
        dtype=dtype,
        source=source,
        transform=transform,
        required=(c.required_flag or "").upper() == "Y",
        default=c.default,
        key=(c.key_flag or "").upper() == "Y",
    )


def sa_identifier(name: str) -> bool:
    return bool(re.match(IDENTIFIER, name or ""))


def target_dialect(fl: FileLoad, metadata_backend: str) -> str:
    """The sqlglot dialect TRNSFRM is written in: the target database's (TRGCONID's,
    else the metadata database's, `metadata_backend` as SQLAlchemy names it)."""
    return sqlglot_dialect(fl.target_connection, metadata_backend)


def file_load_findings(fl: FileLoad, dialect: str = "") -> list[str]:
    """What keeps a definition from loading: its type, load type, target and columns."""
    problems = list(fl.problems)
    if (fl.file_type or "").strip().upper() not in FORMATS:
        problems.append(f"FLTYP {fl.file_type!r} is not one of {', '.join(FORMATS)}")
    load_type = (fl.load_type or "").strip().upper()
    if load_type not in LOAD_TYPES:
        problems.append(f"LDTYP {fl.load_type!r} is not one of {', '.join(LOAD_TYPES)}")
    if not sa_identifier((fl.target_table or "").strip()):
        problems.append(f"TRGTBNM {fl.target_table!r} is not a table name")
    if fl.target_schema and not sa_identifier(fl.target_schema.strip()):
        problems.append(f"TRGSCHM {fl.target_schema!r} is not a schema name")
    if not (fl.path or "").strip():
        problems.append("FLPATH is empty")
    if not fl.columns:
        problems.append("it has no current DMS_FLUPLDDTL row")
    targets = [t for c in fl.columns if (t := _target(c, dialect, problems)) is not None]
    names = [t.name for t in targets]
    problems += [f"TRGCLNM {n} is mapped twice" for n in sorted(set(names)) if names.count(n) > 1]
    if load_type == LoadType.UPSERT and not any(t.key for t in targets):
        problems.append("UPSERT needs the key: no column has TRGKEYFLG = 'Y'")
    return problems


def file_plan(fl: FileLoad, dialect: str) -> FilePlan:
    problems = file_load_findings(fl, dialect)
    if problems:
        raise FileLoadInvalid(fl.ref, problems)
    ordered = sorted(fl.columns, key=lambda c: (c.order if c.order is not None else 0, c.id))
    targets = tuple(t for c in ordered if (t := _target(c, dialect, [])) is not None)
    transformed: set[str] = set()
    for t in targets:
        if t.transform:
            transformed |= _columns_read(t.transform, dialect)
    staged = transformed | {t.source.upper() for t in targets if t.source}
    assert fl.load_type is not None  # (the findings refuse any other LDTYP)
    load_type = fl.load_type.strip().upper()
    return FilePlan(targets, tuple(sorted(staged)), load_type, frozenset(transformed))


def _columns_read(expression: str, dialect: str) -> set[str]:
    tree = sqlglot.parse_one(f"SELECT {expression}", read=dialect or None)
    return {c.name.upper() for c in tree.find_all(exp.Column) if c.name}


# ------------------------------------------------------------------ values


class _RowCheck:
    """The checks of a file's records, prepared once per file (`columns`: the names its
    records are keyed by): a record's staged values, or why it is a bad row."""

    def __init__(self, plan: FilePlan, columns: list[str]) -> None:
        named = {c.upper(): c for c in columns}
        self._keys = [named.get(c, c) for c in plan.staged]
        self._staged = plan.staged
        place = {c: i for i, c in enumerate(plan.staged)}
        self._targets = [
            (t, place[t.source.upper()], check)
            for t in plan.targets
            if t.source and not t.transform  # (the findings: SRCCLNM or TRNSFRM)
            if (check := value_check(t.dtype)) or t.required or t.default is not None
        ]

    def __call__(self, values: dict[str, str | None]) -> tuple[list[str | None], str | None]:
        row = [values.get(k, _MISSING) for k in self._keys]
        if _MISSING in row:  # keys of another case than the first record's (JSON)
            upper = {k.upper(): v for k, v in values.items()}
            row = [upper.get(c) for c in self._staged]
        for t, i, check in self._targets:
            value = row[i]
            if value is None and t.default is not None:
                row[i] = value = t.default
            if value is None:
                if t.required:
                    return [], f"{t.name} is required ({t.source} is empty)"
                continue
            if check is not None and (problem := check(value)):
                return [], f"{t.name}: {problem}"
        return row, None


_MISSING: Any = object()


def _key_of(plan: FilePlan, values: dict[str, str | None]) -> str | None:
    upper = {k.upper(): v for k, v in values.items()}
    keys = [upper.get(t.source.upper()) for t in plan.keys if t.source]
    return "|".join("" if v is None else str(v) for v in keys) or None


# ------------------------------------------------------------------ the load


def under_home(text: str | None, home: Path) -> Path | None:
    """A path from a definition (FLPATH, ARCHPATH): relative ones are under DMS_HOME."""
    if not (text or "").strip():
        return None
    assert text is not None  # (not empty)
    path = Path(text.strip()).expanduser()
    return path if path.is_absolute() else home / path


def landed_files(fl: FileLoad, home: Path) -> list[Path]:
    """The files FLPATH (a glob) matches now, by name (hidden and partial ones aside)."""
    pattern = under_home(fl.path, home)
    if pattern is None:
        return []
    root = Path(pattern.anchor)
    matches = root.glob(str(pattern.relative_to(root)))
    return sorted(p for p in matches if p.is_file() and not p.name.startswith("."))


def loaded_digests(meta: sa.Engine, ref: str) -> dict[str, int]:
    """The SHA-256 of every file a load of `ref` committed, with its PRCID."""
    log = s.dms_prclog
    query = sa.select(log.c.param2, log.c.prcid).where(
        log.c.mapref == ref, log.c.prcsts == Status.PC
    )
    with meta.connect() as conn:
        return {digest: prcid for digest, prcid in conn.execute(query) if digest}


def pending_files(fl: FileLoad, meta: sa.Engine, home: Path) -> list[tuple[Path, str]]:
    """The landed files whose content no load has committed yet, with their SHA-256."""
    loaded = loaded_digests(meta, fl.ref)
    hashed = [(path, content_hash(path)) for path in landed_files(fl, home)]
    return [(path, digest) for path, digest in hashed if digest not in loaded]


MAX_BAD_ROWS_PARAM = "FILE_MAX_BAD_ROWS"


def max_bad_rows(meta: sa.Engine) -> int:
    """DMS_PARAMS DMSCONFIG FILE_MAX_BAD_ROWS (default 0: any bad row rejects the file)."""
    p = s.dms_params
    query = sa.select(p.c.prval).where(p.c.prtyp == "DMSCONFIG", p.c.prcd == MAX_BAD_ROWS_PARAM)
    with meta.connect() as conn:
        value = conn.execute(query).scalar()
    try:
        return max(0, int(str(value).strip())) if value is not None else 0
    except ValueError:
        return 0


def content_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def load_file(
    fl: FileLoad,
    path: Path,
    *,
    settings: Settings | None = None,
    max_bad_rows: int = 0,
    runid: str | None = None,
    prcreqid: int | None = None,
    digest: str | None = None,
) -> FileResult:
    """Load one file; its DMS_PRCLOG row (PARAM1 the file, PARAM2 its SHA-256) says PC,
    or FL with the reason, and so does the result (a stop raises)."""
    settings = settings or load_settings()
    meta = metadata_engine(settings)
    log = log_writer(meta)
    path = Path(path)
    digest = digest or content_hash(path)
    result = FileResult(fl.ref, path, Status.FL, digest=digest)
    result.prcid = log.open_process(
        mapref=fl.ref, runid=runid, prcreqid=prcreqid, params=[str(path), digest]
    )
    started, t0 = dms_now(), time.perf_counter()
    archive = under_home(fl.archive_path, settings.dms_home)
    rejects = (archive or path.parent) / f"{path.name}.{digest[:12]}.rejects.csv"
    bad: _Bad | None  # (None: the failure found no bad rows)
    try:
        tgt = connection_engine(fl.target_connection, settings)
        plan = file_plan(fl, dialect_of(tgt).sqlglot_name)
        rows, bad = _load(plan, fl, path, tgt, max_bad_rows, rejects)
        result.rows, result.bad, result.status = rows, bad.count, Status.PC
    except Exception as exc:  # the file, its rows or the database: FL, with the reason
        result.message = (error_text(exc) or type(exc).__name__).splitlines()[0]
        bad = getattr(exc, "bad", None)
        result.bad = bad.count if bad else 0
    except BaseException:
        log.close_process(result.prcid, Status.ST, "file load stopped")
        raise
    result.rejects = rejects if rejects.exists() else None
    for line, reason, key in bad.kept if bad else ():
        log.write_joberr(
            prcid=result.prcid,
            mapref=fl.ref,
            errtyp="DATA",
            errcd=f"LINE {line}",
            message=f"{path.name} line {line}: {reason}",
            keyval=key,
        )
    if result.status == Status.PC:
        result.archived = _archive(archive, path, digest)
        note = f"; {result.bad} bad row(s) in {rejects}" if result.bad else ""
        result.message = f"{path.name}: {result.rows} rows{note}"
    result.seconds = time.perf_counter() - t0
    counts = LoadCounts(srcrows=result.rows + result.bad, insrows=result.rows, errrows=result.bad)
    log.write_joblog(
        prcid=result.prcid, mapref=fl.ref, counts=counts, status=result.status, start=started
    )
    log.close_process(result.prcid, result.status, fit_message(result.message))
    return result


def _archive(folder: Path | None, path: Path, digest: str) -> Path | None:
    """Move the loaded file to ARCHPATH (its name, or with its hash when taken)."""
    if folder is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    if target.exists():
        target = folder / f"{path.stem}.{digest[:12]}{path.suffix}"
    return Path(shutil.move(str(path), target))


def _load(
    plan: FilePlan, fl: FileLoad, path: Path, tgt: sa.Engine, max_bad: int, rejects: Path
) -> tuple[int, _Bad]:
    d = dialect_of(tgt)
    columns, records = read_records(
        path, fl.file_type, fl.delimiter, (fl.header_flag or "Y").upper() != "N"
    )
    known = {c.upper() for c in columns}
    if missing := [c for c in plan.staged if c not in known]:
        raise FileFormatError(
            f"{path.name} has no column {', '.join(missing)} (it has {', '.join(columns)})"
        )
    bad = _Bad(rejects, columns)
    staging = f"dms_f_{abs(hash((str(path), time.time_ns()))) % 10**9}"
    try:
        with tgt.connect() as conn, conn.begin():
            _ensure_target(conn, d, fl, plan)
            if (rows := _fast(conn, d, fl, plan, path, columns, staging)) is not None:
                return rows, bad
            conn.exec_driver_sql(d.temp_table(staging, sql.staging_columns(d, plan.staged)))
            for batch in _batches(plan, columns, records, bad):
                d.bulk_insert(conn, staging, [LINE, *map(d.quote, plan.staged)], batch)
            if plan.load_type == LoadType.UPSERT:
                _repeated_keys(conn, d, plan, staging, bad)
            if bad.count > max_bad:
                raise TooManyBadRows(
                    f"{bad.count} bad row(s), more than FILE_MAX_BAD_ROWS = {max_bad}: "
                    f"nothing loaded (the first: line {bad.kept[0][0]}: {bad.kept[0][1]})"
                )
            rows = _apply(conn, d, fl, plan, staging)
            conn.exec_driver_sql(drop_table(staging))
    except Exception as exc:
        # what was found before it failed, logged by load_file (an attribute of any exception)
        setattr(exc, "bad", bad)  # noqa: B010
        raise
    finally:
        bad.close()
    return rows, bad


def _fast(
    conn: sa.Connection,
    d: Dialect,
    fl: FileLoad,
    plan: FilePlan,
    path: Path,
    columns: list[str],
    staging: str,
) -> int | None:
    """A clean CSV file into PostgreSQL by the server's COPY (engine/file_copy.py): the
    rows applied, or None (nothing done) where the Python path must read the file."""
    if not d.capabilities.copies_csv_files or (fl.file_type or "").strip().upper() != FileType.CSV:
        return None
    if len({c.lower() for c in columns}) != len(columns) or not all(columns):
        return None  # names the server would take for one another
    options = CopyOptions(csv_delimiter(fl.delimiter), (fl.header_flag or "Y").upper() != "N")
    straight = _copied_as(plan, columns)
    savepoint = conn.begin_nested()
    try:
        if straight is not None and _same_types(conn, d, fl, straight):
            rows = _copy_straight(conn, d, fl, plan, path, straight, staging, options)
        else:
            rows = _copy_staged(conn, d, fl, plan, path, columns, staging, options)
        if rows is not None:
            savepoint.commit()
            return rows
    except sa.exc.DBAPIError:  # a record the server refused, a value it could not read
        pass
    savepoint.rollback()
    return None


def _copied_as(plan: FilePlan, columns: list[str]) -> list[Target] | None:
    """The target column of each of the file's columns, when COPY can write the file
    straight into the target: an APPEND or TRUNCATE whose every column is one of the
    file's as it is (no TRNSFRM, no DFLTVAL), each file column loaded once."""
    if plan.load_type == LoadType.UPSERT or any(t.default is not None for t in plan.targets):
        return None
    by_source = _checked_sources(plan)  # (every target among them: none has a TRNSFRM)
    if len(by_source) != len(plan.targets) or set(by_source) != {c.upper() for c in columns}:
        return None
    return [by_source[c.upper()] for c in columns]


def _checked_sources(plan: FilePlan) -> dict[str, Target]:
    """The file's columns (upper case) loaded as they are into one target column each
    and read by no TRNSFRM: the target column of each."""
    loaded: dict[str, list[Target]] = {}
    for t in plan.targets:
        if t.source and not t.transform:
            loaded.setdefault(t.source.upper(), []).append(t)
    return {c: ts[0] for c, ts in loaded.items() if len(ts) == 1 and c not in plan.transformed}


def _same_types(conn: sa.Connection, d: Dialect, fl: FileLoad, targets: list[Target]) -> bool:
    """Whether the target's columns have the definition's types (so that COPY stores what
    the cast of the staged path stores)."""
    names = [d.quote(t.name.lower()) for t in targets]
    types = [d.type_sql(t.dtype.sqlalchemy_type()) for t in targets]
    return same_types(conn, _target_table(d, fl), names, types)


def _copy_straight(
    conn: sa.Connection,
    d: Dialect,
    fl: FileLoad,
    plan: FilePlan,
    path: Path,
    targets: list[Target],
    staging: str,
    options: CopyOptions,
) -> int | None:
    """The file straight into the target while a second session checks its values (two
    cores: the file is read twice, side by side): the rows, or None when a check fails."""
    table = _target_table(d, fl)
    names = [d.quote(t.name.lower()) for t in targets]
    checked = [checked_column(d, t.name.lower(), t.dtype, t.required) for t in targets]
    check = FileCheck(conn.engine, d, path, f"{staging}_k", checked, options)
    try:
        if plan.load_type == LoadType.TRUNCATE:
            conn.exec_driver_sql(delete_all(table))
        rows = copy_into(conn, path, table, names, options)
    except BaseException:
        check.cancel()
        raise
    return rows if check.clean() else None


def _copy_staged(
    conn: sa.Connection,
    d: Dialect,
    fl: FileLoad,
    plan: FilePlan,
    path: Path,
    columns: list[str],
    staging: str,
    options: CopyOptions,
) -> int | None:
    """The file into a staging table, checked and cast as it is applied: the rows, or
    None when a check fails. A column loaded as it is into one target column, and read
    by no TRNSFRM, is checked as COPY reads it (its staging column a `checked_column`);
    the others are text, checked by `sql.rules` as they are applied."""
    copied = f"{staging}_c"
    checked = _checked_sources(plan)
    definitions = {
        c.upper(): checked_column(d, c, t.dtype, t.required and t.default is None)
        for c in columns
        if (t := checked.get(c.upper())) is not None
    }
    copy_file(conn, d, path, copied, columns, options, definitions)
    _defaults(conn, d, plan, copied)
    unchecked = [t for t in plan.targets if (t.source or "").upper() not in definitions]
    if plan.load_type == LoadType.UPSERT:
        clean = _clean(conn, d, plan, unchecked, copied)
        rows = _apply(conn, d, fl, plan, copied) if clean else None
    else:  # checked as they are applied, in one pass: all of them, or the Python path
        staged = conn.exec_driver_sql(sql.row_count(copied)).scalar()
        rows = _apply(conn, d, fl, plan, copied, where=sql.rules(d, unchecked))
        rows = rows if rows == staged else None
    if rows is not None:
        conn.exec_driver_sql(drop_table(copied))
    return rows


def _defaults(conn: sa.Connection, d: Dialect, plan: FilePlan, staging: str) -> None:
    """DFLTVAL for the empty values of the copied rows."""
    for t in plan.targets:
        if t.source and t.default is not None:
            conn.execute(sa.text(sql.fill_default(d, staging, t.source)), {"v": t.default})


def _clean(
    conn: sa.Connection, d: Dialect, plan: FilePlan, targets: list[Target], staging: str
) -> bool:
    """Whether every copied row passes the rules of `targets` and no key repeats (UPSERT):
    else the Python path names the bad rows."""
    if conn.exec_driver_sql(sql.a_broken_row(d, staging, targets)).first() is not None:
        return False
    if plan.load_type != LoadType.UPSERT:
        return True
    return conn.exec_driver_sql(sql.a_repeated_key(d, staging, plan.keys)).first() is None


def _batches(
    plan: FilePlan, columns: list[str], records: Iterable[Record], bad: _Bad
) -> Iterator[list[list[Any]]]:
    checked = _RowCheck(plan, columns)
    batch: list[list[Any]] = []
    for record in records:
        if record.problem:
            bad.add(record.line, record.problem, None, record.values)
            continue
        staged, problem = checked(record.values)
        if problem:
            bad.add(record.line, problem, _key_of(plan, record.values), record.values)
            continue
        batch.append([record.line, *staged])
        if len(batch) == BATCH_ROWS:
            yield batch
            batch = []
    if batch:
        yield batch


def _ensure_target(conn: sa.Connection, d: Dialect, fl: FileLoad, plan: FilePlan) -> None:
    """Create the target table when it does not exist; refuse one that lacks a column."""
    schema = _target_schema(d, fl)
    schema = schema.lower() if schema else None
    assert fl.target_table is not None  # (the findings refuse a file load without it)
    table = fl.target_table.strip().lower()
    have = table_columns(conn, schema, table)
    if have is None:
        columns = [sa.Column(t.name.lower(), t.dtype.sqlalchemy_type()) for t in plan.targets]
        sa.Table(table, sa.MetaData(schema=schema), *columns).create(conn)
        return
    if missing := [t.name for t in plan.targets if t.name.lower() not in have]:
        raise FileLoadInvalid(fl.ref, [f"target table {table} has no column {', '.join(missing)}"])


def _target_schema(d: Dialect, fl: FileLoad) -> str | None:
    return fl.target_schema.strip() if fl.target_schema and d.capabilities.schemas else None


def _target_table(d: Dialect, fl: FileLoad) -> str:
    assert fl.target_table is not None  # (the findings refuse a file load without it)
    return d.qualified(_target_schema(d, fl), fl.target_table.strip())


def _repeated_keys(
    conn: sa.Connection, d: Dialect, plan: FilePlan, staging: str, bad: _Bad
) -> None:
    """UPSERT: a key the file gives twice is a bad row (each repeat after the first)."""
    for row in conn.exec_driver_sql(sql.repeated_keys(d, staging, plan.keys)).all():
        key = "|".join("" if v is None else str(v) for v in row[1:-1])
        bad.add(row[0], "its key repeats an earlier line of the file", key, {})
    conn.exec_driver_sql(sql.delete_repeats(d, staging, plan.keys))


def _apply(
    conn: sa.Connection,
    d: Dialect,
    fl: FileLoad,
    plan: FilePlan,
    staging: str,
    where: str | None = None,
) -> int:
    """Apply the staged rows (those `where` keeps) to the target; the rows written."""
    table = _target_table(d, fl)
    names = [d.quote(t.name.lower()) for t in plan.targets]
    if plan.load_type == LoadType.TRUNCATE:
        conn.exec_driver_sql(delete_all(table))
    if plan.load_type != LoadType.UPSERT:
        select = sql.target_values(d, staging, plan.targets, where)
        return conn.exec_driver_sql(sql.insert_select(table, names, select)).rowcount
    typed = f"{staging}_t"
    conn.exec_driver_sql(d.temp_table_as(typed, sql.typed_rows(d, staging, plan.targets, names)))
    keys = [d.quote(t.name.lower()) for t in plan.keys]
    match = sql.key_match(keys)
    others = [(n, f"A.{n}") for t, n in zip(plan.targets, names, strict=True) if not t.key]
    updated = 0
    if others:
        updated = conn.exec_driver_sql(d.update_from(table, typed, match, others)).rowcount
    inserted = conn.exec_driver_sql(sql.insert_new(table, names, typed, keys)).rowcount
    conn.exec_driver_sql(drop_table(typed))
    return updated + inserted
