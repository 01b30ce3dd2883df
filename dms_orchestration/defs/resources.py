"""The resource layer: what every step, check and sensor of the code location works with,
as Dagster resources (the UI's Resources page lists them with their configuration, which
never holds a secret):

- `dms_metadata` (MetadataDatabase): the DMS metadata database;
- `dms_connections` (DmsConnections): the engines of DMS_DBCONDTLS's connections and
  their pools (passwords from the environment variables the rows name);
- `dms_ids` (IdPools): the ID pools (mode, block size, per-entity settings) above
  DMS_PARAMS';
- `dms_log` (DmsLogWriter): the writer of the DMS log tables.

A step opens them with `dms_services(...)`: the settings of the metadata database, with
the pools, id settings and log writer in force for that database in this process (and
the chunk processes it forks) until the step ends. Swap one in the Definitions with
`definitions(resources={"dms_log": MyWriter()})` (dms_orchestration/definitions.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator, Mapping
from typing import Any

import dagster as dg
import sqlalchemy as sa
from pydantic import Field

from dms_orchestration.db.connect import PoolOptions, metadata_engine, using_pools
from dms_orchestration.db.connections import has_literal_password
from dms_orchestration.dmslog.writer import LogWriter, using_log_writer
from dms_orchestration.ids.provider import IdOverrides, using_id_overrides
from dms_orchestration.settings import PASSWORD_VARIABLE, ConfigError, Settings, load_settings


class MetadataDatabase(dg.ConfigurableResource):
    """The DMS metadata database (DMS_MAPR ..., the log and request tables)."""

    url: str | None = Field(
        default=None,
        description=(
            "SQLAlchemy URL without its password; empty: DMS_DATABASE_URL, else the legacy "
            "DB_TYPE / DB_HOST / ... variables, else the embedded SQLite under DMS_HOME"
        ),
    )
    password: str | None = Field(
        default=None,
        description="the URL's password: give it as dg.EnvVar('NAME'), never as text",
    )

    def settings(self) -> Settings:
        if self.url and has_literal_password(self.url):
            raise ConfigError(
                "dms_metadata: its url holds a password; give it as password="
                "dg.EnvVar('NAME') instead (the resource's configuration is shown in the UI)"
            )
        settings = load_settings(self.url)
        if self.password is not None:
            url = settings.database_url.set(password=self.password)
            settings = dataclasses.replace(settings, database_url=url)
        return settings

    def engine(self) -> sa.Engine:
        return metadata_engine(self.settings())


class DmsConnections(dg.ConfigurableResource):
    """The engines of the connections of DMS_DBCONDTLS (Oracle, PostgreSQL, SQLite) that
    mappings read and write, one per database and process, with these pools. Passwords
    never come from here: DBPSWDENV (or a ${NAME} in DBURL) names the environment
    variable that holds one."""

    pool_size: int = Field(default=5, ge=1, description="connections kept open per database")
    max_overflow: int = Field(default=10, ge=0, description="more connections at busy times")
    pool_timeout_seconds: float = Field(
        default=30.0, gt=0, description="how long a chunk waits for a free connection"
    )
    pool_recycle_seconds: int = Field(
        default=-1, description="replace connections older than this (-1: never)"
    )

    def pools(self) -> PoolOptions:
        return PoolOptions(
            pool_size=self.pool_size,
            max_overflow=self.max_overflow,
            pool_timeout=self.pool_timeout_seconds,
            pool_recycle=self.pool_recycle_seconds,
        )


class IdPools(dg.ConfigurableResource):
    """The ID pools of the DMS tables' ids (DMS_PRCLOG, DMS_JOBLOG, SKEYs, ...): settings
    of the deployment above DMS_PARAMS' DMSCONFIG rows (empty: DMS_PARAMS' alone). A
    setting for one entity wins over one for all; of two alike, this one wins."""

    mode: str | None = Field(default=None, description="SEQUENCE | TABLE_COUNTER")
    block_size: int | None = Field(default=None, description="ids reserved per round trip")
    entity_modes: dict[str, str] = Field(
        default_factory=dict, description="entity (e.g. DMS_PRCLOG) -> mode"
    )
    entity_block_sizes: dict[str, int] = Field(
        default_factory=dict, description="entity -> block size"
    )

    def overrides(self) -> IdOverrides:
        return IdOverrides.of(
            self.mode, self.block_size, self.entity_modes, self.entity_block_sizes
        )


class DmsLogWriter(dg.ConfigurableResource):
    """The writer of the DMS log tables (DMS_PRCLOG, DMS_JOBLOG, DMS_JOBERR). A subclass
    whose `writer` answers a LogWriter subclass sees (and may add to) every write."""

    progress_interval_seconds: float = Field(
        default=2.0,
        ge=0,
        description="how often a running load writes its rows so far to DMS_JOBLOG",
    )

    def writer(self, engine: sa.Engine) -> LogWriter:
        return LogWriter(engine, self.progress_interval_seconds)


def default_resources(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The resources of the code location: their defaults, the metadata database's
    password from DMS_DATABASE_PASSWORD when it is set (an EnvVar: the Resources page
    shows the variable's name, and run workers read its value where they run)."""
    env = os.environ if env is None else env
    password = dg.EnvVar(PASSWORD_VARIABLE) if env.get(PASSWORD_VARIABLE) else None
    return {
        "dms_metadata": MetadataDatabase(password=password),
        "dms_connections": DmsConnections(),
        "dms_ids": IdPools(),
        "dms_log": DmsLogWriter(),
    }


RESOURCE_KEYS = frozenset(default_resources({}))


@contextlib.contextmanager
def dms_services(resources: Any) -> Iterator[Settings]:
    """The metadata database's settings, with the resources' pools, id settings and log
    writer in force for it in this process until the block ends. `resources`: a step's,
    check's or sensor's `context.resources` (or anything with the four attributes)."""
    settings = resources.dms_metadata.settings()
    meta = metadata_engine(settings)
    try:
        overrides = resources.dms_ids.overrides()
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    with (
        using_pools(resources.dms_connections.pools()),
        using_id_overrides(meta, overrides),
        using_log_writer(resources.dms_log.writer(meta)),
    ):
        yield settings
