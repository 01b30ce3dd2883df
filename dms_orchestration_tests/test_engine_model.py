"""The load engine against a reference model: hypothesis draws sequences of source
snapshots, each is loaded for real (SQLite and PostgreSQL, 1 or 3 chunks, with and
without a KEY checkpoint, each delete handling; on PostgreSQL also 1 chunk read in
key parts side by side) and the target table and the load's counts must be what a
plain-Python SCD model says.

The model compares business content only: keys, column values, CURFLG and the number
of versions per key, never timestamps or SKEY values. RWHKEY is held to
dms_orchestration.db.rowhash.row_hash, the reference implementation.
"""

from __future__ import annotations

import importlib
import itertools
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, event, example, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from dms_orchestration.db import schema as s
from dms_orchestration.db.connect import create_engine, dispose_all
from dms_orchestration.db.ddl import init_schema
from dms_orchestration.db.rowhash import row_hash
from dms_orchestration.engine import load
from dms_orchestration.engine.checkpoint import last_checkpoint
from dms_orchestration.engine.checks import TableRows
from dms_orchestration.engine.errors import DataError
from dms_orchestration.metadata.authoring import import_mapping_file
from dms_orchestration.metadata.catalog import load_catalog
from dms_orchestration.metadata.mapping_file import parse_mapping_file
from dms_orchestration.settings import load_settings

pytestmark = pytest.mark.slow  # property tests against the model: hundreds of loads

COLUMNS = ("NAME", "CITY", "EMAIL", "AMOUNT")  # the tracked columns, EXCSEQ order
HASH_TYPES = [("STRING", None), ("STRING", None), ("STRING", None), ("DECIMAL", 2)]
COUNT_NAMES = ("srcrows", "insrows", "updrows", "exprows", "delrows", "unchrows")
CENT = Decimal("0.01")


# ---------------------------------------------------------------- the reference model


class ScdModel:
    """What a target table holds after a sequence of loads, in plain Python.

    A row is {key, values, current, version}. `scd_types` gives each tracked column's
    SCD type (1 overwrite in place, 2 new version). An SCD1 table never closes a row."""

    def __init__(self, scd_types: tuple[int, ...], delete_handling: str) -> None:
        self.scd_types = scd_types
        self.scd2 = 2 in scd_types
        self.delete_handling = delete_handling
        self.rows: list[dict] = []

    def current(self) -> dict[int, dict]:
        return {r["key"]: r for r in self.rows if r["current"]}

    def _changed(self, old: tuple, new: tuple, scd: int) -> bool:
        return any(o != n for o, n, t in zip(old, new, self.scd_types, strict=True) if t == scd)

    def _insert(self, key: int, values: tuple) -> None:
        version = 1 + sum(r["key"] == key for r in self.rows)
        self.rows.append({"key": key, "values": values, "current": True, "version": version})

    def apply(self, snapshot: dict[int, tuple], full: bool) -> dict[str, int]:
        """Load `snapshot` (key -> tracked values, the rows the load reads); `full`: the
        extract is the whole source, so keys absent from it are deleted / expired."""
        counts = dict.fromkeys(COUNT_NAMES, 0)
        counts["srcrows"] = len(snapshot)
        current = self.current()
        for key, values in snapshot.items():
            row = current.get(key)
            if row is None:
                self._insert(key, values)
                counts["insrows"] += 1
            elif self._changed(row["values"], values, 2):
                row["current"] = False
                self._insert(key, values)
                counts["exprows"] += 1
                counts["insrows"] += 1
            elif self._changed(row["values"], values, 1):
                row["values"] = values
                counts["updrows"] += 1
            else:
                counts["unchrows"] += 1
        absent = {k for k in current if k not in snapshot} if full else set()
        if self.delete_handling == "DELETE":
            kept = [r for r in self.rows if r["key"] not in absent]
            counts["delrows"] = len(self.rows) - len(kept)
            self.rows = kept
        elif self.delete_handling == "EXPIRE" and self.scd2:
            for key in absent:
                current[key]["current"] = False
                counts["exprows"] += 1
        return counts

    def content(self) -> Counter:
        return Counter((r["key"], r["values"], r["current"]) for r in self.rows)

    def versions(self) -> Counter:
        return Counter(r["key"] for r in self.rows)


