"""Stopping a statement that runs in the database when the Python side is interrupted
(Ctrl-C, a stopped Dagster run): the server cancels it, the transaction rolls back.

psycopg2 waits for a statement in C, where Python signal handlers cannot run. With a wait
callback the waiting happens here, in Python: an interruption arrives between two polls,
we ask the server to cancel, wait for it to confirm, and raise the interruption itself.
"""

from __future__ import annotations

import contextlib
import select
import threading
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine.interfaces import DBAPIConnection


def _wait(conn: Any) -> None:  # a psycopg2 connection
    import psycopg2
    from psycopg2 import extensions as ext

    interrupted: BaseException | None = None
    while True:
        try:
            state = conn.poll()
            if state == ext.POLL_OK:
                break
            if state == ext.POLL_READ:
                select.select([conn.fileno()], [], [], 0.5)
            elif state == ext.POLL_WRITE:
                select.select([], [conn.fileno()], [], 0.5)
        except psycopg2.extensions.QueryCanceledError:
            if interrupted is not None:
                raise interrupted from None
            raise
        except Exception:
            raise
        except BaseException as exc:  # the interruption: KeyboardInterrupt and the like
            if interrupted is None:
                interrupted = exc
                conn.cancel()
    if interrupted is not None:
        raise interrupted


_users = 0
_users_lock = threading.Lock()


@contextlib.contextmanager
def cancellable(engine: sa.Engine) -> Iterator[None]:
    """Statements run inside are cancelled in the server when Python is interrupted.
    (Not around COPY: psycopg2 cannot COPY while a wait callback is set.) The callback is
    process-wide: it stays set while any thread is inside."""
    if engine.dialect.name != "postgresql":
        yield
        return
    from psycopg2 import extensions as ext

    global _users
    with _users_lock:
        if _users == 0:
            ext.set_wait_callback(_wait)
        _users += 1
    try:
        yield
    finally:
        with _users_lock:
            _users -= 1
            if _users == 0:
                ext.set_wait_callback(None)


# ---------------------------------------------------------------- stopping other threads

# load key -> DBAPI connections of its running chunks
_stoppable: dict[int, set[DBAPIConnection | None]] = {}
_stopped: set[int] = set()
_stoppable_lock = threading.Lock()


@contextlib.contextmanager
def stoppable(conn: sa.Connection, load_key: int) -> Iterator[None]:
    """While inside, stop_statements(load_key) from another thread cancels the statement
    this connection runs (PostgreSQL: in the server; SQLite: sqlite3's interrupt)."""
    dbapi = conn.connection.dbapi_connection
    with _stoppable_lock:
        _stoppable.setdefault(load_key, set()).add(dbapi)
    try:
        yield
    finally:
        with _stoppable_lock:
            _stoppable.get(load_key, set()).discard(dbapi)


def cancel_statement(dbapi: DBAPIConnection | None) -> None:
    """Cancel what a connection runs, from any thread (its transaction rolls back)."""
    for method in ("cancel", "interrupt"):  # psycopg2 / oracledb: cancel; sqlite3: interrupt
        if hasattr(dbapi, method):
            with contextlib.suppress(Exception):
                getattr(dbapi, method)()
            return


def stop_statements(load_key: int) -> None:
    """Cancel the running statements of one load's chunks (threads of this process);
    their transactions roll back and stopped(load_key) tells them it was a stop."""
    with _stoppable_lock:
        _stopped.add(load_key)
        connections = list(_stoppable.get(load_key, ()))
    for dbapi in connections:
        cancel_statement(dbapi)


def stopped(load_key: int) -> bool:
    with _stoppable_lock:
        return load_key in _stopped
