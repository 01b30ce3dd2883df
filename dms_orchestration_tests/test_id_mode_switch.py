"""Ids never collide across a switch of ID_GENERATION_MODE: a sequence continues above the
DMS_IDPOOL counter and the counter above the sequence, whatever spelling names the entity
(DMS_JOBLOG / DMS_JOBLOGSEQ, DIM_X / DIM_X_SEQ), for DMS tables and target SKEYs."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
import sqlglot
from sqlalchemy.dialects import oracle

from dms_orchestration.db.connect import create_engine, metadata_engine
from dms_orchestration.db.ddl import init_schema
from dms_orchestration.db.dialects import DIALECTS, Dialect
from dms_orchestration.db.schema import dms_idpool
from dms_orchestration.engine.plan import skey_floor_query
from dms_orchestration.engine.spec import load_spec
from dms_orchestration.ids.provider import (
    SEQUENCE,
    TABLE_COUNTER,
    IdProvider,
    highest_used_id,
    pool_names,
    provider_for,
    reservation,
)
from dms_orchestration_tests.test_engine import (
    CUST_DDL,
    CUST_SQL,
    cust_rows,
    make_dms,  # noqa: F401 (a fixture)
    mapping_yaml,
    scd2_columns,
)
from dms_orchestration_tests.test_id_provider import pool_lastval, set_params


@pytest.fixture
def pg_engine(pg_url):
    engine = create_engine(pg_url)
    init_schema(engine)
    yield engine
    engine.dispose()


def sequence_position(engine: sa.Engine, sequence: str) -> int:
    """The highest value a sequence has handed out (PostgreSQL)."""
    with engine.connect() as conn:
        last, called = conn.exec_driver_sql(f"SELECT last_value, is_called FROM {sequence}").one()
    return last if called else last - 1


def fresh(engine: sa.Engine) -> IdProvider:
    """A provider as a new process has it: nothing cached, the config read anew."""
    return IdProvider(engine)


# ------------------------------------------------------------------ the issue, as reported


def dms_ids_next(url: str, entity: str, n: int) -> list[int]:
    """`dms ids next` in a process of its own, as a user runs it."""
    exe = shutil.which("dms", path=str(Path(sys.executable).parent))
    cmd = [exe] if exe else [sys.executable, "-m", "dms_orchestration.cli"]
    out = subprocess.run(
        [*cmd, "ids", "next", entity, "-n", str(n), "--url", url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return [int(line) for line in out.stdout.split()]


@pytest.mark.slow
def test_dms_ids_next_never_reissues_an_id_when_the_mode_switches(pg_url, pg_engine):
    set_params(pg_engine, ID_GENERATION_MODE=TABLE_COUNTER)
    first = dms_ids_next(pg_url, "DMS_JOBLOG", 3)
    assert first == [1, 2, 3]
    assert pool_lastval(pg_engine, "DMS_JOBLOG") == 500  # a block reserved
    set_params(pg_engine, ID_GENERATION_MODE=SEQUENCE)
    second = dms_ids_next(pg_url, "DMS_JOBLOGSEQ", 3)  # the seed's spelling: one entity
    assert min(second) > 500, second
    set_params(pg_engine, ID_GENERATION_MODE=TABLE_COUNTER)
    third = dms_ids_next(pg_url, "DMS_JOBLOG", 3)
    assert min(third) > sequence_position(pg_engine, "dms_joblogseq") >= max(second)
    set_params(pg_engine, ID_GENERATION_MODE=SEQUENCE)
    fourth = dms_ids_next(pg_url, "DMS_JOBLOG", 3)
    assert min(fourth) > pool_lastval(pg_engine, "DMS_JOBLOG") >= max(third)


# ------------------------------------------------------------------ both directions


SPELLINGS = [
    ("DMS_JOBLOG", "DMS_JOBLOGSEQ"),
    ("DMS_JOBLOGSEQ", "DMS_JOBLOG"),
    ("DIM_SWITCH", "DIM_SWITCH_SEQ"),
    ("dim_switch_seq", "DIM_SWITCH"),
]


@pytest.mark.parametrize(("one", "other"), SPELLINGS)
def test_each_switch_continues_above_every_id_handed_out(pg_engine, one, other):
    handed: list[int] = []
    for i, mode in enumerate([TABLE_COUNTER, SEQUENCE, TABLE_COUNTER, SEQUENCE, SEQUENCE]):
        set_params(pg_engine, ID_GENERATION_MODE=mode, ID_BLOCK_SIZE="50")
        name = (one, other)[i % 2]
        ids = fresh(pg_engine).next_ids(name, 3)
        assert min(ids) > max(handed, default=0), (mode, name, ids, handed)
        handed += ids
    assert len(set(handed)) == len(handed)


def test_per_entity_override_switches_one_entity(pg_engine):
    set_params(pg_engine, ID_GENERATION_MODE=SEQUENCE, ID_BLOCK_SIZE="20")
    set_params(pg_engine, ID_GENERATION_MODE__DMS_JOBLOGSEQ=TABLE_COUNTER)
    provider = fresh(pg_engine)
    assert provider.mode_for("DMS_JOBLOG") == TABLE_COUNTER
    assert provider.mode_for("DMS_PRCLOG") == SEQUENCE
    counted = provider.next_ids("DMS_JOBLOG", 5)
    assert counted == [1, 2, 3, 4, 5]  # the pool now holds 1..20
    set_params(pg_engine, ID_GENERATION_MODE__DMS_JOBLOGSEQ=None)
    set_params(pg_engine, ID_GENERATION_MODE__DMS_JOBLOG=SEQUENCE)
    provider.refresh_config()  # the switch within one process
    assert min(provider.next_ids("DMS_JOBLOG", 5)) > 20
    set_params(pg_engine, ID_GENERATION_MODE__DMS_JOBLOG=TABLE_COUNTER)
    provider.refresh_config()
    assert min(provider.next_ids("DMS_JOBLOG", 5)) > sequence_position(pg_engine, "dms_joblogseq")


def test_sequence_behind_rows_written_by_plain_sql_continues_above_them(pg_engine):
    with pg_engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO DMS_PRCLOG (PRCID, MAPREF) VALUES (3000, 'M1')")
    assert fresh(pg_engine).next_id("DMS_PRCLOG") == 3001  # the sequence of db init was at 1


def test_a_sequence_ahead_of_the_pool_is_left_where_it_is(pg_engine):
    set_params(pg_engine, ID_BLOCK_SIZE="10")
    with pg_engine.begin() as conn:
        conn.exec_driver_sql("SELECT setval('dms_prclogseq', 7000)")
        conn.execute(sa.insert(dms_idpool).values(entitynm="DMS_PRCLOG", lastval=40, blksz=10))
    provider = fresh(pg_engine)
    assert provider.next_id("DMS_PRCLOG") == 7001
    assert provider.round_trips == 1  # the first draw reads the pool beside it
    assert [provider.next_id("DMS_PRCLOG") for _ in range(9)] == list(range(7002, 7011))
    assert provider.next_id("DMS_PRCLOG") == 7011 and provider.round_trips == 2


def test_the_pool_reservation_stays_one_statement_with_a_sequence_beside_it(pg_engine):
    set_params(pg_engine, ID_GENERATION_MODE=TABLE_COUNTER, ID_BLOCK_SIZE="10")
    with pg_engine.begin() as conn:
        conn.exec_driver_sql("SELECT setval('dms_prclogseq', 900)")
    provider = fresh(pg_engine)
    assert provider.next_id("DMS_PRCLOG") == 901
    assert provider.round_trips == 3  # no counter row yet: the UPDATE, the INSERT, the UPDATE
    with pg_engine.begin() as conn:
        conn.exec_driver_sql("SELECT setval('dms_prclogseq', 5000)")  # a SEQUENCE process
    assert provider.next_ids("DMS_PRCLOG", 9)[-1] == 910  # its reserved block first
    trips = provider.round_trips
    assert provider.next_id("DMS_PRCLOG") == 5001
    assert provider.round_trips == trips + 1


# ------------------------------------------------------------------ legacy counter rows


def test_a_legacy_counter_row_under_the_sequence_name_is_continued(dms_engine):
    """The legacy tool kept DMS_JOBLOG's counter as DMS_JOBLOGSEQ (and a target's as
    <TRGTBNM>_SEQ): the pool continues above it, on every dialect."""
    set_params(dms_engine, ID_GENERATION_MODE=TABLE_COUNTER, ID_BLOCK_SIZE="10")
    with dms_engine.begin() as conn:
        conn.execute(
            sa.insert(dms_idpool),
            [
                {"entitynm": "DMS_JOBLOGSEQ", "lastval": 700, "blksz": 1},
                {"entitynm": "DIM_OLD_SEQ", "lastval": 90, "blksz": 1},
            ],
        )
    provider = fresh(dms_engine)
    assert provider.next_id("DMS_JOBLOG") == 701
    assert provider.next_id("DIM_OLD") == 91
    assert provider.reserve_range("dim_old_seq", 5) == range(101, 106)
    # ... and a legacy row that moves on (the legacy tool still running) is followed
    with dms_engine.begin() as conn:
        conn.execute(
            sa.update(dms_idpool)
            .where(dms_idpool.c.entitynm == "DMS_JOBLOGSEQ")
            .values(lastval=2000)
        )
    assert fresh(dms_engine).next_id("DMS_JOBLOGSEQ") == 2001


def test_a_legacy_counter_row_is_above_the_sequence_too(pg_engine):
    with pg_engine.begin() as conn:
        conn.execute(sa.insert(dms_idpool).values(entitynm="DMS_JOBLOGSEQ", lastval=700, blksz=1))
    assert fresh(pg_engine).next_id("DMS_JOBLOG") == 701


def test_pool_names_of_an_entity():
    assert pool_names("dms_joblogseq") == ("DMS_JOBLOG", "DMS_JOBLOGSEQ", "DMS_JOBLOG_SEQ")
    assert pool_names("DIM_X_SEQ") == ("DIM_X", "DIM_X_SEQ")


# ------------------------------------------------------------------ concurrency


def test_raising_a_sequence_while_others_draw_never_reissues_an_id(pg_url, pg_engine):
    """Processes that start after a switch all find the sequence behind and raise it at
    once, while the first of them already draw: it must never move back."""
    set_params(pg_engine, ID_GENERATION_MODE=SEQUENCE, ID_BLOCK_SIZE="3")
    with pg_engine.begin() as conn:
        conn.execute(sa.insert(dms_idpool).values(entitynm="DMS_JOBERR", lastval=100_000, blksz=1))
    engines = [create_engine(pg_url) for _ in range(6)]
    start = threading.Barrier(len(engines))
    results: list[list[int]] = [[] for _ in engines]
    errors: list[BaseException] = []

    def work(engine: sa.Engine, out: list[int]) -> None:
        try:
            start.wait(timeout=30)
            provider = IdProvider(engine)
            out += [provider.next_id("DMS_JOBERR") for _ in range(60)]
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    threads = [
        threading.Thread(target=work, args=(e, out))
        for e, out in zip(engines, results, strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for e in engines:
        e.dispose()
    assert not errors
    everything = [i for r in results for i in r]
    assert len(set(everything)) == len(everything) == 360
    assert min(everything) > 100_000


@pytest.mark.slow
def test_no_draw_comes_between_reading_and_setting_a_sequence_being_raised(pg_engine):
    """PostgreSQL: the raise holds the sequence against nextval until its transaction
    ends, so a value drawn meanwhile cannot be handed out again after the setval."""
    pg = DIALECTS["postgresql"]
    with pg_engine.connect() as raiser, pg_engine.connect() as drawer:
        with raiser.begin():
            pg.raise_sequence(raiser, "DMS_JOBERRSEQ", None, 800)
            drawer.exec_driver_sql("SET lock_timeout = '300ms'")
            with pytest.raises(sa.exc.OperationalError, match="lock timeout"):
                drawer.exec_driver_sql("SELECT nextval('dms_joberrseq')")
            drawer.rollback()
        assert drawer.exec_driver_sql("SELECT nextval('dms_joberrseq')").scalar() == 801


# ------------------------------------------------------------------ target SKEYs


def restart_ids(dms) -> None:
    """As in a new process: the loads' id provider reads DMS_PARAMS again."""
    provider_for(metadata_engine(dms.settings)).refresh_config()


