"""Check mappings before they load: every finding of a mapping in one pass, written to
DMS_MAPERR, and each column's expression compiled against its source (LGVRFYFLG)."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from sqlglot import exp

from dms_orchestration.db import schema as s
from dms_orchestration.db.connect import write_transaction
from dms_orchestration.db.connections import connection_engine
from dms_orchestration.db.dialects import DIALECTS, dialect_of
from dms_orchestration.db.sqltext import text_with_params
from dms_orchestration.ids.provider import next_ids
from dms_orchestration.metadata.catalog import load_catalog
from dms_orchestration.metadata.datatypes import UnknownDataType, parse_data_type
from dms_orchestration.metadata.models import Catalog, Connection, Finding, Mapping, MappingColumn
from dms_orchestration.metadata.sqlcheck import column_problem, first_line, parse_query, strip_sql
from dms_orchestration.settings import ConfigError, Settings
from dms_orchestration.vocabulary import (
    CheckpointStrategy,
    Combine,
    DeleteHandling,
    ScdType,
    Severity,
    TargetType,
    codes,
)

IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
MAX_IDENTIFIER = 128
OLD_ORACLE_IDENTIFIER = 30  # Oracle before 12.2
AUDIT_COLUMNS = frozenset({"SKEY", "RWHKEY", "RECCRDT", "RECUPDT", "CURFLG", "VLDFRM", "VLDTO"})

ERRMSG_SIZE = s.TABLES_BY_NAME["DMS_MAPERR"].column("ERRMSG").size
TRGCLNM_SIZE = s.TABLES_BY_NAME["DMS_MAPERR"].column("TRGCLNM").size


@dataclass
class ValidationReport:
    findings: list[Finding] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)

    @property
    def has_errors(self) -> bool:
        return any(f.severity == Severity.ERROR for f in self.findings)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == Severity.ERROR]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == Severity.WARNING]

    def for_mapping(self, ref: str) -> list[Finding]:
        return [f for f in self.findings if f.mapref == ref]


class _Findings:
    def __init__(self, mapref: str) -> None:
        self.mapref = mapref
        self.items: list[Finding] = []

    def error(self, message: str, column: str | None = None) -> None:
        self.items.append(
            Finding(mapref=self.mapref, column=column, severity=Severity.ERROR, message=message)
        )

    def warning(self, message: str, column: str | None = None) -> None:
        self.items.append(
            Finding(mapref=self.mapref, column=column, severity=Severity.WARNING, message=message)
        )


def _code(value: str | None) -> str | None:
    """Codes compare case-insensitively; blank is the same as NULL."""
    value = (value or "").strip().upper()
    return value or None


def _clip(text: str, size: int) -> str:
    # the column holds `size` bytes on Oracle (VARCHAR2 byte semantics), not characters
    return text.encode("utf-8")[:size].decode("utf-8", errors="ignore")


def _db_message(exc: BaseException) -> str:
    if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None:
        return first_line(str(exc.orig))
    return first_line(str(exc))


# ---------------------------------------------------------------- static checks


def _check_identifier(
    out: _Findings, what: str, name: str | None, column: str | None = None, required: bool = True
) -> bool:
    if name is None or not name.strip():
        if required:
            out.error(f"{what} is missing", column)
        return not required
    if not IDENTIFIER.match(name):
        out.error(
            f"{what} {name!r} is not a valid name: start with a letter, then letters, digits or _",
            column,
        )
        return False
    if len(name) > MAX_IDENTIFIER:
        out.error(f"{what} {name!r} is longer than {MAX_IDENTIFIER} characters", column)
        return False
    if len(name) > OLD_ORACLE_IDENTIFIER:
        out.warning(
            f"{what} {name!r} is longer than {OLD_ORACLE_IDENTIFIER} characters "
            "(too long for Oracle before 12.2)",
            column,
        )
    return True


def _check_mapping_codes(m: Mapping, out: _Findings) -> None:
    if _code(m.target_type) not in codes(TargetType):
        out.error(f"TRGTBTYP {m.target_type!r} is not {' | '.join(TargetType)}")
    handling = _code(m.delete_handling)
    if m.delete_handling is not None and handling not in (None, *DeleteHandling):
        out.error(f"DELHNDL {m.delete_handling!r} is not {' | '.join(DeleteHandling)} or empty")
    strategy = _code(m.checkpoint_strategy)
    if strategy is not None and strategy not in codes(CheckpointStrategy):
        out.error(
            f"CHKPNTSTRTGY {m.checkpoint_strategy!r} is not "
            f"{' | '.join(CheckpointStrategy)} or empty"
        )
    if strategy == CheckpointStrategy.KEY and not (m.checkpoint_column or "").strip():
        out.error("CHKPNTSTRTGY KEY needs CHKPNTCLNM, the source column to track")
    if strategy == CheckpointStrategy.PYTHON and not (m.checkpoint_function or "").strip():
        out.error("CHKPNTSTRTGY PYTHON needs CHKPNTFN, the registered checkpoint function")


def _check_key(m: Mapping, out: _Findings) -> None:
    keys = [c for c in m.columns if c.is_key]
    if not keys:
        out.error("no business key: mark at least one column TRGKEYFLG='Y'")
        return
    seen: dict[int, str] = {}
    for col in keys:
        if col.key_seq is None:
            if len(keys) > 1:
                out.warning(
                    "TRGKEYSEQ is empty in a multi-column key: the key is ordered by name",
                    col.name,
                )
            continue
        if col.key_seq in seen:
            out.error(
                f"TRGKEYSEQ {col.key_seq} is also used by key column {seen[col.key_seq]}", col.name
            )
        else:
            seen[col.key_seq] = col.name or "?"


def _check_column(m: Mapping, col: MappingColumn, out: _Findings) -> None:
    name = col.name
    if _check_identifier(out, "target column name TRGCLNM", name, name) and (
        name.upper() in AUDIT_COLUMNS
    ):
        out.error(
            f"{name} is an audit column the loader adds to every target table "
            f"({', '.join(sorted(AUDIT_COLUMNS))}): rename it",
            name,
        )
    try:
        parse_data_type(col.data_type)
    except UnknownDataType as exc:
        out.error(f"TRGCLDTYP: {exc}", name)
    if not col.is_key:
        scd = (col.scd_type or "").strip()
        if not scd:
            out.warning("SCDTYP is empty: treated as 1 (overwrite)", name)
        elif scd not in codes(ScdType):
            out.error(f"SCDTYP {col.scd_type!r} is not 1 or 2", name)
    combine = _code(col.combine)
    if combine is not None and combine not in codes(Combine):
        out.error(f"MAPCMBCD {col.combine!r} is not {' | '.join(Combine)}", name)
    has_key = bool((col.lookup_key or "").strip())
    has_value = bool((col.lookup_value or "").strip())
    if has_key != has_value:
        out.error("a lookup needs both KEYCLNM and VALCLNM (only one is set)", name)
    elif has_key:
        _check_identifier(out, "lookup KEYCLNM", col.lookup_key, name)
        _check_identifier(out, "lookup VALCLNM", col.lookup_value, name)
        if len(m.business_key) != 1:
            out.error(
                "a lookup needs a single-column business key to match on; this mapping's "
                f"key has {len(m.business_key)} columns",
                name,
            )
    if not (col.logic or "").strip():
        out.error("MAPLOGIC is empty: give the SQL expression for this column", name)


def _check_combine_codes(m: Mapping, out: _Findings) -> None:
    if not any(_code(c.combine) for c in m.columns):
        return
    for col in m.columns_in_order:
        if col.is_key and _code(col.combine):
            out.error(
                "a business key column must not have MAPCMBCD (rows are grouped by it)", col.name
            )
        elif not col.is_key and not _code(col.combine):
            out.error(
                "MAPCMBCD is empty, but other columns have one: rows are grouped by the "
                "business key, so every non-key column needs one",
                col.name,
            )


def _check_duplicates(m: Mapping, out: _Findings) -> None:
    by_name: dict[str, list[MappingColumn]] = defaultdict(list)
    for col in m.columns_in_order:
        if col.name:
            by_name[col.name.upper()].append(col)
    for cols in by_name.values():
        if len(cols) > 1:
            for col in cols:
                out.error(f"target column {col.name} is listed {len(cols)} times", col.name)


def _target_key(m: Mapping) -> tuple[int | None, str, str] | None:
    if not m.target_table:
        return None
    con_id = m.target_connection.id if m.target_connection else m.target_connection_id
    return (con_id, (m.target_schema or "").strip().upper(), m.target_table.strip().upper())


def _check_mapping(m: Mapping, owners: dict, out: _Findings) -> None:
    _check_identifier(out, "MAPREF", m.ref)
    _check_identifier(out, "target schema TRGSCHM", m.target_schema, required=False)
    _check_identifier(out, "target table TRGTBNM", m.target_table)
    _check_identifier(out, "checkpoint column CHKPNTCLNM", m.checkpoint_column, required=False)
    _check_mapping_codes(m, out)
    if m.target_connection_id is not None and m.target_connection is None:
        out.error(f"TRGCONID {m.target_connection_id} is not a current connection")
    if not m.columns:
        out.error("the mapping has no current columns (DMS_MAPRDTL)")
    _check_key(m, out)
    for col in m.columns_in_order:
        _check_column(m, col, out)
    _check_combine_codes(m, out)
    _check_duplicates(m, out)
    key = _target_key(m)
    others = [ref for ref in owners.get(key, ()) if ref != m.ref] if key else []
    for other in others:
        table = f"{m.target_schema}.{m.target_table}" if m.target_schema else m.target_table
        out.error(f"mapping {other} also writes target table {table}: one table, one mapping")


# ---------------------------------------------------------------- SQL text checks


def _quoted(node: exp.Expression | None) -> bool:
    return isinstance(node, exp.Identifier) and bool(node.quoted)


def _read_tables(tree: exp.Expression) -> list[exp.Table]:
    ctes = {cte.alias.upper() for cte in tree.find_all(exp.CTE) if cte.alias}
    return [t for t in tree.find_all(exp.Table) if t.name and t.name.upper() not in ctes]


# ---------------------------------------------------------------- source connections


@dataclass
class _Source:
    label: str
    database: str  # where it points, to match another mapping's target database
    dialect: str | None = None  # sqlglot dialect
    engine: sa.Engine | None = None
    unreachable: str | None = None


def _database_key(connection: Connection | None, settings: Settings) -> str:
    try:
        url = (
            connection.sqlalchemy_url(dms_home=settings.dms_home)
            if connection
            else (settings.database_url)
        )
    except ConfigError:
        return f"CONID {connection.id}"
    return url.set(password=None).render_as_string(hide_password=True)


class _Sources:
    """One engine and one reachability check per source connection and run."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._cache: dict[int | None, _Source] = {}

    def get(self, connection: Connection | None) -> _Source:
        key = connection.id if connection else None
        if key not in self._cache:
            self._cache[key] = self._open(connection)
        return self._cache[key]

    def _open(self, connection: Connection | None) -> _Source:
        label = (
            f"source connection {connection.name!r}" if connection else ("the metadata database")
        )
        source = _Source(label=label, database=_database_key(connection, self.settings))
        try:
            if connection is not None:
                source.dialect = DIALECTS[connection.dialect_name].sqlglot_name
                url = connection.sqlalchemy_url(dms_home=self.settings.dms_home)
                # SQLite would create an empty file and report "no such table" instead
                file = url.database if url.get_backend_name() == "sqlite" else None
                if file and file != ":memory:" and not Path(file).exists():
                    raise ConfigError(f"database file {url.database} does not exist")
            source.engine = connection_engine(connection, self.settings)
            source.dialect = dialect_of(source.engine).sqlglot_name
            with source.engine.connect():
                pass
        except (ConfigError, ValueError, ImportError, sa.exc.SQLAlchemyError) as exc:
            reason = _db_message(exc)
            source.unreachable = f"{label} is unreachable: {reason}"
        return source


