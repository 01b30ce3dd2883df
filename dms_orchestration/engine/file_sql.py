"""The SQL of a file load, as pure functions (as engine/sqlgen.py is for mappings): the
staging table of a file's records, the rules a copied row must pass, the repeated keys
of an UPSERT, and the statements that apply the staged rows to the target table.

The staged rows are text, one column per file column read, plus the file's line number
(LINE); a target column's value is its TRNSFRM over them (alias SRC) or its source
column, cast to the column's type by the dialect."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

import sqlalchemy as sa

from dms_orchestration.db.dialects import Dialect
from dms_orchestration.engine.file_copy import fits_sql

if TYPE_CHECKING:
    from dms_orchestration.engine.file_load import Target

LINE = "dms_line"  # the staged row's line in the file


def staging_columns(d: Dialect, staged: Sequence[str]) -> list[str]:
    """The staging table's columns: the line number, then each file column as text."""
    line = d.type_sql(sa.BigInteger())
    return [f"{LINE} {line}", *(f"{d.quote(c)} {d.type_sql(sa.Text())}" for c in staged)]


def value_sql(d: Dialect, t: Target) -> str:
    """A target column's value over a staged row (alias SRC), in the column's type."""
    # (without TRNSFRM a column has its SRCCLNM: the findings)
    expr = t.transform if t.transform else f"SRC.{d.quote(cast(str, t.source))}"
    return d.typed(expr, t.dtype.family, d.type_sql(t.dtype.sqlalchemy_type()))


def fill_default(d: Dialect, staging: str, source: str) -> str:
    """DFLTVAL (bind :v) for a copied column's empty values."""
    column = d.quote(source)
    return f"UPDATE {staging} SET {column} = :v WHERE {column} IS NULL"


def rules(d: Dialect, targets: Sequence[Target]) -> str:
    """A copied row (alias SRC) passes the rules of its columns (engine/file_copy.py)."""
    found = []
    for t in targets:
        if t.source and not t.transform:
            v = f"SRC.{d.quote(t.source)}"
            if t.required:
                found.append(f"{v} IS NOT NULL")
            found.append(f"({v} IS NULL OR {fits_sql(v, t.dtype)})")
    return " AND ".join(found) or "TRUE"


def a_broken_row(d: Dialect, staging: str, targets: Sequence[Target]) -> str:
    """One copied row that breaks a rule, if any."""
    return d.limit(f"SELECT 1 FROM {staging} SRC WHERE NOT ({rules(d, targets)})", 1)


def a_repeated_key(d: Dialect, staging: str, keys: Sequence[Target]) -> str:
    """One key that two staged rows share, if any."""
    grouped = ", ".join(value_sql(d, t) for t in keys)
    return d.limit(f"SELECT 1 FROM {staging} SRC GROUP BY {grouped} HAVING COUNT(*) > 1", 1)


def row_count(table: str) -> str:
    return f"SELECT COUNT(*) FROM {table}"


def repeated_keys(d: Dialect, staging: str, keys: Sequence[Target]) -> str:
    """Each staged row whose key an earlier line has: its line, its key's source
    values, its place among the rows of that key (above 1)."""
    grouped = ", ".join(value_sql(d, t) for t in keys)
    sources = [f"SRC.{d.quote(t.source)}" for t in keys if t.source] or ["NULL"]
    ranked = (
        f"SELECT {LINE}, {', '.join(sources)}, "
        f"ROW_NUMBER() OVER (PARTITION BY {grouped} ORDER BY {LINE}) AS dms_n "
        f"FROM {staging} SRC"
    )
    return f"SELECT * FROM ({ranked}) R WHERE dms_n > 1"


def delete_repeats(d: Dialect, staging: str, keys: Sequence[Target]) -> str:
    repeats = repeated_keys(d, staging, keys)
    return f"DELETE FROM {staging} WHERE {LINE} IN (SELECT {LINE} FROM ({repeats}) X)"


def target_values(
    d: Dialect, staging: str, targets: Sequence[Target], where: str | None = None
) -> str:
    """The target columns' values of the staged rows (those `where` keeps)."""
    select = f"SELECT {', '.join(value_sql(d, t) for t in targets)} FROM {staging} SRC"
    return select + (f" WHERE {where}" if where else "")


def insert_select(table: str, names: Sequence[str], select: str) -> str:
    return f"INSERT INTO {table} ({', '.join(names)}) {select}"


def typed_rows(d: Dialect, staging: str, targets: Sequence[Target], names: Sequence[str]) -> str:
    """The staged rows' values named as the target's columns (an UPSERT's rows)."""
    values = [f"{value_sql(d, t)} AS {n}" for t, n in zip(targets, names, strict=True)]
    return f"SELECT {', '.join(values)} FROM {staging} SRC"


def key_match(keys: Sequence[str]) -> str:
    """A target row (alias T) and an UPSERT's row (alias A) have the same key."""
    return " AND ".join(f"T.{k} = A.{k}" for k in keys)


def insert_new(table: str, names: Sequence[str], typed: str, keys: Sequence[str]) -> str:
    """An UPSERT's rows whose key the target does not hold yet: an anti-join (a row of A
    that no row of T matches), which every database runs as a join, by an index or a hash
    of T; as a correlated NOT EXISTS, SQLite scanned T once per row of A."""
    return (
        f"INSERT INTO {table} ({', '.join(names)}) SELECT {', '.join(f'A.{n}' for n in names)} "
        f"FROM {typed} A LEFT JOIN {table} T ON {key_match(keys)} WHERE T.{keys[0]} IS NULL"
    )
