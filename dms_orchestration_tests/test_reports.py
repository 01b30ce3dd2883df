"""Reports (DMS_RPRT): a query written to CSV, XLSX or Parquet, read back and compared
with the query's own result; `dms report run`; the report assets, jobs and schedules;
a REPORT request through the queue sensor (SQLite and PostgreSQL)."""

from __future__ import annotations

import csv
import datetime as dt
import re
from decimal import Decimal
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.definitions.definitions_load_context import DefinitionsLoadContext
from dagster._core.definitions.reconstruct import reconstruct_repository_def_from_pointer
from typer.testing import CliRunner

from dms_orchestration.cli import app
from dms_orchestration.db.connect import dispose_all
from dms_orchestration.files import writers
from dms_orchestration.files.writers import OutputError, write_parquet, write_xlsx
from dms_orchestration_tests.test_defs import QUIET, Queue, cust_dms
from dms_orchestration_tests.test_runs import (
    COUNTING,
    POINTER,
    CountingTranslator,
    _code_server_load,
    _same_job,
)

runner = CliRunner()
QUERY = "SELECT ID, NAME, CITY, ID * 1.5 AS SCORE FROM SRC_CUST WHERE ID > :p1 ORDER BY ID"


@pytest.fixture
def rep(dms_url, tmp_path, monkeypatch):
    """The 30 customers of SRC_CUST and a report of them in each format."""
    d = cust_dms(dms_url, tmp_path, monkeypatch)
    d.sql(
        "INSERT INTO DMS_MAPRSQL (MAPRSQLID, MAPRSQLCD, MAPRSQL, CURFLG) "
        "VALUES (900, 'Q_REPORT', :sql, 'Y')",
        sql=QUERY,
    )
    for i, fmt in enumerate(["CSV", "XLSX", "PARQUET"]):
        add_report(d, 900 + i, f"CUST_{fmt}", fmt, "out/{RPRTREF}_{RUNDATE}_{PRCID}")
    yield d
    dispose_all()


def add_report(d, rprtid, ref, fmt, path, sqlcode="Q_REPORT", **more) -> None:
    cols = {"RPRTID": rprtid, "RPRTREF": ref, "MAPRSQLCD": sqlcode, "OUTFMT": fmt}
    cols |= {"OUTPATH": path, "CURFLG": "Y", **more}
    d.sql(
        f"INSERT INTO DMS_RPRT ({', '.join(cols)}) VALUES ({', '.join(':' + c for c in cols)})",
        **cols,
    )


def run_report(*args: str):
    return runner.invoke(app, ["report", "run", *args])


def read_back(path: Path, fmt: str) -> tuple[list[str], list[list]]:
    if fmt == "CSV":
        with path.open(newline="", encoding="utf-8") as f:
            header, *rows = list(csv.reader(f))
        return header, rows
    if fmt == "XLSX":
        import openpyxl

        sheet = openpyxl.load_workbook(path, read_only=True).worksheets[0]
        header, *rows = [list(r) for r in sheet.iter_rows(values_only=True)]
        return header, rows
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    return table.column_names, [list(r.values()) for r in table.to_pylist()]


def same(a, b) -> bool:
    """A value as the file holds it and as the query gave it (CSV holds text)."""
    if isinstance(b, Decimal | float) or isinstance(a, Decimal | float):
        return Decimal(str(a)) == Decimal(str(b))
    return str(a) == str(b)


@pytest.mark.parametrize("fmt", ["CSV", "XLSX", "PARQUET"])
@pytest.mark.slow
def test_a_report_file_holds_the_query_result(rep, fmt):
    done = run_report(f"CUST_{fmt}", "--param", "PARAM1=10")
    assert done.exit_code == 0, done.output
    match = re.fullmatch(rf"CUST_{fmt} PC ROWS=20 FILE=(\S+)\n", done.stdout)
    assert match, done.stdout
    path = Path(match.group(1))
    prcid = rep.scalar("SELECT PRCID FROM DMS_PRCLOG WHERE MAPREF = :r", r=f"CUST_{fmt}")
    today = dt.date.today().strftime("%Y%m%d")
    assert path == rep.home / "out" / f"CUST_{fmt}_{today}_{prcid}.{fmt.lower()}"
    with rep.engine.connect() as conn:
        result = conn.execute(sa.text(QUERY), {"p1": "10"})
        expected_header, expected = list(result.keys()), [list(r) for r in result]
    header, rows = read_back(path, fmt)
    assert [h.upper() for h in header] == [h.upper() for h in expected_header]
    assert len(rows) == len(expected) == 20
    pairs = [
        p for got, want in zip(rows, expected, strict=True) for p in zip(got, want, strict=True)
    ]
    assert all(same(a, b) for a, b in pairs)
    log = rep.query("SELECT PRCSTS, PARAM1 FROM DMS_PRCLOG WHERE PRCID = :p", p=prcid)
    assert log == [("PC", "10")]
    counts = rep.query("SELECT SRCROWS, JOBSTS FROM DMS_JOBLOG WHERE PRCID = :p", p=prcid)
    assert counts == [(20, "PC")]
    assert not list(path.parent.glob(".*.part"))


def test_a_report_that_fails_leaves_no_file_and_logs_why(rep):
    rep.sql("UPDATE DMS_MAPRSQL SET MAPRSQL = 'SELECT * FROM NO_SUCH_TABLE' WHERE MAPRSQLID = 900")
    done = run_report("CUST_CSV")
    assert done.exit_code == 1 and done.output.startswith("error: report CUST_CSV failed:")
    assert "NO_SUCH_TABLE" in done.output.upper() and "Traceback" not in done.output
    assert rep.query("SELECT PRCSTS FROM DMS_PRCLOG WHERE MAPREF = 'CUST_CSV'") == [("FL",)]
    out = rep.home / "out"
    assert not out.exists() or not list(out.iterdir())


