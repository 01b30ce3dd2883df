"""Formatted ids PREFIX-AAA0001: the successor rule, generation, reset, recovery from a
corrupted LASTID, statistics, health check, and no duplicates across processes."""

from __future__ import annotations

import logging
import multiprocessing
import re
import threading

import pytest
import sqlalchemy as sa

from dms_orchestration.db.connect import create_engine
from dms_orchestration.db.ddl import init_schema
from dms_orchestration.db.schema import dms_idmgr
from dms_orchestration.ids.formatted import (
    HEALTH_CHECK_PREFIX,
    FormattedIdError,
    generate_ids,
    health_check,
    next_formatted_id,
    prefix_statistics,
    reset_prefix,
    successor,
    validate_prefix,
)


@pytest.mark.parametrize(
    ("suffix", "expected"),
    [
        ("AAA0001", "AAA0002"),
        ("AAA0009", "AAA0010"),
        ("AAA9998", "AAA9999"),
        ("AAA9999", "AAB0001"),
        ("AAZ9999", "ABA0001"),
        ("AZZ9999", "BAA0001"),
        ("ZZZ9999", "AAAA0001"),
        ("AAAA9999", "AAAB0001"),
        ("ZZZZ9999", "AAAAA0001"),
    ],
)
def test_successor(suffix, expected):
    assert successor(suffix) == expected


@pytest.mark.parametrize("bad", ["", "AA0001", "AAA001", "AAA00001", "aaa0001", "AAA0000", "1"])
def test_successor_rejects_malformed_suffixes(bad):
    with pytest.raises(FormattedIdError, match=re.escape(repr(bad))):
        successor(bad)


def test_validate_prefix():
    assert validate_prefix("CUS") == "CUS"
    assert validate_prefix("a_B_9") == "a_B_9"
    assert validate_prefix("X" * 20) == "X" * 20
    for bad in ["", "CUS-1", "X" * 21, "A B", "CÜS", "CUS\n"]:
        with pytest.raises(FormattedIdError, match="1 to 20 characters") as err:
            validate_prefix(bad)
        assert repr(bad) in str(err.value)
    with pytest.raises(FormattedIdError, match="reserved"):
        validate_prefix(HEALTH_CHECK_PREFIX)


def test_fresh_prefix_starts_at_aaa0001_and_continues(dms_engine):
    assert next_formatted_id(dms_engine, "CUS") == "CUS-AAA0001"
    assert next_formatted_id(dms_engine, "CUS") == "CUS-AAA0002"
    # prefixes are independent
    assert next_formatted_id(dms_engine, "VEN") == "VEN-AAA0001"
    assert generate_ids(dms_engine, "CUS", 3) == ["CUS-AAA0003", "CUS-AAA0004", "CUS-AAA0005"]
    assert next_formatted_id(dms_engine, "CUS") == "CUS-AAA0006"


@pytest.mark.parametrize(
    ("last", "expected"),
    [("AAA9999", "AAB0001"), ("AZZ9999", "BAA0001"), ("ZZZ9999", "AAAA0001")],
)
def test_rollover_through_reset(dms_engine, last, expected):
    assert reset_prefix(dms_engine, "INV", f"INV-{last}") == f"INV-{last}"
    assert next_formatted_id(dms_engine, "INV") == f"INV-{expected}"


def test_bulk_generation_across_a_rollover(dms_engine):
    reset_prefix(dms_engine, "PUR", "ZZZ9998")
    assert generate_ids(dms_engine, "PUR", 3) == ["PUR-ZZZ9999", "PUR-AAAA0001", "PUR-AAAA0002"]


def test_reset_with_and_without_prefix(dms_engine):
    generate_ids(dms_engine, "REC", 5)
    assert reset_prefix(dms_engine, "REC", "ABC0123") == "REC-ABC0123"
    assert next_formatted_id(dms_engine, "REC") == "REC-ABC0124"
    assert reset_prefix(dms_engine, "REC", "REC-ABC0009") == "REC-ABC0009"
    assert next_formatted_id(dms_engine, "REC") == "REC-ABC0010"


def test_reset_rejects_bad_ids_and_prefixes(dms_engine):
    with pytest.raises(FormattedIdError, match="'OTHER'"):
        reset_prefix(dms_engine, "REC", "OTHER-ABC0001")
    for bad in ["REC-AB0001", "abc0001", "ABC0000", "ABC12345", "REC-", ""]:
        with pytest.raises(FormattedIdError, match=re.escape(repr(bad))):
            reset_prefix(dms_engine, "REC", bad)
    with pytest.raises(FormattedIdError, match="'BAD-PFX'"):
        reset_prefix(dms_engine, "BAD-PFX", "ABC0001")
    with pytest.raises(FormattedIdError, match="reserved"):
        reset_prefix(dms_engine, HEALTH_CHECK_PREFIX, "ABC0001")
    # nothing was written by the refused calls
    with dms_engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(dms_idmgr)).scalar_one() == 0


