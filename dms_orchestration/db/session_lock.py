"""A lock that dies with its holder: what proves a `dms run` load is still alive.

PostgreSQL: a session-level advisory lock, held by a connection of the metadata database
for the load's life; the server frees it when the session ends (the process was killed,
the server restarted). Elsewhere: an flock'ed file holding the holder's pid, which the
kernel frees when the process (and the chunk processes it forked) are gone. Any other
process can ask whether a load's lock is still held, without waiting.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import threading
from pathlib import Path

import sqlalchemy as sa

# advisory lock keys of DMS loads: 'DMS' in the high bits, the load's PRCID below
_KEY_BASE = 0x444D53 << 40
_KEY_SPAN = 1 << 40


def advisory_key(prcid: int) -> int:
    return _KEY_BASE + prcid % _KEY_SPAN


def lock_file(lock_dir: Path, prcid: int) -> Path:
    return lock_dir / f"prc-{prcid}.lock"


class HeldLock:
    """The lock of one load, held by this process until release()."""

    def __init__(
        self,
        prcid: int,
        conn: sa.Connection | None = None,
        fd: int | None = None,
        path: Path | None = None,
    ) -> None:
        self.prcid = prcid
        self._conn = conn
        self._fd = fd
        self._path = path

    def release(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                self._conn.execute(
                    sa.text("SELECT pg_advisory_unlock(:k)"), {"k": advisory_key(self.prcid)}
                )
                self._conn.commit()
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                self._conn.close()
            self._conn = None
        if self._fd is not None:
            assert self._path is not None  # a lock file's descriptor comes with its path
            with contextlib.suppress(OSError):
                os.unlink(self._path)
            os.close(self._fd)  # closing the last descriptor frees the flock
            self._fd = None


def hold(engine: sa.Engine, prcid: int, lock_dir: Path) -> HeldLock:
    """Take load `prcid`'s lock for this process (before its DMS_PRCLOG row is visible,
    so nobody ever sees the row without its lock)."""
    if engine.dialect.name == "postgresql":
        conn = engine.connect()
        try:
            conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": advisory_key(prcid)})
            conn.commit()  # a session lock outlives the transaction; the session idles
        except BaseException:
            conn.close()
            raise
        return HeldLock(prcid, conn=conn)
    lock_dir.mkdir(parents=True, exist_ok=True)
    path = lock_file(lock_dir, prcid)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
    except BaseException:
        os.close(fd)
        raise
    return HeldLock(prcid, fd=fd, path=path)


def is_held(conn: sa.Connection, prcid: int, lock_dir: Path, files_are_local: bool) -> bool | None:
    """Whether load `prcid`'s holder still holds its lock: True, False (it is gone), or
    None (cannot tell: a lock file on another host). `conn` is in a transaction of the
    metadata database (PostgreSQL: the probe's own try-lock ends with it)."""
    if conn.dialect.name == "postgresql":
        free = conn.execute(
            sa.text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": advisory_key(prcid)}
        ).scalar()
        return not free
    path = lock_file(lock_dir, prcid)
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        # the holder makes its file before its row appears: no file, no holder - when
        # the files are where every holder writes them (the metadata database's host)
        return False if files_are_local else None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(path)
    return False


def holder_description(conn: sa.Connection, prcid: int, lock_dir: Path) -> str:
    """Who holds (or held) load `prcid`'s lock, for messages."""
    if conn.dialect.name == "postgresql":
        row = conn.execute(
            sa.text(
                "SELECT a.pid, a.client_addr, a.application_name FROM pg_locks l "
                "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' "
                "AND l.granted AND l.classid = :hi AND l.objid = :lo AND l.objsubid = 1"
            ),
            {"hi": advisory_key(prcid) >> 32, "lo": advisory_key(prcid) & 0xFFFFFFFF},
        ).first()
        return f"session {row.pid} ({row.client_addr or 'local'})" if row else "no session"
    with contextlib.suppress(OSError):
        return lock_file(lock_dir, prcid).read_text().strip() or "a process"
    return "no process"


# the locks this process holds, by PRCID: released when the load's row is closed
_held: dict[int, HeldLock] = {}
_held_lock = threading.Lock()


def keep(lock: HeldLock) -> None:
    with _held_lock:
        _held[lock.prcid] = lock


def release(prcid: int) -> None:
    with _held_lock:
        lock = _held.pop(prcid, None)
    if lock is not None:
        lock.release()


_inherited: list[HeldLock] = []


def _forget_in_child() -> None:
    # a forked chunk process shares its parent's locks (the flock'ed file, the session's
    # socket): it must never release them, nor let them be collected (a pooled
    # connection's finalizer would talk on the parent's socket): it keeps them, untouched
    global _held_lock
    _inherited.extend(_held.values())
    _held.clear()
    _held_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)
