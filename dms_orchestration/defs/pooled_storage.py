"""Dagster's PostgreSQL storage, with connections kept in a pool (deploy/dagster.yaml's
`storage: custom`).

dagster-postgres connects anew for every statement (SQLAlchemy's NullPool, so that many
short-lived instances hold nothing open): each connection is a new server process,
authentication and a cold catalog cache. Under 200 schedules a minute the daemon alone
opened ~35 connections a second, and the server spent more CPU starting and ending those
processes than the runs spent loading (benchmarks/scheduler_load.py). This storage is
Dagster's own (same tables, same statements, same configuration plus two keys), whose
run, event log and schedule storages each keep up to `pool_size` connections open once
used (more, up to `max_overflow`, while that many threads need them at once), checked
before each use (`pool_pre_ping`: a restarted server costs nothing but a reconnect).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster_postgres import DagsterPostgresStorage
from dagster_postgres.utils import (
    create_pg_engine,
    get_token_provider_from_config,
    pg_url_from_config,
)

POOL_SIZE = 4  # connections each storage keeps (opened when first needed)
MAX_OVERFLOW = 8  # more while that many threads use one storage at once, then closed
POOL_RECYCLE_S = 3600  # a connection older than this is replaced


class PooledPostgresStorage(DagsterPostgresStorage):
    """DagsterPostgresStorage whose three storages pool their connections."""

    def __init__(
        self,
        postgres_url: str,
        should_autocreate_tables: bool = True,
        inst_data: Any = None,
        token_provider: Any = None,
        pool_size: int = POOL_SIZE,
        max_overflow: int = MAX_OVERFLOW,
    ) -> None:
        super().__init__(postgres_url, should_autocreate_tables, inst_data, token_provider)
        for storage in (self._run_storage, self._event_log_storage, self._schedule_storage):
            replaced = storage._engine
            # dagster-postgres' storages keep their engine here (pinned in
            # test_dagster_internals.py); the statements go through it
            storage._engine = create_pg_engine(
                postgres_url,
                token_provider,
                isolation_level="AUTOCOMMIT",
                pool_size=pool_size,
                max_overflow=max_overflow,
                pool_recycle=POOL_RECYCLE_S,
                pool_pre_ping=True,
            )
            replaced.dispose()

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        return {
            **DagsterPostgresStorage.config_type(),
            "pool_size": dg.Field(int, is_required=False, default_value=POOL_SIZE),
            "max_overflow": dg.Field(int, is_required=False, default_value=MAX_OVERFLOW),
        }

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: Any, config_value: Mapping[str, Any]
    ) -> PooledPostgresStorage:
        return cls(
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            inst_data=inst_data,
            token_provider=get_token_provider_from_config(config_value),
            pool_size=config_value.get("pool_size", POOL_SIZE),
            max_overflow=config_value.get("max_overflow", MAX_OVERFLOW),
        )
