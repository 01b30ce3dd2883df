"""The rules a file's value must pass to load into its column (TRGCLDTYP): why a value
does not fit (`value_problem`, the reference, naming the fault), and the same rule
prepared once per column for the millions of values of a file (`value_check`)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from functools import partial

from dms_orchestration.metadata.datatypes import DataType

INT_RANGE = {5: 2**15 - 1, 10: 2**31 - 1, 19: 2**63 - 1}
TRUE_FALSE = {"true", "false", "t", "f", "y", "n", "yes", "no", "1", "0"}


def value_problem(text: str, dtype: DataType) -> str | None:
    """Why a file's value does not fit its column's type (None: it fits)."""
    f = dtype.family
    if f in ("STRING", "CHAR") and dtype.length is not None and len(text) > dtype.length:
        return f"{len(text)} characters, more than {dtype}"
    if f == "INTEGER":
        value = text.strip()
        if not re.fullmatch(r"[+-]?[0-9]+", value):
            return f"{text!r} is not a whole number"
        if abs(int(value)) > INT_RANGE.get(dtype.precision or 19, 2**63 - 1):
            return f"{text} is out of the range of {dtype}"
    elif f in ("DECIMAL", "FLOAT"):
        try:
            number = Decimal(text.strip())
        except InvalidOperation:
            return f"{text!r} is not a number"
        if not number.is_finite():
            return f"{text!r} is not a number"
        if f == "DECIMAL" and dtype.precision is not None:
            scale = dtype.scale or 0
            _, digits, exponent = number.as_tuple()
            assert isinstance(exponent, int)  # (a finite number's exponent)
            if -exponent > scale and number != round(number, scale):
                return f"{text} has more than {scale} decimals ({dtype})"
            whole = len(digits) + exponent  # the digits before the point
            if number and whole > dtype.precision - scale:
                return f"{text} does not fit {dtype}"
    elif f == "DATE":
        try:
            date.fromisoformat(text.strip())
        except ValueError:
            return f"{text!r} is not a date (YYYY-MM-DD)"
    elif f == "TIMESTAMP":
        try:
            datetime.fromisoformat(text.strip())
        except ValueError:
            return f"{text!r} is not a date-time (YYYY-MM-DD HH:MM:SS)"
    elif f == "BOOLEAN" and text.strip().lower() not in TRUE_FALSE:
        return f"{text!r} is not true or false"
    return None


def value_check(dtype: DataType) -> Callable[[str], str | None] | None:
    """`value_problem` for the values of one column type: the type's common good values
    recognised first (plain digits, an ISO date), every other value answered by
    `value_problem` itself, so the answer is the same value for value. None: every value
    fits."""
    slow = partial(value_problem, dtype=dtype)
    f = dtype.family
    if f in ("STRING", "CHAR"):
        most = dtype.length
        if most is None:
            return None
        return lambda text: None if len(text) <= most else slow(text)
    if f == "INTEGER":  # fewer digits than the range's largest number: in range
        width = len(str(INT_RANGE.get(dtype.precision or 19, 2**63 - 1)))
        return partial(_plain, re.compile(f"[0-9]{{1,{width - 1}}}").fullmatch, slow)
    if f in ("DECIMAL", "FLOAT"):
        number = r"[+-]?[0-9]+(\.[0-9]*)?"
        if f == "DECIMAL" and dtype.precision is not None:
            scale = dtype.scale or 0
            if dtype.precision - scale < 1:
                return slow
            number = f"[+-]?[0-9]{{1,{dtype.precision - scale}}}(\\.[0-9]{{0,{scale}}})?"
        return partial(_plain, re.compile(number).fullmatch, slow)
    if f == "DATE":
        return partial(_iso, date.fromisoformat, slow)
    if f == "TIMESTAMP":
        return partial(_iso, datetime.fromisoformat, slow)
    if f == "BOOLEAN":
        return lambda text: None if text.lower() in TRUE_FALSE else slow(text)
    return None


def _plain(
    match: Callable[[str], object], slow: Callable[[str], str | None], text: str
) -> str | None:
    return None if match(text) else slow(text)


def _iso(
    parse: Callable[[str], object], slow: Callable[[str], str | None], text: str
) -> str | None:
    try:
        parse(text)
    except ValueError:
        return slow(text)
    return None
