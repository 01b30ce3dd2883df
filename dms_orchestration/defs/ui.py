"""`dms ui`: the Dagster UI (webserver, daemon, code server: `dg dev`) on the DMS metadata and
the Dagster instance that `dms demo` used.

DAGSTER_HOME is the environment's or <DMS_HOME>/dagster, holding a copy of the project's
dagster.yaml. `dg dev` / `dagster dev` warn that the dagster.yaml of the folder they start in
is not used whenever DAGSTER_HOME points elsewhere, so the UI starts in DAGSTER_HOME itself;
the folder the command was given in stays the code's working directory (DMS_TRANSLATOR
modules import from it) and relative paths are made absolute first.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from dms_orchestration.defs.demo_run import dagster_home
from dms_orchestration.settings import Settings

LOCATION = "dms_orchestration.definitions"


@dataclass(frozen=True)
class UiCommand:
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    address: str


def _absolute_sqlite(settings: Settings) -> str | None:
    """A relative SQLite file in the metadata URL, made absolute (the UI starts elsewhere)."""
    url = settings.database_url
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    if Path(database).is_absolute():
        return None
    return url.set(database=str(Path(database).resolve())).render_as_string(hide_password=False)


def _database_env(settings: Settings) -> dict[str, str]:
    """DMS_DATABASE_URL for the UI when --url chose the database or a path must be made
    absolute; DB_TYPE and the embedded default reach it unchanged through the environment."""
    if settings.source not in ("--url", "DMS_DATABASE_URL"):
        return {}
    url = _absolute_sqlite(settings)
    if url is None and settings.source == "--url":
        url = settings.database_url.render_as_string(hide_password=False)
    return {"DMS_DATABASE_URL": url} if url else {}


def missing_metadata_database(settings: Settings) -> str | None:
    """Why the UI would show no mappings: the embedded default has no database yet."""
    path = settings.dms_home / "dms.db"
    if settings.source == "embedded" and not path.exists():
        return (
            f"no metadata database at {path}: run `dms db init` and import mappings, "
            "or `bash scripts/demo.sh`, first (or set DMS_HOME / DMS_DATABASE_URL)"
        )
    return None


def ui_command(
    settings: Settings,
    host: str,
    port: int,
    log_level: str,
    env: Mapping[str, str] | None = None,
) -> UiCommand:
    """What `dms ui` runs: `dg dev` on this code location, in DAGSTER_HOME."""
    home = dagster_home(settings)
    env = {
        **(os.environ if env is None else env),
        **_database_env(settings),
        "DAGSTER_HOME": str(home),
        "DMS_HOME": str(settings.dms_home),
    }
    argv = [
        sys.executable,
        "-m",
        "dagster_dg_cli.cli",
        "dev",
        "-m",
        LOCATION,
        "-d",
        str(Path.cwd()),
        "-h",
        host,
        "-p",
        str(port),
        "--log-level",
        log_level,
    ]
    return UiCommand(argv, env, home, f"http://{host}:{port}")


def ui_hint(settings: Settings, url: str | None) -> str:
    """The command that opens the UI on what the demo just loaded."""
    env = f"DMS_HOME={settings.dms_home}"
    if os.environ.get("DAGSTER_HOME"):
        env += f" DAGSTER_HOME={dagster_home(settings)}"
    dms = ".venv/bin/dms" if Path(".venv/bin/dms").exists() else "dms"
    option = f" --url {settings.safe_url}" if url else ""
    return f"{env} {dms} ui{option}"
