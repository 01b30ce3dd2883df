"""TRGCLDTYP strings (Oracle, PostgreSQL and ANSI spellings) parsed into one canonical
form, which validation checks and the loader turns into target table columns."""

from __future__ import annotations

import re
from dataclasses import dataclass

import sqlalchemy as sa

from dms_orchestration.vocabulary import Family

MAX_PRECISION = 38  # Oracle NUMBER's limit, the narrowest of the three databases
MAX_FRACTIONAL_SECONDS = 9  # Oracle TIMESTAMP(9); PostgreSQL rounds anything above 6

ACCEPTED = (
    "VARCHAR(n), VARCHAR2(n [BYTE|CHAR]), NVARCHAR(n), NVARCHAR2(n), CHARACTER VARYING(n), "
    "CHAR(n [BYTE|CHAR]), NCHAR(n), TEXT, CLOB, NCLOB, INTEGER, INT, BIGINT, SMALLINT, "
    "NUMBER, NUMBER(p), NUMBER(p,s), NUMERIC[(p[,s])], DECIMAL[(p[,s])], FLOAT, REAL, "
    "DOUBLE PRECISION, BINARY_DOUBLE, DATE, TIMESTAMP, TIMESTAMP(n), DATETIME, BOOLEAN"
)


class UnknownDataType(ValueError):
    """A TRGCLDTYP this project cannot turn into a column type; the message says why."""


@dataclass(frozen=True)
class DataType:
    family: Family
    length: int | None = None  # STRING / CHAR
    # DECIMAL digits; INTEGER's decimal digits (5, 10, 19); FLOAT's binary digits
    # (24 REAL, 53 DOUBLE); TIMESTAMP's fractional-second digits
    precision: int | None = None
    scale: int | None = None

    def sqlalchemy_type(self) -> sa.types.TypeEngine:
        f = self.family
        if f == Family.STRING:
            return sa.String(self.length)
        if f == Family.CHAR:
            return sa.CHAR(self.length)
        if f == Family.TEXT:
            return sa.Text()
        if f == Family.INTEGER:
            if self.precision is not None and self.precision <= 5:
                return sa.SmallInteger()
            if self.precision is not None and self.precision <= 10:
                return sa.Integer()
            return sa.BigInteger()
        if f == Family.DECIMAL:
            return sa.Numeric(self.precision, self.scale)
        if f == Family.FLOAT:
            if self.precision == 24:
                return sa.REAL()
            if self.precision == 53:
                return sa.Double()
            return sa.Float()
        if f == Family.DATE:
            return sa.Date()
        if f == Family.TIMESTAMP:
            return sa.TIMESTAMP()  # DateTime would be DATE (no fractions) on Oracle
        if f == Family.BOOLEAN:
            return sa.Boolean()
        raise UnknownDataType(f"no column type for family {f!r}")

    def __str__(self) -> str:
        if self.family == Family.STRING:
            return f"VARCHAR({self.length})"
        if self.family == Family.CHAR:
            return f"CHAR({self.length})"
        if self.family == Family.DECIMAL:
            if self.precision is None:
                return "DECIMAL"
            return f"DECIMAL({self.precision},{self.scale or 0})"
        if self.family == Family.TIMESTAMP and self.precision is not None:
            return f"TIMESTAMP({self.precision})"
        return self.family


# name -> (family, fixed precision, which arguments it takes)
#   LEN: exactly one length; LEN_UNIT: a length with an optional BYTE|CHAR unit;
#   PS: optional (p[, s]); FRAC: optional fractional-second digits; NONE: no arguments
_TYPES: dict[str, tuple[Family, int | None, str]] = {
    "VARCHAR": (Family.STRING, None, "LEN"),
    "VARCHAR2": (Family.STRING, None, "LEN_UNIT"),
    "NVARCHAR": (Family.STRING, None, "LEN"),
    "NVARCHAR2": (Family.STRING, None, "LEN"),
    "CHARACTER VARYING": (Family.STRING, None, "LEN"),
    "CHAR": (Family.CHAR, None, "LEN_UNIT"),
    "NCHAR": (Family.CHAR, None, "LEN"),
    "TEXT": (Family.TEXT, None, "NONE"),
    "CLOB": (Family.TEXT, None, "NONE"),
    "NCLOB": (Family.TEXT, None, "NONE"),
    "SMALLINT": (Family.INTEGER, 5, "NONE"),
    "INTEGER": (Family.INTEGER, 10, "NONE"),
    "INT": (Family.INTEGER, 10, "NONE"),
    "BIGINT": (Family.INTEGER, 19, "NONE"),
    "NUMBER": (Family.DECIMAL, None, "PS"),
    "NUMERIC": (Family.DECIMAL, None, "PS"),
    "DECIMAL": (Family.DECIMAL, None, "PS"),
    "FLOAT": (Family.FLOAT, None, "NONE"),
    "REAL": (Family.FLOAT, 24, "NONE"),
    "DOUBLE PRECISION": (Family.FLOAT, 53, "NONE"),
    "BINARY_DOUBLE": (Family.FLOAT, 53, "NONE"),
    "DATE": (Family.DATE, None, "NONE"),
    "TIMESTAMP": (Family.TIMESTAMP, None, "FRAC"),
    "DATETIME": (Family.TIMESTAMP, None, "NONE"),
    "BOOLEAN": (Family.BOOLEAN, None, "NONE"),
}

