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

A process looks for Dagster's tables (creating them when missing) once per database:
Dagster opens the instance anew for every schedule evaluation in the code server.

Dagster also asks the database, on every run created, run event, asset event and schedule
tick, whether a migration has added some columns or tables yet (a reflection: several
catalog queries, 14 in a small run's worker alone); these storages ask until the answer
is yes, which no migration takes back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import dagster as dg
import sqlalchemy as sa
from dagster_postgres import (
    DagsterPostgresStorage,
    PostgresEventLogStorage,
    PostgresRunStorage,
    PostgresScheduleStorage,
)
from dagster_postgres.utils import (
    create_pg_engine,
    get_token_provider_from_config,
    pg_url_from_config,
)

POOL_SIZE = 4  # connections each storage keeps (opened when first needed)
MAX_OVERFLOW = 8  # more while that many threads use one storage at once, then closed
POOL_RECYCLE_S = 3600  # a connection older than this is replaced
# the databases whose Dagster tables this process has looked for (and created): Dagster
# opens the instance anew for each schedule evaluation in the code server, whose three
# storages looked for their tables each time (6 sessions an evaluation)
_TABLES_CHECKED: set[str] = set()


def _pooled(storage: Any, token_provider: Any, pool_size: int, max_overflow: int) -> None:
    """Send the storage's statements through a pool: dagster-postgres' storages keep their
    engine (NullPool) in `_engine` (pinned in test_dagster_internals.py)."""
    replaced = storage._engine
    storage._engine = create_pg_engine(
        storage.postgres_url,
        token_provider,
        isolation_level="AUTOCOMMIT",
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_recycle=POOL_RECYCLE_S,
        pool_pre_ping=True,
    )
    replaced.dispose()


class _Pooled:
    """A dagster-postgres storage whose statements go through a pool, and which keeps
    what its migration checks found true: Dagster asks whether a
    migration has added a column or a table (a reflection: several catalog queries) on
    every run created, run event, asset event and schedule tick; a migration adds, it
    never takes away."""

    def __init__(self, postgres_url: str, should_autocreate_tables: bool, **pool: Any) -> None:
        super().__init__(  # type: ignore[call-arg] (the dagster-postgres storage's)
            postgres_url, should_autocreate_tables, token_provider=pool["token_provider"]
        )
        _pooled(self, **pool)

    def _found_once(self, key: tuple[str, ...], ask: Callable[[], bool]) -> bool:
        # (in __dict__, not set in __init__: Dagster's __init__ asks some already)
        found: set[tuple[str, ...]] = self.__dict__.setdefault("_migrations_found", set())
        if key not in found:
            if not ask():
                return False
            found.add(key)
        return True


class PooledRunStorage(_Pooled, PostgresRunStorage):
    """dagster-postgres' run storage, pooled, its migration checks kept."""

    def has_run_stats_index_cols(self) -> bool:  # every run event
        return self._found_once(("run_stats",), super().has_run_stats_index_cols)

    def has_backfill_id_column(self) -> bool:  # every run created
        return self._found_once(("backfill_id",), super().has_backfill_id_column)

    def has_bulk_actions_selector_cols(self) -> bool:
        return self._found_once(("bulk_selector",), super().has_bulk_actions_selector_cols)

    def has_bulk_action_job_name_column(self) -> bool:
        return self._found_once(("bulk_job_name",), super().has_bulk_action_job_name_column)

    def has_backfill_tags_table(self) -> bool:
        return self._found_once(("backfill_tags",), super().has_backfill_tags_table)


class PooledEventLogStorage(_Pooled, PostgresEventLogStorage):
    """dagster-postgres' event log storage, pooled, its migration checks kept."""

    def _has_asset_key_col_on_connection(self, conn: sa.Connection, column_name: str) -> bool:
        ask = super()._has_asset_key_col_on_connection  # every asset event
        return self._found_once(("asset_keys", column_name), lambda: ask(conn, column_name))

    def has_table(self, table_name: str) -> bool:
        ask = super().has_table
        return self._found_once(("table", table_name), lambda: ask(table_name))


class PooledScheduleStorage(_Pooled, PostgresScheduleStorage):
    """dagster-postgres' schedule storage, pooled, its migration checks kept."""

    def _has_instigators_table(self, conn: sa.Connection) -> bool:  # every tick
        ask = super()._has_instigators_table
        return self._found_once(("instigators",), lambda: ask(conn))

    def _has_asset_daemon_asset_evaluations_table(self, conn: sa.Connection) -> bool:
        ask = super()._has_asset_daemon_asset_evaluations_table
        return self._found_once(("asset_evaluations",), lambda: ask(conn))

    def has_secondary_index_table(self) -> bool:
        return self._found_once(("secondary_indexes",), super().has_secondary_index_table)

    def has_built_index(self, migration_name: str) -> bool:  # every tick
        ask = super().has_built_index
        return self._found_once(("index", migration_name), lambda: ask(migration_name))


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
        # what DagsterPostgresStorage.__init__ sets (pinned in test_dagster_internals.py),
        # with the pooled storages in place of its own
        self.postgres_url = postgres_url
        self.should_autocreate_tables = should_autocreate_tables
        self._inst_data = inst_data
        check_tables = should_autocreate_tables and postgres_url not in _TABLES_CHECKED
        pool = {
            "token_provider": token_provider,
            "pool_size": pool_size,
            "max_overflow": max_overflow,
        }
        self._run_storage = PooledRunStorage(postgres_url, check_tables, **pool)
        self._event_log_storage = PooledEventLogStorage(postgres_url, check_tables, **pool)
        self._schedule_storage = PooledScheduleStorage(postgres_url, check_tables, **pool)
        if check_tables:
            _TABLES_CHECKED.add(postgres_url)
        super(DagsterPostgresStorage, self).__init__()

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
