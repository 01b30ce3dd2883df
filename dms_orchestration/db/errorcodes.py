"""A database error's own code (PostgreSQL SQLSTATE, Oracle ORA- / DPY-, SQLite result
code) and whether a retry may pass, told by that code, never by the message's words.

No driver is imported: each driver's exceptions are read through the attributes it
gives them, chosen by the module the exception comes from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa

# PostgreSQL (Appendix A of its manual): whole classes, then single codes
PG_TRANSIENT_CLASSES = {
    "08": "connection exception",
    "53": "insufficient resources (too many connections, out of memory, disk full)",
}
PG_TRANSIENT_CODES = {
    "40001": "serialization_failure",
    "40P01": "deadlock_detected",
    "55P03": "lock_not_available (lock_timeout, NOWAIT)",
    "57P01": "admin_shutdown (also pg_terminate_backend)",
    "57P02": "crash_shutdown",
    "57P03": "cannot_connect_now",
}
# Oracle codes a retry may pass, beside those oracledb itself marks isrecoverable
ORACLE_TRANSIENT_CODES = {
    "ORA-00018": "maximum number of sessions exceeded",
    "ORA-00020": "maximum number of processes exceeded",
    "ORA-00054": "resource busy and acquire with NOWAIT specified or timeout expired",
    "ORA-00060": "deadlock detected while waiting for resource",
    "ORA-01033": "initialization or shutdown in progress",
    "ORA-01034": "Oracle not available",
    "ORA-01089": "immediate shutdown or close in progress",
    "ORA-03113": "end-of-file on communication channel",
    "ORA-03114": "not connected to Oracle",
    "ORA-03135": "connection lost contact",
    "ORA-08177": "can't serialize access for this transaction",
    "ORA-12170": "connect timeout occurred",
    "ORA-12514": "listener does not currently know of the service",
    "ORA-12516": "listener could not find an available handler",
    "ORA-12519": "no appropriate service handler found",
    "ORA-12520": "listener could not find an available handler for the server type",
    "ORA-12528": "all appropriate instances are blocking new connections",
    "ORA-12537": "connection closed",
    "ORA-12541": "no listener",
    "ORA-30006": "resource busy; acquire with WAIT timeout expired",
    "DPY-4011": "the database or network closed the connection",
    "DPY-6005": "cannot connect to database",
}
# SQLite primary result codes (the low byte of an extended code such as SQLITE_BUSY_SNAPSHOT)
SQLITE_TRANSIENT_CODES = {5: "SQLITE_BUSY", 6: "SQLITE_LOCKED"}


@dataclass(frozen=True)
class ErrorCode:
    """What a database error says of itself: its code (None: it carries none) and
    whether it is transient (a retry of the same work may pass)."""

    code: str | None
    transient: bool


def _is_a(error: BaseException, *names: str) -> bool:
    return any(cls.__name__ in names for cls in type(error).__mro__)


def _postgresql(error: BaseException) -> ErrorCode:
    """psycopg2 (`pgcode`) or psycopg 3 (`sqlstate`)."""
    code = getattr(error, "pgcode", None) or getattr(error, "sqlstate", None)
    if code is None:
        # no SQLSTATE: the server never answered (connection refused, closed, reset)
        return ErrorCode(None, _is_a(error, "OperationalError", "InterfaceError"))
    transient = code[:2] in PG_TRANSIENT_CLASSES or code in PG_TRANSIENT_CODES
    return ErrorCode(code, transient)


def _oracle(error: BaseException) -> ErrorCode:
    """oracledb: args[0] is its error object: `code` (the ORA- number, 0 for the driver's
    own errors), `full_code` (which names the driver's error when it translated one, as
    DPY-4011 for ORA-03113), `isrecoverable` (the database's own word, asked first)."""
    detail = error.args[0] if error.args else None
    number = getattr(detail, "code", 0) or 0
    full_code = getattr(detail, "full_code", None) or None
    code = f"ORA-{number:05d}" if number else full_code
    recoverable = bool(getattr(detail, "isrecoverable", False))
    dead = bool(getattr(detail, "is_session_dead", False))
    listed = code in ORACLE_TRANSIENT_CODES or full_code in ORACLE_TRANSIENT_CODES
    return ErrorCode(code, recoverable or dead or listed)


def _sqlite(error: BaseException) -> ErrorCode:
    """sqlite3 (Python 3.11+): `sqlite_errorcode`, `sqlite_errorname`."""
    number = getattr(error, "sqlite_errorcode", None)
    if number is None:
        return ErrorCode(None, False)
    name = getattr(error, "sqlite_errorname", None) or str(number)
    return ErrorCode(name, number & 0xFF in SQLITE_TRANSIENT_CODES)


_READERS: dict[str, Callable[[BaseException], ErrorCode]] = {
    "psycopg2": _postgresql,
    "psycopg": _postgresql,
    "oracledb": _oracle,
    "cx_Oracle": _oracle,
    "sqlite3": _sqlite,
}


def error_code(exc: BaseException) -> ErrorCode | None:
    """The code of a database error, raised through SQLAlchemy or straight from the
    driver (a raw cursor, e.g. COPY); None when exc is no database error. A connection
    SQLAlchemy found dead (`connection_invalidated`) is transient whatever its code."""
    driver_error = exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc
    reader = _READERS.get(type(driver_error).__module__.partition(".")[0])
    # (no reader for None: an error without a driver error has no code)
    found = reader(driver_error) if reader and driver_error is not None else None
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return ErrorCode(found.code if found else None, True)
    return found