def test_model_itself():
    """A hand-checked history, so the model is not only trusted by the engine."""
    m = ScdModel((2, 2, 1, 1), "EXPIRE")
    assert m.apply({1: ("a", "x", "e", None), 2: ("b", "y", "", CENT)}, full=True) == dict(
        srcrows=2, insrows=2, updrows=0, exprows=0, delrows=0, unchrows=0
    )
    # 1: SCD1 change only; 2: SCD2 change; 3 new
    got = m.apply(
        {1: ("a", "x", "f", None), 2: ("b", "yy", "", CENT), 3: ("c", None, None, None)}, True
    )
    assert got == dict(srcrows=3, insrows=2, updrows=1, exprows=1, delrows=0, unchrows=0)
    assert m.versions() == Counter({1: 1, 2: 2, 3: 1})
    # 1 and 3 absent from a full extract: closed; 2 unchanged
    got = m.apply({2: ("b", "yy", "", CENT)}, full=True)
    assert got == dict(srcrows=1, insrows=0, updrows=0, exprows=2, delrows=0, unchrows=1)
    assert set(m.current()) == {2}
    # not full: absent keys stay
    assert m.apply({}, full=False)["exprows"] == 0
    d = ScdModel((2, 2, 1, 1), "DELETE")
    d.apply({1: ("a", "x", "e", None)}, True)
    d.apply({1: ("b", "x", "e", None)}, True)
    assert d.apply({}, True)["delrows"] == 2 and d.rows == []
    one = ScdModel((1, 1, 1, 1), "EXPIRE")  # EXPIRE does nothing on an SCD1 table
    one.apply({1: ("a", "x", "e", None)}, True)
    assert one.apply({}, True) == dict.fromkeys(COUNT_NAMES, 0)
    assert one.content() == Counter({(1, ("a", "x", "e", None), True): 1})


# ---------------------------------------------------------------- the database side


@dataclass(frozen=True)
class Config:
    scd_types: tuple[int, ...]
    delete_handling: str

    @property
    def scd2(self) -> bool:
        return 2 in self.scd_types

    def __str__(self) -> str:
        return f"SCD{2 if self.scd2 else 1}-{self.delete_handling}"


SCD2_TYPES = (2, 2, 1, 1)
SCD1_TYPES = (1, 1, 1, 1)
CONFIGS = [
    Config(SCD2_TYPES, "EXPIRE"),
    Config(SCD2_TYPES, "DELETE"),
    Config(SCD1_TYPES, "DELETE"),
    Config(SCD2_TYPES, "IGNORE"),
    Config(SCD1_TYPES, "EXPIRE"),
]

SOURCE_DDL = (
    "CREATE TABLE SRC_T (ID INTEGER, NAME VARCHAR(20), CITY VARCHAR(20), EMAIL VARCHAR(40), "
    "AMOUNT NUMERIC(10,2), UPD_SEQ INTEGER)"
)


def mapping_yaml(cfg: Config, checkpoint: bool) -> str:
    name, city, email, amount = cfg.scd_types
    chk = "    checkpoint: {strategy: KEY, column: UPD_SEQ}\n" if checkpoint else ""
    return f"""
sql:
  - code: SRC_T
    sql: SELECT ID, NAME, CITY, EMAIL, AMOUNT, UPD_SEQ FROM SRC_T
mappings:
  - ref: MODEL
    target: {{table: TGT_T}}
    sql: SRC_T
    delete_handling: {cfg.delete_handling}
{chk}    columns:
      - {{name: ID, type: INTEGER, key: 1, logic: SRC.ID, order: 1}}
      - {{name: NAME, type: VARCHAR(20), logic: SRC.NAME, scd: {name}, order: 2}}
      - {{name: CITY, type: VARCHAR(20), logic: SRC.CITY, scd: {city}, order: 3}}
      - {{name: EMAIL, type: VARCHAR(40), logic: SRC.EMAIL, scd: {email}, order: 4}}
      - {{name: AMOUNT, type: "NUMBER(10,2)", logic: SRC.AMOUNT, scd: {amount}, order: 5}}
"""