@pytest.mark.parametrize(
    "modes", [(SEQUENCE, TABLE_COUNTER, SEQUENCE), (TABLE_COUNTER, SEQUENCE, TABLE_COUNTER)]
)
@pytest.mark.slow
def test_target_skeys_continue_above_every_skey_across_mode_switches(pg_url, make_dms, modes):  # noqa: F811
    """Each load gives every row a new version (new SKEYs), and one row deleted from the
    target comes back as new: no SKEY the table ever held is given again."""
    dms = make_dms(pg_url)
    dms.run(CUST_DDL)
    dms.insert("SRC_CUST", cust_rows(10))
    handed = 0
    for i, mode in enumerate(modes):
        params = [{"code": "ID_GENERATION_MODE.T_CUST_SEQ", "value": mode}]
        dms.import_yaml(
            mapping_yaml("REF", CUST_SQL, scd2_columns(), table="T_CUST", params=params)
        )
        dms.run(f"UPDATE SRC_CUST SET CITY = 'moved{i}'")
        restart_ids(dms)
        dms.load(chunks=2)
        skeys = [r[0] for r in dms.query("SELECT SKEY FROM T_CUST")]
        assert len(set(skeys)) == len(skeys)
        new = [k for k in skeys if k > handed]
        assert len(new) == 10, (mode, sorted(skeys), handed)  # 10 new versions, all above
        handed = max(skeys)
        dms.run("DELETE FROM T_CUST WHERE SKEY = (SELECT MAX(SKEY) FROM T_CUST)")


