"""DMS names -> Dagster names (defs/translator.py): valid, stable and distinct names, a
translator subclass named in DMS_TRANSLATOR, and a legacy-style catalog of a few hundred
mappings with odd names, duplicates, cycles, missing parents, unknown codes and impossible
times that loads (`dagster definitions validate`), shows each bad row's findings, runs a
valid mapping and refuses a blocked one at once."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.definitions.utils import is_valid_name
from dagster._utils.tags import is_valid_strict_tag_value

from dms_orchestration.db import schema as s
from dms_orchestration.db.connect import create_engine, dispose_all
from dms_orchestration.db.ddl import init_schema
from dms_orchestration.defs.sensors import job_name
from dms_orchestration.defs.translator import (
    DmsTranslator,
    dagster_name,
    name_catalog,
    translator_from_settings,
)
from dms_orchestration.metadata.catalog import load_catalog
from dms_orchestration.metadata.models import Catalog, Connection, Mapping, Schedule
from dms_orchestration.settings import ConfigError, load_settings
from dms_orchestration_tests.test_defs import (
    chunk_steps,
    error_text,
    execute,
    mapping_specs,
    materialization,
    spec_by_key,
)

REPO_ROOT = Path(__file__).resolve().parents[1]

# pairs of DMS names that clean up alike
ALIKE = [
    ("CRM-EU", "CRM_EU"),
    ("A B", "A_B"),
    ("KUNDÉ_客户", "KUNDE_"),
    ("ORDERS;", "ORDERS"),
    ("DROP;TABLE", "DROP_TABLE"),
    ("a.b", "a_b"),
    (" X", "X"),
]


def mapping(ref: str, **fields) -> Mapping:
    return Mapping(id=fields.pop("id", 1), ref=ref, **fields)


def catalog_of(*mappings: Mapping) -> Catalog:
    return Catalog(mappings={m.ref: m for m in mappings})


def names_of(*mappings: Mapping, translator: DmsTranslator | None = None):
    return name_catalog(catalog_of(*mappings), translator or DmsTranslator()).mappings


# ------------------------------------------------------------------ names


def test_a_valid_dms_name_stays_as_today_in_lower_case():
    assert dagster_name("DIM_CUSTOMER") == "dim_customer"
    assert dagster_name("main") == "main"
    assert dagster_name(None, "default") == dagster_name("  ", "default") == "default"
    names = names_of(
        mapping(
            "DIM_CUSTOMER", target_schema="main", target_table="DIM_CUSTOMER", source_system="CRM"
        )
    )["DIM_CUSTOMER"]
    assert names.key == dg.AssetKey(["main", "dim_customer"])
    assert (names.job, names.graph) == (
        "dim_customer_job",
        "dim_customer",  # a run's step (the load and its checks) reads dim_customer
    )
    assert names.spec.group_name == "crm" and names.spec.tags["dms/mapref"] == "dim_customer"
    assert names.pool == "dms_metadata"


@pytest.mark.parametrize("odd, plain", ALIKE)
def test_names_that_clean_up_alike_stay_distinct_valid_and_stable(odd, plain):
    cleaned, kept = dagster_name(odd), dagster_name(plain)
    assert cleaned != kept
    assert is_valid_name(cleaned) and is_valid_name(f"{kept}_job")
    assert dagster_name(odd) == cleaned  # the same in every process: a hash, not hash()
    names = names_of(
        mapping(odd, target_table=odd, target_schema=odd, source_system=odd, id=1),
        mapping(plain, target_table=plain, target_schema=plain, source_system=plain, id=2),
    )
    a, b = names[odd], names[plain]
    assert a.key != b.key and a.job != b.job and a.graph != b.graph
    assert a.spec.group_name != b.spec.group_name
    for n in (a, b):
        assert all(is_valid_name(x) for x in (n.job, n.graph))
        assert all(is_valid_strict_tag_value(v) for v in n.spec.tags.values())


def test_two_mappings_on_one_table_and_mapref_case_twins_get_their_own_names():
    names = names_of(
        mapping("FACT_B", target_schema="DW", target_table="FACT", id=2),
        mapping("FACT_A", target_schema="dw", target_table="FACT", id=1),
        mapping("abc", target_table="ABC_T"),
        mapping("ABC", target_table="ABC_T2"),
        # their keys join into one python identifier: a__b__c
        mapping("J1", target_schema="a__b", target_table="c"),
        mapping("J2", target_schema="a", target_table="b__c"),
    )
    # the MAPREF that sorts first keeps the table's key; the other shows its MAPREF
    assert names["FACT_A"].key == dg.AssetKey(["dw", "fact"])
    assert names["FACT_B"].key == dg.AssetKey(["dw", "fact__fact_b"])
    assert names["ABC"].job == "abc_job" and names["abc"].job.startswith("abc_job_")
    assert names["J1"].graph != names["J2"].graph
    for kind in ("key", "job", "graph"):
        values = [getattr(n, kind) for n in names.values()]
        assert len(set(values)) == len(values), kind


def test_a_mapping_keeps_its_names_whatever_the_other_mappings():
    alone = names_of(mapping("SALES", target_table="SALES", source_system="ERP"))["SALES"]
    crowd = [
        mapping(odd, target_table=odd, source_system=odd, id=i)
        for i, pair in enumerate(ALIKE)
        for odd in pair
    ]
    among = names_of(mapping("SALES", target_table="SALES", source_system="ERP"), *crowd)["SALES"]
    assert (alone.key, alone.job, alone.graph, alone.spec.group_name) == (
        among.key,
        among.job,
        among.graph,
        among.spec.group_name,
    )
    again = names_of(*reversed(crowd))
    first = names_of(*crowd)
    assert {r: (n.key, n.job) for r, n in again.items()} == {
        r: (n.key, n.job) for r, n in first.items()
    }


def test_kinds_pool_and_schedule_names_of_odd_connections_and_codes():
    con = Connection(id=7, name="DW EU-1", db_type="POSTGRESQL")
    m = mapping(
        "M1",
        target_table="T",
        target_connection=con,
        jobs=[
            {
                "JOBID": 1,
                "MAPREF": "M1",
                "schedules": [Schedule(id=5, frequency="D L"), Schedule(id=6, frequency="DL")],
            }
        ],
    )
    cat = catalog_of(m)
    names = name_catalog(cat, DmsTranslator())
    n = names.mappings["M1"]
    assert n.spec.kinds == {"sql", "postgres"}
    assert n.pool.startswith("dms_dw_eu_1_")
    assert names.schedules[6] == "m1_job_dl_6"
    assert is_valid_name(names.schedules[5]) and names.schedules[5] != names.schedules[6]


# ------------------------------------------------------------------ a translator of one's own


class TeamTranslator(DmsTranslator):
    """Keys under `warehouse`, owned by the team, jobs named load_<mapref>; it fails on
    one mapping (BROKEN) and names another's group badly (ODD)."""

    def get_asset_key(self, mapping: Mapping) -> dg.AssetKey:
        return super().get_asset_key(mapping).with_prefix("warehouse")

    def get_owners(self, mapping: Mapping) -> list[str]:
        return ["team:dwh"]

    def get_group_name(self, mapping: Mapping) -> str:
        return "not a group!" if mapping.ref == "ODD" else super().get_group_name(mapping)

    def get_job_name(self, mapping: Mapping) -> str:
        if mapping.ref == "BROKEN":
            raise ValueError("no name for BROKEN")
        return f"load_{dagster_name(mapping.ref)}"


