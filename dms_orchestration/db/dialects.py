"""What differs between PostgreSQL, Oracle and SQLite, one small class each.

Everything dialect-specific lives here: DDL types, partial unique indexes, sequences,
and the pieces of load SQL that differ (RWHKEY text, null-safe comparison, UPDATE ...
FROM vs MERGE, bulk load, row estimates). The base class holds what the three share;
a subclass overrides only what differs (sqlglot's shape).
"""

from __future__ import annotations

import io
import json
import re
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
import sqlglot
from sqlalchemy.dialects import oracle, postgresql, sqlite
from sqlglot import exp

from dms_orchestration.db.schema import ColumnSpec, IndexSpec, TableSpec
from dms_orchestration.vocabulary import STRING_FAMILIES, DbType

# sqlite3 binds no Decimal (a PostgreSQL or Oracle source sends them, bulk_insert passes
# them on): as its exact text, which a column's NUMERIC affinity turns into a number
sqlite3.register_adapter(Decimal, str)

if TYPE_CHECKING:
    from dms_orchestration.db.connections import Connection

RAISE_ATTEMPTS = 10  # rounds of raising a sequence that others raise at the same time
# (SQL expression, type family, decimal scale) of one column that goes into RWHKEY
HashColumn = tuple[str, str, int | None]


@dataclass(frozen=True)
class Capabilities:
    """What a database can do, as plain values the engine decides by (as dlt's
    destination capabilities): code outside this module asks these, never a name."""

    sequences: bool = True
    # tables live in schemas (SQLite: one name, one table; a mapping's schema is ignored)
    schemas: bool = True
    index_if_not_exists: bool = True  # CREATE INDEX IF NOT EXISTS
    sequence_if_not_exists: bool = False  # CREATE SEQUENCE IF NOT EXISTS
    schema_if_not_exists: bool = False  # CREATE SCHEMA IF NOT EXISTS (the DMS schema)
    adds_primary_key: bool = True  # ALTER TABLE ... ADD PRIMARY KEY (a table can get one later)
    # a "current rows only" index on the columns themselves, which lookups by them use
    partial_indexes: bool = True
    # the planner reads a subquery that is an operand of an outer join as its table, with
    # its indexes (SQLite materializes it, without an index, if a FULL / RIGHT join's)
    flattens_outer_join_subquery: bool = True
    # a correlated EXISTS runs as a semi-join (SQLite runs it once per outer row)
    semi_joins_exists: bool = True
    # chunks writing the same database at once get on (SQLite: one writer per file)
    concurrent_writers: bool = True
    # several index builds of one table run side by side, one connection each
    parallel_index_builds: bool = False
    unlogged_tables: bool = False  # work tables may skip the write-ahead log
    copies_csv_files: bool = False  # the server's COPY reads a CSV file into a table
    estimate_method: str = "count of the extract"  # how estimate_rows gets its number