# ---------------------------------------------------------------- live checks


def _probe(conn: sa.Connection, sql: str) -> tuple[list[str] | None, str | None]:
    """Run a WHERE 1=0 query in a transaction that is rolled back: (result keys, error)."""
    clause = text_with_params(sql)
    tx = conn.begin()
    try:
        result = conn.execute(clause)
        keys = list(result.keys())
        result.close()
        return keys, None
    except sa.exc.SQLAlchemyError as exc:
        return None, _db_message(exc)
    finally:
        try:
            tx.rollback()
        except sa.exc.SQLAlchemyError:
            pass  # the connection broke: the next probe reports it


@dataclass
class _Live:
    """What the live checks of one mapping need and produce."""

    m: Mapping
    source: _Source
    tree: exp.Expression
    pending_targets: dict[tuple[str, str], list[tuple[str, str]]]  # (db, TABLE) -> owners
    out: _Findings
    verified: dict[int, str | None]

    def quote(self, name: str) -> str:
        # metadata names are case-insensitive: lower case is SQLAlchemy's spelling of a
        # case-insensitive name, rendered unquoted (so folded as plain SQL is) unless reserved
        return self.source.engine.dialect.identifier_preparer.quote(name.lower())

    def pending(self, tree: exp.Expression) -> list[tuple[str, str]]:
        """(table, mapping) for each table the query reads that is missing but that another
        current mapping creates on this database on its first load."""
        found = []
        inspector = sa.inspect(self.source.engine)
        for table in _read_tables(tree):
            owners = [
                (schema, ref)
                for schema, ref in self.pending_targets.get(
                    (self.source.database, table.name.upper()), ()
                )
                if ref != self.m.ref and (not table.db or not schema or schema == table.db.upper())
            ]
            if not owners:
                continue
            name = table.name if _quoted(table.this) else table.name.lower()
            schema = (
                (table.db if _quoted(table.args.get("db")) else table.db.lower())
                if (table.db)
                else None
            )
            try:
                exists = inspector.has_table(name, schema=schema)
            except sa.exc.SQLAlchemyError:
                exists = True  # cannot tell: report the database's own error instead
            if not exists:
                shown = f"{table.db}.{table.name}" if table.db else table.name
                found.append((shown, owners[0][1]))
        return found

    def run(self, conn: sa.Connection) -> None:
        m, out = self.m, self.out
        source_sql = strip_sql(m.source.sql)
        keys, error = _probe(conn, f"SELECT * FROM (\n{source_sql}\n) SRC WHERE 1=0")
        if error:
            pending = self.pending(self.tree)
            for table, other in pending:
                out.warning(
                    f"source SQL not verified: reads {table}, which mapping {other} creates "
                    "on its first load"
                )
            if not pending:
                out.error(
                    f"source SQL {m.source.code} does not run on {self.source.label}: {error}"
                )
            return
        source_columns = {k.upper() for k in keys}
        if (
            m.checkpoint_column
            and IDENTIFIER.match(m.checkpoint_column)
            and (m.checkpoint_column.upper() not in source_columns)
        ):
            out.error(
                f"checkpoint column CHKPNTCLNM {m.checkpoint_column} is not a column of the "
                f"source query (it has {', '.join(sorted(source_columns))})"
            )
        self._expressions(conn, source_sql)
        self._lookups(conn)

    def _expressions(self, conn: sa.Connection, source_sql: str) -> None:
        cols = [
            c
            for c in self.m.columns_in_order
            if not c.is_lookup and (c.logic or "").strip() and c.id not in self.verified
        ]
        if not cols:
            return

        def wrap(exprs: Iterable[str]) -> str:
            select = ", ".join(f"{e}\n AS c{i}" for i, e in enumerate(exprs, 1))
            return f"SELECT {select} FROM (\n{source_sql}\n) SRC WHERE 1=0"

        _, combined_error = _probe(conn, wrap(c.logic.strip() for c in cols))
        if not combined_error:
            self.verified.update((c.id, "Y") for c in cols)
            return
        failed = 0
        for col in cols:
            _, error = _probe(conn, wrap([col.logic.strip()]))
            self.verified[col.id] = "N" if error else "Y"
            if error:
                failed += 1
                self.out.error(
                    f"MAPLOGIC does not compile against {self.source.label}: {error}", col.name
                )
        if not failed:
            self.out.error(
                f"the column expressions compile one by one but not together: {combined_error}"
            )

    def _lookups(self, conn: sa.Connection) -> None:
        for col in self.m.columns_in_order:
            if col.id in self.verified or not (
                col.is_lookup
                and col.lookup_key
                and col.lookup_value
                and IDENTIFIER.match(col.lookup_key)
                and IDENTIFIER.match(col.lookup_value)
            ):
                continue
            tree, problem = parse_query(col.logic or "", self.source.dialect)
            if problem:
                continue  # reported by the static pass
            sql = (
                f"SELECT L.{self.quote(col.lookup_key)}, L.{self.quote(col.lookup_value)} "
                f"FROM (\n{strip_sql(col.logic)}\n) L WHERE 1=0"
            )
            _, error = _probe(conn, sql)
            if not error:
                self.verified[col.id] = "Y"
                continue
            pending = self.pending(tree)
            for table, other in pending:
                self.out.warning(
                    f"lookup not verified: reads {table}, which mapping {other} creates on its "
                    "first load",
                    col.name,
                )
            if not pending:
                self.verified[col.id] = "N"
                self.out.error(
                    f"lookup query does not run on {self.source.label}: {error}", col.name
                )


