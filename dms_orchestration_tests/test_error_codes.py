"""Transient or permanent, told by the database's own codes (SQLSTATE, ORA-, SQLite result
codes), never by words in the message; the code lands in DMS_JOBERR.ERRCD."""

from __future__ import annotations

import threading

import oracledb
import psycopg2
import pytest
import sqlalchemy as sa
from oracledb import errors as oracle_errors

from dms_orchestration.db.connect import create_engine
from dms_orchestration.db.errorcodes import ErrorCode, error_code
from dms_orchestration.engine.errors import error_type, is_transient
from dms_orchestration_tests.test_engine import (
    CUST_DDL,
    CUST_SQL,
    cust_rows,
    make_dms,  # noqa: F401 (a fixture)
    mapping_yaml,
    scd1_columns,
)


@pytest.fixture
def pg(pg_url):
    engine = create_engine(pg_url)
    yield engine
    engine.dispose()


def raised(engine: sa.Engine, *statements: str) -> sa.exc.DBAPIError:
    """The error the last statement raises (the ones before it run first)."""
    with engine.connect() as conn:
        for stmt in statements[:-1]:
            conn.exec_driver_sql(stmt)
        with pytest.raises(sa.exc.DBAPIError) as info:
            conn.exec_driver_sql(statements[-1])
    return info.value


# ------------------------------------------------------------------ PostgreSQL


def test_a_lock_timeout_is_transient_55p03(pg):
    with pg.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE held (id INTEGER)")
    with pg.connect() as holder:
        holder.exec_driver_sql("LOCK TABLE held IN ACCESS EXCLUSIVE MODE")
        exc = raised(pg, "SET lock_timeout = '100ms'", "SELECT * FROM held")
        holder.rollback()
    assert error_code(exc) == ErrorCode("55P03", True)
    assert error_type(exc) == "TRANSIENT"


def test_a_statement_timeout_says_timeout_but_is_permanent_57014(pg):
    exc = raised(pg, "SET statement_timeout = '50ms'", "SELECT pg_sleep(2)")
    assert "timeout" in str(exc.orig)  # the words a message regex took for transient
    assert error_code(exc) == ErrorCode("57014", False)
    assert error_type(exc) == "PERMANENT"


def test_a_syntax_error_naming_a_connection_is_permanent_42601(pg):
    exc = raised(pg, "SELECT connection timeout terminating FROM")
    assert error_code(exc) == ErrorCode("42601", False)
    assert error_type(exc) == "PERMANENT"


