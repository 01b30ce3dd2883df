"""Connections of DMS_DBCONDTLS: the row model and how a row becomes an engine.

Passwords never live in the table: DBPSWDENV names the environment variable that holds
one, and `${NAME}` placeholders in DBURL are filled from the environment.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field

from dms_orchestration.db.connect import engine_for
from dms_orchestration.db.dialects import DBTYP_TO_DIALECT
from dms_orchestration.settings import ConfigError, Settings, normalize_url

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


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
        if self.url:
            filled = _PLACEHOLDER.sub(
                lambda m: self._env(env, m.group(1), "a DBURL placeholder"), self.url
            )
            return normalize_url(filled)
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
        common = dict(username=self.user, password=password, host=self.host, port=self.port)
        if dialect == "postgresql":
            return sa.URL.create("postgresql+psycopg2", database=self.database, **common)
        return sa.URL.create(
            "oracle+oracledb", query={"service_name": self.service_name or ""}, **common
        )


def connection_engine(connection: Connection | None, settings: Settings) -> sa.Engine:
    """The engine for a source/target connection; None means the metadata database."""
    if connection is None:
        return engine_for(settings.database_url)
    return engine_for(connection.sqlalchemy_url(dms_home=settings.dms_home))