TEAM = "dms_orchestration_tests.test_translator:TeamTranslator"


def test_a_subclass_named_in_dms_translator_names_everything(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'dms.db'}"
    legacy = LegacyCatalog(url)
    for ref in ("SALES", "BROKEN", "ODD"):
        legacy.mapping(ref)
    legacy.write()
    env = legacy.environment(tmp_path) | {"DMS_TRANSLATOR": TEAM}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.translator == TEAM
    assert isinstance(translator_from_settings(settings), TeamTranslator)
    from dms_orchestration.definitions import definitions

    try:
        defs = definitions(settings)
        dg.Definitions.validate_loadable(defs)
    finally:
        dispose_all()
    specs = spec_by_key(defs)
    assert set(specs) == {
        "operations/load_stats",
        "warehouse/default/sales",
        "warehouse/default/broken",
        "warehouse/default/odd",
    }
    assert all(spec.owners == ["team:dwh"] for spec in mapping_specs(defs))
    jobs = {j.name for j in defs.resolve_all_job_defs()}
    assert {"load_sales", "load_odd", "broken_job"} <= jobs
    assert job_name("SALES") == "load_sales"  # the queue finds the translator's job
    broken = specs["warehouse/default/broken"].metadata["dms/findings"].value
    assert "TeamTranslator.get_job_name failed" in broken and "no name for BROKEN" in broken
    odd = specs["warehouse/default/odd"]
    assert "TeamTranslator.get_group_name failed" in odd.metadata["dms/findings"].value
    assert odd.group_name == "legacy" and odd.owners == ["team:dwh"]
    assert specs["warehouse/default/sales"].metadata["dms/findings"].value == "no findings"


