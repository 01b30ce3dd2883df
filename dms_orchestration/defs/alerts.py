"""Alerts of failed runs: a JSON POST to DMS_ALERT_WEBHOOK (Slack / Teams / any
incoming webhook: its `text` is a one-line summary), sent by the run-failure sensor
`dms_alert_failed_runs`.

Off when DMS_ALERT_WEBHOOK is unset or empty, or when the sensor is stopped (UI, `dagster
sensor stop dms_alert_failed_runs`); the DMS logs of a failed run are closed by
`dms_close_failed_runs` either way. The link to the run is DMS_WEBSERVER_URL (default
http://localhost:3000) + /runs/<run id>. A webhook that does not answer 2xx is tried three
times; then the sensor's tick logs the error and goes on (one alert is lost, not the
sensor). The webhook's address is never logged whole: it often holds a token.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from urllib.parse import urlsplit

import dagster as dg
import sqlalchemy as sa

from dms_orchestration.db.schema import dms_prclog

WEBHOOK_VARIABLE = "DMS_ALERT_WEBHOOK"
WEBSERVER_VARIABLE = "DMS_WEBSERVER_URL"
DEFAULT_WEBSERVER_URL = "http://localhost:3000"
ATTEMPTS = 3
TIMEOUT_S = 10.0
ERROR_LIMIT = 2000  # characters of the error in the alert


class AlertNotSent(RuntimeError):
    pass


def webhook_url(env: Mapping[str, str] | None = None) -> str | None:
    value = (os.environ if env is None else env).get(WEBHOOK_VARIABLE, "").strip()
    return value or None


def run_link(run_id: str, env: Mapping[str, str] | None = None) -> str:
    base = (os.environ if env is None else env).get(WEBSERVER_VARIABLE) or DEFAULT_WEBSERVER_URL
    return f"{base.rstrip('/')}/runs/{run_id}"


def webhook_host(url: str) -> str:
    """Where alerts go, as a log may say it: scheme and host, no path or token."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}"


def run_maprefs(meta: sa.Engine, run: dg.DagsterRun) -> list[str]:
    """What the run was for: its DMS tag (mapping, report or file load), else the
    mappings of the loads it opened in DMS_PRCLOG."""
    for tag in ("dms/mapref", "dms/rprtref", "dms/flupldref"):
        if run.tags.get(tag):
            return [run.tags[tag]]
    p = dms_prclog.c
    with meta.connect() as conn:
        rows = conn.execute(
            sa.select(p.mapref).where(p.runid == run.run_id, p.mapref.is_not(None)).distinct()
        )
        return sorted(r.mapref for r in rows)


def failure_error(context: dg.RunFailureSensorContext) -> str:
    """The error of the first failed step as the load raised it (Dagster wraps it: the
    innermost cause), else the run's."""
    for event in context.get_step_failure_events():
        error = event.step_failure_data.error
        while error is not None and (error.cause or error.context) is not None:
            error = error.cause or error.context
        if error is not None and error.message.strip():
            return error.message.strip()
    return (context.failure_event.message or "run failed").strip()


def alert_payload(
    run: dg.DagsterRun, maprefs: list[str], error: str, env: Mapping[str, str] | None = None
) -> dict:
    error = error if len(error) <= ERROR_LIMIT else error[: ERROR_LIMIT - 3] + "..."
    mapping = maprefs[0] if len(maprefs) == 1 else (", ".join(maprefs) or None)
    link = run_link(run.run_id, env)
    what = f"mapping {mapping}" if mapping else f"job {run.job_name}"
    first_line = (error.splitlines() or [""])[0]
    return {
        "text": f"DMS run failed: {what}, run {run.run_id[:8]}: {first_line} ({link})",
        "mapping": mapping,
        "mappings": maprefs,
        "job": run.job_name,
        "run_id": run.run_id,
        "status": "FAILURE",
        "error": error,
        "link": link,
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }


def post_alert(
    url: str, payload: dict, sleep: Callable[[float], None] = time.sleep, timeout: float = TIMEOUT_S
) -> None:
    """POST the payload as JSON; three tries, 1 s and 2 s apart; AlertNotSent after."""
    body = json.dumps(payload).encode()
    last = ""
    for attempt in range(ATTEMPTS):
        if attempt:
            sleep(float(attempt))
        request = urllib.request.Request(
            url, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                if 200 <= response.status < 300:
                    return
                last = f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            last = str(getattr(exc, "reason", exc))
    raise AlertNotSent(f"alert to {webhook_host(url)} not sent after {ATTEMPTS} tries: {last}")
