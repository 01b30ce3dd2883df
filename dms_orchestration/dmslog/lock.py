"""The load lock: a load's DMS_PRCLOG row (IP) locks its mapping and its target table,
and is tied to something that dies with its holder, so a crashed load frees it.

A `dms run` (or any load whose plan has no orchestrator run) holds a lock that dies with
its process (db.session_lock: a PostgreSQL advisory lock of the metadata database's
session, elsewhere an flock'ed file with its pid); a Dagster run is alive while Dagster
says so (the caller's `run_alive`). When a load starts and finds an IP row of its target
whose holder is gone, it closes that row FL ("holder vanished") and goes on; a live
holder refuses it (LoadLocked). Two mappings that write one table are refused outright
(TargetShared): validation refuses them too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from dms_orchestration.db import session_lock
from dms_orchestration.db.connect import write_transaction
from dms_orchestration.db.schema import dms_mapr, dms_prclog
from dms_orchestration.dmslog.writer import (
    LoadLocked,
    end_unfinished_rows,
    fit_message,
    process_row,
)
from dms_orchestration.ids.provider import next_id
from dms_orchestration.settings import Settings, dms_now
from dms_orchestration.vocabulary import Status

# whether an orchestrator run is still alive: True, False, or None (cannot tell)
RunAlive = Callable[[str], bool | None]


class TargetShared(ValueError):
    """Another current mapping writes the same target table."""


@dataclass(frozen=True)
class LoadTarget:
    """The table a mapping writes: its connection (None: the metadata database), schema
    and table, as DMS_MAPR names them. `schemas_apart`: False where one table name is
    one table whatever the schema says (SQLite)."""

    connection_id: int | None
    schema: str | None
    table: str
    schemas_apart: bool = True

    def same_table(self, schema: str | None, table: str | None) -> bool:
        if (table or "").strip().upper() != self.table.strip().upper():
            return False
        return not self.schemas_apart or _upper(schema) == _upper(self.schema)

    @property
    def shown(self) -> str:
        return f"{self.schema}.{self.table}" if self.schema else self.table


def _upper(value: str | None) -> str:
    return (value or "").strip().upper()


@dataclass(frozen=True)
class LockPlace:
    """Where holders keep their lock files, and whether every holder writes there (the
    metadata database is a file on this host), so a missing file means no holder."""

    lock_dir: Path
    files_are_local: bool


def lock_place(settings: Settings) -> LockPlace:
    """Beside an SQLite metadata database (every process that uses it is on its host);
    else under DMS_HOME (PostgreSQL needs no files: its locks are the server's)."""
    url = settings.database_url
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        db = Path(url.database)
        return LockPlace(db.parent / f"{db.name}.locks", files_are_local=True)
    return LockPlace(settings.dms_home / "locks", files_are_local=False)


def _writers(conn: sa.Connection, mapref: str, target: LoadTarget) -> list[str]:
    """Lock the DMS_MAPR rows of every current mapping writing the target's table name
    on its connection (so two starters of one table queue here); the MAPREFs of those
    that write the same table."""
    m = dms_mapr.c
    same_connection = (
        m.trgconid.is_(None) if target.connection_id is None else m.trgconid == target.connection_id
    )
    rows = conn.execute(
        sa.select(m.mapref, m.trgschm, m.trgtbnm)
        .where(
            m.curflg == "Y",
            sa.or_(
                m.mapref == mapref,
                sa.and_(same_connection, sa.func.upper(m.trgtbnm) == target.table.upper()),
            ),
        )
        .with_for_update()
    ).all()
    return sorted(
        {r.mapref for r in rows if r.mapref == mapref or target.same_table(r.trgschm, r.trgtbnm)}
    )


def _running(conn: sa.Connection, maprefs: list[str]) -> list:
    p = dms_prclog.c
    return conn.execute(
        sa.select(p.prcid, p.mapref, p.runid, p.strtdt)
        .where(p.mapref.in_(maprefs), p.prcsts == Status.IP)
        .order_by(p.prcid)
    ).all()


def _holder_alive(
    conn: sa.Connection, row, place: LockPlace, run_alive: RunAlive | None
) -> bool | None:
    if row.runid:
        return run_alive(row.runid) if run_alive else None
    return session_lock.is_held(conn, row.prcid, place.lock_dir, place.files_are_local)


def running_loads(
    engine: sa.Engine, place: LockPlace, run_alive: RunAlive | None = None
) -> list[tuple[sa.Row, bool | None]]:
    """Every load in progress (DMS_PRCLOG IP of a mapping: reports and file loads hold
    no load lock) with whether its holder is alive: False is a load stuck in IP (killed,
    or its server restarted; the next load of its mapping closes it FL), None a holder
    that cannot be checked from here."""
    p = dms_prclog.c
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(p.prcid, p.mapref, p.runid, p.strtdt)
            .where(p.prcsts == Status.IP, p.mapref.in_(sa.select(dms_mapr.c.mapref)))
            .order_by(p.prcid)
        ).all()
        return [(row, _holder_alive(conn, row, place, run_alive)) for row in rows]