def _amount(value) -> Decimal | None:
    return None if value is None else Decimal(str(value)).quantize(CENT)


class Harness:
    """One database per test function; every hypothesis example starts from an empty
    target, an empty source and no checkpoint (DMS_JOBLOG cleared)."""

    def __init__(self, url: str, tmp_path, cfg: Config, checkpoint: bool) -> None:
        self.url = url
        self.cfg = cfg
        self.engine = create_engine(url)
        self.sqlite = self.engine.dialect.name == "sqlite"
        init_schema(self.engine)
        with self.engine.begin() as conn:
            conn.exec_driver_sql(SOURCE_DDL)
        import_mapping_file(self.engine, parse_mapping_file(mapping_yaml(cfg, checkpoint)))
        self.mapping = load_catalog(self.engine).mappings["MODEL"]
        self.settings = load_settings(url=url, env={"DMS_HOME": str(tmp_path)})

    def reset(self) -> None:
        leftovers = [
            n
            for n in sa.inspect(self.engine).get_table_names()
            if n.lower() == "tgt_t" or n.lower().startswith(("dms_s_", "dms_a_"))
        ]
        with self.engine.begin() as conn:
            for name in leftovers:
                conn.exec_driver_sql(f"DROP TABLE {name}")
            conn.exec_driver_sql("DELETE FROM SRC_T")
            conn.execute(sa.delete(s.dms_joblog))

    def put_source(self, rows: list[tuple]) -> None:
        """Replace the source table: rows are (ID, NAME, CITY, EMAIL, AMOUNT, UPD_SEQ)."""
        if self.sqlite:  # the sqlite3 driver binds no Decimal
            rows = [(*r[:4], None if r[4] is None else str(r[4]), r[5]) for r in rows]
        with self.engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM SRC_T")
            if rows:
                conn.exec_driver_sql(
                    "INSERT INTO SRC_T (ID, NAME, CITY, EMAIL, AMOUNT, UPD_SEQ) "
                    "VALUES (%s, %s, %s, %s, %s, %s)"
                    if not self.sqlite
                    else "INSERT INTO SRC_T VALUES (?, ?, ?, ?, ?, ?)",
                    rows,
                )

    def load(self, chunks: int, full: bool):
        return load(
            self.mapping, None, chunks=chunks, full=full, settings=self.settings, count_rows=True
        )

    def dump(self) -> list[tuple]:
        """Every target row, every column, in SKEY order (for 'nothing changed')."""
        with self.engine.connect() as conn:
            if not sa.inspect(conn).has_table("tgt_t"):
                return []
            return [tuple(r) for r in conn.exec_driver_sql("SELECT * FROM TGT_T ORDER BY SKEY")]

    def joberr_types(self) -> list[str]:
        with self.engine.connect() as conn:
            return list(conn.execute(sa.select(s.dms_joberr.c.errtyp)).scalars())

    def check(self, model: ScdModel) -> None:
        audit = ", CURFLG, VLDTO" if self.cfg.scd2 else ""
        with self.engine.connect() as conn:
            rows = conn.exec_driver_sql(
                f"SELECT ID, {', '.join(COLUMNS)}, SKEY, RWHKEY{audit} FROM TGT_T"
            ).all()
        content = Counter()
        for r in rows:
            values = (r[1], r[2], r[3], _amount(r[4]))
            current = r[7] == "Y" if self.cfg.scd2 else True
            content[(r[0], values, current)] += 1
            assert r[6] == row_hash(values, HASH_TYPES), f"RWHKEY of {tuple(r)}"
            if self.cfg.scd2:
                assert r[7] in ("Y", "N"), r
                assert (r[8] is None) == (r[7] == "Y"), f"VLDTO NULL exactly on current: {r}"
        assert Counter(r[0] for r in rows) == model.versions(), "versions per key"
        assert sorted(content.items(), key=repr) == sorted(model.content().items(), key=repr)
        skeys = [r[5] for r in rows]
        assert len(skeys) == len(set(skeys)), "SKEYs are unique"
        if self.cfg.scd2:
            currents = Counter(r[0] for r in rows if r[7] == "Y")
            assert all(n == 1 for n in currents.values()), currents
            assert set(currents) == set(model.current())