def _pending_targets(catalog: Catalog, settings: Settings) -> dict:
    """Current targets by (database, TABLE) -> [(SCHEMA, mapref)]."""
    targets: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    keys: dict[int | None, str] = {}
    for m in catalog.mappings.values():
        if not m.target_table:
            continue
        con = m.target_connection
        con_id = con.id if con else None
        if con_id not in keys:
            keys[con_id] = _database_key(con, settings)
        targets[(keys[con_id], m.target_table.strip().upper())].append(
            ((m.target_schema or "").strip().upper(), m.ref)
        )
    return targets


def _check_source(
    m: Mapping,
    sources: _Sources,
    targets: dict,
    out: _Findings,
    verified: dict[int, str | None],
) -> None:
    if not (m.source_sql_code or "").strip():
        out.error("MAPRSQLCD is missing: name the source query (DMS_MAPRSQL)")
        return
    if m.source is None:
        out.error(f"MAPRSQLCD {m.source_sql_code} is not a current source query in DMS_MAPRSQL")
        return
    if not (m.source.sql or "").strip():
        out.error(f"source query {m.source.code} has no SQL text (MAPRSQL is empty)")
        return
    if m.source.connection_id is not None and m.source_connection is None:
        out.error(
            f"source query {m.source.code}: SQLCONID {m.source.connection_id} is not a "
            "current connection"
        )
        return
    source = sources.get(m.source_connection)
    if source.dialect is None:  # not even the dialect is known (bad DBTYP)
        out.error(source.unreachable or f"{source.label}: unknown database type")
        return
    tree, refused = _check_sql_text(m, source.dialect, out)
    verified.update((col.id, "N") for col in refused)
    if source.unreachable:
        out.error(source.unreachable)
        return
    if tree is None:
        return
    live = _Live(m, source, tree, targets, out, verified)
    try:
        with source.engine.connect() as conn:
            live.run(conn)
    except sa.exc.DBAPIError as exc:
        out.error(f"{source.label} is unreachable: {_db_message(exc)}")


