"""The ID provider on SQLite and PostgreSQL: modes, config, blocks, and uniqueness across
threads and processes."""

from __future__ import annotations

import logging
import multiprocessing
import threading

import pytest
import sqlalchemy as sa

from dms_orchestration.db.connect import create_engine
from dms_orchestration.db.schema import dms_idpool, dms_params
from dms_orchestration.ids.provider import (
    SEQUENCE,
    TABLE_COUNTER,
    IdConfigError,
    IdProvider,
    normalize_entity,
    provider_for,
    sequence_name,
)
from dms_orchestration.ids.provider import next_id as module_next_id
from dms_orchestration.ids.provider import next_ids as module_next_ids


def set_params(engine: sa.Engine, **params: str | None) -> None:
    """Write DMSCONFIG rows; keyword `ID_BLOCK_SIZE__DMS_PRCLOG` is PRCD ID_BLOCK_SIZE.DMS_PRCLOG;
    None deletes the row."""
    with engine.begin() as conn:
        for key, value in params.items():
            prcd = key.replace("__", ".")
            conn.execute(
                sa.delete(dms_params).where(
                    dms_params.c.prtyp == "DMSCONFIG", dms_params.c.prcd == prcd
                )
            )
            if value is not None:
                conn.execute(
                    sa.insert(dms_params).values(prtyp="DMSCONFIG", prcd=prcd, prval=value)
                )


def pool_lastval(engine: sa.Engine, entity: str) -> int | None:
    with engine.connect() as conn:
        return conn.execute(
            sa.select(dms_idpool.c.lastval).where(dms_idpool.c.entitynm == entity)
        ).scalar()


def modes_of(engine: sa.Engine) -> list[str]:
    return [SEQUENCE, TABLE_COUNTER] if engine.dialect.name == "postgresql" else [TABLE_COUNTER]


def assert_increasing(ids: list[int]) -> None:
    assert all(a < b for a, b in zip(ids, ids[1:], strict=False)), ids


def test_default_mode_per_dialect(dms_engine, caplog):
    caplog.set_level(logging.INFO, logger="dms_orchestration.ids.provider")
    provider = IdProvider(dms_engine)
    expected = SEQUENCE if dms_engine.dialect.name == "postgresql" else TABLE_COUNTER
    assert provider.mode_for("DMS_PRCLOG") == expected
    assert provider.mode_for("DIM_CUSTOMER") == expected
    assert provider.block_size_for("DMS_PRCLOG") == 500
    assert provider.next_ids("DMS_PRCLOG", 3) == [1, 2, 3]
    provider.refresh_config()
    provider.next_id("DMS_JOB")
    notices = [r for r in caplog.records if "no sequences" in r.getMessage()]
    assert len(notices) == (1 if expected == TABLE_COUNTER else 0)


def test_sequence_requested_on_sqlite_warns_once(sqlite_url, caplog):
    from dms_orchestration.db.ddl import init_schema

    engine = create_engine(sqlite_url)
    init_schema(engine)
    set_params(engine, ID_GENERATION_MODE="SEQUENCE")
    provider = IdProvider(engine)
    with caplog.at_level(logging.INFO, logger="dms_orchestration.ids.provider"):
        assert provider.mode_for("DMS_PRCLOG") == TABLE_COUNTER
        provider.refresh_config()
        assert provider.next_id("DMS_PRCLOG") == 1
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "ID_GENERATION_MODE" in warnings[0].getMessage()
    engine.dispose()


def test_each_mode_gives_increasing_unique_ids(dms_engine):
    for mode in modes_of(dms_engine):
        set_params(dms_engine, ID_GENERATION_MODE=mode, ID_BLOCK_SIZE="7")
        provider = IdProvider(dms_engine)
        assert provider.mode_for("DMS_JOBLOG") == mode
        ids = [provider.next_id("DMS_JOBLOG") for _ in range(20)]
        ids += provider.next_ids("DMS_JOBLOG", 3)
        ids += provider.next_ids("DMS_JOBLOG", 30)  # more than a block: one reservation
        ids += [provider.next_id("DMS_JOBLOG") for _ in range(5)]
        assert len(ids) == 58
        assert_increasing(ids)