class Dialect:
    name = "base"
    sqlglot_name = ""
    capabilities = Capabilities()
    sa_dialect: sa.engine.Dialect
    type_names = {
        "ID": "BIGINT",
        "INT": "INTEGER",
        "NUM": "NUMERIC",
        "CLOB": "TEXT",
        "TS": "TIMESTAMP",
        "DATE": "DATE",
    }

    # ------------------------------------------------------------ DMS schema DDL

    def column_type(self, col: ColumnSpec) -> str:
        if col.kind == "VC":
            return f"VARCHAR({col.size})"
        return self.type_names[col.kind]

    def create_table(self, spec: TableSpec, schema: str | None = None) -> str:
        lines = [
            f"    {c.name} {self.column_type(c)}"
            + (f" DEFAULT {c.default}" if c.default else "")
            + ("" if c.nullable else " NOT NULL")
            for c in spec.columns
        ]
        lines.append(f"    CONSTRAINT {spec.name}_PK PRIMARY KEY ({', '.join(spec.primary_key)})")
        name = f"{schema}.{spec.name}" if schema else spec.name
        return f"CREATE TABLE {name} (\n" + ",\n".join(lines) + "\n)"

    def create_index(self, table: str, index: IndexSpec, if_not_exists: bool = False) -> str:
        unique = "UNIQUE " if index.unique else ""
        where = " WHERE CURFLG = 'Y'" if index.current_only else ""
        name = self._if_not_exists(if_not_exists, "index_if_not_exists") + index.name
        return f"CREATE {unique}INDEX {name} ON {table} ({', '.join(index.columns)}){where}"

    def create_sequence(
        self, name: str, start: int = 1, *, cache: int | None = None, if_not_exists: bool = False
    ) -> str:
        """CREATE SEQUENCE; `cache`: values each session takes at a time; `if_not_exists`
        where the database has the clause (see capabilities)."""
        name = self._if_not_exists(if_not_exists, "sequence_if_not_exists") + name
        cached = f" CACHE {int(cache)}" if cache else ""
        return f"CREATE SEQUENCE {name} START WITH {start} INCREMENT BY 1{cached}"

    def create_schema(self, schema: str) -> str | None:
        """The statement that creates a schema when it is missing, or None where a
        schema is not made by a statement (Oracle: a user; SQLite: none)."""
        if not self.capabilities.schema_if_not_exists:
            return None
        return f"CREATE SCHEMA IF NOT EXISTS {schema}"

    def _if_not_exists(self, asked: bool, capability: str) -> str:
        return "IF NOT EXISTS " if asked and getattr(self.capabilities, capability) else ""

    def primary_key_statements(
        self, table: str, name: str, column: str, if_not_exists: bool = False
    ) -> tuple[list[str], list[str]]:
        """Add a primary key to a table: (index builds, statements after them)."""
        return [f"ALTER TABLE {table} ADD CONSTRAINT {name} PRIMARY KEY ({column})"], []

    def next_values(self, sequence: str, n: int) -> sa.TextClause:
        """One statement that draws n values from a sequence (one round trip)."""
        raise NotImplementedError(f"{self.name} has no sequences")

    def next_sequence_value(self, sequence: str) -> str:
        """The SQL expression that draws one value, for set-based inserts."""
        raise NotImplementedError(f"{self.name} has no sequences")

    def sequence_exists(self, conn: sa.Connection, name: str, schema: str | None) -> bool:
        return sa.inspect(conn).has_sequence(name.lower(), schema=schema)

    def index_names(self, conn: sa.Connection, table: str, schema: str | None) -> set[str]:
        """The names of a table's indexes, upper case."""
        return {(ix["name"] or "").upper() for ix in sa.inspect(conn).get_indexes(table, schema)}

    # ------------------------------------------------------------ ids across modes

    def greatest(self, *exprs: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """The largest of the expressions (none may be NULL: Oracle's GREATEST is then NULL)."""
        return sa.func.greatest(*exprs) if len(exprs) > 1 else exprs[0]

    def next_values_with(
        self, sequence: str, n: int, beside: sa.ColumnElement[Any]
    ) -> sa.Select[Any, Any]:
        """next_values, each row also carrying `beside` (a scalar subquery, read once): a
        check that needs no round trip of its own."""
        raise NotImplementedError(f"{self.name} has no sequences")

    def sequence_position(self, name: str, schema: str | None) -> sa.ColumnElement[Any] | None:
        """A scalar subquery: the highest value the sequence may have handed out, NULL when
        it does not exist (None: the dialect has no sequences)."""
        return None

    def sequence_increment(self, sequence: str, by: int) -> str:
        return f"ALTER SEQUENCE {sequence} INCREMENT BY {int(by)}"

    def raise_sequence(
        self, conn: sa.Connection, name: str, schema: str | None, floor: int
    ) -> None:
        """Make the sequence's next value exceed floor, never moving it back, while others
        may draw from it. Here by a one-off increment (Oracle has no setval): a draw that
        comes between the two ALTERs jumps too, a gap, never a value given twice; the
        loop ends on a value drawn above floor, whatever other raisers did meanwhile."""
        sequence = self.qualified(schema, name)
        draw = self.next_values(sequence, 1)
        drawn = conn.execute(draw).scalar()
        assert drawn is not None  # a sequence's draw is a value
        value = int(drawn)
        for _ in range(RAISE_ATTEMPTS):
            if value > floor:
                return
            conn.exec_driver_sql(self.sequence_increment(sequence, floor - value + 1))
            try:
                drawn = conn.execute(draw).scalar()
                assert drawn is not None
                value = int(drawn)
            finally:
                conn.exec_driver_sql(self.sequence_increment(sequence, 1))
        if value <= floor:
            raise RuntimeError(f"could not raise sequence {sequence} above {floor}")

    # ------------------------------------------------------------ load SQL

    def quote(self, name: str) -> str:
        """A validated identifier from metadata, quoted as plain SQL would spell it
        (lower case is case-insensitive to SQLAlchemy: unquoted unless it must be)."""
        return self.sa_dialect.identifier_preparer.quote(name.lower())

    def qualified(self, schema: str | None, table: str) -> str:
        return f"{self.quote(schema)}.{self.quote(table)}" if schema else self.quote(table)

    def is_distinct(self, a: str, b: str) -> str:
        return f"{a} IS DISTINCT FROM {b}"

    def type_sql(self, sa_type: sa.types.TypeEngine[Any]) -> str:
        return sa_type.compile(dialect=self.sa_dialect)

    def widen_column(
        self, table: str, column: str, sa_type: sa.types.TypeEngine[Any]
    ) -> list[str] | None:
        """Statements that change a column to a wider type, one that holds every value
        the column has (the caller decides that); None: not in place on this database."""
        return [f"ALTER TABLE {table} ALTER COLUMN {column} TYPE {self.type_sql(sa_type)}"]

    def integer_max(self, sa_type: sa.types.TypeEngine[Any]) -> int:
        """The largest value a column of this integer type stores."""
        if isinstance(sa_type, sa.SmallInteger):
            return 2**15 - 1
        if isinstance(sa_type, sa.BigInteger):
            return 2**63 - 1
        return 2**31 - 1

    def typed(self, expr: str, family: str, type_sql: str) -> str:
        """An expression in the target column's type, so that it compares equal to the
        stored value. Strings are not cast: an explicit cast would cut them silently,
        where storing them raises an error."""
        return expr if family in STRING_FAMILIES else f"CAST({expr} AS {type_sql})"

    def key_order(self, expr: str, family: str) -> str:
        """How a chunk-range key compares: byte order for strings on every database."""
        return expr

    def canonical_text(self, expr: str, family: str, scale: int | None) -> str:
        raise NotImplementedError

    def md5(self, text_expr: str) -> str:
        return f"MD5({text_expr})"

    def row_hash(self, columns: Sequence[HashColumn]) -> str:
        """SQL computing RWHKEY exactly as db.rowhash.row_hash does: the canonical
        texts written as a row value, `(f1,f2,...)`, quoted where rowhash.field quotes."""
        special = " || ".join(f"CHR({c})" for c in (34, 92, 40, 41, 44, 32, 9, 10, 11, 12, 13))
        fields = []
        for expr, family, scale in columns:
            text = self.canonical_text(expr, family, scale)
            quoted = f"'\"' || REPLACE(REPLACE({text}, '\\', '\\\\'), '\"', '\"\"') || '\"'"
            # TRANSLATE drops the special characters: shorter (or empty) means quote
            kept = f"COALESCE(LENGTH(TRANSLATE({text}, 'x' || {special}, 'x')), 0)"
            fields.append(
                f"CASE WHEN {expr} IS NULL THEN '' "
                f"WHEN {kept} < COALESCE(LENGTH({text}), 0) OR {text} = '' THEN {quoted} "
                f"ELSE {text} END"
            )
        return self.md5("'(' || " + " || ',' || ".join(fields or ["''"]) + " || ')'")

    def create_work_table(self, name: str, select_sql: str) -> str:
        """A chunk's work table, from a query (it skips the write-ahead log where it can:
        see _scratch)."""
        return f"CREATE {self._scratch()}TABLE {name} AS {select_sql}"

    def create_scratch_table(self, name: str, columns: Sequence[str]) -> str:
        """A table of one load's staged rows (see _scratch)."""
        return f"CREATE {self._scratch()}TABLE {name} ({', '.join(columns)})"

    def _scratch(self) -> str:
        """A load's own tables need no crash-safe durability (a load that dies is run
        again): UNLOGGED where the database has it."""
        return "UNLOGGED " if self.capabilities.unlogged_tables else ""

    def snapshot_session(self) -> list[str]:
        """Statements that make a transaction's reads all see one snapshot (SQLite's
        transactions do; Oracle's CREATE TABLE ends the transaction anyway)."""
        return []

    def read_snapshot_session(self) -> list[str]:
        """Statements that begin a transaction which only reads, all of it as of one
        snapshot taken at its first read (SQLite's read transactions do)."""
        return self.snapshot_session()

    def side_by_side_build(self) -> list[str]:
        """Statements before one of several index builds that run at the same time."""
        return []

    def parallel_read_session(self) -> list[str] | None:
        """Statements that let one transaction read the parts of a single chunk side by
        side, or None: the dialect reads them one after the other (no parts then)."""
        return None

    def work_slice(self, alias: str) -> str | None:
        """A condition that takes one slice of a work table's rows (binds dms_slice_from
        and dms_slice_to, from work_slices), or None: the work table is applied whole."""
        return None

    def work_slices(self, conn: sa.Connection, table: str, rows: int) -> list[dict[str, Any]]:
        """The binds of each slice of a work table of `rows` rows, in order."""
        return [{}]

    def update_from(
        self, target: str, source: str, join: str, assignments: Sequence[tuple[str, str]]
    ) -> str:
        """UPDATE target (alias T) from the rows of source (alias A) that match `join`."""
        sets = ", ".join(f"{col} = {value}" for col, value in assignments)
        return f"UPDATE {target} AS T SET {sets} FROM {source} AS A WHERE {join}"

    def limit(self, sql: str, n: int) -> str:
        return f"{sql} LIMIT {int(n)}"

    def select_values(self, items: str) -> str:
        """A one-row SELECT of values (bound ones), no table."""
        return f"SELECT {items}"

    def copy_csv_out(self, conn: sa.Connection, query: sa.TextClause, path: Path) -> int | None:
        """Write a query's rows to `path` as CSV with a header, by the database itself;
        the rows written, or None where the database cannot (the caller writes them)."""
        return None

    def temp_table(self, name: str, columns: Sequence[str]) -> str:
        """A table of this session only (a file's staged rows)."""
        return f"CREATE TEMPORARY TABLE {name} ({', '.join(columns)})"

    def temp_table_as(self, name: str, select: str) -> str:
        return f"CREATE TEMPORARY TABLE {name} AS {select}"

    def unique_index(
        self, conn: sa.Connection, schema: str | None, table: str, name: str
    ) -> tuple[list[str], str | None] | None:
        """The columns and WHERE predicate of the table's index `name` when it is unique
        and valid; None when it is missing or not, or the database does not tell (here:
        Oracle's rule indexes CASE expressions)."""
        return None

    def estimate_rows(self, conn: sa.Connection, query: sa.TextClause) -> int:
        """A cheap estimate of a query's rows; here counted (SQLite, Oracle)."""
        counted = sa.select(sa.func.count()).select_from(query.columns().subquery("dms_est"))
        return int(conn.execute(counted).scalar() or 0)

    def key_is_unique(self, conn: sa.Connection, query: sa.TextClause) -> bool:
        """Whether the one column a query returns is, as it stands, a column of one table
        that a unique, NOT NULL key covers (no NULL or duplicate can come out). Only
        PostgreSQL tells (through views); elsewhere False: the keys get counted."""
        return False

    def reads_one_table(self, conn: sa.Connection, query: sa.TextClause) -> bool:
        """Whether a query only reads one table or view (no join, grouping, DISTINCT, set
        operation or window): reading it twice costs little. Here from the SQL text (a
        view may hide more); unparsable SQL counts as more."""
        try:
            tree = sqlglot.parse_one(query.text, read=self.sqlglot_name)
        except sqlglot.errors.SqlglotError:
            return False
        busy = (exp.Join, exp.Group, exp.Distinct, exp.Union, exp.Window, exp.AggFunc)
        tables = {t.sql() for t in tree.find_all(exp.Table)}
        return len(tables) <= 1 and next(tree.find_all(*busy), None) is None

    def bulk_insert(
        self, conn: sa.Connection, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]
    ) -> int:
        """Insert one batch of rows: the driver's executemany (array binding on Oracle),
        positional binds straight to the driver (no bind dictionary per row)."""
        rows = [tuple(r) for r in rows]
        if rows:
            marks = ", ".join(_positional_marks(conn.dialect.paramstyle, len(columns)))
            stmt = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"
            conn.exec_driver_sql(stmt, rows)
        return len(rows)


