"""Connections of DMS_DBCONDTLS: the row model and how a row becomes an engine.

Passwords never live in the table: DBPSWDENV names the environment variable that holds
one, and `${NAME}` placeholders in DBURL are filled from the environment. A DBURL that
spells a password out (a legacy row written with plain SQL) is masked as it is read, so
it reaches no model, plan, export or log, and the connection refuses to connect.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, model_validator

from dms_orchestration.db.connect import connection_pools, engine_for, probe
from dms_orchestration.db.dialects import DBTYP_TO_DIALECT
from dms_orchestration.settings import ConfigError, Settings, normalize_url

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# where a URL carries a password: user:PASSWORD@ (SQLAlchemy's own split: up to the
# first @), or a password query parameter, which the drivers take as well
_URL_PASSWORDS = (
    re.compile(r"^[A-Za-z0-9+._-]+://[^:/]*:(?P<pw>[^@]*)@"),
    re.compile(r"[?&](?:password|passwd|pwd)=(?P<pw>[^&#]*)", re.IGNORECASE),
)
MASK = "***"
PASSWORD_ADVICE = (
    "passwords are never kept in DMS tables: put it in an environment variable and "
    "write ${NAME} in its place in DBURL, or leave DBURL empty and name the variable "
    "in DBPSWDENV"
)


def _literal_password_spans(url: str) -> list[tuple[int, int]]:
    """Where `url` spells a password out (anything but ${NAME} placeholders)."""
    spans = []
    for pattern in _URL_PASSWORDS:
        for match in pattern.finditer(url):
            if _PLACEHOLDER.sub("", match.group("pw")):
                spans.append(match.span("pw"))
    return sorted(spans)


def has_literal_password(url: str | None) -> bool:
    return bool(url and _literal_password_spans(url))


def mask_password(url: str) -> str:
    """The URL with every password it spells out replaced by ***."""
    for start, end in reversed(_literal_password_spans(url)):
        url = url[:start] + MASK + url[end:]
    return url


class DmsRow(BaseModel):
    """Base of the frozen models of DMS rows: legacy column names are the aliases."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")


class Connection(DmsRow):
    id: int = Field(alias="CONID")
    name: str = Field(alias="CONNM")
    db_type: str = Field(alias="DBTYP")
    host: str | None = Field(None, alias="DBHOST")
    port: int | None = Field(None, alias="DBPORT")
    service_name: str | None = Field(None, alias="DBSID")
    database: str | None = Field(None, alias="DBNM")
    user: str | None = Field(None, alias="DBUSR")
    password_env: str | None = Field(None, alias="DBPSWDENV")
    url: str | None = Field(None, alias="DBURL")
    # DBURL spelled a password out: `url` holds it masked, and the connection is unusable
    password_in_url: bool = False

    @model_validator(mode="before")
    @classmethod
    def _mask_literal_password(cls, data: Any) -> Any:
        if isinstance(data, dict):
            key = "DBURL" if "DBURL" in data else "url"
            if isinstance(data.get(key), str) and has_literal_password(data[key]):
                data = {**data, key: mask_password(data[key]), "password_in_url": True}
        return data

    @property
    def dialect_name(self) -> str:
        try:
            return DBTYP_TO_DIALECT[self.db_type.upper()]
        except KeyError:
            raise ConfigError(
                f"connection {self.name!r}: DBTYP {self.db_type!r} is not "
                f"{' | '.join(DBTYP_TO_DIALECT)}"
            ) from None

    def _env(self, env: Mapping[str, str], var: str, what: str) -> str:
        if var not in env:
            raise ConfigError(
                f"connection {self.name!r}: environment variable {var} ({what}) is not set"
            )
        return env[var]

    def sqlalchemy_url(
        self, env: Mapping[str, str] | None = None, dms_home: Path | None = None
    ) -> sa.URL:
        env = os.environ if env is None else env
        if self.password_in_url:
            raise ConfigError(
                f"connection {self.name!r} is not used: its DBURL holds a password "
                f"({self.url}); {PASSWORD_ADVICE}"
            )
        if self.url:
            filled = _PLACEHOLDER.sub(
                lambda m: self._env(env, m.group(1), "a DBURL placeholder"), self.url
            )
            try:
                return normalize_url(filled)
            except ConfigError:  # (its text would show the filled-in password)
                raise ConfigError(
                    f"connection {self.name!r}: DBURL {self.url!r} is not a database URL"
                ) from None
        password = (
            self._env(env, self.password_env, "named by DBPSWDENV") if self.password_env else None
        )
        dialect = self.dialect_name
        if dialect == "sqlite":
            if not self.database:
                raise ConfigError(f"connection {self.name!r}: SQLITE needs DBNM (the file path)")
            path = Path(self.database).expanduser()
            if not path.is_absolute() and dms_home is not None:
                path = dms_home / path
            return sa.URL.create("sqlite", database=str(path))
        common: dict[str, Any] = dict(
            username=self.user, password=password, host=self.host, port=self.port
        )
        if dialect == "postgresql":
            return sa.URL.create("postgresql+psycopg2", database=self.database, **common)
        return sa.URL.create(
            "oracle+oracledb", query={"service_name": self.service_name or ""}, **common
        )


def connection_engine(connection: Connection | None, settings: Settings) -> sa.Engine:
    """The engine for a source/target connection; None means the metadata database."""
    if connection is None:
        return engine_for(settings.database_url)
    url = connection.sqlalchemy_url(dms_home=settings.dms_home)
    _require_sqlite_file(connection, url)
    return engine_for(url, pools=connection_pools())


def _require_sqlite_file(connection: Connection, url: sa.URL) -> None:
    """A source or target is an existing database: SQLite would create an empty file on
    connect (and report "no such table"). Only the metadata database is made on first use."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return
    if not Path(url.database).is_file():
        raise ConfigError(
            f"connection {connection.name!r}: SQLite database file {url.database} does not "
            f"exist (a relative DBNM is read under DMS_HOME): create it, or fix the path"
        )


def probe_connection(connection: Connection, settings: Settings) -> float:
    """Reach a connection's database and log in (a fresh session, SELECT 1): the seconds
    it took. Raises ConfigError for a connection that cannot be used as written, the
    driver's error when the database cannot be reached or refuses the login."""
    url = connection.sqlalchemy_url(dms_home=settings.dms_home)
    _require_sqlite_file(connection, url)
    return probe(url)