# ---------------------------------------------------------------- writing results


def _now(settings: Settings) -> datetime:
    return datetime.now(settings.timezone).replace(tzinfo=None, microsecond=0)


def _replace_findings(
    conn: sa.Connection, ref: str, findings: list[Finding], ids: list[int], now: datetime
) -> None:
    """The DMS_MAPERR rows of `ref`, replaced by `findings`."""
    err = s.dms_maperr
    conn.execute(sa.delete(err).where(err.c.mapref == ref))
    if findings:
        conn.execute(
            sa.insert(err),
            [
                {
                    "maperrid": id_,
                    "mapref": f.mapref,
                    "trgclnm": f.column[:TRGCLNM_SIZE] if f.column else None,
                    "errtyp": f.severity,
                    "errmsg": _clip(f.message, ERRMSG_SIZE),
                    "reccrdt": now,
                }
                for id_, f in zip(ids, findings, strict=True)
            ],
        )


def record_findings(
    engine: sa.Engine, settings: Settings, ref: str, messages: list[str]
) -> list[Finding]:
    """ERROR findings of a definition that is not a mapping (a file load, a report, by
    its FLUPLDREF / RPRTREF) in DMS_MAPERR, replacing its earlier ones."""
    findings = [
        Finding(mapref=ref, column=None, severity=Severity.ERROR, message=m) for m in messages
    ]
    ids = next_ids(engine, "DMS_MAPERR", len(findings)) if findings else []
    with write_transaction(engine) as conn:
        _replace_findings(conn, ref, findings, ids, _now(settings))
    return findings