def _positional_marks(paramstyle: str, count: int) -> list[str]:
    """Bind markers for `count` values given as a sequence (sqlite3: qmark; oracledb:
    named, which binds a sequence by position)."""
    if paramstyle == "qmark":
        return ["?"] * count
    if paramstyle in ("format", "pyformat"):
        return ["%s"] * count
    return [f":{i}" for i in range(1, count + 1)]  # numeric, named


def _copy_field(value: object) -> str:
    """One field in PostgreSQL's COPY text format."""
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, datetime):
        text = value.isoformat(sep=" ")
    elif isinstance(value, date):
        text = value.isoformat()
    else:
        text = str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


_SCAN_NODES = {
    "Seq Scan",
    "Index Scan",
    "Index Only Scan",
    "Bitmap Heap Scan",
    "Bitmap Index Scan",
    "BitmapAnd",
    "BitmapOr",
    "Subquery Scan",
    "Result",
    "Limit",
    "Gather",
}


# a PostgreSQL index: unique and valid, its predicate, its columns in order
_PG_INDEX = """
SELECT i.indisunique AND i.indisvalid AND i.indisready,
       pg_get_expr(i.indpred, i.indrelid),
       ARRAY(SELECT a.attname::text
             FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
             ORDER BY k.ord)
FROM pg_index i
WHERE i.indexrelid = to_regclass(:index) AND i.indrelid = to_regclass(:table)
"""