_names = itertools.count()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'model.db'}"
    return request.getfixturevalue("pg_server").create_database(f"model{next(_names)}")


@pytest.fixture
def harness(db_url, tmp_path, cfg, checkpoint):
    h = Harness(db_url, tmp_path, cfg, checkpoint)
    yield h
    h.engine.dispose()
    dispose_all()  # the engine's process-wide pools: no connections left per database


# ---------------------------------------------------------------- generated histories

STRINGS = st.sampled_from([None, "", "a", "ab", "abc", "b", "a ", "é"])
AMOUNTS = st.sampled_from(
    [None, Decimal("0.00"), CENT, Decimal("1.50"), Decimal("-2.25"), Decimal("12345678.99")]
)
ROWS = st.tuples(STRINGS, STRINGS, STRINGS, AMOUNTS)  # NAME, CITY, EMAIL, AMOUNT
KEYS = st.integers(1, 30)


@dataclass(frozen=True)
class Snapshot:
    rows: dict[int, tuple]  # key -> (values, UPD_SEQ)
    full: bool  # load with full=True (ignore the checkpoint)
    duplicates: tuple[tuple[int, tuple], ...] = ()  # extra rows of existing keys

    def source_rows(self) -> list[tuple]:
        rows = [(k, *v, seq) for k, (v, seq) in self.rows.items()]
        return rows + [
            (k, *v, max(seq for _, seq in self.rows.values())) for k, v in self.duplicates
        ]


@st.composite
def histories(draw, min_size: int = 2, max_size: int = 4, duplicates: bool = False):
    """2-4 snapshots of the source: keys kept, changed in SCD1 and/or SCD2 columns (maybe
    to the same value), touched (UPD_SEQ raised without a change), deleted, re-added and
    new. UPD_SEQ of a row is the number of the snapshot that last changed it."""
    snapshots, prev = [], {}
    for i in range(1, draw(st.integers(min_size, max_size)) + 1):
        rows = {}
        for key, (values, seq) in prev.items():
            op = draw(st.sampled_from(["keep", "keep", "delete", "scd1", "scd2", "both", "touch"]))
            if op == "delete":
                continue
            new = list(values)
            if op in ("scd2", "both"):
                new[0:2] = draw(STRINGS), draw(STRINGS)
            if op in ("scd1", "both"):
                new[2:4] = draw(STRINGS), draw(AMOUNTS)
            new = tuple(new)
            rows[key] = (new, i if new != values or op == "touch" else seq)
        for key in draw(st.lists(KEYS, min_size=1 if i == 1 else 0, max_size=8, unique=True)):
            if key not in rows:
                rows[key] = (draw(ROWS), i)
        dups = ()
        if duplicates and rows and draw(st.booleans()):
            keys = draw(st.lists(st.sampled_from(sorted(rows)), min_size=1, max_size=3))
            # an exact copy or another row; both rows inside a checkpoint window
            dups = tuple((k, draw(st.just(rows[k][0]) | ROWS)) for k in keys)
            rows = {k: (v, i if k in keys else seq) for k, (v, seq) in rows.items()}
        snapshots.append(Snapshot(rows, draw(st.sampled_from([False, False, True])), dups))
        prev = rows
    return snapshots


