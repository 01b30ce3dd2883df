"""DMS log writer: PRCLOG lifecycle, JOBLOG counts, JOBERR, each write its own transaction."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from dms_orchestration.dmslog.writer import (
    LoadCounts,
    LogError,
    close_process,
    commit_load,
    open_load_row,
    open_process,
    write_joberr,
    write_joblog,
)
from dms_orchestration.settings import dms_now


def _one(engine, sql):
    with engine.connect() as conn:
        return conn.exec_driver_sql(sql).one()


def test_process_opens_in_progress_and_closes_once(dms_engine):
    prcid = open_process(dms_engine, mapref="DIM_X", jobid=3, runid="run-1", params=["2026-01-01"])
    assert _one(
        dms_engine, f"SELECT PRCSTS, RUNID, PARAM1, ENDDT FROM DMS_PRCLOG WHERE PRCID={prcid}"
    ) == ("IP", "run-1", "2026-01-01", None)
    assert close_process(dms_engine, prcid, "ST", "stopped by request 9")
    # the first final status wins: a late FL from the interrupted load does not overwrite ST
    assert not close_process(dms_engine, prcid, "FL", "interrupted")
    status, msg, end = _one(
        dms_engine, f"SELECT PRCSTS, PRCMSG, ENDDT FROM DMS_PRCLOG WHERE PRCID={prcid}"
    )
    assert (status, msg) == ("ST", "stopped by request 9") and end is not None
    with pytest.raises(LogError, match="XX"):
        close_process(dms_engine, prcid, "XX")
    with pytest.raises(LogError, match="no process"):
        close_process(dms_engine, 987654, "PC")


def test_joblog_rows_per_chunk_and_per_load_carry_all_counts(dms_engine):
    prcid = open_process(dms_engine, mapref="DIM_X")
    start = dms_now()
    c1 = LoadCounts(srcrows=10, insrows=4, updrows=3, unchrows=3)
    c2 = LoadCounts(srcrows=5, insrows=1, exprows=2, delrows=1, unchrows=2, errrows=0)
    for i, c in enumerate((c1, c2)):
        write_joblog(
            dms_engine,
            prcid=prcid,
            mapref="DIM_X",
            counts=c,
            status="PC",
            start=start,
            chunkno=i,
            chunkcnt=2,
        )
    write_joblog(
        dms_engine,
        prcid=prcid,
        mapref="DIM_X",
        counts=c1 + c2,
        status="PC",
        start=start,
        chunkcnt=2,
        chkpntval="2026-11-01 08:00:00",
    )
    with dms_engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT CHUNKNO, SRCROWS, INSROWS, UPDROWS, EXPROWS, DELROWS, UNCHROWS, ERRROWS, "
            f"CHKPNTVAL FROM DMS_JOBLOG WHERE PRCID={prcid} ORDER BY JOBLOGID"
        ).all()
    assert [tuple(r) for r in rows] == [
        (0, 10, 4, 3, 0, 0, 3, 0, None),
        (1, 5, 1, 0, 2, 1, 2, 0, None),
        (None, 15, 5, 3, 2, 1, 5, 0, "2026-11-01 08:00:00"),
    ]
    with pytest.raises(LogError, match="CHKPNTVAL"):
        write_joblog(
            dms_engine,
            prcid=prcid,
            mapref="DIM_X",
            counts=c1,
            status="FL",
            start=start,
            chkpntval="x",
        )


def test_joberr_keeps_the_whole_traceback_and_marks_a_cut_message(dms_engine):
    prcid = open_process(dms_engine, mapref="DIM_X")
    long_message = "duplicate business keys: " + ", ".join(str(i) for i in range(2000))
    write_joberr(
        dms_engine,
        prcid=prcid,
        mapref="DIM_X",
        errtyp="DATA",
        message=long_message,
        detail="Traceback (most recent call last):\n  ...",
        chunkno=1,
        keyval="42",
    )
    errtyp, msg, detail, keyval = _one(
        dms_engine, f"SELECT ERRTYP, ERRMSG, ERRDTL, KEYVAL FROM DMS_JOBERR WHERE PRCID={prcid}"
    )
    assert errtyp == "DATA" and keyval == "42" and detail.startswith("Traceback")
    assert len(msg) == 4000 and msg.endswith("[truncated; full text in ERRDTL]")
    with pytest.raises(LogError, match="BOGUS"):
        write_joberr(dms_engine, prcid=prcid, mapref="DIM_X", errtyp="BOGUS", message="m")


def _load_rows(engine, prcid):
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.exec_driver_sql(
                "SELECT CHUNKNO, JOBSTS, SRCROWS, CHKPNTVAL FROM DMS_JOBLOG "
                f"WHERE PRCID={prcid} ORDER BY JOBLOGID"
            )
        ]


def test_a_committed_load_ends_its_process_and_its_rows_in_one_transaction(dms_engine):
    start, counts = dms_now(), LoadCounts(srcrows=7, insrows=7)
    end = dict(mapref="DIM_X", counts=counts, start=start, end=dms_now(), chunkcnt=2)
    prcid = open_process(dms_engine, mapref="DIM_X")
    open_load_row(
        dms_engine, prcid=prcid, mapref="DIM_X", jobid=None, chunkcnt=2, start=start, message="m"
    )
    write_joblog(  # a chunk attempt that died: still IP
        dms_engine, prcid=prcid, mapref="DIM_X", counts=LoadCounts(), status="IP", start=start,
        chunkno=1, chunkcnt=2,
    )  # fmt: skip
    assert commit_load(dms_engine, prcid=prcid, message="7 source rows", chkpntval="9", **end)
    assert _one(dms_engine, f"SELECT PRCSTS, PRCMSG FROM DMS_PRCLOG WHERE PRCID={prcid}") == (
        "PC",
        "7 source rows",
    )
    assert _load_rows(dms_engine, prcid) == [(None, "PC", 7, "9"), (1, "FL", 0, None)]
    # a load planned before its row existed gets one
    other = open_process(dms_engine, mapref="DIM_X")
    assert commit_load(dms_engine, prcid=other, message="7 source rows", **end)
    assert _load_rows(dms_engine, other) == [(None, "PC", 7, None)]
    # when the process cannot be closed, the load's row is not finished either: no reader
    # ever sees the load's row PC while its process is still IP (or gone)
    gone = open_process(dms_engine, mapref="DIM_X")
    open_load_row(
        dms_engine, prcid=gone, mapref="DIM_X", jobid=None, chunkcnt=2, start=start, message="m"
    )
    with dms_engine.begin() as conn:
        conn.exec_driver_sql(f"DELETE FROM DMS_PRCLOG WHERE PRCID={gone}")
    with pytest.raises(LogError, match="no process"):
        commit_load(dms_engine, prcid=gone, message="7 source rows", **end)
    assert _load_rows(dms_engine, gone) == [(None, "IP", 0, None)]


def test_log_survives_the_rollback_of_the_load_it_describes(dms_engine):
    with dms_engine.connect() as load_conn:
        load_tx = load_conn.begin()
        load_conn.exec_driver_sql("CREATE TABLE T_LOAD (ID INTEGER)")
        load_conn.exec_driver_sql("INSERT INTO T_LOAD VALUES (1)")
        load_tx.commit()
        load_tx = load_conn.begin()
        load_conn.exec_driver_sql("INSERT INTO T_LOAD VALUES (2)")
        if dms_engine.dialect.name == "sqlite":
            # one writer at a time on SQLite: the load would hold the lock; roll it back first
            load_tx.rollback()
            prcid = open_process(dms_engine, mapref="DIM_X")
        else:
            prcid = open_process(dms_engine, mapref="DIM_X")
            write_joberr(
                dms_engine, prcid=prcid, mapref="DIM_X", errtyp="PERMANENT", message="boom"
            )
            load_tx.rollback()
        close_process(dms_engine, prcid, "FL", "boom")
    assert _one(dms_engine, f"SELECT PRCSTS FROM DMS_PRCLOG WHERE PRCID={prcid}") == ("FL",)
    assert _one(dms_engine, "SELECT COUNT(*) FROM T_LOAD") == (1,)
    with sa.create_engine(dms_engine.url).connect() as conn:
        assert (
            conn.exec_driver_sql(f"SELECT COUNT(*) FROM DMS_PRCLOG WHERE PRCID={prcid}").scalar()
            == 1
        )