def test_generate_rejects_bad_prefix_and_count(dms_engine):
    with pytest.raises(FormattedIdError, match="'CUS-X'"):
        next_formatted_id(dms_engine, "CUS-X")
    with pytest.raises(FormattedIdError, match="reserved"):
        next_formatted_id(dms_engine, HEALTH_CHECK_PREFIX)
    for n in (0, -1):
        with pytest.raises(FormattedIdError, match="n must be >= 1"):
            generate_ids(dms_engine, "CUS", n)


@pytest.mark.parametrize("garbage", ["garbage", "P-AA1", "OTHER-AAA0001", "P-AAA0000", ""])
def test_corrupted_last_id_restarts_with_a_warning(dms_engine, caplog, garbage):
    generate_ids(dms_engine, "P", 2)
    with dms_engine.begin() as conn:
        # plain SQL, as a person fixing data by hand would write it
        conn.execute(sa.text("UPDATE DMS_IDMGR SET LASTID = :v WHERE PREFIX = 'P'"), {"v": garbage})
    with caplog.at_level(logging.WARNING, logger="dms_orchestration.ids.formatted"):
        assert next_formatted_id(dms_engine, "P") == "P-AAA0001"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "'P'" in warnings[0].getMessage() and repr(garbage) in warnings[0].getMessage()
    assert next_formatted_id(dms_engine, "P") == "P-AAA0002"


def test_statistics(dms_engine):
    assert prefix_statistics(dms_engine) == []
    generate_ids(dms_engine, "VEN", 3)
    reset_prefix(dms_engine, "CUS", "AAB0001")
    reset_prefix(dms_engine, "WH", "AAAA0002")
    health_check(dms_engine)
    stats = prefix_statistics(dms_engine)
    assert [s["prefix"] for s in stats] == ["CUS", "VEN", "WH"]
    by_prefix = {s["prefix"]: s for s in stats}
    assert by_prefix["CUS"]["last_id"] == "CUS-AAB0001"
    assert by_prefix["CUS"]["issued"] == 10000
    assert by_prefix["VEN"]["issued"] == 3
    assert by_prefix["WH"]["issued"] == 26**3 * 9999 + 2
    for s in stats:
        assert set(s) == {"prefix", "last_id", "issued", "created", "updated"}
        assert isinstance(s["created"], str) and isinstance(s["updated"], str)
        assert s["created"] <= s["updated"]


def test_health_check(dms_engine):
    generate_ids(dms_engine, "CUS")
    generate_ids(dms_engine, "VEN")
    for _ in range(2):
        result = health_check(dms_engine)
        assert set(result) == {
            "status",
            "message",
            "prefix_count",
            "test_id_generated",
            "timestamp",
        }
        assert result["status"] == "healthy"
        assert result["prefix_count"] == 2
        # the reserved row is dropped every time, so it is always the first id
        assert result["test_id_generated"] == "_HEALTH_CHECK_-AAA0001"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", result["timestamp"])
    with dms_engine.connect() as conn:
        prefixes = conn.execute(sa.select(dms_idmgr.c.prefix)).scalars().all()
    assert sorted(prefixes) == ["CUS", "VEN"]


def test_health_check_reports_a_database_error(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'empty.db'}")  # no schema: no DMS_IDMGR
    result = health_check(engine)
    engine.dispose()
    assert result["status"] == "unhealthy"
    assert "dms_idmgr" in result["message"].lower()
    assert result["test_id_generated"] is None
    assert result["timestamp"].endswith("Z")


def test_threads_never_share_an_id(dms_engine):
    results: list[list[str]] = []

    def work() -> None:
        results.append([next_formatted_id(dms_engine, "THR") for _ in range(20)])

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [i for r in results for i in r]
    assert len(ids) == 80 and len(set(ids)) == 80
    assert max(ids) == "THR-AAA0080"


N_PROCESSES = 4
IDS_PER_PROCESS = 50


def _generate_in_process(url: str, prefix: str, barrier, queue) -> None:
    engine = create_engine(url)
    try:
        barrier.wait(timeout=60)  # all start together, so they race to create the prefix
        queue.put([next_formatted_id(engine, prefix) for _ in range(IDS_PER_PROCESS)])
    except Exception as exc:  # reported to the parent, which fails the test
        queue.put(repr(exc))
    finally:
        engine.dispose()


def _run_processes(url: str, prefix: str) -> list[str]:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(N_PROCESSES)
    queue = ctx.Queue()
    procs = [
        ctx.Process(target=_generate_in_process, args=(url, prefix, barrier, queue))
        for _ in range(N_PROCESSES)
    ]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    errors = [r for r in results if isinstance(r, str)]
    assert not errors, errors
    return [i for r in results for i in r]


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
@pytest.mark.slow
def test_processes_racing_on_a_new_prefix_never_share_an_id(request, tmp_path, dialect):
    if dialect == "sqlite":
        url = f"sqlite:///{tmp_path / 'race.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    engine = create_engine(url)
    init_schema(engine)
    try:
        ids = _run_processes(url, "RACE")
        total = N_PROCESSES * IDS_PER_PROCESS
        assert len(ids) == total and len(set(ids)) == total
        assert sorted(ids) == [f"RACE-AAA{i:04d}" for i in range(1, total + 1)]
        assert prefix_statistics(engine)[0]["last_id"] == f"RACE-AAA{total:04d}"
    finally:
        engine.dispose()