def _save(
    engine: sa.Engine,
    settings: Settings,
    m: Mapping,
    findings: list[Finding],
    verified: dict[int, str | None],
) -> None:
    # reserved before our transaction: on SQLite the provider's own write transaction
    # would wait for ours
    ids = next_ids(engine, "DMS_MAPERR", len(findings)) if findings else []
    now = _now(settings)
    dtl = s.dms_maprdtl
    with write_transaction(engine) as conn:
        _replace_findings(conn, m.ref, findings, ids, now)
        for col in m.columns:
            flag = verified.get(col.id)
            # only rows whose flag changes: RECUPDT then says when validation changed it
            conn.execute(
                sa.update(dtl)
                .where(
                    dtl.c.mapdtlid == col.id,
                    dtl.c.curflg == "Y",
                    dtl.c.lgvrfyflg.is_distinct_from(flag),
                )
                .values(lgvrfyflg=flag, recupdt=now)
            )


# ---------------------------------------------------------------- entry point


def _resolve(refs: list[str], catalog: Catalog) -> tuple[list[str], list[str]]:
    """(known MAPREFs, unknown names); an exact name wins, else a case-insensitive match."""
    by_upper: dict[str, list[str]] = defaultdict(list)
    for ref in catalog.mappings:
        by_upper[ref.upper()].append(ref)
    known, unknown = [], []
    for name in dict.fromkeys(refs):
        if name in catalog.mappings:
            known.append(name)
        elif len(by_upper.get(name.upper(), [])) == 1:
            known.append(by_upper[name.upper()][0])
        else:
            unknown.append(name)
    return list(dict.fromkeys(known)), unknown


