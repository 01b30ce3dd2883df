"""The PostgreSQL fast path that copies a CSV file straight into its target while a
second session checks the values (engine/file_copy.py: FileCheck, checked_column): it
never takes a value the Python rules refuse, it is the path a file of the target's own
columns takes, and a value it cannot vouch for sends the file to the Python path with
nothing applied."""

from __future__ import annotations

import csv
import io
import threading

import pytest
import sqlalchemy as sa

from dms_orchestration.db.connect import dispose_all
from dms_orchestration.db.dialects import dialect_of
from dms_orchestration.engine import file_load
from dms_orchestration.engine.file_copy import CopyOptions, FileCheck, checked_column, copy_into
from dms_orchestration.engine.file_values import value_problem
from dms_orchestration.metadata.datatypes import parse_data_type
from dms_orchestration_tests.test_defs import Dms
from dms_orchestration_tests.test_file_loads import (
    LINE,
    VALUES,
    dms,
    land,
    records_read,
    with_landing,
)

# values where the server's own input is laxer than the Python rules, per type
LAXER = {
    "BIGINT": ["-9223372036854775808", "-9223372036854775807", " 12 "],
    "SMALLINT": ["-32768", "-32767", "32767", "40000"],
    "NUMBER(6,2)": ["NaN", "Infinity", "-inf", "1.230", "9999.99", "10000", "-9999.995", "0.000"],
    "NUMBER": ["NaN", "Infinity", "-Infinity", "1e5"],
    "FLOAT": ["0x10", "Infinity", "-inf", "NaN", "1e400", "1.5"],
    "DATE": ["10000-01-01", "20240229", "2024-02-29 BC", "epoch", "today", "Jan 5 2024"],
    "TIMESTAMP": ["epoch", "2024-01-02 03:04:05+02", "2024-01-02 03:04"],
    "VARCHAR(3)": ["ab    ", "abc ", "é€x"],
    "CHAR(2)": ["ab", "abc", "a  "],
    "BOOLEAN": ["on", "off", "tru", "TRUE "],
}
# a value of each type the fast path must take (it may refuse more than the rules, not these)
TAKEN = {
    "INTEGER": " -42 ",
    "BIGINT": "-9223372036854775807",
    "SMALLINT": "-32767",
    "NUMBER(6,2)": "1.230",
    "NUMBER": "3.14159",
    "FLOAT": "1.5e3",
    "DATE": "2024-02-29",
    "TIMESTAMP": "2024-01-02 03:04:05",
    "VARCHAR(3)": "é€x",
    "CHAR(2)": "ab",
    "BOOLEAN": " yes ",
}


def _one_value_file(tmp_path, n: int, value: str):
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow([value])
    path = tmp_path / f"v{n}.csv"
    path.write_text("V\n" + out.getvalue(), encoding="utf-8")
    return path


def _copied(conn, path, table: str, definition: str, options) -> bool:
    """Whether COPY puts the file's one value into a new table of that one column."""
    conn.exec_driver_sql(f"CREATE TABLE {table} ({definition})")
    savepoint = conn.begin_nested()
    try:
        copied = copy_into(conn, path, table, ['"v"'], options) == 1
        savepoint.commit()
        return copied
    except sa.exc.DBAPIError:
        savepoint.rollback()
        return False


def test_the_servers_checks_take_no_value_the_python_rules_refuse(pg_url, tmp_path):
    """A value is taken straight into the target only when the checking session's copy
    refused nothing (FileCheck: the refusals as COPY ... WHERE) and the target's column
    took it; into a staging table only when the column's CHECK (the same refusals) took
    it. A value the Python rules refuse fails each way; the values of TAKEN pass both."""
    engine = sa.create_engine(pg_url)
    d = dialect_of(engine)
    options = CopyOptions(",", True)
    cases = [(t, v) for t, vs in VALUES.items() for v in vs if v] + [
        (t, v) for t, vs in LAXER.items() for v in vs
    ]
    cases += list(TAKEN.items())
    straight: dict[tuple[str, str], bool] = {}
    staged: dict[tuple[str, str], bool] = {}
    try:
        with engine.connect() as conn:
            for n, (type_text, value) in enumerate(cases):
                dtype = parse_data_type(type_text)
                path = _one_value_file(tmp_path, n, value)
                checked = checked_column(d, "v", dtype, False)
                check = FileCheck(engine, d, path, f"k{n}", [checked], options)
                column = f"v {d.type_sql(dtype.sqlalchemy_type())}"
                stored = _copied(conn, path, f"t{n}", column, options)
                straight[(type_text, value)] = stored and check.clean()
                staged[(type_text, value)] = _copied(
                    conn, path, f"s{n}", checked.definition(), options
                )
            conn.rollback()
    finally:
        engine.dispose()
    for taken in (straight, staged):
        laxer = [
            case
            for case, ok in taken.items()
            if ok and value_problem(case[1], parse_data_type(case[0]))
        ]
        assert laxer == []
        assert [case for case in TAKEN.items() if not taken[case]] == []


