"""RWHKEY: the MD5 of a row's tracked columns, the same on every database.

Each value is written in a canonical text for its type family, and the fields are joined
as PostgreSQL writes a row value (`ROW(...)::text`): `(f1,f2,...)`, a NULL field empty, a
field quoted ("...", with " and \\ doubled) when it is empty or holds a quote, backslash,
parenthesis, comma or white space. So ('a','bc') stays apart from ('ab','c') and '' from
NULL, and PostgreSQL builds the text with one C function instead of string concatenation.
This module is the reference: SQLite computes the hash with it (a registered function);
PostgreSQL and Oracle build the same text in SQL (db.dialects), and tests hold them to it.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable, Iterable
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, cast

_QUOTED = set('"\\(),') | set(" \t\n\r\v\f")


def _decimal(value: object) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _plain(d: Decimal) -> str:
    text = format(d, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _float(value: float) -> str:
    # PostgreSQL's float8 text: shortest round-trip digits, exponent from 1e15 / below 1e-4
    v = float(value)
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    digits = repr(v)
    if "e" not in digits and (abs(v) >= 1e15 or abs(v) < 1e-4):
        mantissa, exponent = f"{v:.16e}".split("e")
        mantissa = repr(float(mantissa)).rstrip("0").rstrip(".")
        return f"{mantissa}e{int(exponent):+03d}"
    if "e" in digits:
        mantissa, exponent = digits.split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent):+03d}"
    return digits


def _datetime(value: object) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    return datetime.fromisoformat(str(value).strip().replace("T", " "))


def canonical_text(value: Any, family: str, scale: int | None = None) -> str | None:
    """The canonical text of one value of a type family (see metadata.datatypes)."""
    if value is None:
        return None
    if family in ("STRING", "TEXT"):
        return str(value)
    if family == "CHAR":
        return str(value).rstrip(" ")
    if family == "INTEGER":
        return str(int(_decimal(value)))
    if family == "DECIMAL":
        d = _decimal(value)
        if scale is None:
            return _plain(d)
        return format(d.quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP), "f")
    if family == "FLOAT":
        return _float(value)
    if family == "DATE":
        return _datetime(value).date().isoformat()
    if family == "TIMESTAMP":
        return _datetime(value).strftime("%Y-%m-%d %H:%M:%S.%f")
    if family == "BOOLEAN":
        return "1" if value in (True, 1, "1", "t", "true", "TRUE", "Y") else "0"
    raise ValueError(f"no canonical text for type family {family!r}")


def field(text: str | None) -> str:
    """One field of a row value's text, as PostgreSQL's record output writes it."""
    if text is None:
        return ""
    if text == "" or any(ch in _QUOTED for ch in text):
        return '"' + text.replace("\\", "\\\\").replace('"', '""') + '"'
    return text


def row_text(texts: Iterable[str | None]) -> str:
    return "(" + ",".join(field(t) for t in texts) + ")"


def row_hash(values: Iterable[Any], types: Iterable[tuple[str, int | None]]) -> str:
    """MD5 hex of a row: `types` are (family, scale) pairs matching `values`."""
    text = row_text(
        canonical_text(v, family, scale) for v, (family, scale) in zip(values, types, strict=True)
    )
    return hashlib.md5(text.encode("utf-8")).hexdigest()


# ------------------------------------------------------------ SQLite's dms_rowhash
# SQLite calls it once per row it writes: the same text as row_hash, with each type spec
# read once per statement shape (not per row) and each value's field written by one
# function of its family.

_NEEDS_QUOTES = re.compile('["\\\\(),\t\n\r\v\f ]')  # exactly _QUOTED


def _quoted(text: str) -> str:
    """field(text) of a text that is not None."""
    if text and _NEEDS_QUOTES.search(text) is None:
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '""') + '"'


def _integer(value: object) -> str:
    return str(value) if type(value) is int else str(int(_decimal(value)))


def _date(value: object) -> str:
    if type(value) is str and len(value) == 10:  # as SQLite stores a date: YYYY-MM-DD
        try:
            return date.fromisoformat(value).isoformat()
        except ValueError:
            pass  # (the reference says what is wrong with it)
    # a value that is not None has a text
    return cast(str, canonical_text(value, "DATE"))


def _scaled(scale: int) -> Callable[[object], str]:
    """DECIMAL with a scale. An integer, or a float whose shortest digits need no
    rounding, is written as quantize writes it: its digits, padded with zeros (up to a
    scale of 9, where no value SQLite holds reaches the 28 digits of Decimal's context);
    any other value by the reference."""
    step = Decimal(1).scaleb(-scale)
    zeros = "0" * scale

    def reference(value: object) -> str:
        return format(_decimal(value).quantize(step, rounding=ROUND_HALF_UP), "f")

    def write(value: Any) -> str:
        kind = type(value)
        if kind is int and -(10**18) < value < 10**18:
            return f"{value}.{zeros}"
        if kind is float:
            whole, dot, fraction = repr(value).partition(".")
            if dot and len(fraction) <= scale and "e" not in fraction:
                return f"{whole}.{fraction}{zeros[len(fraction) :]}"
        return reference(value)

    return write if 0 < scale <= 9 else reference


def _field_writer(family: str, scale: int | None) -> Callable[[object], str]:
    """A function from a value that is not None to its field in the row text (numbers
    and dates are never quoted: no character of theirs asks for it)."""
    if family in ("STRING", "TEXT"):
        return lambda v: _quoted(v if type(v) is str else str(v))
    if family == "CHAR":
        return lambda v: _quoted(str(v).rstrip(" "))
    if family == "INTEGER":
        return _integer
    if family == "DECIMAL" and scale is not None:
        return _scaled(scale)
    if family == "DATE":
        return _date
    return lambda v: _quoted(cast(str, canonical_text(v, family, scale)))  # v is not None


@functools.lru_cache(maxsize=1024)
def _field_writers(specs: tuple[str, ...]) -> tuple[Callable[[object], str], ...]:
    writers = []
    for spec in specs:
        family, _, scale = spec.partition(":")
        writers.append(_field_writer(family, int(scale) if scale else None))
    return tuple(writers)


def sqlite_row_hash(*args: Any) -> str:
    """SQLite function dms_rowhash(type1, value1, type2, value2, ...); a type is
    'FAMILY' or 'DECIMAL:scale'. Equal to row_hash of the same values and types."""
    writers = _field_writers(args[0::2])
    fields = ["" if v is None else w(v) for w, v in zip(writers, args[1::2], strict=True)]
    return hashlib.md5(("(" + ",".join(fields) + ")").encode("utf-8")).hexdigest()