# ------------------------------------------------------------------ Oracle SQL


def oracle_sql(statement) -> str:
    """Compiled by SQLAlchemy's Oracle dialect, then parsed by sqlglot's Oracle parser."""
    compiled = statement.compile(
        dialect=oracle.dialect(), compile_kwargs={"render_postcompile": True}
    )
    text = str(compiled)
    assert "POSTCOMPILE" not in text
    sqlglot.parse_one(text, read="oracle")
    return text


@pytest.mark.parametrize("schema", [None, "dms"])
def test_oracle_reservation_reads_the_sequence_high_water_mark(schema):
    d = DIALECTS["oracle"]
    text = oracle_sql(sa.select(d.sequence_position("DMS_JOBLOGSEQ", schema)))
    view = "all_sequences" if schema else "user_sequences"
    assert f"FROM sys.{view}" in text and "last_number" in text
    assert ("sequence_owner" in text) == bool(schema)
    text = oracle_sql(reservation(d, schema, "DMS_JOBLOG"))
    assert text.startswith("UPDATE dms_idpool SET lastval=(greatest(")
    assert "FROM sys." in text and "dms_tblcnt" not in text
    assert sqlglot.parse_one(text, read="oracle").key == "update"


def test_oracle_target_skey_floor_reads_the_table_and_its_sequence(sqlite_url, make_dms):  # noqa: F811
    meta = make_dms(sqlite_url)
    meta.import_yaml(mapping_yaml("REF", CUST_SQL, scd2_columns(), table="T_CUST"))
    spec = load_spec(meta.mapping("REF"), "oracle", default_schema="DW")
    text = oracle_sql(skey_floor_query(DIALECTS["oracle"], spec))
    assert "SELECT MAX(SKEY) \nFROM dw.t_cust" in text and text.endswith("FROM DUAL")
    assert "sys.all_sequences" in text