def test_block_reservation_really_reserves(dms_engine):
    set_params(dms_engine, ID_GENERATION_MODE="TABLE_COUNTER", ID_BLOCK_SIZE="500")
    provider = IdProvider(dms_engine)
    assert provider.next_id("DMS_PRCLOG") == 1
    assert pool_lastval(dms_engine, "DMS_PRCLOG") == 500
    trips = provider.round_trips
    rest = [provider.next_id("DMS_PRCLOG") for _ in range(499)]
    assert rest == list(range(2, 501))
    assert provider.round_trips == trips  # all from memory
    assert provider.next_id("DMS_PRCLOG") == 501
    assert provider.round_trips == trips + 1
    assert pool_lastval(dms_engine, "DMS_PRCLOG") == 1000


def test_sequence_block_reservation(pg_url):
    from dms_orchestration.db.ddl import init_schema

    engine = create_engine(pg_url)
    init_schema(engine)
    provider = IdProvider(engine)
    assert provider.next_id("DMS_PRCLOG") == 1
    assert provider.round_trips == 1
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT last_value FROM dms_prclogseq").scalar() == 500
    assert [provider.next_id("DMS_PRCLOG") for _ in range(499)] == list(range(2, 501))
    assert provider.round_trips == 1
    set_params(engine, ID_BLOCK_SIZE="1")
    provider.refresh_config()
    provider.next_id("DMS_PRCLOG")
    provider.next_id("DMS_PRCLOG")
    assert provider.round_trips == 3  # block size 1: one round trip per id
    engine.dispose()


def test_per_entity_override(dms_engine):
    set_params(
        dms_engine,
        ID_GENERATION_MODE=modes_of(dms_engine)[0],
        ID_BLOCK_SIZE="100",
        ID_GENERATION_MODE__DIM_CUSTOMER="TABLE_COUNTER",
        ID_BLOCK_SIZE__DIM_CUSTOMER="10",
        id_block_size__dms_joberrseq="3",  # case-insensitive, sequence spelling
    )
    provider = IdProvider(dms_engine)
    assert provider.mode_for("DIM_CUSTOMER") == TABLE_COUNTER
    assert provider.mode_for("DMS_PRCLOG") == modes_of(dms_engine)[0]
    assert provider.block_size_for("dim_customer") == 10
    assert provider.block_size_for("DMS_JOBERR") == 3
    assert provider.block_size_for("DMS_PRCLOG") == 100
    assert provider.next_id("DIM_CUSTOMER") == 1
    assert pool_lastval(dms_engine, "DIM_CUSTOMER") == 10


def test_refresh_config_picks_up_a_change(dms_engine):
    set_params(dms_engine, ID_BLOCK_SIZE="500")
    provider = IdProvider(dms_engine)
    assert provider.block_size_for("DMS_MAPR") == 500
    set_params(dms_engine, ID_BLOCK_SIZE="25", ID_GENERATION_MODE="TABLE_COUNTER")
    assert provider.block_size_for("DMS_MAPR") == 500  # cached until refreshed
    provider.refresh_config()
    assert provider.block_size_for("DMS_MAPR") == 25
    assert provider.mode_for("DMS_MAPR") == TABLE_COUNTER
    assert provider.next_id("DMS_MAPR") == 1
    assert pool_lastval(dms_engine, "DMS_MAPR") == 25


@pytest.mark.parametrize(
    ("prcd", "value"),
    [
        ("ID_GENERATION_MODE", "FOO"),
        ("ID_BLOCK_SIZE", "0"),
        ("ID_BLOCK_SIZE", "abc"),
        ("ID_BLOCK_SIZE", "-5"),
        ("ID_BLOCK_SIZE.DMS_JOB", "1.5"),
        ("ID_GENERATION_MODE.DIM_X", "SEQUENZ"),
    ],
)
def test_bad_config_names_the_parameter(dms_engine, prcd, value):
    set_params(dms_engine, **{prcd.replace(".", "__"): value})
    provider = IdProvider(dms_engine)
    with pytest.raises(IdConfigError) as info:
        provider.next_id("DMS_JOB")
    assert prcd in str(info.value) and value in str(info.value)
    # a fix is picked up without a new provider
    set_params(dms_engine, **{prcd.replace(".", "__"): None})
    provider.refresh_config()
    assert provider.next_id("DMS_JOB") == 1


def test_bad_entity_names(dms_engine):
    provider = IdProvider(dms_engine)
    for bad in ["", "1ABC", "DMS PRCLOG", "x;drop table y", "A" * 129, "DMS_PRCLOG\n"]:
        with pytest.raises(IdConfigError, match="entity"):
            provider.next_id(bad)
    set_params(dms_engine, **{"ID_BLOCK_SIZE__BAD-NAME": "5"})
    with pytest.raises(IdConfigError, match="ID_BLOCK_SIZE.BAD-NAME"):
        provider.refresh_config()
    with pytest.raises(ValueError):
        provider.next_ids("DMS_JOB", 0)


