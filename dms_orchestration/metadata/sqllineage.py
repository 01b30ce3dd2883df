"""Which table columns a mapping reads, from its SQL (sqlglot): the tables its source SQL
and lookups read, and per target column the table columns its MAPLOGIC reads through the
source query (alias SRC), a lookup's through its value column.

A light walk of the parsed query by name, not sqlglot's qualify + lineage (tens of
milliseconds a mapping, minutes for a catalog of thousands): aliases, joins, derived
tables, CTEs, set operations, scalar subqueries and `*` over one source are followed; a
name it cannot place (an unqualified column of a join, `*` over several tables) reads
nothing. Text that does not parse reads nothing: never an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property

import sqlglot
from sqlglot import exp

from dms_orchestration.metadata.models import Mapping, MappingColumn
from dms_orchestration.metadata.sqlcheck import parse_query, strip_sql

# MAPLOGIC that only names a source column (most of them): no parse needed
_PLAIN_SOURCE_COLUMN = re.compile(r"^\s*SRC\s*\.\s*([A-Za-z_][A-Za-z0-9_$#]*)\s*$", re.IGNORECASE)
_Visiting = frozenset[tuple[int, str]]


@dataclass(frozen=True, order=True)
class TableRead:
    """A table a query reads, its names as the SQL spells them."""

    schema: str | None
    table: str

    @property
    def identity(self) -> tuple[str | None, str]:
        """Unquoted SQL names ignore case: CUSTOMERS and customers are one table."""
        return ((self.schema or "").upper() or None, self.table.upper())


@dataclass(frozen=True, order=True)
class ColumnRead:
    """A column of a table that a target column's value comes from."""

    schema: str | None
    table: str
    column: str

    @property
    def table_read(self) -> TableRead:
        return TableRead(self.schema, self.table)


@dataclass(frozen=True)
class MappingReads:
    tables: frozenset[TableRead] = frozenset()  # every table its source SQL and lookups read
    columns: dict[str, frozenset[ColumnRead]] = field(default_factory=dict)  # TRGCLNM ->


# ------------------------------------------------------------------ queries


class _Query:
    """A query of the SQL (a SELECT, a set operation, a parenthesized query) with the CTEs
    it sees; its scopes and select list are worked out once, its outputs resolved once."""

    def __init__(self, tree: exp.Expression, ctes: dict[str, _Query], outer: _Scope | None = None):
        self.tree, self.ctes, self.outer = tree, ctes, outer
        self._outputs: dict[str, set[ColumnRead]] = {}

    @cached_property
    def branches(self) -> list[tuple[_Scope, list[exp.Expression]]]:
        """Scope and select list of each SELECT (one, or those of a set operation)."""
        tree = _unwrapped(self.tree)
        ctes = _with_ctes(tree, self.ctes)
        return [
            (_Scope.of(b, ctes, self.outer), b.expressions) if isinstance(b, exp.Select) else None
            for b in _branches(tree)
        ]

    @cached_property
    def positions(self) -> dict[str, int]:
        """Output name (upper case) -> its place in the select list (a set operation's
        names are its first SELECT's)."""
        first = self.branches[0] if self.branches else None
        if first is None:
            return {}
        named = [(p.alias_or_name.upper(), i) for i, p in enumerate(first[1]) if not _is_star(p)]
        return dict(reversed(named))  # the first of two alike is the one a reference gets

    def output(self, name: str, visiting: _Visiting = frozenset()) -> set[ColumnRead]:
        """The table columns that output column `name` reads."""
        key = (id(self), name.upper())
        if key in visiting:  # a recursive CTE: what it reads besides itself
            return set()
        if key[1] not in self._outputs:
            self._outputs[key[1]] = self._resolve(name, visiting | {key})
        return self._outputs[key[1]]

    def _resolve(self, name: str, visiting: _Visiting) -> set[ColumnRead]:
        index = self.positions.get(name.upper())
        found: set[ColumnRead] = set()
        for branch in self.branches:
            if branch is None:
                continue
            scope, projections = branch
            if index is not None and index < len(projections) and not _is_star(projections[index]):
                found |= scope.reads(projections[index], visiting)
            elif index is None or index < len(projections):
                found |= scope.through_stars(name, visiting)
        return found

    def names(self, name: str) -> bool:
        """Whether its select list names `name` (not through a `*`)."""
        return name.upper() in self.positions

    def every_output(self, visiting: _Visiting) -> set[ColumnRead]:
        """What all its projections read (a scalar subquery, EXISTS, IN)."""
        found: set[ColumnRead] = set()
        for scope, projections in filter(None, self.branches):
            for projection in projections:
                if not _is_star(projection):
                    found |= scope.reads(projection, visiting)
        return found