class Loader:
    """Runs snapshots through the engine and the model side by side."""

    def __init__(self, h: Harness, cfg: Config, chunks: int, checkpoint: bool) -> None:
        self.h, self.chunks, self.checkpoint = h, chunks, checkpoint
        self.model = ScdModel(cfg.scd_types, cfg.delete_handling)
        self.last: int | None = None  # the committed checkpoint

    def expected_view(self, snap: Snapshot) -> tuple[dict[int, tuple], bool, list[int]]:
        """The rows the load reads, whether that is the full extract, their UPD_SEQs."""
        if self.checkpoint and not snap.full and self.last is not None:
            picked = {k: vs for k, vs in snap.rows.items() if vs[1] > self.last}
            return {k: v for k, (v, _) in picked.items()}, False, [q for _, q in picked.values()]
        return {k: v for k, (v, _) in snap.rows.items()}, True, [q for _, q in snap.rows.values()]

    def step(self, snap: Snapshot) -> dict[str, int]:
        self.h.put_source(snap.source_rows())
        view, full, seqs = self.expected_view(snap)
        result = self.h.load(self.chunks, snap.full)
        expected = self.model.apply(view, full)
        got = {name: getattr(result.counts, name) for name in COUNT_NAMES}
        for name in COUNT_NAMES:  # what the examples exercised (--hypothesis-show-statistics)
            if expected[name]:
                event(f"{name} > 0")
        event(f"{result.chunk_count} chunk(s)")
        assert got == expected, f"counts of {snap}"
        assert result.counts.errrows == 0
        # the rows an SCD1 full extract's (or any first load's) chunks counted on their
        # way, else those counted before the load plus what it changed: the whole
        # target's, versions included, as a count finds them
        in_model = TableRows(len(self.model.rows), len(self.model.current()))
        assert result.target_rows == in_model, f"target rows after {snap}"
        if self.checkpoint:
            # the load records the largest UPD_SEQ it read, else the window start (none on
            # a --full load); the committed checkpoint is the last one recorded
            recorded = max(seqs) if seqs else (None if snap.full else self.last)
            self.last = max(seqs) if seqs else self.last
            assert result.checkpoint == (None if recorded is None else str(recorded))
            committed = last_checkpoint(self.h.engine, "MODEL")
            assert committed == (None if self.last is None else str(self.last))
        else:
            assert result.checkpoint is None
        self.h.check(self.model)
        return expected


# ---------------------------------------------------------------- the properties

# always run, whatever hypothesis draws: prefix and ''/NULL changes in SCD2 and SCD1
# columns, a key absent from a windowed load (kept), then from a full one (deleted or
# expired), and a deleted key coming back
KNOWN_HISTORY = [
    Snapshot(
        {
            1: (("a", "x", "e", CENT), 1),
            2: (("", None, "", None), 1),
            3: (("ab", "x", "", Decimal("1.50")), 1),
        },
        full=False,
    ),
    Snapshot(
        {
            1: (("ab", "x", "e", CENT), 2),
            2: ((None, None, "", None), 2),
            4: (("a", "a", "a", None), 2),
        },
        full=False,
    ),
    Snapshot(
        {
            2: ((None, None, None, None), 3),
            3: (("ab", "x", "", Decimal("1.50")), 3),
            4: (("a", "a", "a", Decimal("0.00")), 3),
        },
        full=True,
    ),
    Snapshot({2: ((None, None, None, None), 3), 3: (("ab", "x", "", None), 4)}, full=False),
]
KNOWN_DUPLICATES = [
    KNOWN_HISTORY[0],
    Snapshot(KNOWN_HISTORY[1].rows, full=False, duplicates=((1, ("ab", "x", "e", CENT)),)),
    KNOWN_HISTORY[1],
]

