"""Where the chunks of one load run side by side: threads of this process (the work is in
the database) or child processes (forked where the platform has fork, else spawned).

Children never outlive their parent: each asks the kernel to kill it when the parent
dies (Linux: PR_SET_PDEATHSIG; elsewhere a thread that watches the parent's pid), so a
killed `dms run` leaves no chunk behind to commit or to hold connections; its open
transactions roll back. A stop of the parent (Ctrl-C, SIGTERM, a stopped run) is passed
on: children get SIGINT, running statements of threads are cancelled in the server, and
the parent waits until every chunk has rolled back or committed, so the log tells what
was applied. At most `limit` chunks run at once (DMS_PARAMS MAX_PARALLEL_CHUNKS).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from multiprocessing import get_all_start_methods, get_context
from typing import Any, TypeVar

from dms_orchestration.db import interrupt
from dms_orchestration.db.connect import after_fork, dispose_all

_T = TypeVar("_T")

_PR_SET_PDEATHSIG = 1
_WATCH_S = 0.5
TICK_S = 0.5  # a waiting parent's tick (progress display), when it is given one


def _kill_me_with_parent() -> bool:
    """Linux: have the kernel SIGKILL this process when its parent dies."""
    name = ctypes.util.find_library("c")
    if not name or not hasattr(os, "getppid"):
        return False
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        set_up: bool = libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
        return set_up
    except (OSError, AttributeError):
        return False


def _watch_parent(parent: int) -> None:
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(_WATCH_S)
        os._exit(1)

    threading.Thread(target=watch, name="dms-watch-parent", daemon=True).start()


def die_with_parent(parent: int, forked: bool = True) -> None:
    """In a chunk process: end when `parent` ends (also when it died before this ran),
    and take the stop the parent passes on as SIGINT even where this process started
    with SIGINT ignored (a shell's background job: `dms run ... &`, stopped by SIGTERM)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if forked:
        after_fork()
    if not _kill_me_with_parent():
        _watch_parent(parent)
    if os.getppid() != parent:  # the parent died before the kernel watched it
        os._exit(1)


def process_pool(n: int) -> ProcessPoolExecutor:
    """n chunk processes that die with this one. Forked where the platform has fork: a
    child starts with the modules loaded (a spawned one imports them again: the cost is
    in benchmarks/README.md). No pooled connection may cross: the parent's pools are emptied
    first, the child opens its own."""
    parent = os.getpid()
    if "fork" not in get_all_start_methods():
        return ProcessPoolExecutor(
            n,
            mp_context=get_context("spawn"),
            initializer=die_with_parent,
            initargs=(parent, False),
        )
    dispose_all()
    return ProcessPoolExecutor(
        n, mp_context=get_context("fork"), initializer=die_with_parent, initargs=(parent,)
    )


def _stop_children(pool: ProcessPoolExecutor) -> None:
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        with contextlib.suppress(ProcessLookupError, OSError):
            os.kill(process.pid, signal.SIGINT)


@contextlib.contextmanager
def _stopping_on_interrupt(stop: Callable[[], None]) -> Iterator[None]:
    try:
        yield
    except BaseException as exc:
        if not isinstance(exc, Exception):  # a stop, not a chunk's failure
            stop()
        raise


def _failed(future: Future[Any]) -> bool:
    return not future.cancelled() and future.exception() is not None


def _results(futures: list[Future[_T]], tick: Callable[[], None] | None = None) -> list[_T]:
    """Their results in order (the first failure raised); `tick()` every TICK_S while
    they all run, here in the waiting thread."""
    while tick is not None:
        done, running = wait_for(futures, timeout=TICK_S, return_when=FIRST_EXCEPTION)
        if not running or any(_failed(f) for f in done):
            break
        tick()
    return [f.result() for f in futures]


def run_in_threads(
    fn: Callable[[int], _T],
    n: int,
    limit: int,
    load_key: int,
    tick: Callable[[], None] | None = None,
    children: ProcessPoolExecutor | None = None,
) -> list[_T]:
    """fn(0..n-1) on at most `limit` threads, `tick()` while they run; a stop cancels
    their running statements, and interrupts `children` (the processes the threads hand
    their chunks to, if any)."""
    with ThreadPoolExecutor(max(1, min(n, limit))) as pool:
        futures = [pool.submit(fn, i) for i in range(n)]

        def stop() -> None:
            for f in futures:
                f.cancel()
            interrupt.stop_statements(load_key)
            if children is not None:
                _stop_children(children)

        with _stopping_on_interrupt(stop):
            return _results(futures, tick)


def run_in_processes(
    fn: Callable[..., _T],
    args: tuple[Any, ...],
    n: int,
    limit: int,
    tick: Callable[[], None] | None = None,
) -> list[_T]:
    """fn(*args, i) for i in 0..n-1 in at most `limit` child processes; a stop is passed
    on to the children (SIGINT) and waited for."""
    pool = process_pool(max(1, min(n, limit)))
    try:
        futures = [pool.submit(fn, *args, i) for i in range(n)]

        def stop() -> None:
            for f in futures:
                f.cancel()
            _stop_children(pool)

        with _stopping_on_interrupt(stop):
            return _results(futures, tick)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