_Source = TableRead | _Query


def _unwrapped(tree: exp.Expression) -> exp.Expression:
    while isinstance(tree, exp.Subquery):
        tree = tree.this
    return tree


def _with_ctes(tree: exp.Expression, ctes: dict[str, _Query]) -> dict[str, _Query]:
    with_ = tree.args.get("with_")
    if not with_:
        return ctes
    seen = dict(ctes)
    for cte in with_.expressions:
        name, visible = cte.alias_or_name.upper(), dict(seen)
        query = _Query(cte.this, visible)
        if with_.args.get("recursive"):  # it reads itself (the walk stops at a repeat)
            visible[name] = query
        seen[name] = query
    return seen


def _branches(tree: exp.Expression) -> list[exp.Expression]:
    """The SELECTs of a set operation, left to right."""
    tree = _unwrapped(tree)
    if isinstance(tree, exp.SetOperation):
        return _branches(tree.this) + _branches(tree.expression)
    return [tree]


def _is_star(projection: exp.Expression) -> bool:
    return isinstance(projection, exp.Star) or (
        isinstance(projection, exp.Column) and isinstance(projection.this, exp.Star)
    )


def _source_reads(source: _Source, column: str, visiting: _Visiting) -> set[ColumnRead]:
    if isinstance(source, TableRead):
        return {ColumnRead(source.schema, source.table, column)}
    return source.output(column, visiting)


@dataclass
class _Scope:
    """The sources a SELECT reads, by alias (upper case); the `*`s of its select list."""

    sources: dict[str, _Source]
    stars: list[str | None] = field(default_factory=list)  # None: *, else the alias of t.*
    opaque: bool = False  # it reads something this walk cannot follow (LATERAL, VALUES, ...)
    ctes: dict[str, _Query] = field(default_factory=dict)
    outer: _Scope | None = None  # the enclosing query of a correlated subquery

    @classmethod
    def of(cls, select: exp.Select, ctes: dict[str, _Query], outer: _Scope | None = None):
        scope = cls({}, ctes=ctes, outer=outer)
        from_ = select.args.get("from_")
        items = ([from_.this] if from_ else []) + [j.this for j in select.args.get("joins") or []]
        for item in items:
            source = _from_item(item, ctes)
            if source is None:
                scope.opaque = True
            else:
                scope.sources[item.alias_or_name.upper()] = source
        for p in select.expressions:
            if isinstance(p, exp.Star):
                scope.stars.append(None)
            elif _is_star(p):
                scope.stars.append(p.table.upper())
        return scope

    def reads(self, expression: exp.Expression, visiting: _Visiting) -> set[ColumnRead]:
        found: set[ColumnRead] = set()
        nested = lambda n: n is not expression and isinstance(n, exp.Query)  # noqa: E731
        for node in expression.walk(prune=nested):
            if nested(node):
                found |= _Query(node, self.ctes, outer=self).every_output(visiting)
            elif isinstance(node, exp.Column) and not isinstance(node.this, exp.Star):
                found |= self.column(node, visiting)
        return found

    def column(self, col: exp.Column, visiting: _Visiting) -> set[ColumnRead]:
        if col.table:
            source = self.sources.get(col.table.upper())
            if source is None:
                return self.outer.column(col, visiting) if self.outer else set()
            return _source_reads(source, col.name, visiting)
        if len(self.sources) == 1 and not self.opaque:
            return _source_reads(next(iter(self.sources.values())), col.name, visiting)
        naming = [s for s in self.sources.values() if isinstance(s, _Query) and s.names(col.name)]
        if len(naming) == 1:
            return _source_reads(naming[0], col.name, visiting)
        return set()

    def through_stars(self, name: str, visiting: _Visiting) -> set[ColumnRead]:
        """Output `name` that only a `*` provides: from the one source it can come from."""
        if not self.stars or (None in self.stars and self.opaque):
            return set()
        if None in self.stars:
            candidates = list(self.sources.values())
        else:
            candidates = [self.sources[a] for a in self.stars if a in self.sources]
        naming = [s for s in candidates if isinstance(s, _Query) and s.names(name)]
        if len(candidates) == 1 or len(naming) == 1:
            return _source_reads((naming or candidates)[0], name, visiting)
        return set()


