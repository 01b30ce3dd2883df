"""Where the metadata database is: --url, DMS_DATABASE_URL, legacy DB_TYPE, embedded."""

from __future__ import annotations

import pytest

from dms_orchestration.db.connections import Connection
from dms_orchestration.settings import ConfigError, load_settings


def test_embedded_default_is_sqlite_under_dms_home(tmp_path):
    s = load_settings(env={"DMS_HOME": str(tmp_path / "h")})
    assert s.source == "embedded"
    assert s.database_url.get_backend_name() == "sqlite"
    assert s.database_url.database == str(tmp_path / "h" / "dms.db")
    assert str(s.timezone) == "UTC"


def test_order_url_option_then_dms_database_url_then_legacy():
    env = {"DMS_DATABASE_URL": "postgresql://u@h/db", "DB_TYPE": "ORACLE", "DB_SID": "XE"}
    assert load_settings(url="sqlite:///x.db", env=env).source == "--url"
    s = load_settings(env=env)
    assert s.source == "DMS_DATABASE_URL"
    assert s.database_url.drivername == "postgresql+psycopg2"  # never psycopg 3


def test_legacy_variables_build_the_url_and_hide_the_password():
    env = {
        "DB_TYPE": "POSTGRESQL",
        "DB_HOST": "db1",
        "DB_PORT": "5433",
        "DB_NAME": "dms_tool",
        "DB_USER": "etl",
        "DB_PASSWORD": "s3cr3t",
        "DMS_SCHEMA": "DWT",
        "CDR_SCHEMA": "CDR",
        "DMS_TIMEZONE": "Europe/Amsterdam",
    }
    s = load_settings(env=env)
    assert s.database_url.drivername == "postgresql+psycopg2"
    assert (s.database_url.host, s.database_url.port, s.database_url.database) == (
        "db1",
        5433,
        "dms_tool",
    )
    assert s.database_url.password == "s3cr3t" and "s3cr3t" not in s.safe_url
    assert (s.dms_schema, s.cdr_schema, str(s.timezone)) == ("DWT", "CDR", "Europe/Amsterdam")
    ora = load_settings(env={"DB_TYPE": "ORACLE", "DB_HOST": "o", "DB_SID": "XE", "DB_USER": "u"})
    assert ora.database_url.drivername == "oracle+oracledb"
    assert ora.database_url.query["service_name"] == "XE"


@pytest.mark.parametrize(
    "env, words",
    [
        ({"DB_TYPE": "MYSQL"}, "DB_TYPE"),
        ({"DB_TYPE": "POSTGRESQL"}, "DB_NAME"),
        ({"DB_TYPE": "ORACLE"}, "DB_SID"),
        ({"DMS_TIMEZONE": "Mars/Olympus"}, "DMS_TIMEZONE"),
        ({"DMS_SCHEMA": "dwt; drop table x"}, "DMS_SCHEMA"),
    ],
)
def test_bad_settings_name_the_variable(env, words):
    with pytest.raises(ConfigError, match=words):
        load_settings(env=env)


def test_connection_password_comes_from_the_named_variable(tmp_path):
    con = Connection(
        CONID=1,
        CONNM="WH",
        DBTYP="POSTGRESQL",
        DBHOST="h",
        DBPORT=5432,
        DBNM="wh",
        DBUSR="etl",
        DBPSWDENV="WH_PASSWORD",
    )
    url = con.sqlalchemy_url(env={"WH_PASSWORD": "pw"})
    assert url.password == "pw" and url.drivername == "postgresql+psycopg2"
    with pytest.raises(ConfigError, match="WH.*WH_PASSWORD"):
        con.sqlalchemy_url(env={})


def test_connection_url_placeholders_and_relative_sqlite_path(tmp_path):
    con = Connection(CONID=2, CONNM="X", DBTYP="POSTGRESQL", DBURL="postgresql://etl:${PW}@h/db")
    assert con.sqlalchemy_url(env={"PW": "p"}).password == "p"
    with pytest.raises(ConfigError, match="PW"):
        con.sqlalchemy_url(env={})
    lite = Connection(CONID=3, CONNM="L", DBTYP="SQLITE", DBNM="retail.db")
    assert lite.sqlalchemy_url(env={}, dms_home=tmp_path).database == str(tmp_path / "retail.db")


@pytest.mark.parametrize(
    "url, masked",
    [
        ("postgresql://etl:${PW}@h/db", None),
        ("postgresql://etl@h:${PORT}/db?sslmode=require", None),
        ("sqlite:///warehouse.db", None),
        ("postgresql://etl:s3cr3t@h/db", "postgresql://etl:***@h/db"),
        ("postgresql://etl:p@ss@h/db", "postgresql://etl:***@ss@h/db"),
        (
            "oracle://etl@h/?service_name=x&password=s3cr3t",
            "oracle://etl@h/?service_name=x&password=***",
        ),
        ("postgresql://etl:pre${PW}@h/db", "postgresql://etl:***@h/db"),
    ],
)
def test_a_password_spelled_out_in_dburl_is_masked_and_the_connection_refuses(url, masked):
    con = Connection(CONID=4, CONNM="LEGACY", DBTYP="POSTGRESQL", DBURL=url)
    if masked is None:
        assert con.url == url and not con.password_in_url
        return
    assert con.url == masked and con.password_in_url
    assert Connection.model_validate_json(con.model_dump_json()) == con  # stays masked
    with pytest.raises(ConfigError, match=r"LEGACY.*\$\{NAME\}.*DBPSWDENV") as info:
        con.sqlalchemy_url(env={"PW": "x"})
    assert "s3cr3t" not in str(info.value)


def test_a_dburl_that_does_not_parse_is_named_without_its_filled_in_password():
    con = Connection(CONID=5, CONNM="ODD", DBTYP="POSTGRESQL", DBURL="not a url ${PW}")
    with pytest.raises(ConfigError, match="ODD") as info:
        con.sqlalchemy_url(env={"PW": "s3cr3t"})
    assert "s3cr3t" not in str(info.value) and "${PW}" in str(info.value)