def holder_of(row) -> str:
    return f"run {row.runid}" if row.runid else "a dms run process"


def _close_vanished(conn: sa.Connection, row, by: int) -> None:
    conn.execute(
        sa.update(dms_prclog)
        .where(dms_prclog.c.prcid == row.prcid, dms_prclog.c.prcsts == Status.IP)
        .values(
            prcsts=Status.FL,
            enddt=dms_now(),
            prcmsg=fit_message(
                f"holder vanished: {holder_of(row)} no longer holds the lock of this load "
                f"(killed, or its server restarted); closed when process {by} started"
            ),
        )
    )
    end_unfinished_rows(conn, row.prcid, Status.FL)


def _refusal(conn: sa.Connection, mapref: str, row, alive: bool | None, place) -> LoadLocked:
    if alive is None:
        how = (
            "its holder cannot be checked from here; if it is gone, close it: UPDATE "
            f"DMS_PRCLOG SET PRCSTS = 'FL' WHERE PRCID = {row.prcid}"
        )
    elif row.runid:
        how = "the run is still active"
    else:
        how = f"held by {session_lock.holder_description(conn, row.prcid, place.lock_dir)}"
    of = "" if row.mapref == mapref else f" of mapping {row.mapref}, which writes the same table"
    return LoadLocked(
        f"mapping {mapref} is already being loaded by process {row.prcid}{of} "
        f"({holder_of(row)}, in progress since {row.strtdt}; {how}); try again when it ends"
    )


def open_load(
    engine: sa.Engine,
    *,
    mapref: str,
    target: LoadTarget,
    place: LockPlace,
    run_alive: RunAlive | None = None,
    **row,
) -> int:
    """Open the load's DMS_PRCLOG row (IP) under the lock of its mapping and target;
    returns its PRCID. Without an orchestrator run (`runid`), this process holds the
    load's lock until the row is closed (writer.close_process)."""
    prcid = next_id(engine, "DMS_PRCLOG")
    held = None if row.get("runid") else session_lock.hold(engine, prcid, place.lock_dir)
    try:
        with write_transaction(engine) as conn:
            writers = _writers(conn, mapref, target)
            if others := [w for w in writers if w != mapref]:
                raise TargetShared(
                    f"mapping {mapref}: mapping {', '.join(others)} also writes target table "
                    f"{target.shown}: one table, one mapping (validation refuses it too)"
                )
            for running in _running(conn, writers):
                alive = _holder_alive(conn, running, place, run_alive)
                if alive is False:
                    _close_vanished(conn, running, prcid)
                else:
                    raise _refusal(conn, mapref, running, alive, place)
            conn.execute(sa.insert(dms_prclog).values(**process_row(prcid, mapref=mapref, **row)))
    except BaseException:
        if held is not None:
            held.release()
        raise
    if held is not None:
        session_lock.keep(held)
    return prcid