@pytest.mark.parametrize(
    "value, words",
    [
        ("not a path", "is not package.module:ClassName"),
        ("no_such_module_xyz:Thing", "does not import"),
        ("dms_orchestration.settings:NoSuchThing", "has no NoSuchThing"),
        ("dms_orchestration.settings:Settings", "is not a subclass of"),
    ],
)
def test_a_bad_dms_translator_is_a_clear_error(value, words):
    with pytest.raises(ConfigError) as err:
        translator_from_settings(load_settings(env={"DMS_TRANSLATOR": value}))
    assert "DMS_TRANSLATOR" in str(err.value) and words in str(err.value)


# ------------------------------------------------------------------ a legacy-style catalog

SOURCE_ROWS = 10


class LegacyCatalog:
    """DMS rows written straight into the tables, as the legacy tool and hand edits
    leave them: nothing on the way checks them (unlike `dms mappings import`)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_engine(url)
        init_schema(self.engine)
        self.rows: dict[sa.Table, list[dict]] = defaultdict(list)
        self.ids = itertools.count(1)
        self.expected: dict[str, str] = {}  # MAPREF -> words its findings hold
        self.add(s.dms_maprsql, maprsqlcd="Q_LEGACY", maprsql="SELECT ID, NAME FROM LEGACY_SRC")

    def add(self, table: sa.Table, **values) -> int:
        key = table.primary_key.columns.keys()[0]
        values.setdefault(key, next(self.ids))
        if "curflg" in table.c:
            values.setdefault("curflg", "Y")
        self.rows[table].append(values)
        return values[key]

    def mapping(
        self,
        ref: str,
        expect: str | None = None,
        *,
        columns: list[dict] | None = None,
        job: dict | None = None,
        schedules: Sequence[dict] = ({"frqcd": "DL", "frqhh": 2},),
        **mapr,
    ) -> list[int]:
        """A mapping with two columns, a job and its schedules; the JOBSCHIDs."""
        values = dict(
            mapref=ref,
            srcsys="LEGACY",
            trgtbnm=ref,
            trgtbtyp="DIMENSION",
            maprsqlcd="Q_LEGACY",
            delhndl="IGNORE",
        )
        self.add(s.dms_mapr, **(values | mapr))
        for column in columns or [
            dict(trgclnm="ID", trgcldtyp="INTEGER", trgkeyflg="Y", trgkeyseq=1, maplogic="SRC.ID"),
            dict(
                trgclnm="NAME",
                trgcldtyp="VARCHAR(50)",
                trgkeyflg="N",
                scdtyp="1",
                maplogic="SRC.NAME",
            ),
        ]:
            self.add(s.dms_maprdtl, mapref=ref, **column)
        jobid = self.add(s.dms_job, **({"mapref": ref, "stflg": "A"} | (job or {})))
        if expect:
            self.expected[ref] = expect
        return [self.add(s.dms_jobsch, jobid=jobid, mapref=ref, **row) for row in schedules]

    def write(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE LEGACY_SRC (ID INTEGER, NAME VARCHAR(50))"))
            conn.execute(
                sa.text("INSERT INTO LEGACY_SRC VALUES (:i, :n)"),
                [{"i": i, "n": f"name {i}"} for i in range(1, SOURCE_ROWS + 1)],
            )
            # a legacy schema: no unique index on the current MAPREF
            conn.execute(sa.text("DROP INDEX dms_mapr_uk1"))
            for table, rows in self.rows.items():
                # one executemany per run of rows with the same columns
                for _, same in itertools.groupby(rows, key=lambda r: tuple(sorted(r))):
                    conn.execute(sa.insert(table), list(same))

    def environment(self, tmp_path: Path) -> dict[str, str]:
        (tmp_path / "home").mkdir(exist_ok=True)
        (tmp_path / "dagster_home").mkdir(exist_ok=True)
        return {
            "DMS_DATABASE_URL": self.url,
            "DMS_HOME": str(tmp_path / "home"),
            "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        }


ODD_SYSTEMS = ["CRM-EU", "CRM_EU", "crm eu", "KUNDÉ_客户", "", "  ", None, "A;B", "ÅÄÖ", "dms"]
# MAPREF -> words of its findings (map_0 and MAP_0 differ in case only: a job each)
ODD_REFS = {
    "MAP-{r}": "MAPREF",
    "MAP {r}": "MAPREF",
    "MAP;{r}": "MAPREF",
    "KUNDÉ_客户_{r}": "MAPREF",
    "map_{r}": None,
    "MAP_{r}": None,
    "{r}": "MAPREF",
}
ODD_TABLES = ["TAB LE_{r}", "TAB;LE_{r}", "KUNDÉ_客户_{r}", None, "", "T-{r}", "T_{r}", "class"]
ODD_SCHEMAS = ["sch ema", "SCH-EMA", "", "ÜBER", "public"]
BAD_TIMES = [
    ({"frqcd": "DL", "frqhh": 25}, "FRQHH 25"),
    ({"frqcd": "DL", "frqmi": 61}, "FRQMI 61"),
    ({"frqcd": "YR", "frqdd": "02-30"}, "02-30"),
    ({"frqcd": "WK", "frqdd": "XYZ"}, "XYZ"),
    ({"frqcd": "XX"}, "FRQCD 'XX'"),
    ({"frqcd": None}, "FRQCD None"),
    ({"frqcd": "ID", "frqmi": 0}, "ID needs"),
]


def legacy_round(c: LegacyCatalog, r: int) -> None:
    """About 40 mappings of every kind; round r gives them their own names."""
    c.mapping(f"LEG_OK_{r}")
    for i, system in enumerate(ODD_SYSTEMS):
        c.mapping(f"SRC_{r}_{i}", srcsys=system)
    for i, (ref, words) in enumerate(ODD_REFS.items()):
        c.mapping(ref.format(r=r), words, trgtbnm=f"ODDREF_{r}_{i}")
    for i, table in enumerate(ODD_TABLES):
        c.mapping(f"ODDTAB_{r}_{i}", trgtbnm=table and table.format(r=r))
    for i, schema in enumerate(ODD_SCHEMAS):
        c.mapping(f"ODDSCH_{r}_{i}", trgschm=schema)
    c.mapping(f"SHARE_A_{r}", "also writes target table", trgtbnm=f"SHARED_{r}")
    c.mapping(f"SHARE_B_{r}", "also writes target table", trgtbnm=f"SHARED_{r}")
    c.mapping(f"CODES_{r}", "TRGTBTYP", trgtbtyp="XYZ", delhndl="MAYBE", chkpntstrtgy="FOO")
    c.mapping(
        f"SCD_{r}",
        "SCDTYP",
        columns=[
            dict(trgclnm="ID", trgcldtyp="INTEGER", trgkeyflg="Y", maplogic="SRC.ID"),
            dict(trgclnm="N", trgcldtyp="WIDGET", scdtyp="9", maplogic="SRC.NAME"),
        ],
    )
    c.mapping(f"NOSQL_{r}", maprsqlcd=f"NOPE_{r}")
    c.mapping(f"NOCON_{r}", "TRGCONID", trgconid=990000 + r)
    c.mapping(f"ODDJOB_{r}", job={"stflg": "Q", "jobdesc": "ÜBER;job"})
    for i, (row, words) in enumerate(BAD_TIMES):
        c.mapping(f"TIME_{r}_{i}", words, schedules=[row])
    c.mapping(f"ORPHAN_{r}", "names no schedule", schedules=[{"dpnd_jobschid": 990000 + r}])
    [a] = c.mapping(f"CYC_A_{r}", "dependency cycle")
    [b] = c.mapping(f"CYC_B_{r}", "dependency cycle", schedules=[{"dpnd_jobschid": a}])
    c.add(s.dms_jobsch, mapref=f"CYC_A_{r}", dpnd_jobschid=b)
    [own] = c.mapping(f"CYC_SELF_{r}", "dependency cycle")
    c.add(s.dms_jobsch, mapref=f"CYC_SELF_{r}", dpnd_jobschid=own)
    [parent] = c.mapping(f"PARENT_{r}")
    c.mapping(
        f"TWICE_{r}",
        "repeats the dependency",
        schedules=[{"dpnd_jobschid": parent}, {"dpnd_jobschid": parent}],
    )
    c.mapping(f"DUP_{r}", "another current row")
    c.mapping(f"DUP_{r}", "another current row", srcsys="OTHER")
    c.mapping(f"TWOJOBS_{r}", "2 active DMS_JOB rows")
    c.add(s.dms_job, mapref=f"TWOJOBS_{r}", stflg="A")
    c.mapping(f"LIN_A_{r}", maprsqlcd=f"Q_LIN_B_{r}")
    c.mapping(f"LIN_B_{r}", "lineage cycle", maprsqlcd=f"Q_LIN_A_{r}")
    for ref in ("A", "B"):
        c.add(
            s.dms_maprsql,
            maprsqlcd=f"Q_LIN_{ref}_{r}",
            maprsql=f"SELECT ID, NAME FROM LIN_{ref}_{r}",
        )
    c.add(s.dms_maperr, mapref=None, errtyp=None, errmsg=None)
    c.add(s.dms_maperr, mapref=f"PARENT_{r}", errtyp=None, errmsg=None)
    c.add(s.dms_job, mapref=f"GONE_{r}", stflg="A")
    c.add(s.dms_jobsch, mapref=None, frqcd="DL")


def legacy_catalog(url: str, rounds: int = 8) -> LegacyCatalog:
    c = LegacyCatalog(url)
    con = c.add(s.dms_dbcondtls, connm="DW EU-1", dbtyp="SQLITE", dbnm="legacy_dw.db")
    c.add(s.dms_dbcondtls, connm="dw eu 1", dbtyp="SQLITE", dbnm="legacy_dw2.db")
    c.add(s.dms_dbcondtls, connm="ÜBER;CON", dbtyp="FOOBAR")
    c.mapping("POOLED", trgconid=con)
    c.mapping("", "MAPREF")
    c.mapping(" ", "MAPREF")
    c.add(s.dms_params, prtyp="DMSCONFIG", prcd="RETRY_MAX", prval="lots")
    c.add(s.dms_params, prtyp="DMSCONFIG", prcd="RETRY_DELAY_SECONDS", prval="soon")
    for r in range(rounds):
        legacy_round(c, r)
    if c.url.startswith("sqlite"):
        # SQLite keeps a value of any type in any column
        c.mapping("JUNK_TYPES", "left out", blkprcrows="many")
        c.mapping("JUNK_HOUR", "left out", schedules=[{"frqcd": "DL", "frqhh": "XX"}])
    c.write()
    return c


@pytest.fixture
def legacy(dms_url, tmp_path, monkeypatch):
    c = legacy_catalog(dms_url)
    for name in ("DB_TYPE", "DMS_SCHEMA", "CDR_SCHEMA", "DMS_TIMEZONE", "DMS_TRANSLATOR"):
        monkeypatch.delenv(name, raising=False)
    for name, value in c.environment(tmp_path).items():
        monkeypatch.setenv(name, value)
    yield c
    dispose_all()


# each of these alone made the whole code location fail to load: (MAPREF, DMS_MAPR values)
ONE_BAD_ROW = {
    "SRCSYS CRM-EU": ("BAD", dict(srcsys="CRM-EU")),
    "a table name with a space": ("BAD", dict(trgtbnm="TAB LE")),
    "a MAPREF with a space": ("BAD 1", {}),
    "a table name with ;": ("BAD", dict(trgtbnm="TAB;LE")),
    "non-ASCII letters": ("KUNDÉ_客户", dict(srcsys="KUNDÉ_客户")),
    "two mappings writing one table": ("BAD", dict(trgtbnm="GOOD")),
    "a connection name with a space": ("BAD", dict(trgconid=77)),
    "two rows running it after one parent": (
        "BAD",
        dict(schedules=[{"dpnd_jobschid": 1}, {"dpnd_jobschid": 1}]),
    ),
    "a RETRY_MAX that is not a number": ("BAD", dict(params={"RETRY_MAX": "lots"})),
}


@pytest.mark.parametrize("ref, row", ONE_BAD_ROW.values(), ids=ONE_BAD_ROW.keys())
def test_one_bad_row_never_takes_the_code_location_down(ref, row, tmp_path, monkeypatch):
    c = LegacyCatalog(f"sqlite:///{tmp_path / 'dms.db'}")
    c.add(s.dms_dbcondtls, conid=77, connm="DW EU", dbtyp="SQLITE", dbnm="dw.db")
    row = dict(row)
    for code, value in row.pop("params", {}).items():
        c.add(s.dms_params, prtyp="DMSCONFIG", prcd=code, prval=value)
    c.mapping("GOOD", schedules=[{"jobschid": 1, "frqcd": "DL"}])
    c.mapping(ref, **row)
    c.write()
    for name, value in c.environment(tmp_path).items():
        monkeypatch.setenv(name, value)
    from dms_orchestration.definitions import definitions

    try:
        defs = definitions(load_settings())
        dg.Definitions.validate_loadable(defs)
    finally:
        dispose_all()
    assert {spec.metadata["dms/mapref"] for spec in mapping_specs(defs)} == {
        "GOOD",
        ref,
    }
    jobs = {j.name for j in defs.resolve_all_job_defs()}
    assert "good_job" in jobs and "dms_request_queue" in {sensor.name for sensor in defs.sensors}


def current_maprefs(c: LegacyCatalog) -> set[str]:
    with c.engine.connect() as conn:
        return set(
            conn.execute(sa.text("SELECT MAPREF FROM DMS_MAPR WHERE CURFLG = 'Y'")).scalars()
        )


@pytest.mark.slow
def test_dagster_definitions_validate_passes_on_a_legacy_catalog(legacy, tmp_path):
    assert len(current_maprefs(legacy)) >= 300
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "dagster",
            "definitions",
            "validate",
            "-m",
            "dms_orchestration.definitions",
        ],
        cwd=tmp_path,
        env={**os.environ, **legacy.environment(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Validation successful" in result.stdout + result.stderr


@pytest.mark.slow
def test_every_legacy_mapping_is_an_asset_showing_its_findings(legacy):
    from dms_orchestration.definitions import definitions

    defs = definitions(load_settings())
    dg.Definitions.validate_loadable(defs)
    specs = mapping_specs(defs)
    by_ref = {spec.metadata["dms/mapref"]: spec for spec in specs}
    assert len(specs) == len(by_ref) == len(current_maprefs(legacy))  # one asset each
    assert set(by_ref) == current_maprefs(legacy)
    for ref, words in legacy.expected.items():
        findings = by_ref[ref].metadata["dms/findings"].value
        assert words in findings, (ref, findings)
    assert by_ref["LEG_OK_0"].metadata["dms/findings"].value == "no findings"
    assert by_ref["SRC_0_0"].group_name != by_ref["SRC_0_1"].group_name  # CRM-EU, CRM_EU
    assert "(missing)" in by_ref["NOSQL_0"].metadata["dms/source sql"].value
    for ref in ("TWICE_0", "TWOJOBS_0", "LIN_B_0"):  # warnings only: the mapping runs
        assert "ERROR" not in by_ref[ref].metadata["dms/findings"].value, ref
    sensors = {sensor.name for sensor in defs.sensors}
    assert {"dms_request_queue", "dms_close_failed_runs", "dms_close_stopped_runs"} <= sensors
    assert "twice_0_job_after_parent_0_job" in sensors
    assert not any("cyc_" in name for name in sensors)


@pytest.mark.slow
def test_a_valid_legacy_mapping_loads_and_a_blocked_one_fails_at_once(legacy):
    from dms_orchestration.definitions import definitions

    defs = definitions(load_settings())
    instance = dg.DagsterInstance.ephemeral()
    good = execute(defs, "leg_ok_0_job", instance, dms__full="true")
    assert good.success
    assert materialization(good)["inserted"] == SOURCE_ROWS
    with legacy.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM LEG_OK_0")).scalar() == SOURCE_ROWS
    for job, words in [
        ("share_a_0_job", "also writes target table SHARED_0"),
        ("cyc_a_0_job", "dependency cycle"),
        ("time_0_0_job", "FRQHH 25"),
        ("dup_0_job", "another current row"),
    ]:
        blocked = execute(defs, job, instance)
        assert not blocked.success
        [failure] = blocked.get_step_failure_events()
        # in its load step, before any chunk and before its checks
        assert failure.step_key == job.removesuffix("_job") and not chunk_steps(blocked)
        assert not blocked.get_asset_check_evaluations()
        text = error_text(failure.step_failure_data.error)
        assert "is not valid" in text and words in text, text
        with legacy.engine.connect() as conn:
            logged = conn.execute(
                sa.text("SELECT COUNT(*) FROM DMS_PRCLOG WHERE RUNID = :r"), {"r": blocked.run_id}
            ).scalar()
        assert logged == 0  # refused before any SQL


@pytest.mark.slow
def test_a_catalog_reads_whatever_its_rows_hold(legacy):
    catalog = load_catalog(legacy.engine)
    assert "another current row" in catalog.read_findings["DUP_0"][0].message
    assert catalog.mappings["DUP_0"].source_system == "OTHER"  # the later row
    assert catalog.int_param("RETRY_MAX", 3) == 3
    assert "LEG_OK_0" not in catalog.read_findings
    assert [f.severity for f in catalog.mappings["PARENT_0"].findings] == ["ERROR"]