STRAIGHT = {
    "ref": "PLAIN_FILE",
    "type": "CSV",
    "path": "landing/plain*.csv",
    "archive": "archive",
    "target": {"table": "LANDED_PLAIN"},
    "load_type": "APPEND",
    "columns": [
        {"name": "ID", "type": "INTEGER", "source": "ID", "required": True},
        {"name": "NAME", "type": "VARCHAR(20)", "source": "NAME"},
        {"name": "JOINED", "type": "DATE", "source": "JOINED"},
        {"name": "CREDIT", "type": "NUMBER(10,2)", "source": "LIMIT_AMT"},
        {"name": "ACTIVE", "type": "BOOLEAN", "source": "ACTIVE"},
    ],
}
PLAIN = (
    "ID,LIMIT_AMT,NAME,JOINED,ACTIVE\n"
    '1,100.50,"Lovelace, Ada",2024-01-02,yes\n'
    '2,20,"Alan\nTuring",2024-02-29,n\n'
    "3,,Grace,,\n"
)


@pytest.fixture
def plain(pg_url, tmp_path, monkeypatch):
    """The file load's paths, counted: straight into the target, staged, the Python reader."""
    d = with_landing(pg_url, tmp_path, monkeypatch, STRAIGHT)
    d.paths = []
    for name in ("_copy_straight", "_copy_staged", "read_records"):
        real = getattr(file_load, name)

        def counted(*args, _real=real, _name=name, **kwargs):
            d.paths.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(file_load, name, counted)
    yield d
    dispose_all()


def _rows(d: Dms) -> list[tuple]:
    return [
        (i, n, str(j) if j else None, None if c is None else float(c), a)
        for i, n, j, c, a in d.query(
            "SELECT ID, NAME, JOINED, CREDIT, ACTIVE FROM LANDED_PLAIN ORDER BY ID"
        )
    ]


@pytest.mark.parametrize("load_type", ["APPEND", "TRUNCATE"])
def test_a_file_of_the_targets_columns_is_copied_straight_into_it(plain, load_type):
    plain.sql("UPDATE DMS_FLUPLD SET LDTYP = :t", t=load_type)
    first = PLAIN.replace("1,100.50", "4,100.50").replace("2,20", "5,20").replace("3,,", "6,,")
    land(plain, "plain_1.csv", first)
    assert dms("files", "load", "PLAIN_FILE").exit_code == 0
    land(plain, "plain_2.csv", PLAIN, bom=True)
    done = dms("files", "load", "PLAIN_FILE")
    assert done.exit_code == 0, done.output
    assert LINE.match(done.stdout.strip()).groups()[2:] == ("PC", "3", "0")
    assert plain.paths == ["read_records", "_copy_straight"] * 2  # (the reader reads the header)
    expected = [
        (1, "Lovelace, Ada", "2024-01-02", 100.5, True),
        (2, "Alan\nTuring", "2024-02-29", 20.0, False),
        (3, "Grace", None, None, None),
    ]
    if load_type == "APPEND":  # the first file's rows stay
        expected += [(n + 3, *row[1:]) for n, row in enumerate(expected, 1)]
    assert _rows(plain) == expected


@pytest.mark.parametrize(
    "bad, reason",
    [
        ("1.234", "CREDIT: 1.234 has more than 2 decimals"),  # COPY alone would round it
        ("01/02/2024", "JOINED: '01/02/2024' is not a date"),  # COPY alone would read it
        ("Ada" + " " * 20, "NAME: 23 characters"),  # COPY alone would cut the spaces
        ("", "ID is required (ID is empty)"),  # COPY alone would store NULL
    ],
)
def test_a_value_the_copy_would_change_sends_the_file_to_the_python_path(plain, bad, reason):
    land(plain, "plain_1.csv", PLAIN)
    assert dms("files", "load", "PLAIN_FILE").exit_code == 0
    column = {"1.234": 1, "01/02/2024": 3, "": 0}.get(bad, 2)
    fields = "7,1,Ada,2024-01-03,y".split(",")
    fields[column] = bad
    land(plain, "plain_2.csv", PLAIN.replace("1,100.50", "6,100.50") + ",".join(fields) + "\n")
    plain.paths.clear()
    done = dms("files", "load", "PLAIN_FILE")
    assert done.exit_code == 1
    assert LINE.match(done.stdout.strip()).groups()[2:] == ("FL", "0", "1")
    assert plain.paths == ["read_records", "_copy_straight"]  # then the reader reads the rows
    assert [r[0] for r in _rows(plain)] == [1, 2, 3]  # nothing of the second file
    [message] = plain.query("SELECT ERRMSG FROM DMS_JOBERR")
    assert "line 6" in message[0] and reason in message[0]


def test_a_target_of_other_types_is_loaded_through_the_staging_table(plain):
    other = "ID BIGINT, NAME TEXT, JOINED DATE, CREDIT NUMERIC, ACTIVE BOOLEAN"
    plain.sql(f"CREATE TABLE LANDED_PLAIN ({other})")
    land(plain, "plain_1.csv", PLAIN)
    done = dms("files", "load", "PLAIN_FILE")
    assert done.exit_code == 0, done.output
    assert plain.paths == ["read_records", "_copy_staged"]
    assert [r[:3] for r in _rows(plain)] == [
        (1, "Lovelace, Ada", "2024-01-02"),
        (2, "Alan\nTuring", "2024-02-29"),
        (3, "Grace", None),
    ]