MATRIX = [
    pytest.mark.parametrize("cfg", CONFIGS, ids=str),
    pytest.mark.parametrize("chunks", [1, 3]),
    pytest.mark.parametrize("checkpoint", [False, True], ids=["nochk", "keychk"]),
]
SETTINGS = dict(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _matrix(fn):
    for mark in MATRIX:
        fn = mark(fn)
    return fn


@_matrix
@hyp_settings(max_examples=15, **SETTINGS)
@given(history=histories())
@example(history=KNOWN_HISTORY)
def test_loads_follow_the_model(harness, cfg, chunks, checkpoint, history):
    """Each snapshot's load matches the model; loading the last one again changes
    nothing (all unchanged, the target identical row for row)."""
    harness.reset()
    loader = Loader(harness, cfg, chunks, checkpoint)
    for snap in history:
        loader.step(snap)
    before = harness.dump()
    again = loader.step(Snapshot(history[-1].rows, full=False))
    assert again["insrows"] == again["updrows"] == again["exprows"] == again["delrows"] == 0
    assert again["unchrows"] == again["srcrows"]
    assert harness.dump() == before


@pytest.mark.parametrize("cfg", [CONFIGS[0], CONFIGS[2]], ids=str)
@pytest.mark.parametrize("chunks", [1, 3])
@pytest.mark.parametrize("checkpoint", [False, True], ids=["nochk", "keychk"])
@hyp_settings(max_examples=8, **SETTINGS)
@given(history=histories(duplicates=True))
@example(history=KNOWN_DUPLICATES)
def test_duplicate_keys_fail_before_writing(harness, cfg, chunks, checkpoint, history):
    """A snapshot with a duplicate business key fails with a DATA error and leaves the
    target (and the checkpoint) as it was; the next clean snapshot loads as the model
    says."""
    harness.reset()
    loader = Loader(harness, cfg, chunks, checkpoint)
    for snap in history:
        if not snap.duplicates:
            loader.step(snap)
            continue
        harness.put_source(snap.source_rows())
        before = harness.dump()
        errors = len(harness.joberr_types())
        with pytest.raises(DataError, match="duplicate business keys"):
            harness.load(chunks, snap.full)
        assert harness.dump() == before
        assert harness.joberr_types()[errors:] == ["DATA"]
        if checkpoint:
            last = last_checkpoint(harness.engine, "MODEL")
            assert last == (None if loader.last is None else str(loader.last))
        harness.check(loader.model)


# the module, not the function of the same name that the package exports
engine_load_module = importlib.import_module("dms_orchestration.engine.load")

# a 1-chunk load of a source this size earns 3 chunks: PostgreSQL reads its parts side by side
PARTS_PARAMS = """
params:
  - {code: MIN_ROWS_FOR_PARALLEL, value: "1"}
  - {code: CHUNK_ROWS, value: "4"}
  - {code: MAX_PARALLEL_CHUNKS, value: "3"}
"""


@pytest.fixture
def parts_harness(pg_server, tmp_path, cfg, checkpoint, monkeypatch):
    h = Harness(pg_server.create_database(f"model{next(_names)}"), tmp_path, cfg, checkpoint)
    import_mapping_file(h.engine, parse_mapping_file(PARTS_PARAMS))
    h.parts = []  # the parts of each load's plan
    real = engine_load_module.plan

    def plan_recorded(*args, **kwargs):
        p = real(*args, **kwargs)
        h.parts.append(len(p.parts))
        return p

    monkeypatch.setattr(engine_load_module, "plan", plan_recorded)
    yield h
    h.engine.dispose()
    dispose_all()


@pytest.mark.parametrize("cfg", [CONFIGS[0], CONFIGS[2]], ids=str)
@pytest.mark.parametrize("checkpoint", [False, True], ids=["nochk", "keychk"])
@hyp_settings(max_examples=10, **SETTINGS)
@given(history=histories())
@example(history=KNOWN_HISTORY)
def test_one_chunk_read_in_parts_follows_the_model(parts_harness, cfg, checkpoint, history):
    """A load run as one chunk whose classify reads key ranges side by side (PostgreSQL)
    ends where the model says, like any other load."""
    parts_harness.reset()
    parts_harness.parts.clear()
    loader = Loader(parts_harness, cfg, 1, checkpoint)
    for snap in history:
        loader.step(snap)
    if any(parts_harness.parts):  # (about 40% of the examples: test_engine asserts it)
        event("read in parts")
