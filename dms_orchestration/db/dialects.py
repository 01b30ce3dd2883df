"""What differs between PostgreSQL, Oracle and SQLite, one small class each.

Everything dialect-specific that the DMS side needs lives here: DDL types, partial
unique indexes, sequences and how to draw a block of values from one. The base class
holds what the three share; a subclass overrides only what differs (sqlglot's shape).
"""

from __future__ import annotations

import sqlalchemy as sa

from dms_orchestration.db.schema import ColumnSpec, IndexSpec, TableSpec


class Dialect:
    name = "base"
    sqlglot_name = ""
    has_sequences = True
    type_names = {
        "ID": "BIGINT",
        "INT": "INTEGER",
        "NUM": "NUMERIC",
        "CLOB": "TEXT",
        "TS": "TIMESTAMP",
        "DATE": "DATE",
    }

    def column_type(self, col: ColumnSpec) -> str:
        if col.kind == "VC":
            return f"VARCHAR({col.size})"
        return self.type_names[col.kind]

    def create_table(self, spec: TableSpec) -> str:
        lines = [
            f"    {c.name} {self.column_type(c)}"
            + (f" DEFAULT {c.default}" if c.default else "")
            + ("" if c.nullable else " NOT NULL")
            for c in spec.columns
        ]
        lines.append(f"    CONSTRAINT {spec.name}_PK PRIMARY KEY ({', '.join(spec.primary_key)})")
        return f"CREATE TABLE {spec.name} (\n" + ",\n".join(lines) + "\n)"

    def create_index(self, table: str, index: IndexSpec) -> str:
        unique = "UNIQUE " if index.unique else ""
        where = " WHERE CURFLG = 'Y'" if index.current_only else ""
        return f"CREATE {unique}INDEX {index.name} ON {table} ({', '.join(index.columns)}){where}"

    def create_sequence(self, name: str, start: int = 1) -> str:
        return f"CREATE SEQUENCE {name} START WITH {start} INCREMENT BY 1"

    def next_values(self, sequence: str, n: int) -> sa.TextClause:
        """One statement that draws n values from a sequence (one round trip)."""
        raise NotImplementedError(f"{self.name} has no sequences")

    def sequence_exists(self, conn: sa.Connection, name: str, schema: str | None) -> bool:
        return sa.inspect(conn).has_sequence(name.lower(), schema=schema)

    def connect_args(self) -> dict:
        return {}


class PostgresDialect(Dialect):
    name = "postgresql"
    sqlglot_name = "postgres"

    def next_values(self, sequence: str, n: int) -> sa.TextClause:
        return sa.text(
            f"SELECT nextval('{sequence.lower()}') AS id FROM generate_series(1, :n)"
        ).bindparams(n=n)


class OracleDialect(Dialect):
    name = "oracle"
    sqlglot_name = "oracle"
    type_names = {
        "ID": "NUMBER(19)",
        "INT": "NUMBER(10)",
        "NUM": "NUMBER",
        "CLOB": "CLOB",
        "TS": "TIMESTAMP",
        "DATE": "DATE",
    }

    def column_type(self, col: ColumnSpec) -> str:
        if col.kind == "VC":
            return f"VARCHAR2({col.size})"
        return self.type_names[col.kind]

    def create_index(self, table: str, index: IndexSpec) -> str:
        if not index.current_only:
            return super().create_index(table, index)
        # Oracle has no partial index: index an expression that is NULL on old rows,
        # and Oracle does not index all-NULL keys.
        exprs = ", ".join(f"CASE WHEN CURFLG = 'Y' THEN {c} END" for c in index.columns)
        unique = "UNIQUE " if index.unique else ""
        return f"CREATE {unique}INDEX {index.name} ON {table} ({exprs})"

    def next_values(self, sequence: str, n: int) -> sa.TextClause:
        return sa.text(
            f"SELECT {sequence.upper()}.NEXTVAL AS id FROM dual CONNECT BY LEVEL <= :n"
        ).bindparams(n=n)


class SqliteDialect(Dialect):
    name = "sqlite"
    sqlglot_name = "sqlite"
    has_sequences = False
    type_names = {
        "ID": "INTEGER",
        "INT": "INTEGER",
        "NUM": "NUMERIC",
        "CLOB": "TEXT",
        "TS": "TIMESTAMP",
        "DATE": "DATE",
    }

    def create_sequence(self, name: str, start: int = 1) -> str:
        raise NotImplementedError("SQLite has no sequences")

    def sequence_exists(self, conn: sa.Connection, name: str, schema: str | None) -> bool:
        return False


DIALECTS: dict[str, Dialect] = {
    d.name: d for d in (PostgresDialect(), OracleDialect(), SqliteDialect())
}

# DMS_DBCONDTLS.DBTYP and the legacy DB_TYPE use these words
DBTYP_TO_DIALECT = {"POSTGRESQL": "postgresql", "ORACLE": "oracle", "SQLITE": "sqlite"}


def dialect_of(bind: sa.Engine | sa.Connection | str) -> Dialect:
    name = bind if isinstance(bind, str) else bind.dialect.name
    try:
        return DIALECTS[name]
    except KeyError:
        raise ValueError(
            f"unsupported database dialect {name!r}: use PostgreSQL, Oracle or SQLite"
        ) from None