def _from_item(item: exp.Expression, ctes: dict[str, _Query]) -> _Source | None:
    if isinstance(item, exp.Table) and isinstance(item.this, exp.Identifier):
        if not item.db and item.name.upper() in ctes:
            return ctes[item.name.upper()]
        return TableRead(item.db or None, item.name)
    if isinstance(item, exp.Subquery):
        return _Query(item.this, ctes)
    return None


# ------------------------------------------------------------------ mappings


def tables_read(tree: exp.Expression) -> set[TableRead]:
    """Every table a parsed query reads (its CTEs are not tables)."""
    ctes = {c.alias_or_name.upper() for c in tree.find_all(exp.CTE)}
    return {
        TableRead(t.db or None, t.name)
        for t in tree.find_all(exp.Table)
        if isinstance(t.this, exp.Identifier) and t.name and t.name.upper() not in ctes
    }


def logic_reads(logic: str, source: exp.Expression | _Query, dialect: str | None) -> set:
    """The table columns a MAPLOGIC expression reads through the source query (SRC)."""
    query = source if isinstance(source, _Query) else _Query(source, {})
    plain = _PLAIN_SOURCE_COLUMN.match(logic)
    if plain:
        return query.output(plain.group(1))
    try:
        [tree] = sqlglot.parse(f"SELECT {strip_sql(logic)}", read=dialect or None)
    except (sqlglot.errors.SqlglotError, ValueError):
        return set()
    if not isinstance(tree, exp.Select) or len(tree.expressions) != 1:
        return set()
    return _Scope({"SRC": query}).reads(tree.expressions[0], frozenset())


def _lookup_reads(col: MappingColumn, dialect: str | None) -> tuple[set[TableRead], set]:
    tree, _ = parse_query(strip_sql(col.logic or ""), dialect)
    if tree is None:
        return set(), set()
    value = _Query(tree, {}).output(col.lookup_value) if col.lookup_value else set()
    return tables_read(tree), value


def mapping_reads(mapping: Mapping, dialect: str | None) -> MappingReads:
    """What a mapping reads; nothing of SQL that does not parse or breaks the SQL rules."""
    source = None
    if mapping.source and (mapping.source.sql or "").strip():
        source, _ = parse_query(strip_sql(mapping.source.sql), dialect)
    tables = tables_read(source) if source is not None else set()
    query = _Query(source, {}) if source is not None else None  # its outputs resolved once
    columns: dict[str, frozenset[ColumnRead]] = {}
    for col in mapping.columns:
        if not col.name or not (col.logic or "").strip():
            continue
        if col.is_lookup:
            read_tables, reads = _lookup_reads(col, dialect)
            tables |= read_tables
        else:
            reads = logic_reads(col.logic, query, dialect) if query is not None else set()
        if reads:
            columns[col.name] = frozenset(reads)
    return MappingReads(frozenset(tables), columns)