@pytest.mark.slow
def test_a_bad_report_row_is_refused_naming_each_fault(rep):
    rep.sql("UPDATE DMS_MAPRSQL SET MAPRSQL = 'DELETE FROM SRC_CUST' WHERE MAPRSQLID = 900")
    add_report(rep, 950, "BAD", "PDF", "out/{RPRTREF}_{TODAY}.pdf")
    done = run_report("BAD")
    assert done.exit_code == 1, done.output
    text = " ".join(done.output.split())
    assert "report BAD is not valid" in text and "OUTFMT 'PDF'" in text and "{TODAY}" in text
    assert "must be a SELECT" in text
    assert rep.scalar("SELECT COUNT(*) FROM SRC_CUST") == 30
    missing = run_report("NOPE")
    assert missing.exit_code == 1 and "no current report named NOPE" in missing.output


def test_xlsx_rows_past_a_sheet_continue_on_a_new_sheet(tmp_path, monkeypatch):
    import openpyxl

    monkeypatch.setattr(writers, "SHEET_ROWS", 5)  # a header and 4 rows per sheet
    path = tmp_path / "r.xlsx"
    batches = [[(i, f"n{i}") for i in range(b * 3, b * 3 + 3)] for b in range(3)]
    assert write_xlsx(path, ["ID", "NAME"], iter(batches)) == 9
    sheets = openpyxl.load_workbook(path, read_only=True).worksheets
    contents = [[list(r) for r in s.iter_rows(values_only=True)] for s in sheets]
    assert [len(c) for c in contents] == [5, 5, 2]
    assert all(c[0] == ["ID", "NAME"] for c in contents)
    assert [r[0] for c in contents for r in c[1:]] == list(range(9))


def test_parquet_refuses_a_value_its_column_type_cannot_hold(tmp_path):
    with pytest.raises(OutputError, match="column AMOUNT"):
        write_parquet(tmp_path / "r.parquet", ["AMOUNT"], iter([[(1,)], [("not a number",)]]))


@pytest.mark.slow
def test_reports_are_assets_with_jobs_schedules_and_queue_requests(rep):
    rep.sql("UPDATE DMS_RPRT SET FRQCD = 'DL', FRQHH = 6, FRQMI = 30 WHERE RPRTREF = 'CUST_CSV'")
    joined = (
        "SELECT S.ID, S.NAME, S.CITY FROM SRC_CUST S JOIN CUST_DIM D ON D.ID = S.ID "
        "WHERE S.ID > :p1 ORDER BY S.ID"
    )
    rep.sql("UPDATE DMS_MAPRSQL SET MAPRSQL = :q WHERE MAPRSQLID = 900", q=joined)
    defs = rep.defs()
    key = dg.AssetKey(["reports", "cust_csv"])
    node = defs.resolve_asset_graph().get(key)
    assert node.group_name == "reports" and dg.AssetKey(["default", "cust_dim"]) in node.parent_keys
    schedule = defs.resolve_schedule_def("cust_csv_report_schedule")
    assert schedule.cron_schedule == "30 6 * * *" and schedule.job_name == "cust_csv_report"
    # the mapping first (the report joins its table), then a REPORT request
    load = defs.resolve_job_def("cust_dim_job").execute_in_process(
        run_config=QUIET, instance=dg.DagsterInstance.ephemeral()
    )
    assert load.success
    q = Queue(rep, defs)
    q.insert(700, "REPORT", mapref="CUST_CSV", PARAM1="25")
    [request] = q.evaluate()
    assert request.job_name == "cust_csv_report" and request.tags["dms/param1"] == "25"
    result = q.run(request)
    assert result.success, rep.query("SELECT PRCMSG FROM DMS_PRCLOG WHERE MAPREF = 'CUST_CSV'")
    [event] = result.get_asset_materialization_events()
    metadata = event.materialization.metadata
    assert metadata["dagster/row_count"].value == 5
    path = Path(metadata["path"].value)
    assert path.exists() and metadata["bytes"].value == path.stat().st_size
    assert read_back(path, "CSV")[1][0][0] == "26"
    q.evaluate()  # the next tick closes the request
    status, runid, _, _ = rep.request(700)
    assert status == "DONE" and runid == result.run_id
    prclog = rep.query("SELECT PRCREQID, PRCSTS FROM DMS_PRCLOG WHERE MAPREF = 'CUST_CSV'")
    assert prclog == [(700, "PC")]


@pytest.mark.slow
def test_a_run_worker_builds_only_the_report_it_runs(rep, monkeypatch):
    """A report's job, reconstructed from the code server's load data: its asset (and
    the keys it reads), no mapping's."""
    monkeypatch.setenv("DMS_TRANSLATOR", COUNTING)
    code_server, load_data = _code_server_load()
    assert CountingTranslator.asked  # the code server named the mapping
    CountingTranslator.asked.clear()
    with DefinitionsLoadContext.scoped(DefinitionsLoadContext.get()):
        repository = reconstruct_repository_def_from_pointer(POINTER, load_data)
        job = repository.get_job("cust_parquet_report")
    assert CountingTranslator.asked == []  # no mapping built
    assert _same_job(job, code_server)
    result = job.execute_in_process(run_config=QUIET, instance=dg.DagsterInstance.ephemeral())
    assert result.success
