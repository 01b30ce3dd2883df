"""Where the metadata database is and which clock we keep, read from the environment.

Order: DMS_DATABASE_URL; else the legacy tool's DB_TYPE/DB_HOST/... variables; else the
embedded default, SQLite files under DMS_HOME (default ./.dms). DMS_DATABASE_PASSWORD is
the password of a DMS_DATABASE_URL that names none. DMS_TRANSLATOR names the
class that turns DMS names into Dagster names (package.module:ClassName).
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa

from dms_orchestration.vocabulary import DbType

PASSWORD_VARIABLE = "DMS_DATABASE_PASSWORD"


class ConfigError(ValueError):
    """A setting is missing or wrong; the message names it."""


@dataclass(frozen=True)
class Settings:
    database_url: sa.URL
    dms_schema: str | None
    cdr_schema: str | None
    dms_home: Path
    timezone: ZoneInfo
    source: str  # which rule gave the URL: --url | DMS_DATABASE_URL | DB_TYPE | embedded
    translator: str | None = None  # DMS_TRANSLATOR: package.module:ClassName

    @property
    def safe_url(self) -> str:
        return self.database_url.render_as_string(hide_password=True)


def normalize_url(url: str | sa.URL) -> sa.URL:
    """Parse a URL; a bare postgresql:// means psycopg2 here (SQLAlchemy 2.1 would pick
    psycopg 3, which dagster-postgres does not use)."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise ConfigError(f"not a database URL: {exc}") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg2")
    if parsed.drivername == "oracle":
        parsed = parsed.set(drivername="oracle+oracledb")
    return parsed


def _legacy_url(env: Mapping[str, str]) -> sa.URL:
    db_type = env["DB_TYPE"].strip().upper()
    port = env.get("DB_PORT")
    common = dict(
        username=env.get("DB_USER"),
        password=env.get("DB_PASSWORD"),
        host=env.get("DB_HOST") or "localhost",
        port=int(port) if port else None,
    )
    if db_type == DbType.POSTGRESQL:
        if not env.get("DB_NAME"):
            raise ConfigError("DB_TYPE=POSTGRESQL needs DB_NAME (the database name)")
        return sa.URL.create("postgresql+psycopg2", database=env["DB_NAME"], **common)
    if db_type == DbType.ORACLE:
        if not env.get("DB_SID"):
            raise ConfigError("DB_TYPE=ORACLE needs DB_SID (the service name)")
        return sa.URL.create("oracle+oracledb", query={"service_name": env["DB_SID"]}, **common)
    raise ConfigError(f"DB_TYPE={env['DB_TYPE']!r} is not ORACLE or POSTGRESQL")


_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,127}$")


def _schema_setting(env: Mapping[str, str], name: str) -> str | None:
    value = (env.get(name) or "").strip()
    if value and not _SCHEMA_NAME.match(value):
        raise ConfigError(f"{name}={value!r} is not a valid schema name")
    return value or None


_OBJECT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def _object_setting(env: Mapping[str, str], name: str) -> str | None:
    value = (env.get(name) or "").strip()
    if value and not _OBJECT_PATH.match(value):
        raise ConfigError(f"{name}={value!r} is not package.module:ClassName")
    return value or None


def import_object(path: str, name: str):
    """The object a setting names as package.module:Name; a ConfigError names the setting
    when it does not import."""
    module_name, _, attribute = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # an error of any kind in the user's module
        raise ConfigError(f"{name}={path!r}: module {module_name} does not import: {exc}") from exc
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise ConfigError(f"{name}={path!r}: module {module_name} has no {attribute}") from None


def load_settings(url: str | None = None, env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    dms_home = Path(env.get("DMS_HOME") or ".dms").expanduser().resolve()
    tz_name = env.get("DMS_TIMEZONE") or "UTC"
    try:
        timezone = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"DMS_TIMEZONE={tz_name!r} is not a known time zone") from None
    if url:
        database_url, source = normalize_url(url), "--url"
    elif env.get("DMS_DATABASE_URL"):
        database_url, source = normalize_url(env["DMS_DATABASE_URL"]), "DMS_DATABASE_URL"
        if env.get(PASSWORD_VARIABLE) and database_url.password is None:
            database_url = database_url.set(password=env[PASSWORD_VARIABLE])
    elif env.get("DB_TYPE"):
        database_url, source = _legacy_url(env), "DB_TYPE"
    else:
        database_url = sa.URL.create("sqlite", database=str(dms_home / "dms.db"))
        source = "embedded"
    return Settings(
        database_url=database_url,
        dms_schema=_schema_setting(env, "DMS_SCHEMA"),
        cdr_schema=_schema_setting(env, "CDR_SCHEMA"),
        dms_home=dms_home,
        timezone=timezone,
        source=source,
        translator=_object_setting(env, "DMS_TRANSLATOR"),
    )


def dms_now(env: Mapping[str, str] | None = None) -> datetime:
    """Now on the DMS clock (DMS_TIMEZONE), naive, as the DMS tables store it, to the
    microsecond (loads a moment apart must not share a version's VLDFRM)."""
    env = os.environ if env is None else env
    try:
        zone = ZoneInfo(env.get("DMS_TIMEZONE") or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    return datetime.now(zone).replace(tzinfo=None)
