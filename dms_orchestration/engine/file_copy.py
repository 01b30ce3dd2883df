"""The fast paths of a CSV file into PostgreSQL: the server reads the file (COPY FROM
STDIN) and checks every value by the rules the Python path applies (engine/file_values.py:
value_problem; engine/file_load.py: required, the key repeated).

- Straight into the target (`copy_into` the target table), while a second session
  reads the same file as the types of `checked_column`s and keeps only the rows their
  refusals name (`FileCheck`: none for a clean file): a file whose columns are the
  target's, loaded as they are. The two run side by side, on two cores.
- Through a staging table (`copy_file`), then applied set-based: a file with transforms,
  defaults, columns the load does not read, an UPSERT. A column loaded as it is into one
  target column is a `checked_column` there too (its refusals a CHECK); a column a
  transform reads is text, checked (`fits_sql`) and cast as it is applied.

Either takes only clean files: anything it cannot vouch for (a malformed record, a value
a rule refuses, an error of the server) means the caller rolls its savepoint back and the
Python path reads the file, naming each bad line. The checks may be stricter than the
Python path's (1E5 as a number), never laxer.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import sqlalchemy as sa

from dms_orchestration.db.dialects import Dialect
from dms_orchestration.engine.file_values import INT_RANGE, TRUE_FALSE
from dms_orchestration.metadata.datatypes import DataType

BOM = b"\xef\xbb\xbf"
_READ_BYTES = 1 << 18  # the file is sent to the server in pieces of this size
_BOOLEANS = "(" + ", ".join(f"'{word}'" for word in sorted(TRUE_FALSE)) + ")"


_S, _D = r"\s*", r"\d"  # (PostgreSQL regular expressions: spaces, a digit)
_NUMBER = r"(\d+(\.\d*)?|\.\d+)"


_TIMESTAMP = r"\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?)?"


def _matches(v: str, pattern: str) -> str:
    return f"{v} ~ '^{_S}{pattern}{_S}$'"


def _misses(v: str, pattern: str) -> str:
    return f"{v} !~ '^{_S}{pattern}{_S}$'"


def _digits(most: int) -> str:
    """1 to `most` digits (nothing matches when `most` < 1)."""
    return _D + "{1," + str(most) + "}" if most >= 1 else "(?!)"


def fits_sql(v: str, dtype: DataType) -> str:
    """A PostgreSQL condition: text expression `v` (not NULL) fits the column's type as
    the Python path's value_problem() would let it: by its shape alone (a regular
    expression; no cast per value), never laxer. A date of the right shape that does
    not exist (2023-02-29) passes here and fails the cast that stores it."""
    f = dtype.family
    if f in ("STRING", "CHAR"):
        return f"length({v}) <= {dtype.length}" if dtype.length is not None else "TRUE"
    if f == "INTEGER":
        top = INT_RANGE.get(dtype.precision or 19, 2**63 - 1)
        width = len(str(top))
        short = _matches(v, "[+-]?" + _digits(width - 1))
        full = _matches(v, "[+-]?" + _D + "{" + str(width) + "}")
        return f"({short} OR ({full} AND abs(CAST(trim({v}) AS NUMERIC)) <= {top}))"
    if f == "DECIMAL":
        if dtype.precision is None:
            return _matches(v, "[+-]?" + _NUMBER)
        scale = dtype.scale or 0
        if not scale:
            return _matches(v, "[+-]?" + _digits(dtype.precision) + r"(\.0*)?")
        whole = _digits(dtype.precision - scale)
        fraction = r"\." + _D + "{0," + str(scale) + "}0*"
        only_fraction = r"\." + _D + "{1," + str(scale) + "}0*"
        return _matches(v, f"[+-]?({whole}({fraction})?|{only_fraction})")
    if f == "FLOAT":
        return _matches(v, "[+-]?" + _NUMBER + r"([eE][+-]?\d+)?")
    if f == "DATE":
        return _matches(v, r"\d{4}-\d{2}-\d{2}")
    if f == "TIMESTAMP":
        return _matches(v, _TIMESTAMP)
    if f == "BOOLEAN":
        return f"lower(trim({v})) IN {_BOOLEANS}"
    return "TRUE"


@dataclass(frozen=True)
class CheckedColumn:
    """How the server checks a file's column as COPY reads it: the type it parses the
    value as, and the conditions under which the value is refused (any one of them true;
    none for NULL). Together they refuse what value_problem refuses, or more. Each value is
    parsed by its type's input (no regular expression where a cast or a comparison does):
    a whole number as BIGINT in the column's range, a number as NUMERIC (exact; no NaN,
    no infinity, no hexadecimal), a date back to the text it was read from. The
    conditions are written as refusals, never as a NOT of a comparison: PostgreSQL 15
    turns `NOT (a <= b)` in a COPY ... WHERE into `a > b` without its function ("cache
    lookup failed for function 0")."""

    column: str  # quoted
    kind: str
    refusals: tuple[str, ...]
    required: bool

    def definition(self) -> str:
        """The column of a table whose CHECK refuses what the refusals refuse (a staging
        table that keeps the rows)."""
        not_null = " NOT NULL" if self.required else ""
        check = f" CHECK (NOT ({' OR '.join(self.refusals)}))" if self.refusals else ""
        return f"{self.column} {self.kind}{not_null}{check}"

    def refused(self) -> list[str]:
        """The conditions true for a refused value, an empty required value included."""
        return [*self.refusals, *([f"{self.column} IS NULL"] if self.required else [])]


def checked_column(d: Dialect, name: str, dtype: DataType, required: bool) -> CheckedColumn:
    """The checks of the file column `name` (unquoted) loaded into a column of `dtype`."""
    v = d.quote(name)
    f = dtype.family
    if f == "INTEGER":
        top = INT_RANGE.get(dtype.precision or 19, 2**63 - 1)
        return CheckedColumn(v, "BIGINT", (f"{v} < -{top}", f"{v} > {top}"), required)
    if f in ("DECIMAL", "FLOAT"):  # (NaN and the infinities: no scale, beyond any bound)
        refusals: tuple[str, ...] = (f"scale({v}) IS NULL",)
        if f == "DECIMAL" and dtype.precision is not None:
            bound = f"1e{dtype.precision - (dtype.scale or 0)}"
            scale = dtype.scale or 0
            refusals = (f"{v} <= -{bound}", f"{v} >= {bound}", f"min_scale({v}) > {scale}")
        return CheckedColumn(v, "NUMERIC", refusals, required)
    if f == "DATE":  # YYYY-MM-DD: the text the date is written as (psycopg2 sets ISO)
        read_back = f"CAST(CAST({v} AS DATE) AS TEXT) <> {v}"
        return CheckedColumn(v, "TEXT", (f"octet_length({v}) <> 10", read_back), required)
    if f in ("STRING", "CHAR") and dtype.length is not None:
        return CheckedColumn(v, "TEXT", (f"length({v}) > {dtype.length}",), required)
    if f == "TIMESTAMP":
        return CheckedColumn(v, "TEXT", (_misses(v, _TIMESTAMP),), required)
    if f == "BOOLEAN":
        return CheckedColumn(v, "TEXT", (f"lower(trim({v})) NOT IN {_BOOLEANS}",), required)
    return CheckedColumn(v, "TEXT", (), required)


def same_types(conn: sa.Connection, table: str, names: list[str], types: list[str]) -> bool:
    """Whether the table's columns `names` (quoted) have the types `types` (type, length,
    precision and scale, as the server describes a query's columns)."""
    have = conn.exec_driver_sql(f"SELECT {', '.join(names)} FROM {table} WHERE 1 = 0")
    want = conn.exec_driver_sql(f"SELECT {', '.join(f'CAST(NULL AS {t})' for t in types)}")
    return [tuple(c)[1:6] for c in have.cursor.description] == [
        tuple(c)[1:6] for c in want.cursor.description
    ]


class FileCheck:
    """A second session that copies the file into a table of the `columns` while the
    caller's session copies it into the target, keeping only the rows a refusal names
    (COPY ... WHERE): `clean()` says whether it read every record and kept none. Its
    table is temporary and rolled back; a clean file writes nothing to it."""

    def __init__(
        self,
        engine: sa.Engine,
        d: Dialect,
        path: Path,
        table: str,
        columns: list[CheckedColumn],
        options: CopyOptions,
    ) -> None:
        self._dbapi: Any = None
        self._clean = False
        names = [c.column for c in columns]
        refused = " OR ".join(r for c in columns for r in c.refused()) or "FALSE"

        def check() -> None:
            try:
                with engine.connect() as conn:
                    self._dbapi = conn.connection.dbapi_connection
                    with conn.begin() as transaction:
                        conn.exec_driver_sql(
                            d.temp_table(table, [f"{c.column} {c.kind}" for c in columns])
                        )
                        kept = copy_into(conn, path, table, names, options, where=refused)
                        self._clean = kept == 0
                        transaction.rollback()
            except Exception:  # a value its types refuse, a malformed record: not vouched for
                self._clean = False
            finally:
                self._dbapi = None

        self._thread = threading.Thread(target=check, name=f"dms-file-check {path}", daemon=True)
        self._thread.start()

    def clean(self) -> bool:
        self._thread.join()
        return self._clean

    def cancel(self) -> None:
        """Stop the check (the file is not loaded after all)."""
        dbapi = self._dbapi
        if dbapi is not None and self._thread.is_alive():
            dbapi.cancel()
        self._thread.join()


@dataclass(frozen=True)
class CopyOptions:
    """How COPY reads the file: an empty field, quoted or not, is NULL (as in the Python
    path)."""

    delimiter: str
    header: bool

    def sql(self, names: list[str]) -> str:
        return (
            f"FORMAT csv, DELIMITER {_literal(self.delimiter)}, HEADER {str(self.header).upper()}"
            f", FORCE_NULL ({', '.join(names)})"
        )


def copy_file(
    conn: sa.Connection,
    d: Dialect,
    path: Path,
    staging: str,
    columns: list[str],
    options: CopyOptions,
    checked: Mapping[str, CheckedColumn],
) -> None:
    """The whole file into `staging` (its columns in the file's order): as text, or as
    `checked` gives a column (upper case), whose CHECK refuses what its refusals name."""
    names = [d.quote(c) for c in columns]
    definitions = [
        column.definition() if (column := checked.get(c.upper())) else f"{n} TEXT"
        for c, n in zip(columns, names, strict=True)
    ]
    conn.exec_driver_sql(d.temp_table(staging, definitions))
    copy_into(conn, path, staging, names, options)


def copy_into(
    conn: sa.Connection,
    path: Path,
    table: str,
    names: list[str],
    options: CopyOptions,
    where: str | None = None,
) -> int:
    """The whole file into `table`'s columns `names` (quoted, in the file's order), parsed
    by the server (only the rows `where` keeps, if given); the rows copied."""
    dbapi = conn.connection.dbapi_connection
    assert dbapi is not None  # an open connection has its DBAPI connection
    cursor = dbapi.cursor()
    statement = f"COPY {table} ({', '.join(names)}) FROM STDIN WITH ({options.sql(names)})"
    statement += f" WHERE {where}" if where else ""
    error = conn.dialect.loaded_dbapi.Error
    try:
        with path.open("rb") as f:
            if f.read(3) != BOM:
                f.seek(0)
            cursor.copy_expert(statement, _WithoutTrailingBlankLines(f), _READ_BYTES)
        return int(cursor.rowcount)
    except error as exc:  # (the DBAPI cursor's own: raised as SQLAlchemy raises them)
        raise sa.exc.DBAPIError.instance(statement, None, exc, error) from exc
    finally:
        cursor.close()


class _WithoutTrailingBlankLines:
    """A file as COPY reads it, without the empty lines at its end: the Python reader
    skips them, COPY would take each for a record that lacks its columns (and send the
    whole file to the Python path). The last record may then end without a newline,
    which COPY reads as it reads any other."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self._held = b""  # line ends read last: the file's end, unless more follows

    def read(self, size: int = -1) -> bytes:
        while chunk := self._f.read(size):
            data = self._held + chunk
            kept = data.rstrip(b"\r\n")
            self._held = data[len(kept) :]
            if kept:
                return kept
        return b""


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
