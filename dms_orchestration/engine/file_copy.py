"""The fast path of a CSV file into PostgreSQL: the server reads the file (COPY FROM
STDIN, every column as text), one query checks every value by the rules the Python
path applies (engine/file_load.py: value_problem, required, the key repeated), and the
rows are applied set-based. It takes only clean files: anything it cannot vouch for (a
malformed record, a value a rule refuses, an error of the server) returns None, the
caller rolls its savepoint back and the Python path reads the file, naming each bad
line. Its checks may be stricter than the Python path's (1E5 as a number), never laxer.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from dms_orchestration.db.dialects import Dialect
from dms_orchestration.metadata.datatypes import DataType

BOM = b"\xef\xbb\xbf"
_INT_MAX = {5: 2**15 - 1, 10: 2**31 - 1, 19: 2**63 - 1}
_BOOLEANS = "('true','false','t','f','y','n','yes','no','1','0')"


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
        top = _INT_MAX.get(dtype.precision or 19, 2**63 - 1)
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


def copy_file(
    conn: sa.Connection,
    d: Dialect,
    path: Path,
    staging: str,
    columns: list[str],
    delimiter: str,
    header: bool,
) -> None:
    """The whole file into `staging` (its columns, as text, in the file's order), parsed
    by the server; an empty field, quoted or not, is NULL (as in the Python path)."""
    names = ", ".join(d.quote(c) for c in columns)
    conn.exec_driver_sql(d.temp_table(staging, [f"{d.quote(c)} TEXT" for c in columns]))
    options = f"FORMAT csv, DELIMITER {_literal(delimiter)}, HEADER {str(header).upper()}"
    options += f", FORCE_NULL ({names})"
    dbapi = conn.connection.dbapi_connection
    assert dbapi is not None  # an open connection has its DBAPI connection
    cursor = dbapi.cursor()
    try:
        with path.open("rb") as f:
            if f.read(3) != BOM:
                f.seek(0)
            cursor.copy_expert(f"COPY {staging} ({names}) FROM STDIN WITH ({options})", f)
    finally:
        cursor.close()


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
