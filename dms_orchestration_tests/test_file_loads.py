"""File loads (DMS_FLUPLD): real files - quoted delimiters, embedded newlines, a BOM,
Excel dates, JSON arrays and lines, bad rows under and past the threshold, the same file
twice, a file changed in place - into SQLite and PostgreSQL, through `dms files` and
through Dagster (a partition per landed file)."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import time
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml
from typer.testing import CliRunner

from dms_orchestration.cli import app
from dms_orchestration.db.connect import dispose_all
from dms_orchestration.defs.resources import default_resources
from dms_orchestration.files.readers import read_records
from dms_orchestration.metadata.authoring import export_mapping_file
from dms_orchestration_tests.test_defs import QUIET, Dms

runner = CliRunner()
LINE = re.compile(r"^(\S+) (\S+) (PC|FL) ROWS=(\d+) BAD=(\d+) SECONDS=\d+\.\d\d$")

CUSTOMERS = {
    "ref": "CUSTOMERS_FILE",
    "type": "CSV",
    "path": "landing/customers*.csv",
    "archive": "archive",
    "target": {"table": "LANDED_CUSTOMERS"},
    "load_type": "APPEND",
    "columns": [
        {"name": "ID", "type": "INTEGER", "source": "ID", "key": True, "required": True},
        {"name": "NAME", "type": "VARCHAR(20)", "source": "NAME", "required": True},
        {"name": "CITY", "type": "VARCHAR(30)", "source": "CITY", "default": "Unknown"},
        {"name": "CITY_UPPER", "type": "VARCHAR(30)", "transform": "UPPER(SRC.CITY)"},
        {"name": "JOINED", "type": "DATE", "source": "JOINED"},
        {"name": "CREDIT", "type": "NUMBER(10,2)", "source": "LIMIT_AMT"},
    ],
}
GOOD = (
    "ID,NAME,CITY,JOINED,LIMIT_AMT\n"
    '1,"Lovelace, Ada",Paris,2024-01-02,100.50\n'
    '2,"Alan\nTuring",,2024-02-03,20\n'
    "3,Grace,New York,2024-03-04,\n"
)
BAD = (
    "ID,NAME,CITY,JOINED,LIMIT_AMT\n"
    "10,Ok,Oslo,2024-01-01,1\n"
    "11,Bad date,Rome,not a date,2\n"
    "12,,Bern,2024-01-01,3\n"
    "13,Too precise,Kyiv,2024-01-01,1.234\n"
)


def with_landing(url: str, tmp_path: Path, monkeypatch, spec: dict) -> Dms:
    """A DMS home and database with the file load `spec` and an empty landing folder."""
    d = Dms(url, tmp_path / "home", monkeypatch)
    d.import_yaml(yaml.safe_dump({"file_loads": [spec]}))
    (d.home / "landing").mkdir()
    return d


def records_read(monkeypatch) -> list[int]:
    """The lines of the records the Python reader reads from now on (filled as it reads)."""
    from dms_orchestration.engine import file_load

    lines: list[int] = []
    real = file_load.read_records

    def counting(*args, **kwargs):
        names, records = real(*args, **kwargs)
        return names, (lines.append(r.line) or r for r in records)

    monkeypatch.setattr(file_load, "read_records", counting)
    return lines


@pytest.fixture
def files(dms_url, tmp_path, monkeypatch):
    yield with_landing(dms_url, tmp_path, monkeypatch, CUSTOMERS)
    dispose_all()


def land(d: Dms, name: str, text: str, bom: bool = False) -> Path:
    path = d.home / "landing" / name
    path.write_text(text, encoding="utf-8-sig" if bom else "utf-8")
    return path


def dms(*args: str):
    return runner.invoke(app, list(args))


def loaded(d: Dms) -> list[tuple]:
    return d.query(
        "SELECT ID, NAME, CITY, CITY_UPPER, JOINED, CREDIT FROM LANDED_CUSTOMERS ORDER BY ID"
    )


def test_a_csv_file_loads_whole_and_moves_to_the_archive(files):
    path = land(files, "customers_1.csv", GOOD, bom=True)
    scan = dms("files", "scan")
    assert scan.exit_code == 0 and scan.stdout == f"CUSTOMERS_FILE {path}\n"
    done = dms("files", "load", "CUSTOMERS_FILE")
    assert done.exit_code == 0, done.output
    ref, file, status, rows, bad = LINE.match(done.stdout.strip()).groups()
    assert (ref, file, status, rows, bad) == ("CUSTOMERS_FILE", str(path), "PC", "3", "0")
    rows = [(r[0], r[1], r[2], r[3], str(r[4])[:10], r[5]) for r in loaded(files)]
    assert rows == [
        (1, "Lovelace, Ada", "Paris", "PARIS", "2024-01-02", pytest.approx(100.5)),
        (2, "Alan\nTuring", "Unknown", "UNKNOWN", "2024-02-03", pytest.approx(20)),
        (3, "Grace", "New York", "NEW YORK", "2024-03-04", None),
    ]
    assert not path.exists() and (files.home / "archive" / "customers_1.csv").exists()
    log = files.query(
        "SELECT PRCSTS, PARAM1, PARAM2 FROM DMS_PRCLOG WHERE MAPREF = 'CUSTOMERS_FILE'"
    )
    assert [(s, p) for s, p, _ in log] == [("PC", str(path))] and len(log[0][2]) == 64
    counts = files.query("SELECT SRCROWS, INSROWS, ERRROWS, JOBSTS FROM DMS_JOBLOG")
    assert counts == [(3, 3, 0, "PC")]


def test_bad_rows_past_the_threshold_reject_the_whole_file(files):
    path = land(files, "customers_bad.csv", BAD)
    done = dms("files", "load", "CUSTOMERS_FILE")
    assert done.exit_code == 1
    assert LINE.match(done.stdout.strip()).groups()[2:] == ("FL", "0", "3")
    assert "3 bad row(s), more than FILE_MAX_BAD_ROWS = 0" in done.stderr
    assert path.exists()  # not loaded: it stays where it landed
    assert "landed_customers" not in sa.inspect(files.engine).get_table_names() or not loaded(files)
    errors = files.query("SELECT ERRTYP, ERRCD, KEYVAL FROM DMS_JOBERR ORDER BY ERRCD")
    assert errors == [("DATA", "LINE 3", "11"), ("DATA", "LINE 4", "12"), ("DATA", "LINE 5", "13")]
    [rejects] = (files.home / "archive").glob("customers_bad.csv.*.rejects.csv")
    lines = rejects.read_text().splitlines()
    assert lines[0] == "LINE,REASON,ID,NAME,CITY,JOINED,LIMIT_AMT"
    assert lines[1].startswith("3,JOINED: 'not a date' is not a date")
    assert lines[2].startswith("4,NAME is required")
    assert "more than 2 decimals" in lines[3]


@pytest.mark.slow
def test_bad_rows_under_the_threshold_load_the_good_ones(files):
    files.params(FILE_MAX_BAD_ROWS=3)
    land(files, "customers_bad.csv", BAD)
    done = dms("files", "load", "CUSTOMERS_FILE")
    assert done.exit_code == 0, done.output
    assert LINE.match(done.stdout.strip()).groups()[2:] == ("PC", "1", "3")
    assert [r[:2] for r in loaded(files)] == [(10, "Ok")]
    assert files.scalar("SELECT COUNT(*) FROM DMS_JOBERR WHERE ERRTYP = 'DATA'") == 3


@pytest.mark.slow
def test_the_same_file_twice_and_a_file_changed_in_place(files):
    path = land(files, "customers_1.csv", GOOD)
    assert dms("files", "load", "CUSTOMERS_FILE").exit_code == 0
    again = land(files, "customers_1.csv", GOOD)  # the same content lands again
    assert dms("files", "scan").stdout == ""
    twice = dms("files", "load", "CUSTOMERS_FILE", str(again))
    assert twice.exit_code == 0 and "already loaded by PRCID" in twice.stderr
    assert len(loaded(files)) == 3
    changed = land(files, "customers_1.csv", GOOD.replace("Grace", "Grace Hopper"))
    assert dms("files", "scan").stdout == f"CUSTOMERS_FILE {changed}\n"
    assert dms("files", "load", "CUSTOMERS_FILE").exit_code == 0
    assert len(loaded(files)) == 6  # APPEND: the changed file's rows too
    archived = {p.name for p in (files.home / "archive").iterdir()}
    assert path.name in archived  # and the changed one beside it, with its hash
    assert any(re.fullmatch(r"customers_1\.[0-9a-f]{12}\.csv", name) for name in archived)


@pytest.mark.parametrize("load_type", ["TRUNCATE", "UPSERT"])
@pytest.mark.slow
def test_truncate_replaces_and_upsert_merges(files, load_type):
    spec = {**CUSTOMERS, "load_type": load_type}
    files.import_yaml(yaml.safe_dump({"file_loads": [spec]}))
    land(files, "customers_1.csv", GOOD)
    assert dms("files", "load", "CUSTOMERS_FILE").exit_code == 0
    second = "ID,NAME,CITY,JOINED,LIMIT_AMT\n3,Grace H,Arlington,2024-03-04,9\n4,Linus,Portland,,\n"
    if load_type == "UPSERT":
        files.params(FILE_MAX_BAD_ROWS=1)
        second += "4,Linus again,Helsinki,,\n"  # a key the file repeats: a bad row
    land(files, "customers_2.csv", second)
    done = dms("files", "load", "CUSTOMERS_FILE")
    assert done.exit_code == 0, done.output
    names = [r[1] for r in loaded(files)]
    if load_type == "TRUNCATE":
        assert names == ["Grace H", "Linus"]
    else:
        assert names == ["Lovelace, Ada", "Alan\nTuring", "Grace H", "Linus"]
        assert LINE.match(done.stdout.strip()).groups()[3:] == ("2", "1")


def test_an_upserts_statements_scan_no_table_once_per_row_on_sqlite():
    """Each statement that applies an UPSERT reads one table through and looks the other
    up by key (an index, or one SQLite builds for the statement), never a scan of the
    target per row of the file: that plan (a correlated NOT EXISTS) took 6 s for 20,000
    rows already present and grew with their square."""
    from dms_orchestration.db.dialects import dialect_of
    from dms_orchestration.engine import file_sql

    engine = sa.create_engine("sqlite://")
    d = dialect_of(engine)
    keys, names = ["id", "k2"], ["id", "k2", "name"]
    statements = [
        file_sql.insert_new("tgt", names, "typed", keys),
        d.update_from("tgt", "typed", file_sql.key_match(keys), [("name", "A.name")]),
    ]
    with engine.connect() as conn:
        for table in ("tgt", "typed"):
            conn.exec_driver_sql(f"CREATE TABLE {table} (id INTEGER, k2 TEXT, name TEXT)")
        for statement in statements:
            plan = [row[3] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}")]
            assert sum(step.startswith("SCAN") for step in plan) == 1, (statement, plan)
            assert any(step.startswith("SEARCH") for step in plan), (statement, plan)


@pytest.mark.slow
def test_xlsx_with_excel_dates_on_a_named_sheet(files, tmp_path):
    from openpyxl import Workbook

    spec = {**CUSTOMERS, "type": "XLSX", "path": "landing/*.xlsx", "delimiter": "People"}
    files.import_yaml(yaml.safe_dump({"file_loads": [spec]}))
    book = Workbook()
    book.active.title = "Other"
    sheet = book.create_sheet("People")
    sheet.append(["ID", "NAME", "CITY", "JOINED", "LIMIT_AMT"])
    sheet.append([1, "Ada", "Paris", dt.datetime(2024, 1, 2), 100.5])
    sheet.append([2, "Alan", None, dt.date(2024, 2, 3), 20])
    book.save(files.home / "landing" / "people.xlsx")
    done = dms("files", "load", "CUSTOMERS_FILE")
    assert done.exit_code == 0, done.output
    rows = [(r[0], r[1], r[2], str(r[4])[:10]) for r in loaded(files)]
    assert rows == [(1, "Ada", "Paris", "2024-01-02"), (2, "Alan", "Unknown", "2024-02-03")]


@pytest.mark.parametrize("shape", ["array", "lines"])
def test_json_arrays_and_json_lines(files, shape):
    spec = {**CUSTOMERS, "type": "JSON", "path": "landing/*.json"}
    files.import_yaml(yaml.safe_dump({"file_loads": [spec]}))
    records = [
        {"ID": 1, "NAME": "Ada", "CITY": "Paris", "JOINED": "2024-01-02", "LIMIT_AMT": 100.5},
        {"ID": 2, "NAME": "Alan", "CITY": None, "JOINED": None, "LIMIT_AMT": None},
        {"id": 3, "Name": "Grace", "city": "Oslo"},  # other case, keys missing
    ]
    text = json.dumps(records) if shape == "array" else "\n".join(map(json.dumps, records))
    land(files, "people.json", text)
    done = dms("files", "load", "CUSTOMERS_FILE")
    assert done.exit_code == 0, done.output
    assert [(r[0], r[1], r[2]) for r in loaded(files)] == [
        (1, "Ada", "Paris"),
        (2, "Alan", "Unknown"),
        (3, "Grace", "Oslo"),
    ]


def test_a_transform_that_is_not_one_expression_is_refused(files):
    spec = yaml.safe_load(yaml.safe_dump(CUSTOMERS))
    spec["columns"][3]["transform"] = "UPPER(SRC.CITY); DROP TABLE DMS_PARAMS"
    files.import_yaml(yaml.safe_dump({"file_loads": [spec]}))
    land(files, "customers_1.csv", GOOD)
    done = dms("files", "load", "CUSTOMERS_FILE")
    assert done.exit_code == 1
    assert "file load CUSTOMERS_FILE is not valid: CITY_UPPER: TRNSFRM" in done.stderr
    assert files.scalar("SELECT COUNT(*) FROM DMS_PARAMS") >= 0  # still there


def test_file_loads_round_trip_through_the_mapping_file(files):
    exported = export_mapping_file(files.engine)
    [spec] = exported.file_loads
    assert spec.ref == "CUSTOMERS_FILE" and [c.name for c in spec.columns][:2] == ["ID", "NAME"]
    assert spec.columns[3].transform == "UPPER(SRC.CITY)" and spec.columns[0].key


def test_readers_give_line_numbers_of_multi_line_records(tmp_path):
    path = tmp_path / "f.csv"
    path.write_text('A;B\n1;"x\ny"\n2;z\n', encoding="utf-8-sig")
    names, records = read_records(path, "CSV", ";")
    assert names == ["A", "B"]
    assert [(r.line, r.values) for r in records] == [
        (2, {"A": "1", "B": "x\ny"}),
        (4, {"A": "2", "B": "z"}),
    ]


@pytest.mark.slow
def test_each_landed_file_is_a_partition_its_sensor_adds_and_runs(files, tmp_path):
    defs = files.defs()
    sensor = defs.get_sensor_def("dms_files_customers_file")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    settled = time.time() - 60  # landed a minute ago: no longer being written
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:

        def tick(cursor=None):
            context = dg.build_sensor_context(
                instance=instance,
                instance_ref=instance.get_ref(),  # (the daemon's context has one)
                resources=default_resources(),
                definitions=defs,
                cursor=cursor,
            )
            return sensor.evaluate_tick(context)

        path = land(files, "customers_1.csv", GOOD)
        os.utime(path, (settled, settled))
        result = tick()
        [request] = result.run_requests
        assert re.fullmatch(r"customers_1\.csv@[0-9a-f]{12}", request.partition_key)
        [added] = result.dynamic_partitions_requests
        instance.add_dynamic_partitions(added.partitions_def_name, list(added.partition_keys))
        run = defs.resolve_job_def("customers_file_files").execute_in_process(
            run_config=QUIET, instance=instance, partition_key=request.partition_key
        )
        assert run.success
        [event] = run.get_asset_materialization_events()
        assert event.materialization.metadata["dagster/row_count"].value == 3
        assert len(loaded(files)) == 3
        # loaded (and archived): nothing new; the same content landing again: still nothing
        assert tick(result.cursor).run_requests == []
        again = land(files, "customers_1.csv", GOOD)
        os.utime(again, (settled, settled))
        assert tick(result.cursor).run_requests == []
        # a changed file: a new partition
        changed = land(files, "customers_1.csv", GOOD.replace("Grace", "Grace H"))
        os.utime(changed, (settled, settled))
        [request2] = tick(result.cursor).run_requests
        assert request2.partition_key != request.partition_key


VALUES = {
    "INTEGER": ["1", " -42 ", "+7", "2147483647", "2147483648", "1.0", "1e3", "x", "", "+-1"],
    "BIGINT": ["9223372036854775807", "9223372036854775808", "-3"],
    "NUMBER(6,2)": ["1.5", "1234.56", "12345.6", "1.234", "1.230", "-0.01", ".5", "5.", "1E2"],
    "NUMBER": ["3.14159", "1e5", "abc"],
    "FLOAT": ["1.5e3", "-2", "inf", "nan", "x"],
    "DATE": ["2024-02-29", "2023-02-29", "2024-1-2", "02/01/2024", " 2024-03-04 "],
    "TIMESTAMP": ["2024-01-02 03:04:05", "2024-01-02T03:04:05.123456", "2024-01-02", "noon"],
    "VARCHAR(3)": ["abc", "abcd", "é€x"],
    "BOOLEAN": ["true", "N", " yes ", "maybe", "1"],
}


def test_the_servers_checks_are_never_laxer_than_the_python_rules(pg_url):
    """The PostgreSQL fast path vouches for a file only when every value passes its SQL
    check and the cast that stores it; a value the Python rules refuse must fail one of
    them too (they may refuse more)."""
    from dms_orchestration.engine.file_copy import fits_sql
    from dms_orchestration.engine.file_values import value_problem
    from dms_orchestration.metadata.datatypes import parse_data_type

    engine = sa.create_engine(pg_url)
    try:
        with engine.connect() as conn:
            for type_text, values in VALUES.items():
                dtype = parse_data_type(type_text)
                for value in values:
                    try:
                        v = "CAST(:v AS TEXT)"
                        stored = f"CAST(trim({v}) AS {dtype.sqlalchemy_type().compile()})"
                        fits = (
                            conn.execute(
                                sa.text(f"SELECT CASE WHEN {fits_sql(v, dtype)} THEN {stored} END"),
                                {"v": value},
                            ).first()[0]
                            is not None
                        )
                    except sa.exc.DBAPIError:
                        conn.rollback()
                        fits = False  # an error: the Python path takes the file
                    python_ok = value_problem(value, dtype) is None
                    assert not fits or python_ok, (type_text, value)
    finally:
        engine.dispose()


@pytest.mark.slow
def test_a_clean_csv_into_postgresql_is_read_by_the_server(pg_url, tmp_path, monkeypatch):
    """COPY reads a clean file (the Python reader reads none of its records); one bad
    row sends the file to the Python path, which names it."""
    d = with_landing(pg_url, tmp_path, monkeypatch, CUSTOMERS)
    read = records_read(monkeypatch)
    try:
        land(d, "customers_1.csv", GOOD, bom=True)
        assert dms("files", "load", "CUSTOMERS_FILE").exit_code == 0
        assert read == [] and len(loaded(d)) == 3
        d.params(FILE_MAX_BAD_ROWS=5)
        land(d, "customers_2.csv", BAD)
        done = dms("files", "load", "CUSTOMERS_FILE")
        assert done.exit_code == 0 and read == [2, 3, 4, 5]
        assert LINE.match(done.stdout.strip()).groups()[3:] == ("1", "3")
    finally:
        dispose_all()


def test_validation_covers_file_loads_and_reports(files):
    files.sql("UPDATE DMS_FLUPLD SET LDTYP = 'MERGE' WHERE FLUPLDREF = 'CUSTOMERS_FILE'")
    files.sql("UPDATE DMS_FLUPLDDTL SET TRGCLDTYP = 'WIDGET' WHERE TRGCLNM = 'JOINED'")
    files.sql(
        "INSERT INTO DMS_RPRT (RPRTID, RPRTREF, MAPRSQLCD, OUTFMT, OUTPATH, CURFLG) "
        "VALUES (1, 'NO_SQL', 'NOPE', 'CSV', 'out/x.csv', 'Y')"
    )
    done = dms("mappings", "validate")
    assert done.exit_code == 1
    text = " ".join(done.stdout.split())
    assert "CUSTOMERS_FILE" in text and "LDTYP 'MERGE'" in text and "WIDGET" in text
    assert "NO_SQL" in text and "MAPRSQLCD 'NOPE'" in text
    recorded = files.query("SELECT MAPREF, ERRTYP FROM DMS_MAPERR ORDER BY MAPREF")
    assert {r for r, _ in recorded} == {"CUSTOMERS_FILE", "NO_SQL"}
    assert {t for _, t in recorded} == {"ERROR"}
