"""Source SQL as SQLAlchemy text: :p1..:p10 are the only bind parameters (PARAM1..PARAM10
of a request), bound as parameters, never formatted into the text."""

from __future__ import annotations

import re
from collections.abc import Mapping

import sqlalchemy as sa

PARAMS = frozenset(f"p{i}" for i in range(1, 11))


class ParamError(ValueError):
    pass


def param_number(name: str) -> int:
    """PARAM1..PARAM10, p1..p10 or 1..10 -> 1..10; anything else is an error naming it."""
    text = name.strip().upper()
    for prefix in ("PARAM", "P"):
        if text.startswith(prefix):
            text = text[len(prefix) :]
            break
    if text.isdigit() and 1 <= int(text) <= 10:
        return int(text)
    raise ParamError(f"unknown parameter {name!r}: use PARAM1..PARAM10")


# how sa.text finds a bind parameter (`::` casts are not binds)
_BIND = re.compile(r"(?<![:\w\\]):(\w+)(?!:)")


def escape_binds(sql: str) -> tuple[str, list[str]]:
    """Escape every `:word` of stored SQL except :p1..:p10, so that a literal '10:30'
    stays text when the SQL is embedded in a larger statement. Returns the escaped text
    and the parameter names it uses."""
    names: list[str] = []

    def bind_or_escape(match: re.Match[str]) -> str:
        name = match.group(1)
        if name.lower() in PARAMS:
            names.append(name)
            return match.group(0)
        return "\\" + match.group(0)

    return _BIND.sub(bind_or_escape, sql), list(dict.fromkeys(names))


def bound_text(sql: str, values: Mapping[str, object]) -> sa.TextClause:
    """SQL text bound to `values`: every bind it uses gets its value (:P1 as :p1), NULL
    when `values` has none."""
    clause = sa.text(sql)
    names = list(clause.compile().params)
    if not names:
        return clause
    return clause.bindparams(**{n: values.get(n, values.get(n.lower())) for n in names})


def text_with_params(sql: str, values: Mapping[str, object] | None = None) -> sa.TextClause:
    """Source SQL as a text clause whose only binds are :p1..:p10 (bound to `values`, NULL
    by default); any other `:word`, as in a literal '10:30', stays literal text."""
    return bound_text(escape_binds(sql)[0], values or {})