def test_entity_and_sequence_names():
    assert normalize_entity("dms_prclogseq") == "DMS_PRCLOG"
    assert normalize_entity("DMS_PRCLOG") == "DMS_PRCLOG"
    assert normalize_entity("dim_customer_seq") == "DIM_CUSTOMER"
    assert sequence_name("DMS_PRCLOG") == "DMS_PRCLOGSEQ"
    assert sequence_name("dim_customer") == "DIM_CUSTOMER_SEQ"


def test_new_target_table_entity_in_each_mode(dms_engine):
    for i, mode in enumerate(modes_of(dms_engine)):
        entity = f"DIM_CUSTOMER_{i}"
        set_params(dms_engine, ID_GENERATION_MODE=mode, ID_BLOCK_SIZE="5")
        provider = IdProvider(dms_engine)
        assert [provider.next_id(entity) for _ in range(12)] == list(range(1, 13))
        if mode == SEQUENCE:
            with dms_engine.connect() as conn:
                assert dms_engine.dialect.has_sequence(conn, f"{entity.lower()}_seq")
        else:
            assert pool_lastval(dms_engine, entity) == 15


def test_sequence_created_after_table_counter_continues(pg_url):
    from dms_orchestration.db.ddl import init_schema

    engine = create_engine(pg_url)
    init_schema(engine)
    set_params(engine, ID_GENERATION_MODE="TABLE_COUNTER", ID_BLOCK_SIZE="10")
    assert IdProvider(engine).next_id("FACT_SALES") == 1  # counter now at 10
    set_params(engine, ID_GENERATION_MODE="SEQUENCE")
    assert IdProvider(engine).next_id("FACT_SALES") == 11  # the new sequence starts above
    engine.dispose()


def test_sequence_name_spelling_shares_the_entity(dms_engine):
    set_params(dms_engine, ID_BLOCK_SIZE__DMS_PRCLOGSEQ="4")
    provider = IdProvider(dms_engine)
    assert provider.block_size_for("DMS_PRCLOG") == 4
    ids = [provider.next_id(name) for name in ["DMS_PRCLOGSEQ", "DMS_PRCLOG", "dms_prclogseq"] * 3]
    assert ids == list(range(1, 10))
    if modes_of(dms_engine) == [TABLE_COUNTER]:
        assert pool_lastval(dms_engine, "DMS_PRCLOG") == 12
        assert pool_lastval(dms_engine, "DMS_PRCLOGSEQ") is None


def test_table_counter_continues_after_existing_rows(dms_engine):
    set_params(dms_engine, ID_GENERATION_MODE="TABLE_COUNTER", ID_BLOCK_SIZE="50")
    with dms_engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO DMS_PRCLOG (PRCID, MAPREF) VALUES (900, 'M1')")
    first = IdProvider(dms_engine).next_id("DMS_PRCLOG")
    assert first == 901
    # the counter row exists now; more rows written with plain SQL above it
    with dms_engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO DMS_PRCLOG (PRCID, MAPREF) VALUES (5000, 'M1')")
    assert IdProvider(dms_engine).next_id("DMS_PRCLOG") == 5001
    # and rows below the counter do not pull it back
    with dms_engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM DMS_PRCLOG WHERE PRCID = 5000")
    assert IdProvider(dms_engine).next_id("DMS_PRCLOG") == 5051


def test_crash_leaves_a_gap_never_reuse(dms_engine):
    for mode in modes_of(dms_engine):
        entity = f"CRASH_{mode}"
        set_params(dms_engine, ID_GENERATION_MODE=mode, ID_BLOCK_SIZE="100")
        a = IdProvider(dms_engine)
        used_by_a = a.next_ids(entity, 3)
        del a  # "crash": the other 97 ids of its block are never handed out
        b = IdProvider(dms_engine)
        ids_b = b.next_ids(entity, 150)
        assert min(ids_b) > max(used_by_a) + 97
        assert_increasing(ids_b)


def _thread_work(provider: IdProvider, start: threading.Barrier, out: list[int]) -> None:
    start.wait()
    for _ in range(200):
        out.append(provider.next_id("DMS_JOBERR"))