SLICE_ROWS = 20_000  # work-table rows applied at a time (PostgreSQL)


class PostgresDialect(Dialect):
    name = "postgresql"
    sqlglot_name = "postgres"
    capabilities = Capabilities(
        sequence_if_not_exists=True,
        schema_if_not_exists=True,
        parallel_index_builds=True,
        unlogged_tables=True,
        copies_csv_files=True,
        estimate_method="planner estimate (EXPLAIN)",
    )
    sa_dialect = postgresql.dialect()  # type: ignore[no-untyped-call]  # SQLAlchemy: untyped

    def next_values(self, sequence: str, n: int) -> sa.TextClause:
        return sa.text(
            f"SELECT nextval('{sequence.lower()}') AS id FROM generate_series(1, :n)"
        ).bindparams(n=n)

    def next_sequence_value(self, sequence: str) -> str:
        return f"nextval('{sequence.lower()}')"

    def next_values_with(
        self, sequence: str, n: int, beside: sa.ColumnElement[Any]
    ) -> sa.Select[Any, Any]:
        series = sa.func.generate_series(1, sa.bindparam("n", n)).alias("dms_n")
        draw: sa.ColumnClause[Any] = sa.literal_column(f"nextval('{sequence.lower()}')")
        return sa.select(draw.label("id"), beside.label("beside")).select_from(series)

    def sequence_position(self, name: str, schema: str | None) -> sa.ColumnElement[Any] | None:
        # from the catalog, so that a missing sequence is NULL rather than an error; one
        # not drawn from yet (a new one) has handed out nothing below its start
        columns: list[sa.ColumnClause[Any]] = [sa.column("seqrelid"), sa.column("seqstart")]
        seq = sa.table("pg_sequence", *columns, schema="pg_catalog")
        last = sa.func.pg_sequence_last_value(seq.c.seqrelid)
        return (
            sa.select(sa.func.coalesce(last, seq.c.seqstart - 1))
            .where(seq.c.seqrelid == sa.func.to_regclass(self.qualified(schema, name)))
            .scalar_subquery()
        )

    def raise_sequence(
        self, conn: sa.Connection, name: str, schema: str | None, floor: int
    ) -> None:
        """setval, under the lock ALTER SEQUENCE takes: it keeps nextval out (PostgreSQL 10+)
        until the transaction ends, so nothing is drawn between reading the position and
        setting it. The caller's transaction must end soon after."""
        sequence = self.qualified(schema, name)
        position = "CASE WHEN is_called THEN last_value ELSE last_value - 1 END"
        current = conn.exec_driver_sql(f"SELECT {position} FROM {sequence}").scalar()
        assert current is not None  # a sequence's row has its position
        if current >= floor:
            return
        # (START WITH only matters to a bare RESTART: it then restarts above floor too)
        conn.exec_driver_sql(f"ALTER SEQUENCE {sequence} START WITH {int(floor) + 1}")
        conn.execute(
            sa.text(f"SELECT setval(:seq, GREATEST(:floor, {position})) FROM {sequence}"),
            {"seq": sequence, "floor": int(floor)},
        )

    def key_order(self, expr: str, family: str) -> str:
        return f'{expr} COLLATE "C"' if family in STRING_FAMILIES else expr

    def canonical_text(self, expr: str, family: str, scale: int | None) -> str:
        if family == "CHAR":
            return f"RTRIM(CAST({expr} AS TEXT))"
        if family == "DECIMAL":
            if scale is None:
                return f"CAST(TRIM_SCALE(CAST({expr} AS NUMERIC)) AS TEXT)"
            return f"CAST(CAST({expr} AS NUMERIC(38, {int(scale)})) AS TEXT)"
        if family == "FLOAT":
            return f"CAST(CAST({expr} AS DOUBLE PRECISION) AS TEXT)"
        if family == "DATE":
            return f"TO_CHAR({expr}, 'YYYY-MM-DD')"
        if family == "TIMESTAMP":
            return f"TO_CHAR({expr}, 'YYYY-MM-DD HH24:MI:SS.US')"
        if family == "BOOLEAN":
            return f"CASE WHEN {expr} THEN '1' ELSE '0' END"
        return f"CAST({expr} AS TEXT)"

    def snapshot_session(self) -> list[str]:
        return ["SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"]

    def read_snapshot_session(self) -> list[str]:
        # a read beside a load's chunks: one core, not the parallel workers theirs take
        return [*self.snapshot_session(), "SET LOCAL max_parallel_workers_per_gather = 0"]

    def side_by_side_build(self) -> list[str]:
        # the builds are the parallelism: no extra sort workers each (benchmarks/README.md)
        return ["SET LOCAL max_parallel_maintenance_workers = 0"]

    def parallel_read_session(self) -> list[str] | None:
        # the classify's output is the few changed keys, though the planner expects every
        # row: rows handed from the workers cost nothing here, nor does starting them
        # (parts come only with sources big enough to earn several chunks)
        return ["SET LOCAL parallel_setup_cost = 0", "SET LOCAL parallel_tuple_cost = 0"]

    def work_slice(self, alias: str) -> str | None:
        # a range of the work table's pages (a TID range scan from PostgreSQL 14 on)
        return (
            f"{alias}.ctid >= CAST(:dms_slice_from AS tid) "
            f"AND {alias}.ctid < CAST(:dms_slice_to AS tid)"
        )

    def work_slices(self, conn: sa.Connection, table: str, rows: int) -> list[dict[str, Any]]:
        """Slices of about SLICE_ROWS rows: the work table is in key order, so a slice's
        writes (in place, closing, new versions) meet the same target pages while they
        are still in shared buffers, instead of each statement sweeping the whole table
        (benchmarks/README.md)."""
        pages = conn.execute(
            sa.text(
                "SELECT pg_relation_size(CAST(:t AS regclass)) / current_setting('block_size')::int"
            ),
            {"t": table},
        ).scalar()
        version = conn.dialect.server_version_info
        assert pages is not None and version is not None  # (an existing table; connected)
        n = max(1, -(-rows // SLICE_ROWS)) if version >= (14,) else 1
        cuts = [int(pages) * i // n for i in range(n)] + [int(pages)]
        return [
            {"dms_slice_from": f"({lo},0)", "dms_slice_to": f"({hi},0)"}
            for lo, hi in zip(cuts, cuts[1:], strict=False)
            if hi > lo or n == 1
        ]

    def primary_key_statements(
        self, table: str, name: str, column: str, if_not_exists: bool = False
    ) -> tuple[list[str], list[str]]:
        # the index can be built beside the others; the constraint then takes it over
        index = IndexSpec(name, (column,), unique=True)
        return (
            [self.create_index(table, index, if_not_exists)],
            [f"ALTER TABLE {table} ADD CONSTRAINT {name} PRIMARY KEY USING INDEX {name}"],
        )

    def row_value(self, expr: str, family: str, scale: int | None) -> str:
        """A value whose output text is its canonical text (dates: DateStyle ISO, which
        db.connect sets on every connection): cheaper than building the text."""
        if family == "INTEGER":
            return f"CAST({expr} AS NUMERIC(38, 0))"
        if family == "DECIMAL" and scale is not None:
            return f"CAST({expr} AS NUMERIC(38, {int(scale)}))"
        if family == "FLOAT":
            return f"CAST({expr} AS DOUBLE PRECISION)"
        if family == "DATE":
            return f"CAST({expr} AS DATE)"
        if family == "BOOLEAN":
            return f"CASE WHEN {expr} THEN '1' WHEN NOT {expr} THEN '0' END"
        return self.canonical_text(expr, family, scale)

    def row_hash(self, columns: Sequence[HashColumn]) -> str:
        # the row value's text is exactly rowhash.row_text (record output, in C)
        values = [self.row_value(expr, family, scale) for expr, family, scale in columns]
        return self.md5(f"CAST(ROW({', '.join(values)}) AS TEXT)" if values else "'()'")

    def _explain(
        self, conn: sa.Connection, query: sa.TextClause, verbose: bool = False
    ) -> dict[str, Any]:
        options = "VERBOSE, FORMAT JSON" if verbose else "FORMAT JSON"
        explain = sa.text(f"EXPLAIN ({options}) {query.text}")
        plan: Any = conn.execute(explain.bindparams(**query.compile().params)).scalar()
        explained: dict[str, Any] = (json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]
        return explained

    def unique_index(
        self, conn: sa.Connection, schema: str | None, table: str, name: str
    ) -> tuple[list[str], str | None] | None:
        index, table = self.qualified(schema, name), self.qualified(schema, table)
        row = conn.execute(sa.text(_PG_INDEX), {"index": index, "table": table}).first()
        if row is None or not row[0]:
            return None
        return list(row[2]), row[1]

    def estimate_rows(self, conn: sa.Connection, query: sa.TextClause) -> int:
        """The planner's estimate (EXPLAIN): no scan of the source."""
        return int(self._explain(conn, query)["Plan Rows"])

    @staticmethod
    def _scans(plan: dict[str, Any]) -> tuple[set[str], list[dict[str, Any]]]:
        """Node types of a plan, and its nodes that scan a relation."""
        nodes, scans, stack = set(), [], [plan]
        while stack:
            node = stack.pop()
            nodes.add(node["Node Type"])
            if node.get("Relation Name"):
                scans.append(node)
            stack += node.get("Plans", [])
        return nodes, scans

    def reads_one_table(self, conn: sa.Connection, query: sa.TextClause) -> bool:
        """From the planner's plan (EXPLAIN), which sees through views: one scanned
        relation and nothing but scans, filters and limits."""
        nodes, scans = self._scans(self._explain(conn, query))
        return nodes <= _SCAN_NODES and len({n["Relation Name"] for n in scans}) <= 1

    def key_is_unique(self, conn: sa.Connection, query: sa.TextClause) -> bool:
        """The plan (EXPLAIN VERBOSE) scans one relation and returns one of its columns
        unchanged; the catalog has a valid unique index on just that column, without a
        predicate, and the column is NOT NULL."""
        plan = self._explain(conn, query, verbose=True)
        nodes, scans = self._scans(plan)
        if not nodes <= _SCAN_NODES or len(scans) != 1 or len(plan.get("Output", [])) != 1:
            return False
        scan = scans[0]
        alias, _, column = plan["Output"][0].partition(".")
        if alias != scan.get("Alias") or not column:
            return False
        if column.startswith('"'):
            column = column[1:-1].replace('""', '"')
        elif not column.replace("_", "").isalnum():
            return False  # an expression, not a column
        return (
            conn.execute(
                sa.text(
                    "SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0] "
                    "WHERE n.nspname = :schema AND c.relname = :rel AND a.attname = :col "
                    "AND a.attnotnull AND i.indisunique AND i.indisvalid "
                    "AND i.indpred IS NULL AND i.indexprs IS NULL AND i.indnkeyatts = 1"
                ),
                {"schema": scan.get("Schema"), "rel": scan["Relation Name"], "col": column},
            ).first()
            is not None
        )

    def copy_csv_out(self, conn: sa.Connection, query: sa.TextClause, path: Path) -> int | None:
        """COPY (query) TO STDOUT: PostgreSQL's own CSV, streamed; the query's binds are
        quoted by the driver (mogrify), never formatted by us."""
        compiled = query.compile(dialect=conn.dialect)
        dbapi = conn.connection.dbapi_connection
        assert dbapi is not None  # an open connection has its DBAPI connection
        cursor = dbapi.cursor()
        try:
            sql = cursor.mogrify(str(compiled), compiled.params).decode()
            with path.open("wb") as out:
                cursor.copy_expert(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv, HEADER)", out)
            return cursor.rowcount
        finally:
            cursor.close()

    def bulk_insert(
        self, conn: sa.Connection, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]
    ) -> int:
        """COPY ... FROM STDIN, the fastest way into PostgreSQL from Python."""
        buffer = io.StringIO()
        count = 0
        for row in rows:
            buffer.write("\t".join(_copy_field(v) for v in row) + "\n")
            count += 1
        if count:
            buffer.seek(0)
            dbapi = conn.connection.dbapi_connection
            assert dbapi is not None  # an open connection has its DBAPI connection
            cursor = dbapi.cursor()
            try:
                cursor.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN", buffer)
            finally:
                cursor.close()
        return count


class OracleDialect(Dialect):
    name = "oracle"
    sqlglot_name = "oracle"
    # (an index over CASE expressions, no partial index: no use for lookups by key)
    capabilities = Capabilities(index_if_not_exists=False, partial_indexes=False)
    sa_dialect = oracle.dialect()  # type: ignore[no-untyped-call]  # SQLAlchemy: untyped
    type_names = {
        "ID": "NUMBER(19)",
        "INT": "NUMBER(10)",
        "NUM": "NUMBER",
        "CLOB": "CLOB",
        "TS": "TIMESTAMP",
        "DATE": "DATE",
    }
    _numeric_chars = "'NLS_NUMERIC_CHARACTERS=''.,'''"

    def column_type(self, col: ColumnSpec) -> str:
        if col.kind == "VC":
            return f"VARCHAR2({col.size})"
        return self.type_names[col.kind]

    def create_index(self, table: str, index: IndexSpec, if_not_exists: bool = False) -> str:
        if not index.current_only:
            return super().create_index(table, index, if_not_exists)
        # Oracle has no partial index: index an expression that is NULL on old rows,
        # and Oracle does not index all-NULL keys.
        exprs = ", ".join(f"CASE WHEN CURFLG = 'Y' THEN {c} END" for c in index.columns)
        unique = "UNIQUE " if index.unique else ""
        return f"CREATE {unique}INDEX {index.name} ON {table} ({exprs})"

    def next_values(self, sequence: str, n: int) -> sa.TextClause:
        return sa.text(
            f"SELECT {sequence.upper()}.NEXTVAL AS id FROM dual CONNECT BY LEVEL <= :n"
        ).bindparams(n=n)

    def next_sequence_value(self, sequence: str) -> str:
        return f"{sequence.upper()}.NEXTVAL"

    def next_values_with(
        self, sequence: str, n: int, beside: sa.ColumnElement[Any]
    ) -> sa.Select[Any, Any]:
        # (NEXTVAL in the select list of the statement itself, never in a subquery)
        rows = sa.text("dual CONNECT BY LEVEL <= :n").bindparams(n=n)
        draw: sa.ColumnClause[Any] = sa.literal_column(f"{sequence.upper()}.NEXTVAL")
        return sa.select(draw.label("id"), beside.label("beside")).select_from(rows)

    def sequence_position(self, name: str, schema: str | None) -> sa.ColumnElement[Any] | None:
        # LAST_NUMBER is the high-water mark: at or above every value handed out or cached
        view = "all_sequences" if schema else "user_sequences"
        columns: list[sa.ColumnClause[Any]] = [sa.column("last_number"), sa.column("sequence_name")]
        seqs = sa.table(view, *columns, sa.column("sequence_owner"), schema="sys")
        where = [seqs.c.sequence_name == name.upper()]
        if schema:
            where.append(seqs.c.sequence_owner == schema.upper())
        return sa.select(seqs.c.last_number).where(*where).scalar_subquery()

    def is_distinct(self, a: str, b: str) -> str:
        return f"DECODE({a}, {b}, 0, 1) = 1"

    def canonical_text(self, expr: str, family: str, scale: int | None) -> str:
        if family == "CHAR":
            return f"RTRIM({expr})"
        if family == "DECIMAL" and scale:
            mask = "FM" + "9" * (37 - scale) + "0." + "0" * scale
            return f"TO_CHAR({expr}, '{mask}', {self._numeric_chars})"
        if family in ("INTEGER", "DECIMAL", "FLOAT"):
            # TM9 writes 0.5 as .5: put the zero back
            tm9 = f"TO_CHAR({expr}, 'TM9', {self._numeric_chars})"
            return f"REGEXP_REPLACE({tm9}, '^(-?)[.]', '\\10.')"
        if family == "DATE":
            return f"TO_CHAR({expr}, 'YYYY-MM-DD')"
        if family == "TIMESTAMP":
            return f"TO_CHAR({expr}, 'YYYY-MM-DD HH24:MI:SS.FF6')"
        if family == "BOOLEAN":
            return f"CASE WHEN {expr} = 1 THEN '1' ELSE '0' END"
        return f"TO_CHAR({expr})"

    def md5(self, text_expr: str) -> str:
        return f"LOWER(RAWTOHEX(STANDARD_HASH({text_expr}, 'MD5')))"

    def update_from(
        self, target: str, source: str, join: str, assignments: Sequence[tuple[str, str]]
    ) -> str:
        # Oracle has no UPDATE ... FROM: MERGE does the same
        sets = ", ".join(f"T.{col} = {value}" for col, value in assignments)
        return (
            f"MERGE INTO {target} T USING {source} A ON ({join}) "
            f"WHEN MATCHED THEN UPDATE SET {sets}"
        )

    def limit(self, sql: str, n: int) -> str:
        return f"{sql} FETCH FIRST {int(n)} ROWS ONLY"

    def read_snapshot_session(self) -> list[str]:
        # its queries see what was committed when the transaction began
        return ["SET TRANSACTION READ ONLY"]

    def select_values(self, items: str) -> str:
        return f"SELECT {items} FROM dual"

    def temp_table(self, name: str, columns: Sequence[str]) -> str:
        return (
            f"CREATE GLOBAL TEMPORARY TABLE {name} ({', '.join(columns)}) ON COMMIT PRESERVE ROWS"
        )

    def temp_table_as(self, name: str, select: str) -> str:
        return f"CREATE GLOBAL TEMPORARY TABLE {name} ON COMMIT PRESERVE ROWS AS {select}"

    def widen_column(
        self, table: str, column: str, sa_type: sa.types.TypeEngine[Any]
    ) -> list[str] | None:
        if isinstance(sa_type, sa.Text):
            return None  # a VARCHAR2 does not become a CLOB in place (ORA-22858)
        return [f"ALTER TABLE {table} MODIFY ({column} {self.type_sql(sa_type)})"]

    def integer_max(self, sa_type: sa.types.TypeEngine[Any]) -> int:
        # BIGINT is NUMBER(19); INTEGER and SMALLINT are NUMBER(38) (reflected as INTEGER)
        return 10**19 - 1 if isinstance(sa_type, sa.BigInteger) else 10**38 - 1


class SqliteDialect(Dialect):
    name = "sqlite"
    sqlglot_name = "sqlite"
    capabilities = Capabilities(
        sequences=False,
        schemas=False,
        adds_primary_key=False,
        flattens_outer_join_subquery=False,
        semi_joins_exists=False,
        concurrent_writers=False,
    )
    sa_dialect = sqlite.dialect()
    type_names = {
        "ID": "INTEGER",
        "INT": "INTEGER",
        "NUM": "NUMERIC",
        "CLOB": "TEXT",
        "TS": "TIMESTAMP",
        "DATE": "DATE",
    }

    def create_sequence(
        self, name: str, start: int = 1, *, cache: int | None = None, if_not_exists: bool = False
    ) -> str:
        raise NotImplementedError("SQLite has no sequences")

    def sequence_exists(self, conn: sa.Connection, name: str, schema: str | None) -> bool:
        return False

    def index_names(self, conn: sa.Connection, table: str, schema: str | None) -> set[str]:
        # (SQLAlchemy's reflection skips indexes on expressions)
        rows = conn.exec_driver_sql(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ? COLLATE NOCASE",
            (table,),
        )
        return {name.upper() for (name,) in rows}

    def unique_index(
        self, conn: sa.Connection, schema: str | None, table: str, name: str
    ) -> tuple[list[str], str | None] | None:
        listed = conn.exec_driver_sql(f"PRAGMA index_list({self.quote(table)})").all()
        row = next((r for r in listed if str(r[1]).lower() == name.lower()), None)
        if row is None or not row[2]:  # (seq, name, unique, origin, partial)
            return None
        columns = [r[2] for r in conn.exec_driver_sql(f"PRAGMA index_info({self.quote(row[1])})")]
        if any(c is None for c in columns):  # an expression
            return None
        sql = conn.execute(
            sa.text("SELECT sql FROM sqlite_master WHERE type = 'index' AND name = :name"),
            {"name": row[1]},
        ).scalar()
        parts = re.split(r"\bWHERE\b", sql or "", maxsplit=1, flags=re.IGNORECASE)
        return columns, parts[1] if len(parts) > 1 else None

    def greatest(self, *exprs: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        # SQLite's max() of several arguments is the scalar one
        return sa.func.max(*exprs) if len(exprs) > 1 else exprs[0]

    def is_distinct(self, a: str, b: str) -> str:
        return f"{a} IS NOT {b}"

    def typed(self, expr: str, family: str, type_sql: str) -> str:
        # SQLite stores by affinity: cast to the affinity the column applies. DATE and
        # TIMESTAMP stay text (a cast to their NUMERIC affinity would turn them into years)
        affinity = {
            "INTEGER": "INTEGER",
            "DECIMAL": "NUMERIC",
            "FLOAT": "REAL",
            "STRING": "TEXT",
            "CHAR": "TEXT",
            "TEXT": "TEXT",
        }.get(family)
        return f"CAST({expr} AS {affinity})" if affinity else expr

    def row_hash(self, columns: Sequence[HashColumn]) -> str:
        # dms_rowhash is db.rowhash.sqlite_row_hash, registered on every connection
        args = ", ".join(
            f"'{family}{'' if scale is None else f':{int(scale)}'}', {expr}"
            for expr, family, scale in columns
        )
        return f"dms_rowhash({args})" if args else "dms_rowhash()"

    def widen_column(
        self, table: str, column: str, sa_type: sa.types.TypeEngine[Any]
    ) -> list[str] | None:
        # SQLite enforces neither lengths nor numeric precision: the column already takes
        # every value of the wider type, nothing to alter (its declared type stays)
        return []


DIALECTS: dict[str, Dialect] = {
    d.name: d for d in (PostgresDialect(), OracleDialect(), SqliteDialect())
}

# DMS_DBCONDTLS.DBTYP and the legacy DB_TYPE use these words
DBTYP_TO_DIALECT: dict[str, str] = {
    DbType.POSTGRESQL: "postgresql",
    DbType.ORACLE: "oracle",
    DbType.SQLITE: "sqlite",
}


def sqlglot_dialect(con: Connection | None, metadata_backend: str) -> str:
    """The sqlglot dialect of SQL that runs on a connection (a DMS_DBCONDTLS row: its
    DBTYP), else on the metadata database (`metadata_backend`, as SQLAlchemy names it);
    '' when neither is known (sqlglot's standard SQL)."""
    name = DBTYP_TO_DIALECT.get((con.db_type or "").upper(), "") if con else metadata_backend
    return DIALECTS[name].sqlglot_name if name in DIALECTS else ""


def has_schemas(name: str | None) -> bool:
    """Whether tables of the dialect named so live in schemas (an unknown one: yes)."""
    return name not in DIALECTS or DIALECTS[name].capabilities.schemas


def dialect_of(bind: sa.Engine | sa.Connection | str) -> Dialect:
    name = bind if isinstance(bind, str) else bind.dialect.name
    try:
        return DIALECTS[name]
    except KeyError:
        raise ValueError(
            f"unsupported database dialect {name!r}: use PostgreSQL, Oracle or SQLite"
        ) from None
