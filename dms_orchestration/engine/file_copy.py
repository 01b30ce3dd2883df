"""The fast paths of a CSV file into PostgreSQL: the server reads the file (COPY FROM
STDIN) and checks every value by the rules the Python path applies (engine/file_values.py:
value_problem; engine/file_load.py: required, the key repeated).

- Straight into the target (`copy_into` the target table), while a second session
  copies the same file into a table whose types and CHECK constraints refuse what the
  rules refuse (`FileCheck`, `checked_column`): a file whose columns are the target's,
  loaded as they are. The two run side by side, on two cores.
- Through a staging table (`copy_file`), then applied set-based: a file with transforms,
  defaults, columns the load does not read, an UPSERT. A column loaded as it is into one
  target column is a `checked_column` there too; a column a transform reads is text,
  checked (`fits_sql`) and cast as it is applied.

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


def _matches(v: str, pattern: str) -> str:
    return f"{v} ~ '^{_S}{pattern}{_S}$'"


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
        return _matches(v, r"\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?)?")
    if f == "BOOLEAN":
        return f"lower(trim({v})) IN {_BOOLEANS}"
    return "TRUE"


def checked_column(d: Dialect, name: str, dtype: DataType, required: bool) -> str:
    """A column of the table that checks a file's values as COPY reads them: its type and
    CHECK constraint refuse what value_problem refuses (or more). The server parses each
    value by its type's input (no regular expression where a cast or a comparison does):
    a whole number as BIGINT in the column's range, a number as NUMERIC (exact; no NaN,
    no infinity, no hexadecimal), a date back to the text it was read from."""
    column = d.quote(name)
    f = dtype.family
    if f == "INTEGER":
        top = INT_RANGE.get(dtype.precision or 19, 2**63 - 1)
        kind, check = "BIGINT", f"{column} BETWEEN -{top} AND {top}"
    elif f in ("DECIMAL", "FLOAT"):  # (NaN and the infinities: no scale, beyond any bound)
        kind, check = "NUMERIC", f"scale({column}) IS NOT NULL"
        if f == "DECIMAL" and dtype.precision is not None:
            bound = f"1e{dtype.precision - (dtype.scale or 0)}"
            check = f"{column} > -{bound} AND {column} < {bound}"
            check += f" AND min_scale({column}) <= {dtype.scale or 0}"
    elif f == "DATE":  # YYYY-MM-DD: the text the date is written as (psycopg2 sets ISO)
        kind = "TEXT"
        check = f"octet_length({column}) = 10 AND CAST(CAST({column} AS DATE) AS TEXT) = {column}"
    else:  # lengths, date-times, booleans: as the staging table of text checks them
        kind, check = "TEXT", fits_sql(column, dtype)
    not_null = " NOT NULL" if required else ""
    return f"{column} {kind}{not_null}" + ("" if check == "TRUE" else f" CHECK ({check})")


def same_types(conn: sa.Connection, table: str, names: list[str], types: list[str]) -> bool:
    """Whether the table's columns `names` (quoted) have the types `types` (type, length,
    precision and scale, as the server describes a query's columns)."""
    have = conn.exec_driver_sql(f"SELECT {', '.join(names)} FROM {table} WHERE 1 = 0")
    want = conn.exec_driver_sql(f"SELECT {', '.join(f'CAST(NULL AS {t})' for t in types)}")
    return [tuple(c)[1:6] for c in have.cursor.description] == [
        tuple(c)[1:6] for c in want.cursor.description
    ]


class FileCheck:
    """A second session that copies the file into a table of `checked_column`s (`names`
    quoted, `columns` their definitions) while the caller's session copies it into the
    target: `rows()` is the file's rows when every value passed its checks, else None.
    Its table is temporary and rolled back."""

    def __init__(
        self,
        engine: sa.Engine,
        d: Dialect,
        path: Path,
        table: str,
        names: list[str],
        columns: list[str],
        options: CopyOptions,
    ) -> None:
        self._dbapi: Any = None
        self._rows: int | None = None

        def check() -> None:
            try:
                with engine.connect() as conn:
                    self._dbapi = conn.connection.dbapi_connection
                    with conn.begin() as transaction:
                        conn.exec_driver_sql(d.temp_table(table, columns))
                        self._rows = copy_into(conn, path, table, names, options)
                        transaction.rollback()
            except Exception:  # a value its checks refuse, a malformed record: not vouched for
                self._rows = None
            finally:
                self._dbapi = None

        self._thread = threading.Thread(target=check, name=f"dms-file-check {path}", daemon=True)
        self._thread.start()

    def rows(self) -> int | None:
        self._thread.join()
        return self._rows

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
    checked: Mapping[str, str],
) -> None:
    """The whole file into `staging` (its columns in the file's order): as text, or by
    the definition `checked` gives a column (upper case; a `checked_column`)."""
    names = [d.quote(c) for c in columns]
    definitions = [checked.get(c.upper(), f"{n} TEXT") for c, n in zip(columns, names, strict=True)]
    conn.exec_driver_sql(d.temp_table(staging, definitions))
    copy_into(conn, path, staging, names, options)


def copy_into(
    conn: sa.Connection, path: Path, table: str, names: list[str], options: CopyOptions
) -> int:
    """The whole file into `table`'s columns `names` (quoted, in the file's order), parsed
    by the server; the rows copied."""
    dbapi = conn.connection.dbapi_connection
    assert dbapi is not None  # an open connection has its DBAPI connection
    cursor = dbapi.cursor()
    statement = f"COPY {table} ({', '.join(names)}) FROM STDIN WITH ({options.sql(names)})"
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