def test_threads_share_a_provider_without_duplicates(dms_engine):
    for mode in modes_of(dms_engine):
        set_params(dms_engine, ID_GENERATION_MODE=mode, ID_BLOCK_SIZE="37")
        provider = IdProvider(dms_engine)
        results: list[list[int]] = [[] for _ in range(8)]
        start = threading.Barrier(8)
        threads = [
            threading.Thread(target=_thread_work, args=(provider, start, results[i]))
            for i in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        everything = [i for r in results for i in r]
        assert len(everything) == 1600 == len(set(everything))
        for r in results:
            assert_increasing(r)


def test_module_helpers_share_one_provider_per_engine(dms_engine):
    assert provider_for(dms_engine) is provider_for(dms_engine)
    first = module_next_id(dms_engine, "DMS_RPRT")
    assert module_next_ids(dms_engine, "DMS_RPRT", 2) == [first + 1, first + 2]


# entity -> (mode, block size) for the multi-process test; the target entities make four
# processes race to create the same sequence / DMS_IDPOOL row
PROCESS_ENTITIES = {
    "DMS_PRCLOG": (SEQUENCE, 1),
    "MP_TARGET_A": (SEQUENCE, 50),
    "DMS_JOBLOG": (TABLE_COUNTER, 1),
    "MP_TARGET_B": (TABLE_COUNTER, 50),
}


def _process_worker(url: str, barrier, queue, slot: int, per_entity: int) -> None:
    engine = create_engine(url)
    provider = IdProvider(engine)
    ids: dict[str, list[int]] = {e: [] for e in PROCESS_ENTITIES}
    try:
        barrier.wait(timeout=60)
        # interleave the entities so that all of them see concurrent reservations
        for _ in range(per_entity):
            for entity in PROCESS_ENTITIES:
                ids[entity].append(provider.next_id(entity))
        queue.put((slot, ids, None))
    except Exception as exc:  # report, so the parent fails with the reason
        queue.put((slot, ids, repr(exc)))
    finally:
        engine.dispose()


@pytest.mark.slow
def test_processes_never_share_an_id(dms_url):
    from dms_orchestration.db.ddl import init_schema

    engine = create_engine(dms_url)
    init_schema(engine)
    params = {}
    for entity, (mode, block) in PROCESS_ENTITIES.items():
        params[f"ID_GENERATION_MODE__{entity}"] = mode
        params[f"ID_BLOCK_SIZE__{entity}"] = str(block)
    set_params(engine, **params)
    engine.dispose()

    ctx = multiprocessing.get_context("spawn")
    barrier, queue = ctx.Barrier(4), ctx.Queue()
    procs = [
        ctx.Process(target=_process_worker, args=(dms_url, barrier, queue, i, 500))
        for i in range(4)
    ]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]  # read before join: big payloads
    for p in procs:
        p.join(timeout=60)
    errors = [err for _, _, err in results if err]
    assert not errors
    for entity in PROCESS_ENTITIES:
        everything = []
        for _, ids, _ in results:
            assert len(ids[entity]) == 500
            assert_increasing(ids[entity])
            everything += ids[entity]
        assert len(set(everything)) == 2000, entity


def test_dms_tables_in_their_own_schema(pg_url):
    from dms_orchestration.db.ddl import init_schema

    engine = create_engine(pg_url, schema="dms")
    init_schema(engine)
    for mode in (SEQUENCE, TABLE_COUNTER):
        set_params(engine, ID_GENERATION_MODE=mode, ID_BLOCK_SIZE="3")
        provider = IdProvider(engine)
        assert provider.next_ids("DMS_PRCLOG", 4)[0] >= 1
        assert [provider.next_id(f"DIM_{mode}") for _ in range(4)] == [1, 2, 3, 4]
    with engine.connect() as conn:
        assert engine.dialect.has_sequence(conn, "dim_sequence_seq", schema="dms")
        assert conn.exec_driver_sql("SELECT count(*) FROM dms.dms_idpool").scalar() == 2
    engine.dispose()


def test_lost_race_for_the_pool_row_uses_the_winners_row(dms_engine):
    class Racing(IdProvider):
        def _insert_pool_row(self, entity: str, block: int) -> None:
            # another process inserts the row between our UPDATE and our INSERT
            with self.engine.begin() as conn:
                conn.execute(sa.insert(dms_idpool).values(entitynm=entity, lastval=70, blksz=1))
            super()._insert_pool_row(entity, block)

    set_params(dms_engine, ID_GENERATION_MODE="TABLE_COUNTER", ID_BLOCK_SIZE="10")
    provider = Racing(dms_engine)
    assert provider.next_id("DIM_RACE") == 71
    assert pool_lastval(dms_engine, "DIM_RACE") == 80