@pytest.mark.parametrize("straight", [True, False])
def test_a_record_the_server_cannot_read_is_named_by_the_python_path(plain, straight):
    """A malformed record (a field too many) fails the server's COPY; the file goes to
    the Python path, which names the line (not the driver's error)."""
    if not straight:  # a transform: the staging table of text
        plain.sql("UPDATE DMS_FLUPLDDTL SET TRNSFRM = 'UPPER(SRC.NAME)' WHERE TRGCLNM = 'NAME'")
    land(plain, "plain_1.csv", PLAIN + "4,1,Ada,2024-01-01,y,extra\n")
    done = dms("files", "load", "PLAIN_FILE")
    assert done.exit_code == 1
    assert LINE.match(done.stdout.strip()).groups()[2:] == ("FL", "0", "1")
    assert plain.paths[:2] == ["read_records", "_copy_straight" if straight else "_copy_staged"]
    [message] = plain.query("SELECT ERRMSG FROM DMS_JOBERR")
    assert message[0].startswith("plain_1.csv line 6:")


def test_a_staged_file_is_checked_as_copy_reads_the_columns_loaded_as_they_are(
    pg_url, tmp_path, monkeypatch
):
    """With a TRNSFRM the file goes through a staging table: its columns loaded as they
    are into one target column are checked as COPY reads them; CITY, which a TRNSFRM
    reads, stays text (checked as the rows are applied)."""
    from dms_orchestration_tests.test_file_loads import CUSTOMERS, GOOD, loaded

    d = with_landing(pg_url, tmp_path, monkeypatch, CUSTOMERS)
    checked = []
    real = file_load.copy_file

    def spied(*args, **kwargs):
        checked.append(sorted(args[-1]))
        return real(*args, **kwargs)

    monkeypatch.setattr(file_load, "copy_file", spied)
    try:
        land(d, "customers_1.csv", GOOD)
        assert dms("files", "load", "CUSTOMERS_FILE").exit_code == 0
        assert checked == [["ID", "JOINED", "LIMIT_AMT", "NAME"]]
        assert [r[2:4] for r in loaded(d)] == [
            ("Paris", "PARIS"),
            ("Unknown", "UNKNOWN"),
            ("New York", "NEW YORK"),
        ]
    finally:
        dispose_all()


def test_a_stop_during_the_straight_copy_ends_the_check_and_applies_nothing(plain, monkeypatch):
    """A stop (an interruption, as Ctrl-C or a terminated run) while the target's COPY
    runs: the checking session is ended, the file's transaction rolls back, DMS_PRCLOG
    says ST, and the file stays where it landed."""
    from dms_orchestration.engine.file_load import load_file
    from dms_orchestration.metadata.catalog import load_file_loads

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(file_load, "copy_into", stopped)
    many = "".join(f"{n},1.5,Name {n},2024-01-02,y\n" for n in range(200_000))
    path = land(plain, "plain_1.csv", PLAIN + many)  # (a check that outlasts the stop)
    with pytest.raises(KeyboardInterrupt):
        load_file(load_file_loads(plain.engine)["PLAIN_FILE"], path, settings=plain.settings)
    assert [t for t in threading.enumerate() if t.name.startswith("dms-file-check")] == []
    assert plain.query("SELECT PRCSTS FROM DMS_PRCLOG") == [("ST",)]
    assert not sa.inspect(plain.engine).has_table("landed_plain") and path.exists()


@pytest.mark.parametrize("straight", [True, False])
def test_empty_lines_at_the_end_of_a_file_keep_it_on_the_servers_path(plain, monkeypatch, straight):
    """An editor's or an export's empty lines after the last record are no records (as
    for the Python reader): the server still reads the file (the Python reader reads
    none of its records), and the rows are the file's."""
    if not straight:  # a transform: the staging table
        plain.sql("UPDATE DMS_FLUPLDDTL SET TRNSFRM = 'UPPER(SRC.NAME)' WHERE TRGCLNM = 'NAME'")
    records = records_read(monkeypatch)
    land(plain, "plain_1.csv", PLAIN.replace("\n", "\r\n") + "\r\n\n\r\n")
    done = dms("files", "load", "PLAIN_FILE")
    assert done.exit_code == 0, done.output
    assert LINE.match(done.stdout.strip()).groups()[2:] == ("PC", "3", "0")
    assert records == []
    assert [r[0] for r in _rows(plain)] == [1, 2, 3]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1 << 18])
def test_the_copy_stream_drops_only_the_line_ends_at_the_files_end_whatever_the_piece(size):
    from dms_orchestration.engine.file_copy import _WithoutTrailingBlankLines

    data = b'a,b\r\n1,"x\n\ny"\r\n\r\n2,\n\n\r\n\n'
    reader = _WithoutTrailingBlankLines(io.BytesIO(data))
    pieces = list(iter(lambda: reader.read(size), b""))
    assert b"".join(pieces) == data.rstrip(b"\r\n")