_SHAPE = re.compile(r"^(?P<name>[A-Z][A-Z0-9_]*(?: [A-Z][A-Z0-9_]*)*) ?(?:\((?P<args>[^()]*)\))?$")
_INT = re.compile(r"^[+-]?\d+$")


def _int(text: str, what: str, original: str) -> int:
    text = text.strip()
    if not _INT.match(text):
        raise UnknownDataType(f"data type {original!r}: {what} {text!r} is not a whole number")
    return int(text)


def parse_data_type(text: str | None) -> DataType:
    """The canonical DataType of a TRGCLDTYP; UnknownDataType says what is wrong."""
    if text is None or not str(text).strip():
        raise UnknownDataType(f"no data type given: use one of {ACCEPTED}")
    original = str(text)
    normal = re.sub(r"\s+", " ", original.strip().upper())
    normal = re.sub(r" ?([(),]) ?", r"\1", normal)
    shape = _SHAPE.match(normal)
    if not shape or shape.group("name") not in _TYPES:
        raise UnknownDataType(f"unknown data type {original!r}: use one of {ACCEPTED}")
    name, args_text = shape.group("name"), shape.group("args")
    family, fixed_precision, takes = _TYPES[name]
    args = [] if args_text is None else args_text.split(",")
    if args_text is not None and not args_text.strip():
        raise UnknownDataType(f"data type {original!r}: empty parentheses")

    if takes == "NONE":
        if args:
            raise UnknownDataType(f"data type {original!r}: {name} takes no size")
        return DataType(family, precision=fixed_precision)

    if takes in ("LEN", "LEN_UNIT"):
        if len(args) != 1:
            raise UnknownDataType(
                f"data type {original!r}: {name} needs one length, e.g. {name}(100)"
            )
        length_text = args[0].strip()
        unit = re.match(r"^(.*?) ?(BYTE|CHAR)$", length_text)
        if unit:
            if takes != "LEN_UNIT":
                raise UnknownDataType(
                    f"data type {original!r}: {name} takes no BYTE|CHAR length unit"
                )
            length_text = unit.group(1)
        length = _int(length_text, "length", original)
        if length <= 0:
            raise UnknownDataType(f"data type {original!r}: length must be positive")
        return DataType(family, length=length)

    if takes == "FRAC":
        if not args:
            return DataType(family)
        if len(args) != 1:
            raise UnknownDataType(f"data type {original!r}: {name} takes one precision")
        digits = _int(args[0], "precision", original)
        if not 0 <= digits <= MAX_FRACTIONAL_SECONDS:
            raise UnknownDataType(
                f"data type {original!r}: fractional-second precision must be "
                f"0..{MAX_FRACTIONAL_SECONDS}"
            )
        return DataType(family, precision=digits)

    # PS: NUMBER / NUMERIC / DECIMAL
    if not args:
        return DataType(family)
    if len(args) > 2:
        raise UnknownDataType(f"data type {original!r}: {name} takes (precision[, scale])")
    precision = _int(args[0], "precision", original)
    scale = _int(args[1], "scale", original) if len(args) == 2 else 0
    if not 1 <= precision <= MAX_PRECISION:
        raise UnknownDataType(
            f"data type {original!r}: precision must be 1..{MAX_PRECISION}, not {precision}"
        )
    if not 0 <= scale <= precision:
        raise UnknownDataType(
            f"data type {original!r}: scale must be 0..precision ({precision}), not {scale}"
        )
    return DataType(family, precision=precision, scale=scale)
