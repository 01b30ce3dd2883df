"""`dms health`: is everything a load needs there? One check per thing, for a person or a
monitoring probe.

- the metadata database (reached, logged in, the DMS tables there), with its latency;
- every current connection of DMS_DBCONDTLS (reached, login works, latency; a password
  variable that is not set is a failure of that connection);
- the Dagster instance (DAGSTER_HOME, else <DMS_HOME>/dagster when it holds a
  dagster.yaml): its storage answers, and each daemon the instance needs sent a heartbeat
  lately; with no instance these are skipped, said so;
- loads stuck in IP: DMS_PRCLOG rows of mappings whose holder is gone (a killed process,
  a finished Dagster run);
- requests stuck in CLAIMED: DMS_PRCREQ rows claimed longer than twice the claim timeout
  (DMS_PARAMS CLAIM_TIMEOUT_SECONDS) whose run is not running (or that have none).
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from dms_orchestration.db.connect import metadata_engine, probe
from dms_orchestration.db.connections import probe_connection
from dms_orchestration.db.schema import dms_prclog
from dms_orchestration.dmslog.lock import RunAlive, holder_of, lock_place, running_loads
from dms_orchestration.metadata.catalog import current_connections, load_params
from dms_orchestration.metadata.models import Connection
from dms_orchestration.metadata.requests import count_in, queue_settings, stale_claims
from dms_orchestration.settings import Settings
from dms_orchestration.vocabulary import RequestStatus

PROBES_AT_ONCE = 8  # connections `dms health` logs in to at the same time
HEARTBEAT_AGE_S = 120  # a daemon heartbeats every 30 s: four missed is a dead daemon
LISTED = 5  # stuck loads / requests named in a check's line; the count says the rest


@dataclass(frozen=True)
class Check:
    check: str  # metadata_database | connection:<CONNM> | dagster_storage | ...
    status: str  # ok | fail | skip
    detail: str
    latency_ms: float | None = None

    @property
    def line(self) -> str:
        latency = f" ({self.latency_ms:.0f} ms)" if self.latency_ms is not None else ""
        return f"{self.status.upper():<4} {self.check}: {self.detail}{latency}"


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return (text.splitlines() or [type(exc).__name__])[0]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def _listed(names: list[str]) -> str:
    """The first LISTED names, and how many more there are."""
    more = f" and {len(names) - LISTED} more" if len(names) > LISTED else ""
    return ", ".join(names[:LISTED]) + more


def healthy(checks: list[Check]) -> bool:
    return all(c.status != "fail" for c in checks)


def report(checks: list[Check]) -> dict:
    """The checks as `dms health --json` prints them."""
    return {
        "status": "healthy" if healthy(checks) else "unhealthy",
        "checks": [asdict(c) for c in checks],
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }


# ------------------------------------------------------------------ the databases


def metadata_check(settings: Settings) -> Check:
    name = "metadata_database"
    where = f"{settings.database_url.get_backend_name()} ({settings.source})"
    try:
        seconds = probe(settings.database_url, settings.dms_schema)
        with metadata_engine(settings).connect() as conn:
            conn.execute(sa.select(dms_prclog.c.prcid).limit(1)).all()
    except Exception as exc:  # noqa: BLE001 - any failure is the check's answer
        return Check(name, "fail", f"{where}: {_first_line(exc)}")
    return Check(name, "ok", where, _ms(seconds))


def connection_checks(meta: sa.Engine, settings: Settings) -> list[Check]:
    """A login to each current connection, side by side (a host that does not answer
    costs its connect timeout once, not once per connection after it)."""
    connections, problems = current_connections(meta)
    with ThreadPoolExecutor(max(1, min(PROBES_AT_ONCE, len(connections)))) as pool:
        checks = list(pool.map(lambda con: _connection_check(con, settings), connections))
    unread = sorted(set(problems) - {c.name for c in connections})
    checks += [Check(f"connection:{n}", "fail", "; ".join(problems[n])) for n in unread]
    return checks


def _connection_check(con: Connection, settings: Settings) -> Check:
    name, where = f"connection:{con.name}", f"{con.db_type} {con.host or con.database or ''}"
    try:
        seconds = probe_connection(con, settings)
    except Exception as exc:  # noqa: BLE001
        return Check(name, "fail", f"{where.strip()}: {_first_line(exc)}")
    return Check(name, "ok", f"{where.strip()}: reached, login works", _ms(seconds))


def stuck_loads_check(meta: sa.Engine, settings: Settings, run_alive: RunAlive | None) -> Check:
    loads = running_loads(meta, lock_place(settings), run_alive)
    stuck = [row for row, alive in loads if alive is False]
    unknown = sum(1 for _, alive in loads if alive is None)
    if stuck:
        named = _listed(
            [f"{r.mapref} (PRCID {r.prcid}, {holder_of(r)}, since {r.strtdt:%Y-%m-%d %H:%M})"
             for r in stuck]
        )  # fmt: skip
        return Check(
            "stuck_loads",
            "fail",
            f"{len(stuck)} load(s) IP whose holder is gone: {named}; the next load of "
            "each mapping closes it FL, or close it by hand",
        )
    also = f" ({unknown} whose holder cannot be checked from here)" if unknown else ""
    return Check("stuck_loads", "ok", f"{len(loads)} load(s) in progress, none stuck{also}")


def stuck_requests_check(meta: sa.Engine, run_alive: RunAlive | None) -> Check:
    timeout = queue_settings(load_params(meta)).claim_timeout
    stale = stale_claims(meta, 2 * timeout)
    stuck = [r for r in stale if not r.run_id or (run_alive and run_alive(r.run_id) is False)]
    claimed = count_in(meta, RequestStatus.CLAIMED)
    if stuck:
        named = _listed(
            [f"{r.id} ({r.type} {r.mapref or r.job_id or ''}".rstrip() + f", since {r.updated})"
             for r in stuck]
        )  # fmt: skip
        return Check(
            "stuck_requests",
            "fail",
            f"{len(stuck)} request(s) CLAIMED longer than {2 * timeout.seconds} s with no "
            f"running run: {named}; is the queue sensor running?",
        )
    return Check("stuck_requests", "ok", f"{claimed} request(s) CLAIMED, none stuck")


# ------------------------------------------------------------------ Dagster


def instance_home(settings: Settings) -> Path | None:
    """The Dagster instance the runs use: DAGSTER_HOME, else <DMS_HOME>/dagster (what
    `dms ui` and `dms demo` use) when it holds a dagster.yaml; None: no instance."""
    if os.environ.get("DAGSTER_HOME"):
        return Path(os.environ["DAGSTER_HOME"])
    home = settings.dms_home / "dagster"
    return home if (home / "dagster.yaml").is_file() else None


@contextlib.contextmanager
def dagster_instance(settings: Settings, checks: list[Check], heartbeat_age_s: float):
    """The Dagster instance, its storage and daemon checks added to `checks`; yields
    the instance, or None when there is none (or its storage failed)."""
    home = instance_home(settings)
    if home is None:
        why = "no DAGSTER_HOME, and no dagster.yaml under <DMS_HOME>/dagster"
        checks += [Check(n, "skip", why) for n in ("dagster_storage", "dagster_daemon")]
        yield None
        return
    import dagster as dg

    began = time.perf_counter()
    try:
        instance = dg.DagsterInstance.from_config(str(home))
    except Exception as exc:  # noqa: BLE001
        checks.append(Check("dagster_storage", "fail", f"{home}: {_first_line(exc)}"))
        yield None
        return
    with instance:
        try:
            instance.get_runs(limit=1)
            heartbeats = instance.get_daemon_heartbeats()
            required = instance.get_required_daemon_types()
        except Exception as exc:  # noqa: BLE001
            checks.append(Check("dagster_storage", "fail", f"{home}: {_first_line(exc)}"))
            yield None
            return
        storage = type(instance.run_storage).__name__
        checks.append(
            Check("dagster_storage", "ok", f"{home} ({storage})", _ms(time.perf_counter() - began))
        )
        checks += daemon_checks(heartbeats, required, heartbeat_age_s)
        yield instance


def daemon_checks(heartbeats, required, heartbeat_age_s: float) -> list[Check]:
    """One line per daemon the instance needs; one line in all when none ever beat."""
    if required and not heartbeats:
        why = "no daemon ever sent a heartbeat to this instance: is `dagster-daemon run` up?"
        return [Check("dagster_daemon", "fail", why)]
    checks, now = [], time.time()
    for daemon in sorted(required):
        name, beat = f"dagster_daemon:{daemon}", heartbeats.get(daemon)
        if beat is None:
            checks.append(Check(name, "fail", "no heartbeat ever from this daemon"))
            continue
        age = now - beat.timestamp
        errors = f"; last error: {beat.errors[0].message.strip()[:200]}" if beat.errors else ""
        if age > heartbeat_age_s:
            detail = f"last heartbeat {age:.0f} s ago (more than {heartbeat_age_s:.0f} s)"
            checks.append(Check(name, "fail", detail + errors))
        else:
            checks.append(Check(name, "ok", f"heartbeat {age:.0f} s ago{errors}"))
    return checks


# ------------------------------------------------------------------ all of them


def health_checks(settings: Settings, heartbeat_age_s: float = HEARTBEAT_AGE_S) -> list[Check]:
    checks = [metadata_check(settings)]
    with dagster_instance(settings, checks, heartbeat_age_s) as instance:
        if checks[0].status == "fail":
            why = "not checked: the metadata database cannot be read"
            for name in ("connections", "stuck_loads", "stuck_requests"):
                checks.append(Check(name, "skip", why))
            return checks
        meta = metadata_engine(settings)
        checks[1:1] = connection_checks(meta, settings)
        run_alive = None
        if instance is not None:
            from dms_orchestration.defs.runs import run_alive as alive_in

            run_alive = functools.partial(alive_in, instance)
        stuck = {
            "stuck_loads": lambda: stuck_loads_check(meta, settings, run_alive),
            "stuck_requests": lambda: stuck_requests_check(meta, run_alive),
        }
        for name, check in stuck.items():
            try:
                checks.append(check())
            except Exception as exc:  # noqa: BLE001 - e.g. a bad DMS_PARAMS value
                checks.append(Check(name, "fail", _first_line(exc)))
    return checks
