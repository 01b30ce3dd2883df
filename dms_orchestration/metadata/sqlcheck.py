"""What SQL a table cell may hold: a source or lookup query is one read-only SELECT (or
WITH ... SELECT), a column's MAPLOGIC one expression, parsed with sqlglot in the source
connection's dialect. Validation reports these rules; every load, check and preview
enforces the same rules before any statement runs, so a cell can never smuggle in a
second statement (`...; COMMIT; DROP TABLE x`) or a call that runs SQL text."""

from __future__ import annotations

import re

import sqlglot
from sqlglot import exp

from dms_orchestration.metadata.models import MappingColumn

# statements (or parts of one) that write, lock or run something
_WRITES = (
    exp.Insert,
    exp.Update,
    exp.Delete,
    exp.Merge,
    exp.Create,
    exp.Drop,
    exp.Alter,
    exp.TruncateTable,
    exp.Command,
    exp.Into,
    exp.Lock,  # SELECT ... FOR UPDATE
)
_STATEMENTS = (*_WRITES, exp.Set, exp.Transaction, exp.Grant)

# functions that run SQL given as text, write outside the query or act on the server: a
# SELECT that calls them is not a read (names upper case; Oracle packages by prefix)
_ACTING_FUNCTIONS = frozenset(
    {
        "QUERY_TO_XML",
        "QUERY_TO_XMLSCHEMA",
        "QUERY_TO_XML_AND_XMLSCHEMA",
        "CURSOR_TO_XML",
        "CURSOR_TO_XMLSCHEMA",
        "SET_CONFIG",
        "SETVAL",
        "PG_TERMINATE_BACKEND",
        "PG_CANCEL_BACKEND",
        "PG_RELOAD_CONF",
        "PG_ROTATE_LOGFILE",
        "PG_PROMOTE",
        "PG_SWITCH_WAL",
        "PG_READ_FILE",
        "PG_READ_BINARY_FILE",
        "PG_LS_DIR",
        "PG_FILE_WRITE",
        "LOAD_EXTENSION",
    }
)
_ACTING_PREFIXES = ("DBLINK", "LO_", "PG_ADVISORY", "PG_CREATE_", "PG_DROP_")
_ACTING_PACKAGES = (
    "DBMS_XMLGEN",
    "DBMS_XMLQUERY",
    "DBMS_SQL",
    "DBMS_LOCK",
    "DBMS_PIPE",
    "DBMS_SCHEDULER",
    "DBMS_JOB",
    "DBMS_AQ",
    "DBMS_JAVA",
    "UTL_HTTP",
    "UTL_FILE",
    "UTL_TCP",
    "UTL_SMTP",
    "UTL_MAIL",
    "UTL_INADDR",
)


def first_line(text: str) -> str:
    return next((line.strip() for line in str(text).splitlines() if line.strip()), str(text))


def sqlglot_message(exc: sqlglot.errors.SqlglotError) -> str:
    errors = getattr(exc, "errors", None)
    if errors:
        e = errors[0]
        where = f" (line {e.get('line')}, column {e.get('col')})" if e.get("line") else ""
        return f"{e.get('description')}{where}"
    # the plain message underlines with terminal escape codes: keep the words only
    return first_line(re.sub(r"\x1b\[[0-9;]*m", "", str(exc)))


def _acting_call(tree: exp.Expression) -> str | None:
    """The name of a function the query calls that acts rather than reads, if any."""
    for node in tree.walk():
        if not isinstance(node, exp.Func):
            continue
        name = (node.name if isinstance(node, exp.Anonymous) else node.sql_name()).upper()
        if name in _ACTING_FUNCTIONS or name.startswith(_ACTING_PREFIXES):
            return name
        if isinstance(node.parent, exp.Dot):  # an Oracle package call: PKG.FN(...)
            path = node.parent.sql().upper()
            if any(part in path.split(".") for part in _ACTING_PACKAGES):
                return path.split("(")[0]
    return None


def _read_only_problem(tree: exp.Expression) -> str | None:
    writer = next((node for node in tree.walk() if isinstance(node, _WRITES)), None)
    if writer is not None:
        return f"must only read, but contains {writer.key.upper()}"
    if acting := _acting_call(tree):
        return f"must only read, but calls {acting}"
    return None


def parse_query(sql: str, dialect: str | None) -> tuple[exp.Expression | None, str | None]:
    """The parsed query, or why it is not exactly one read-only SELECT."""
    try:
        statements = [st for st in sqlglot.parse(sql, read=dialect or None) if st is not None]
    except sqlglot.errors.SqlglotError as exc:
        return None, f"does not parse as {dialect or 'standard'} SQL: {sqlglot_message(exc)}"
    if len(statements) != 1:
        return None, f"must be exactly one statement, found {len(statements)}"
    tree = statements[0]
    if not isinstance(tree, exp.Query):
        what = f", not {tree.key.upper()}" if isinstance(tree, _STATEMENTS) else ""
        return None, f"must be a SELECT (or WITH ... SELECT) statement{what}"
    problem = _read_only_problem(tree)
    return (None, problem) if problem else (tree, None)


def expression_problem(logic: str, dialect: str | None) -> str | None:
    """Why MAPLOGIC is not one SQL expression (None when it is)."""
    try:
        statements = [st for st in sqlglot.parse(f"SELECT {logic}", read=dialect or None) if st]
    except sqlglot.errors.SqlglotError as exc:
        return (
            f"MAPLOGIC does not parse as a {dialect or 'standard'} SQL expression: "
            f"{sqlglot_message(exc)}"
        )
    tree = statements[0] if len(statements) == 1 else None
    if (
        not isinstance(tree, exp.Select)
        or len(tree.expressions) != 1
        or any(v for k, v in tree.args.items() if k != "expressions")
    ):
        return "MAPLOGIC must be one SQL expression over the source columns (alias SRC)"
    if problem := _read_only_problem(tree):
        return f"MAPLOGIC {problem}"
    if isinstance(tree.expressions[0], exp.Alias):
        return "MAPLOGIC must not name an alias: the column is named by TRGCLNM"
    return None


def column_problem(col: MappingColumn, dialect: str | None) -> str | None:
    """Why a column's MAPLOGIC breaks the rules: a lookup (KEYCLNM and VALCLNM set) holds
    one read-only query, any other column one expression. Empty logic and half-set
    lookups are the rule checks' findings, not this one's."""
    logic = (col.logic or "").strip()
    if not logic:
        return None
    if col.is_lookup:
        if not (col.lookup_key and col.lookup_value):
            return None
        _, problem = parse_query(logic, dialect)
        return f"lookup MAPLOGIC {problem}" if problem else None
    return expression_problem(logic, dialect)


def strip_sql(sql: str) -> str:
    """SQL text as it is embedded in a larger statement: no trailing `;` (it would end the
    statement early), and a trailing `--` comment ends its own line (else it would swallow
    what follows)."""
    text = sql.strip().rstrip(";").rstrip()
    return text + "\n" if "--" in text.rsplit("\n", 1)[-1] else text