def validate_mappings(
    engine: sa.Engine,
    settings: Settings,
    maprefs: list[str] | None = None,
    catalog: Catalog | None = None,
) -> ValidationReport:
    """Validate current mappings (all when `maprefs` is None), replace their DMS_MAPERR rows
    and set LGVRFYFLG; unknown names are reported, not written."""
    catalog = catalog if catalog is not None else load_catalog(engine)
    report = ValidationReport()
    if maprefs is None:
        known, unknown = sorted(catalog.mappings), []
    else:
        known, unknown = _resolve(list(maprefs), catalog)
    for name in unknown:
        report.findings.append(
            Finding(
                mapref=name,
                column=None,
                severity=Severity.ERROR,
                message=f"no current mapping {name!r} in DMS_MAPR",
            )
        )
    owners: dict = defaultdict(list)
    for m in catalog.mappings.values():
        if (key := _target_key(m)) is not None:
            owners[key].append(m.ref)
    targets = _pending_targets(catalog, settings)
    sources = _Sources(settings)
    for ref in known:
        m = catalog.mappings[ref]
        out = _Findings(ref)
        verified: dict[int, str | None] = {}
        _check_mapping(m, owners, out)
        _check_source(m, sources, targets, out, verified)
        _save(engine, settings, m, out.items, verified)
        report.findings.extend(out.items)
        report.checked.append(ref)
    return report


def rule_findings(mapping: Mapping, dialect: str | None = None) -> list[Finding]:
    """The checks that need no database (no live compile, no other mappings): what a
    load refuses to start with, the SQL text rules included (parsed in the source's
    sqlglot `dialect`; None: sqlglot's standard SQL): a cell's SQL is input, never code."""
    out = _Findings(mapping.ref)
    _check_mapping(mapping, {}, out)
    _check_sql_text(mapping, dialect, out)
    return out.items


def _check_sql_text(
    m: Mapping, dialect: str | None, out: _Findings
) -> tuple[exp.Expression | None, list[MappingColumn]]:
    """The source query and every column's MAPLOGIC against the SQL text rules; returns
    the parsed source query (None when it is missing or breaks them) and the columns
    that break them."""
    tree = None
    if m.source is not None and (m.source.sql or "").strip():
        tree, problem = parse_query(m.source.sql, dialect)
        if problem:
            out.error(f"source SQL {m.source.code} {problem}")
    refused = []
    for col in m.columns_in_order:
        if problem := column_problem(col, dialect):
            out.error(problem, col.name)
            refused.append(col)
    return tree, refused
