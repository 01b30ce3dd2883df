"""Engines: one per database URL and process, with the settings each dialect needs.

SQLite gets WAL, a busy timeout and explicit BEGIN so that a transaction that reads and
then writes can take the write lock up front (`write_transaction`): without that, two
processes that both read first deadlock and one fails at once with "database is locked".
Chunks that write one SQLite file take turns on it (`write_turn`).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from dms_orchestration.db.rowhash import sqlite_row_hash
from dms_orchestration.settings import Settings, normalize_url

if TYPE_CHECKING:
    import sqlite3

fcntl: ModuleType | None
try:
    import fcntl
except ImportError:  # (Windows: chunks wait for the write lock, up to the busy timeout)
    fcntl = None

_lock = threading.Lock()

SQLITE_BUSY_TIMEOUT_S = 60
CONNECT_TIMEOUT_S = 10


@dataclass(frozen=True)
class PoolOptions:
    """The connection pool of an engine (SQLAlchemy's QueuePool; its defaults)."""

    pool_size: int = 5
    max_overflow: int = 10
    pool_timeout: float = 30.0  # seconds to wait for a connection when all are out
    pool_recycle: int = -1  # seconds after which a connection is replaced; -1: never


_engines: dict[tuple[str, str | None, PoolOptions | None], sa.Engine] = {}
# the pools of source and target connections' engines in this process (`using_pools`)
_connection_pools: PoolOptions | None = None


def connection_pools() -> PoolOptions | None:
    return _connection_pools


@contextlib.contextmanager
def using_pools(options: PoolOptions | None) -> Iterator[None]:
    """Source and target engines made in this block (and its forked children) get these
    pools (the Dagster resource `dms_connections` sets them for its runs)."""
    global _connection_pools
    before, _connection_pools = _connection_pools, options
    try:
        yield
    finally:
        _connection_pools = before


def _prepare_sqlite(engine: sa.Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: object) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        dbapi_conn.create_function("dms_rowhash", -1, sqlite_row_hash, deterministic=True)
        cur = dbapi_conn.cursor()
        if engine.url.database not in (None, "", ":memory:"):
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        mode = "IMMEDIATE" if conn.get_execution_options().get("dms_write_lock") else "DEFERRED"
        conn.exec_driver_sql(f"BEGIN {mode}")


def create_engine(
    url: str | sa.URL, schema: str | None = None, pools: PoolOptions | None = None
) -> sa.Engine:
    """A new engine; `schema` is where the DMS tables live (DMS_SCHEMA), if not the default."""
    url = normalize_url(url)
    kwargs: dict[str, Any] = {"pool_pre_ping": True, **(asdict(pools) if pools else {})}
    # a source host that drops packets must not hang validation or a load for minutes
    if url.get_backend_name() == "postgresql":
        # ISO dates: RWHKEY writes dates as their output text (db.dialects.row_value)
        kwargs["connect_args"] = {
            "connect_timeout": CONNECT_TIMEOUT_S,
            "options": "-c DateStyle=ISO,YMD",
        }
    if url.get_backend_name() == "oracle":
        kwargs["connect_args"] = {"tcp_connect_timeout": CONNECT_TIMEOUT_S}
    if url.get_backend_name() == "sqlite":
        if url.database not in (None, "", ":memory:"):
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False}
        schema = None  # SQLite has no schemas
    engine = sa.create_engine(url, **kwargs)
    if url.get_backend_name() == "sqlite":
        _prepare_sqlite(engine)
    if schema:
        # lower case = case-insensitive to SQLAlchemy: rendered unquoted, as plain SQL would
        engine = engine.execution_options(schema_translate_map={None: schema.lower()})
    return engine


def engine_for(
    url: str | sa.URL, schema: str | None = None, pools: PoolOptions | None = None
) -> sa.Engine:
    """The process-wide engine for a URL (pools are shared, never one per call)."""
    url = normalize_url(url)
    key = (url.render_as_string(hide_password=False), schema, pools)
    with _lock:
        if key not in _engines:
            _engines[key] = create_engine(url, schema, pools)
        return _engines[key]


def probe(url: str | sa.URL, schema: str | None = None) -> float:
    """Connect afresh (no pooled connection), log in and run SELECT 1, within the connect
    timeout; the seconds it took. Raises what the driver raised."""
    engine = create_engine(url, schema)
    began = time.perf_counter()
    try:
        with engine.connect() as conn:
            conn.execute(sa.select(sa.literal(1))).scalar()
        return time.perf_counter() - began
    finally:
        engine.dispose()


def database_key(engine: sa.Engine) -> tuple[str, str | None]:
    """Which database (and DMS schema) an engine reaches: the same in a forked child,
    whose engines are its own."""
    return engine.url.render_as_string(hide_password=False), dms_schema(engine)


def metadata_engine(settings: Settings) -> sa.Engine:
    return engine_for(settings.database_url, settings.dms_schema)


def dms_schema(engine: sa.Engine | sa.Connection) -> str | None:
    """The schema the DMS tables are in (None: the connection's default)."""
    return (engine.get_execution_options().get("schema_translate_map") or {}).get(None)


@contextlib.contextmanager
def write_transaction(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A transaction that will write: on SQLite it takes the write lock at BEGIN."""
    with engine.connect() as conn:
        conn = conn.execution_options(dms_write_lock=True)
        with conn.begin():
            yield conn


@contextlib.contextmanager
def unwaiting_write_transaction(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A write that gives up at once rather than wait for another writer (a chunk's own
    transaction on the same SQLite file would wait forever): on SQLite, "database is
    locked" right away. Other databases lock rows, not the file: a plain transaction."""
    if engine.dialect.name != "sqlite":
        with engine.begin() as conn:
            yield conn
        return
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection  # (outside SQLAlchemy's transaction)
        assert raw is not None  # an open connection has its DBAPI connection
        raw.execute("PRAGMA busy_timeout = 0")
        try:
            with conn.execution_options(dms_write_lock=True).begin():
                yield conn
        finally:
            raw.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_S * 1000}")


@contextlib.contextmanager
def write_turn(engine: sa.Engine) -> Iterator[None]:
    """Held while a chunk writes: on a SQLite file, one chunk at a time, of any load, in
    any thread or process (`dms run --chunks N`, Dagster steps), waiting as long as it
    takes; SQLite's own write lock would make a chunk that waits longer than the busy
    timeout fail with "database is locked". An flock on a file next to the database: one
    holder per open file, let go if its process dies. Other databases: no turns."""
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if fcntl is None or database in (None, "", ":memory:"):
        yield
        return
    with open(f"{Path(database).resolve()}.dms-write-lock", "a") as turn:
        fcntl.flock(turn, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(turn, fcntl.LOCK_UN)


def after_fork() -> None:
    """In a forked child: a lock another thread of the parent held stays held; the
    engines of the parent (emptied before the fork) are not the child's."""
    global _lock
    _lock = threading.Lock()
    _engines.clear()


def dispose_all() -> None:
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
