"""Fixtures: a real PostgreSQL server for the session, a fresh database per test, and
the same tests on SQLite through the `dms_url` / `dms_engine` fixtures."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import sqlalchemy as sa

from dms_orchestration.db.connect import create_engine
from dms_orchestration.db.ddl import init_schema
from dms_orchestration_tests.pg_server import PostgresServer

REPO_ROOT = Path(__file__).resolve().parents[1]
_db_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_server():
    server = PostgresServer().start()  # raises (fails the run) when binaries are missing
    yield server
    server.stop()


@pytest.fixture
def pg_url(pg_server) -> str:
    return pg_server.create_database(f"t{next(_db_counter)}")


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'dms.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def dms_url(request, tmp_path) -> str:
    """An empty metadata database URL, once per dialect."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'dms.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def dms_engine(dms_url) -> sa.Engine:
    """A metadata database with the DMS schema created."""
    engine = create_engine(dms_url)
    init_schema(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def dms_env(tmp_path, monkeypatch):
    """A clean environment for settings: no DMS/legacy variables, DMS_HOME in tmp."""
    for name in ("DMS_DATABASE_URL", "DB_TYPE", "DMS_SCHEMA", "CDR_SCHEMA", "DMS_TIMEZONE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DMS_HOME", str(tmp_path / "home"))
    return tmp_path / "home"