def test_a_deadlock_is_transient_40p01(pg):
    with pg.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE pair (id INTEGER PRIMARY KEY, n INTEGER)")
        conn.exec_driver_sql("INSERT INTO pair VALUES (1, 0), (2, 0)")
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def update(first: int, second: int) -> None:
        with pg.connect() as conn:
            conn.exec_driver_sql("SET deadlock_timeout = '50ms'")
            try:
                conn.exec_driver_sql(f"UPDATE pair SET n = 1 WHERE id = {first}")
                start.wait(timeout=10)
                conn.exec_driver_sql(f"UPDATE pair SET n = 1 WHERE id = {second}")
                conn.commit()
            except sa.exc.DBAPIError as exc:
                errors.append(exc)

    threads = [threading.Thread(target=update, args=args) for args in ((1, 2), (2, 1))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(errors) == 1  # PostgreSQL broke the cycle by failing one of them
    assert error_code(errors[0]) == ErrorCode("40P01", True)
    assert is_transient(errors[0])


def test_a_terminated_backend_is_transient(pg):
    with pg.connect() as victim:
        pid = victim.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        victim.rollback()
        with pg.connect() as admin:
            admin.exec_driver_sql(f"SELECT pg_terminate_backend({pid})")
        with pytest.raises(sa.exc.DBAPIError) as info:
            victim.exec_driver_sql("SELECT 1")
    code = error_code(info.value)
    assert code.transient and code.code in ("57P01", None)  # (None: the socket closed first)
    assert error_type(info.value) == "TRANSIENT"


def test_no_server_listening_is_transient(tmp_path):
    from dms_orchestration_tests.pg_server import _free_port

    engine = create_engine(f"postgresql+psycopg2://nobody@127.0.0.1:{_free_port()}/none")
    with pytest.raises(sa.exc.OperationalError) as info:
        engine.connect()
    engine.dispose()
    assert error_code(info.value) == ErrorCode(None, True)  # libpq never got a SQLSTATE
    assert is_transient(info.value)


@pytest.mark.parametrize(
    ("sqlstate", "transient"),
    [
        ("08006", True),  # connection_failure: the whole class 08
        ("08001", True),
        ("53300", True),  # too_many_connections: the whole class 53
        ("53200", True),
        ("57P03", True),
        ("40001", True),
        ("23505", False),  # unique_violation
        ("42P01", False),  # undefined_table
        ("57014", False),  # query_canceled (statement_timeout, a stop)
        ("57P04", False),  # database_dropped
    ],
)
def test_the_sqlstate_table(sqlstate, transient):
    class Psycopg2Error(Exception):  # as psycopg2 gives its errors: a pgcode attribute
        pgcode = sqlstate

    Psycopg2Error.__module__ = "psycopg2.errors"
    error = sa.exc.OperationalError("SELECT 1", {}, Psycopg2Error("timeout connection"))
    assert error_code(error) == ErrorCode(sqlstate, transient)
    assert error_type(error) == ("TRANSIENT" if transient else "PERMANENT")


def test_a_driver_error_raised_past_sqlalchemy_is_read_too(pg):
    """COPY runs on the driver's own cursor: its errors reach us unwrapped."""
    with pg.connect() as conn:
        cursor = conn.connection.dbapi_connection.cursor()
        with pytest.raises(psycopg2.errors.DivisionByZero) as info:
            cursor.execute("SELECT 1 / 0")
        conn.rollback()
    assert error_code(info.value) == ErrorCode("22012", False)
    assert error_type(info.value) == "PERMANENT"


def test_a_connection_sqlalchemy_found_dead_is_transient_whatever_the_error():
    dead = sa.exc.OperationalError("SELECT 1", {}, Exception("?"), connection_invalidated=True)
    assert error_code(dead) == ErrorCode(None, True)
    assert error_type(sa.exc.OperationalError("SELECT 1", {}, Exception("timeout"))) == "PERMANENT"


# ------------------------------------------------------------------ SQLite


def test_sqlite_database_is_locked_is_transient(sqlite_url):
    holder = create_engine(sqlite_url)
    impatient = sa.create_engine(sqlite_url, connect_args={"timeout": 0.05})
    with holder.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (id INTEGER)")
    with holder.connect() as conn:
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")  # holds the write lock
        with impatient.connect() as other, pytest.raises(sa.exc.OperationalError) as info:
            other.exec_driver_sql("INSERT INTO t VALUES (2)")
        conn.rollback()
    holder.dispose()
    impatient.dispose()
    assert "database is locked" in str(info.value.orig)
    assert error_code(info.value) == ErrorCode("SQLITE_BUSY", True)
    assert error_type(info.value) == "TRANSIENT"


def test_sqlite_names_a_timeout_table_but_the_error_is_permanent(sqlite_url):
    """SQLite reports a missing table as an OperationalError: its words ("connection",
    "timeout") made the message regex retry it."""
    engine = create_engine(sqlite_url)
    exc = raised(engine, "SELECT * FROM connection_timeout")
    engine.dispose()
    assert isinstance(exc, sa.exc.OperationalError)
    assert error_code(exc) == ErrorCode("SQLITE_ERROR", False)
    assert error_type(exc) == "PERMANENT"


# ------------------------------------------------------------------ Oracle (no server here)


def wrapped(driver_error: Exception) -> sa.exc.DBAPIError:
    """A driver's error as SQLAlchemy raises it."""
    return sa.exc.DBAPIError.instance("SELECT 1 FROM dual", {}, driver_error, oracledb.Error)


def oracle_error(message: str, code: int, recoverable: bool = False) -> sa.exc.DBAPIError:
    """An oracledb error as the driver builds it: its _Error object in args[0]."""
    detail = oracle_errors._Error(message, code=code, isrecoverable=recoverable)
    return wrapped(detail.exc_type(detail))


@pytest.mark.parametrize(
    ("message", "code", "expected"),
    [
        ("ORA-00060: deadlock detected while waiting for resource", 60, ("ORA-00060", True)),
        ("ORA-03113: end-of-file on communication channel", 3113, ("ORA-03113", True)),
        ("ORA-12541: TNS:no listener", 12541, ("ORA-12541", True)),
        ("ORA-00054: resource busy and acquire with NOWAIT specified", 54, ("ORA-00054", True)),
        ('ORA-00904: "TIMEOUT": invalid identifier', 904, ("ORA-00904", False)),
        ("ORA-00942: table or view does not exist (connection)", 942, ("ORA-00942", False)),
    ],
)
def test_oracle_errors_by_their_code(message, code, expected):
    exc = oracle_error(message, code)
    assert error_code(exc) == ErrorCode(*expected)
    assert error_type(exc) == ("TRANSIENT" if expected[1] else "PERMANENT")


def test_oracle_recoverable_errors_are_transient_whatever_their_code():
    closed = oracle_errors._create_err(oracle_errors.ERR_CONNECTION_CLOSED)
    assert closed.isrecoverable and closed.full_code == "DPY-4011"
    assert error_code(wrapped(closed.exc_type(closed))) == ErrorCode("DPY-4011", True)
    replay = oracle_error("ORA-25408: can not safely replay call", 25408, recoverable=True)
    assert error_code(replay) == ErrorCode("ORA-25408", True)


# ------------------------------------------------------------------ DMS_JOBERR.ERRCD


@pytest.mark.slow
def test_a_load_failing_on_a_locked_target_records_its_sqlstate(pg_url, make_dms):  # noqa: F811
    dms = make_dms(pg_url)
    dms.run(CUST_DDL)
    dms.insert("SRC_CUST", cust_rows(5))
    dms.import_yaml(mapping_yaml("REF", CUST_SQL, scd1_columns(), table="T_CUST"))
    dms.load()
    dbname = sa.make_url(pg_url).database
    dms.run(f"ALTER DATABASE {dbname} SET lock_timeout = '200ms'")  # sessions from now on
    from dms_orchestration.db.connect import dispose_all

    dispose_all()
    with dms.engine.connect() as holder:
        holder.exec_driver_sql("LOCK TABLE t_cust IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(sa.exc.OperationalError):
            dms.load()
        holder.rollback()
    row = dms.query("SELECT ERRTYP, ERRCD, ERRMSG FROM DMS_JOBERR")
    assert [r[:2] for r in row] == [("TRANSIENT", "55P03")], row
    assert "lock timeout" in row[0][2]