def test_oracle_raises_a_sequence_with_statements_oracle_has():
    d = DIALECTS["oracle"]
    assert type(d).raise_sequence is Dialect.raise_sequence  # the increment raise
    draw = oracle_sql(d.next_values("DMS.DMS_JOBLOGSEQ", 1))
    assert "DMS.DMS_JOBLOGSEQ.NEXTVAL" in draw
    first = oracle_sql(d.next_values_with("DMS_JOBLOGSEQ", 5, highest_used_id(d, "DMS_JOBLOG")))
    assert first.startswith("SELECT DMS_JOBLOGSEQ.NEXTVAL AS id, greatest(")
    assert first.endswith("FROM dual CONNECT BY LEVEL <= :n")
    alter = d.sequence_increment("dms.dms_joblogseq", 1234)
    assert alter == "ALTER SEQUENCE dms.dms_joblogseq INCREMENT BY 1234"


def test_the_increment_raise_works_on_a_real_sequence(pg_engine):
    """Oracle raises a sequence by a one-off increment (it has no setval); the same
    statements run here on PostgreSQL, which has them too."""
    pg = DIALECTS["postgresql"]
    with pg_engine.begin() as conn:
        conn.exec_driver_sql("CREATE SEQUENCE raise_me")
        conn.exec_driver_sql("SELECT nextval('raise_me')")
    with pg_engine.begin() as conn:
        Dialect.raise_sequence(pg, conn, "RAISE_ME", None, 5000)
    with pg_engine.begin() as conn:
        Dialect.raise_sequence(pg, conn, "RAISE_ME", None, 10)  # ahead: one value drawn
    with pg_engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT nextval('raise_me')").scalar() == 5003
        increment = "SELECT increment_by FROM pg_sequences WHERE sequencename = 'raise_me'"
        assert conn.exec_driver_sql(increment).scalar() == 1
