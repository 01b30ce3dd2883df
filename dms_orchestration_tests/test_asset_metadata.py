"""Dagster-native metadata and run configuration: table name, column schema and column
lineage of each mapping's asset (read from its SQL), the source tables as external assets
grouped by connection, kinds, a materialization's row count with ids as text, readable
step names, schedule descriptions in words, bad run tags refused before any write - and
the same facts read back the way the UI reads them, through GraphQL."""

from __future__ import annotations

import threading
import time
from datetime import datetime

import dagster as dg
import pytest
import sqlalchemy as sa
import sqlglot
import yaml
from dagster._core.test_utils import instance_for_test
from dagster_graphql.test.utils import define_out_of_process_context, execute_dagster_graphql

from dms_orchestration.db.connect import dispose_all
from dms_orchestration.defs.run_config import run_tag_problem
from dms_orchestration.metadata.frequency import describe
from dms_orchestration.metadata.models import Mapping, MappingColumn, Schedule, SourceSql
from dms_orchestration.metadata.sqllineage import logic_reads, mapping_reads, tables_read
from dms_orchestration_tests.test_defs import (
    INVALID_YAML,
    QUIET,
    closed_port,
    cust_dms,
    demo_home,
    execute,
    materialization,
    spec_by_key,
    warehouse,
)

CUSTOMERS = "source/retail_src/default/customers"
SOURCES = {CUSTOMERS, "source/retail_src/default/products", "source/retail_src/default/sales"}


@pytest.fixture
def demo(tmp_path, monkeypatch):
    yield demo_home(tmp_path, monkeypatch)
    dispose_all()


def all_specs(defs: dg.Definitions) -> dict[str, dg.AssetSpec]:
    return {s.key.to_user_string(): s for s in defs.resolve_all_asset_specs()}


def lineage_of(spec: dg.AssetSpec) -> dict[str, set[tuple[str, str]]]:
    """Target column -> {(asset key, column)} of `dagster/column_lineage`."""
    lineage = spec.metadata["dagster/column_lineage"]
    return {
        column: {(d.asset_key.to_user_string(), d.column_name) for d in deps}
        for column, deps in lineage.deps_by_column.items()
    }


# ------------------------------------------------------------------ SQL -> table columns


def reads(logic: str, source_sql: str, dialect: str | None = None) -> set[tuple]:
    tree = sqlglot.parse_one(source_sql, read=dialect)
    return {(r.schema, r.table, r.column) for r in logic_reads(logic, tree, dialect)}


@pytest.mark.parametrize(
    "logic, source_sql, expected",
    [
        (
            "UPPER(SRC.NAME) || SRC.MAIL",
            "SELECT ID, NAME, MAIL FROM CUST WHERE ID > :p1",
            {(None, "CUST", "NAME"), (None, "CUST", "MAIL")},
        ),
        ("NAME", "SELECT C.NAME FROM crm.CUST C", {("crm", "CUST", "NAME")}),  # unqualified
        (
            "SRC.N",
            "SELECT C.NAME AS N, O.ID FROM CUST C JOIN ORD O ON O.C = C.ID",
            {(None, "CUST", "NAME")},
        ),
        ("SRC.X", "WITH W AS (SELECT A AS X FROM s.T) SELECT X FROM W", {("s", "T", "A")}),
        (
            "SRC.X",
            "SELECT A AS X FROM T1 UNION ALL SELECT B FROM T2",
            {(None, "T1", "A"), (None, "T2", "B")},
        ),
        ("SRC.A", "SELECT x.A FROM (SELECT y.A FROM (SELECT A FROM d.T) y) x", {("d", "T", "A")}),
        ("SRC.COL_7", "SELECT * FROM WIDE", {(None, "WIDE", "COL_7")}),  # * over one table
        ("SRC.X", "SELECT (SELECT MAX(Z) FROM ZZ) AS X FROM T", {(None, "ZZ", "Z")}),
        (
            "CASE WHEN SRC.a > 0 THEN SRC.b END",
            "SELECT c.a, d.b FROM c JOIN d ON c.i = d.i",
            {(None, "c", "a"), (None, "d", "b")},
        ),
        ('SRC."Mixed"', 'SELECT "Mixed" FROM "Sch"."Tab"', {("Sch", "Tab", "Mixed")}),
        # what cannot be placed reads nothing: never a guess
        ("SRC.A", "SELECT A, T2.B FROM T1 JOIN T2 ON T1.I = T2.I", set()),  # which table's A?
        ("SRC.A", "SELECT * FROM T1 JOIN T2 ON T1.I = T2.I", set()),  # * over two tables
        ("SRC.NOPE", "SELECT A FROM T", set()),
        ("'constant'", "SELECT A FROM T", set()),
        ("SRC.A +", "SELECT A FROM T", set()),  # does not parse
    ],
)
def test_maplogic_reads_table_columns_through_the_source_query(logic, source_sql, expected):
    assert reads(logic, source_sql) == expected


def test_a_recursive_cte_and_unparsable_sql_read_what_they_can():
    recursive = (
        "WITH RECURSIVE r AS (SELECT a FROM seed UNION ALL SELECT a + 1 FROM r) SELECT a FROM r"
    )
    assert reads("SRC.a", recursive) == {(None, "seed", "a")}
    assert {(t.schema, t.table) for t in tables_read(sqlglot.parse_one(recursive))} == {
        (None, "seed")
    }
    garbage = Mapping(
        id=1,
        ref="M",
        source=SourceSql(id=1, code="Q", sql="SELEKT ,,, FROMM"),
        columns=[MappingColumn(id=1, mapref="M", name="A", logic="SRC.A")],
    )
    assert mapping_reads(garbage, None) == mapping_reads(
        garbage.model_copy(update={"source": None}), None
    )
    assert not mapping_reads(garbage, None).tables and not mapping_reads(garbage, None).columns


# ------------------------------------------------------------------ asset definitions


@pytest.mark.slow
def test_demo_assets_carry_table_name_column_schema_and_column_lineage(demo):
    specs = spec_by_key(demo.defs())
    customer = specs["main/dim_customer"]
    md = customer.metadata
    assert md["dagster/table_name"] == "warehouse.DIM_CUSTOMER"  # the SQLite file's table
    schema = md["dagster/column_schema"]
    columns = {c.name: c for c in schema.columns}
    assert list(columns)[:3] == ["CUST_ID", "CUST_NAME", "EMAIL"]  # EXCSEQ order
    key, name = columns["CUST_ID"], columns["CUST_NAME"]
    assert (key.type, key.constraints.nullable, key.tags) == ("INTEGER", False, {"dms/key": "1"})
    assert "business key" in key.constraints.other
    assert (name.type, name.constraints.nullable, name.tags) == (
        "VARCHAR(100)",
        True,
        {"dms/scd": "2"},
    )
    assert columns["EMAIL"].tags == {"dms/scd": "1"}
    # the loader's own columns, SCD2's too
    assert {"SKEY", "RWHKEY", "RECCRDT", "RECUPDT", "CURFLG", "VLDFRM", "VLDTO"} <= set(columns)
    assert columns["SKEY"].constraints.unique and not columns["SKEY"].constraints.nullable
    assert schema.constraints.other == ["one current row per business key (CUST_ID)"]
    assert "CURFLG" not in {
        c.name for c in specs["main/dim_product"].metadata["dagster/column_schema"].columns
    }

    assert lineage_of(customer)["CUST_NAME"] == {(CUSTOMERS, "CUST_NAME")}
    assert lineage_of(customer)["CUST_ID"] == {(CUSTOMERS, "CUST_ID")}
    assert lineage_of(specs["main/stg_sales"])["SALE_DATE"] == {
        ("source/retail_src/default/sales", "SALE_TS")  # DATE(SRC.SALE_TS)
    }
    fact = lineage_of(specs["main/fact_sales_daily"])
    assert fact["SALES_KEY"] == {
        ("main/stg_sales", "SALE_DATE"),
        ("main/stg_sales", "CUST_ID"),
        ("main/stg_sales", "PROD_ID"),
    }
    assert fact["TOTAL_AMOUNT"] == {("main/stg_sales", "AMOUNT")}
    # a lookup: its value column, MAX(D.SKEY), is the customer dimension's SKEY
    assert fact["CUST_SKEY"] == {("main/dim_customer", "SKEY")}
    assert fact["PROD_SKEY"] == {("main/dim_product", "SKEY")}

    # the DMS facts without a standard key stay; no markdown where a standard place exists
    assert {"dms/columns", "dms/target"}.isdisjoint(md)
    assert "UPPER(SRC.CUST_NAME)" in md["dms/column logic"].value
    assert "FROM CUSTOMERS" in md["dms/source sql"].value
    assert md["dms/mapref"] == "DIM_CUSTOMER"
    assert customer.kinds == {"sql", "sqlite"}


def test_source_tables_are_external_assets_grouped_by_connection(demo):
    defs = demo.defs()
    dg.Definitions.validate_loadable(defs)
    specs, graph = all_specs(defs), defs.resolve_asset_graph()
    sources = {k: s for k, s in specs.items() if not graph.get(s.key).is_executable}
    assert set(sources) == SOURCES
    customers = sources[CUSTOMERS]
    assert customers.group_name == "retail_src" and customers.kinds == {"table", "sqlite"}
    assert customers.metadata["dagster/table_name"] == "retail.CUSTOMERS"
    assert customers.metadata["dms/read by"] == "DIM_CUSTOMER"
    # the lineage graph starts at the sources; the fact reads warehouse tables only
    deps = {k: {d.asset_key.to_user_string() for d in specs[k].deps} for k in specs}
    assert deps["main/dim_customer"] == {CUSTOMERS}
    assert deps["main/fact_sales_daily"] == {
        "main/stg_sales",
        "main/dim_customer",
        "main/dim_product",
    }
    assert all(not deps[k] for k in SOURCES)


@pytest.mark.slow
def test_a_mapping_without_trgconid_is_of_the_metadata_database_kind(pg_url, tmp_path, monkeypatch):
    d = cust_dms(pg_url, tmp_path, monkeypatch)
    try:
        specs = all_specs(d.defs())
    finally:
        dispose_all()
    database = d.settings.database_url.database
    cust = specs["default/cust_dim"]
    assert cust.kinds == {"sql", "postgres"}
    assert cust.metadata["dagster/table_name"] == f"{database}.CUST_DIM"
    source = specs["source/dms_metadata/default/src_cust"]  # NULL SQLCONID: the metadata's
    assert source.group_name == "dms_metadata" and source.kinds == {"table", "postgres"}
    assert lineage_of(cust)["CITY"] == {("source/dms_metadata/default/src_cust", "CITY")}


def test_a_mapping_job_holds_only_the_source_tables_its_mapping_reads(demo):
    """Each source table is a definition of its own: in one definition with all the others
    (what Definitions makes of plain specs), every mapping job would hold every source,
    and resolving a job per mapping would grow with the square of the catalog."""
    job = demo.defs().resolve_job_def("dim_customer_job")
    keys = {k.to_user_string() for k in job.asset_layer.asset_graph.get_all_asset_keys()}
    assert keys == {"main/dim_customer", CUSTOMERS}


ODD_YAML = """
sql:
  - {code: Q_ODD, connection: RETAIL_SRC, sql: 'SELECT "Qty" AS QTY, ID FROM "Order Lines"'}
  - code: Q_JOIN
    connection: RETAIL_SRC
    sql: SELECT C.CUST_ID, S.QTY FROM main.CUSTOMERS C JOIN SALES S ON S.CUST_ID = C.CUST_ID
mappings:
  - ref: JOINED
    target: {schema: main, table: JOINED, connection: RETAIL_DW}
    sql: Q_JOIN
    columns:
      - {name: CUST_ID, type: INTEGER, key: 1, logic: SRC.CUST_ID}
      - {name: QTY, type: INTEGER, logic: SRC.QTY, scd: 1}
  - ref: ODD
    target: {schema: main, table: ODD, connection: RETAIL_DW}
    sql: Q_ODD
    columns:
      - {name: ID, type: INTEGER, key: 1, logic: SRC.ID}
      - {name: QTY, type: INTEGER, logic: SRC.QTY + SRC.NOT_THERE, scd: 1}
    job: {}
"""


@pytest.mark.slow
def test_odd_names_and_sql_that_does_not_parse_never_break_the_location(demo):
    demo.import_yaml(INVALID_YAML.format(port=closed_port()))
    demo.import_yaml(ODD_YAML)
    defs = demo.defs()
    dg.Definitions.validate_loadable(defs)
    specs = all_specs(defs)
    assert "dagster/column_lineage" not in specs["main/bad_sql"].metadata  # SELEKT ,,,
    [odd_source] = [d.asset_key for d in specs["main/odd"].deps]
    assert odd_source.path[:3] == ["source", "retail_src", "default"]
    assert odd_source.path[3].startswith("order_lines_")  # valid, with a hash of the name
    assert lineage_of(specs["main/odd"])["QTY"] == {(odd_source.to_user_string(), "Qty")}
    # a schema named and one not, in one query; SQLite's `main` is its default schema
    sales = "source/retail_src/default/sales"
    assert {d.asset_key.to_user_string() for d in specs["main/joined"].deps} == {CUSTOMERS, sales}
    assert lineage_of(specs["main/joined"]) == {
        "CUST_ID": {(CUSTOMERS, "CUST_ID")},
        "QTY": {(sales, "QTY")},
    }
    assert "no findings" == specs["main/joined"].metadata["dms/findings"].value


# ------------------------------------------------------------------ materializations


@pytest.mark.slow
def test_a_materialization_reports_the_row_count_and_its_ids_as_text(
    dms_url, tmp_path, monkeypatch
):
    d = cust_dms(dms_url, tmp_path, monkeypatch)
    try:
        defs = d.defs()
        instance = dg.DagsterInstance.ephemeral()
        first = execute(defs, "cust_dim_job", instance, dms__chunks="3", dms__full="true")
        d.sql("UPDATE SRC_CUST SET CITY = 'moved' WHERE ID IN (1, 2)")
        second = execute(defs, "cust_dim_job", instance, dms__full="true")
    finally:
        dispose_all()
    assert first.success and second.success
    assert materialization(first)["dagster/row_count"] == 30
    # the table's rows: the two new versions of an SCD2 target count
    assert materialization(second)["dagster/row_count"] == 32
    assert materialization(second)["current rows"] == 30  # counted in the same scan
    assert d.scalar("SELECT COUNT(*) FROM CUST_DIM") == 32
    [event] = second.get_asset_materialization_events()
    md = event.materialization.metadata
    prcid = d.prclog(second.run_id)[0][0]
    assert md["dms/prcid"] == dg.MetadataValue.text(str(prcid))  # an id: never plotted
    assert isinstance(md["inserted"], dg.IntMetadataValue)  # counts and seconds are plotted
    assert isinstance(md["seconds"], dg.FloatMetadataValue)
    # a readable step: the mapping's load (its chunks inside it), then its checks
    steps = {e.step_key for e in second.all_events if e.step_key}
    assert steps == {"cust_dim"}


# ------------------------------------------------------------------ run tags


@pytest.mark.parametrize(
    "tags, named",
    [
        ({"dms/chunks": "abc"}, "dms/chunks"),
        ({"dms/chunks": "0"}, "dms/chunks"),
        ({"dms/full": "maybe"}, "dms/full"),
        ({"dms/param11": "x"}, "dms/param11"),
        ({"dms/prcreqid": "xyz"}, "dms/prcreqid"),
        ({"dms/histday": "yesterday"}, "dms/histday"),
        ({"dms/fulll": "true"}, "dms/fulll"),
        ({"dms/param1": "x" * 4001}, "dms/param1"),
    ],
)
@pytest.mark.slow
def test_a_bad_run_tag_fails_the_run_naming_it_before_any_write(demo, tags, named):
    defs = demo.defs()
    result = defs.resolve_job_def("stg_sales_job").execute_in_process(
        run_config=QUIET,
        instance=dg.DagsterInstance.ephemeral(),
        tags={"dms/full": "true", **tags},
        raise_on_error=False,
    )
    assert not result.success
    [failure] = result.get_step_failure_events()
    assert failure.step_key == "stg_sales"  # its load step
    message = failure.step_failure_data.error.message.strip()
    assert named in message and "\n" not in message, message
    assert message == f"dagster._core.definitions.events.Failure: {run_tag_problem(tags)}"
    assert demo.prclog(result.run_id) == []  # no DMS_PRCLOG row
    assert warehouse(demo, "SELECT name FROM sqlite_master WHERE name = 'STG_SALES'") == []


def test_good_run_tags_pass():
    good = {
        "dms/param1": "2026-01-01",
        "dms/param10": "",
        "dms/full": "TRUE",
        "dms/chunks": "4",
        "dms/prcreqid": "17",
        "dms/jobschid": "3",
        "dms/jobid": "5",
        "dms/mapref": "DIM_CUSTOMER",
        "dms/histday": "2026-03-01",
        "dagster/retry_strategy": "FROM_FAILURE",  # not ours
    }
    assert run_tag_problem(good) is None


# ------------------------------------------------------------------ schedules


@pytest.mark.parametrize(
    "fields, text",
    [
        (dict(frequency="MN", day="L", hour=23), "monthly on the last day of the month at 23:00"),
        (dict(frequency="MN", day="5", hour=2, minute=30), "monthly on day 5 at 02:30"),
        (dict(frequency="ID", minute=15), "every 15 minutes"),
        (dict(frequency="ID", hour=2, minute=0), "every 2 hours"),
        (dict(frequency="DL", hour=2), "daily at 02:00"),
        (dict(frequency="WK", day="MON", hour=3, minute=30), "weekly on Monday at 03:30"),
        (
            dict(frequency="FN", day="WED", hour=8, start=datetime(2027, 1, 6)),
            "every 14 days on Wednesday, counted from 2027-01-06, at 08:00",
        ),
        (dict(frequency="YR", day="03-15", hour=6, minute=30), "yearly on March 15 at 06:30"),
        (dict(frequency="HY", day="5", hour=2), "half-yearly (January and July) on day 5 at 02:00"),
        (
            dict(frequency="QT", hour=4, minute=10),
            "quarterly (January, April, July, October) on day 1 at 04:10",
        ),
        (
            dict(frequency="DL", hour=1, start=datetime(2027, 1, 1), end=datetime(2027, 6, 30)),
            "daily at 01:00, from 2027-01-01, until 2027-06-30",
        ),
    ],
)
def test_a_schedule_says_when_it_runs_in_words(fields, text):
    assert describe(Schedule(id=1, **fields)) == text


def test_the_demo_month_end_schedule_says_last_day_of_the_month(demo):
    descriptions = {s.cron_schedule: s.description for s in demo.defs().schedules}
    month_end = descriptions["0 23 28-31 * *"]
    assert month_end.endswith(": monthly on the last day of the month at 23:00")
    assert descriptions["*/15 * * * *"].endswith(": every 15 minutes")


# ------------------------------------------------------------------ through GraphQL

LAUNCH = """
mutation ($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}
"""

ASSET = """
query ($path: [String!]!) {
  assetNodeOrError(assetKey: {path: $path}) {
    ... on AssetNode {
      groupName kinds isMaterializable
      dependencyKeys { path }
      metadataEntries {
        label __typename
        ... on TextMetadataEntry { text }
        ... on TableSchemaMetadataEntry {
          schema { columns { name type description tags { key value }
                             constraints { nullable unique other } } }
        }
        ... on TableColumnLineageMetadataEntry {
          lineage { columnName columnDeps { assetKey { path } columnName } }
        }
      }
      assetMaterializations(limit: 1) {
        runId
        metadataEntries {
          label __typename
          ... on IntMetadataEntry { intValue }
          ... on TextMetadataEntry { text }
        }
      }
    }
  }
}
"""

REPOSITORIES = """
{ repositoriesOrError { ... on RepositoryConnection { nodes { name location { name } } } } }
"""

SOURCES_QUERY = """
{ assetNodes { assetKey { path } groupName kinds isMaterializable isExecutable } }
"""

RUN_STEPS = """
query ($runId: ID!) {
  runOrError(runId: $runId) {
    ... on Run { status stepStats { stepKey status } }
  }
  logsForRun(runId: $runId) {
    ... on EventConnection {
      events { __typename ... on ExecutionStepFailureEvent { stepKey error { message } } }
    }
  }
}
"""


class Graphql:
    def __init__(self, context) -> None:
        self.context = context
        repo = self.query(REPOSITORIES)
        [node] = repo["repositoriesOrError"]["nodes"]
        self.selector = {
            "repositoryLocationName": node["location"]["name"],
            "repositoryName": node["name"],
        }

    def query(self, text: str, variables: dict | None = None) -> dict:
        result = execute_dagster_graphql(self.context, text, variables)
        assert not result.errors, result.errors
        return result.data

    def launch(self, job: str, tags: dict[str, str]) -> str:
        params = {
            "selector": {**self.selector, "jobName": job},
            "runConfigData": {},
            "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
        }
        launched = self.query(LAUNCH, {"params": params})["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        return launched["run"]["runId"]

    def wait(self, run_id: str, timeout: float = 120) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            data = self.query(RUN_STEPS, {"runId": run_id})
            if data["runOrError"]["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
                return data
            time.sleep(0.5)
        raise TimeoutError(f"run {run_id} did not finish within {timeout}s")

    def asset(self, path: list[str]) -> dict:
        return self.query(ASSET, {"path": path})["assetNodeOrError"]


@pytest.fixture
def graphql(demo, tmp_path):
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(
        yaml.safe_dump(
            {
                "load_from": [
                    {
                        "python_module": {
                            "module_name": "dms_orchestration.definitions",
                            "location_name": "dms",
                        }
                    }
                ]
            }
        )
    )
    with instance_for_test(synchronous_run_coordinator=True) as instance:
        with define_out_of_process_context(str(workspace), None, instance) as context:
            yield Graphql(context)


def entries(node: dict) -> dict[str, dict]:
    return {e["label"]: e for e in node["metadataEntries"]}


@pytest.mark.slow
@pytest.mark.parametrize("scd", [1, 2])
def test_a_load_that_counted_its_target_on_its_way_is_not_counted_again(
    dms_url, tmp_path, monkeypatch, scd
):
    """A first load (every row it inserts) and an SCD1 target's full extract (every row
    of each chunk's range met, or absent; and the rows no range holds) know the
    target's rows when they commit: the materialization reports them with no count of
    the whole table. An SCD2 target's closed versions are not met on the way: its delta
    counts the target once, in a read snapshot taken before the chunks write (counted
    beside them), and adds what they changed; nothing is counted after the load."""
    d = cust_dms(dms_url, tmp_path, monkeypatch, city_scd=scd, delete_handling="DELETE")
    seen = []  # the statements on the target: a count, the count's first read, a write

    def record(_conn, _cursor, statement, *_):
        text = statement.lower()
        counter = threading.current_thread().name.startswith("dms-count")
        if "cust_dim" not in text:
            return
        if text.startswith("select count(*), count("):
            seen.append("count")
        elif counter:
            seen.append("snapshot")
        elif text.startswith(("insert into", "update", "delete from")):
            seen.append("write")

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", record)
    try:
        defs = d.defs()
        instance = dg.DagsterInstance.ephemeral()
        first = execute(defs, "cust_dim_job", instance, dms__chunks="3", dms__full="true")
        after_first, seen[:] = list(seen), []
        d.sql("DELETE FROM SRC_CUST WHERE ID IN (3, 17)")
        d.sql("INSERT INTO SRC_CUST VALUES (31, 'name31', 'city1')")
        d.sql("UPDATE SRC_CUST SET CITY = 'moved' WHERE ID = 5")
        keyless = dms_url.startswith("postgresql") and scd == 1
        if keyless:  # a row no key range holds (a table made elsewhere: a NULL key)
            d.sql("ALTER TABLE CUST_DIM ALTER COLUMN ID DROP NOT NULL")
            d.sql("INSERT INTO CUST_DIM (SKEY, ID, NAME, CITY) VALUES (-1, NULL, 'n', 'c')")
        seen[:] = []
        second = execute(defs, "cust_dim_job", instance, dms__chunks="3", dms__full="true")
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", record)
        dispose_all()
    assert first.success and second.success
    assert materialization(first)["dagster/row_count"] == 30
    assert "count" not in after_first and "snapshot" not in after_first  # a first load
    # 2 keys deleted, 1 new; an SCD2 target keeps ID 5's old city as a closed version
    rows = (29 if scd == 1 else 30) + keyless
    assert materialization(second)["dagster/row_count"] == rows
    assert materialization(second)["current rows"] == 29 + keyless
    assert d.scalar("SELECT COUNT(*) FROM CUST_DIM") == rows
    if scd == 1:
        assert "count" not in seen and "snapshot" not in seen
    else:
        assert seen.count("count") == seen.count("snapshot") == 1
        assert seen.index("snapshot") < seen.index("write")  # taken before the chunks wrote


@pytest.mark.slow
def test_the_ui_reads_schema_lineage_row_count_and_readable_steps_through_graphql(demo, graphql):
    run_id = graphql.launch("dim_customer_job", {"dms/full": "true"})
    run = graphql.wait(run_id)
    assert run["runOrError"]["status"] == "SUCCESS", run
    steps = {s["stepKey"] for s in run["runOrError"]["stepStats"]}
    assert steps == {"dim_customer"}  # the load, then its checks

    node = graphql.asset(["main", "dim_customer"])
    assert set(node["kinds"]) == {"sql", "sqlite"}
    assert ["source", "retail_src", "default", "customers"] in [
        k["path"] for k in node["dependencyKeys"]
    ]
    md = entries(node)
    assert md["dagster/table_name"]["text"] == "warehouse.DIM_CUSTOMER"
    columns = {c["name"]: c for c in md["dagster/column_schema"]["schema"]["columns"]}
    assert columns["CUST_ID"]["type"] == "INTEGER"
    assert columns["CUST_ID"]["constraints"]["nullable"] is False
    assert columns["CITY"]["tags"] == [{"key": "dms/scd", "value": "2"}]
    lineage = {
        e["columnName"]: [(d["assetKey"]["path"], d["columnName"]) for d in e["columnDeps"]]
        for e in md["dagster/column_lineage"]["lineage"]
    }
    assert lineage["CITY"] == [(["source", "retail_src", "default", "customers"], "CITY")]

    [materialized] = node["assetMaterializations"]
    assert materialized["runId"] == run_id
    values = {e["label"]: e for e in materialized["metadataEntries"]}
    rows = warehouse(demo, "SELECT COUNT(*) FROM DIM_CUSTOMER")[0][0]
    assert values["dagster/row_count"] == {
        "label": "dagster/row_count",
        "__typename": "IntMetadataEntry",
        "intValue": rows,
    }
    assert values["dms/prcid"]["__typename"] == "TextMetadataEntry"
    plotted = {
        e["label"]
        for e in materialized["metadataEntries"]
        if e["__typename"] in ("IntMetadataEntry", "FloatMetadataEntry")
    }
    assert "inserted" in plotted and not any(
        "id" in label for label in plotted - {"dagster/row_count"}
    )

    nodes = graphql.query(SOURCES_QUERY)["assetNodes"]
    sources = {"/".join(n["assetKey"]["path"]): n for n in nodes if not n["isExecutable"]}
    assert set(sources) == SOURCES
    assert {(n["groupName"], n["isMaterializable"]) for n in sources.values()} == {
        ("retail_src", False)
    }
    assert set(sources[CUSTOMERS]["kinds"]) == {"table", "sqlite"}


@pytest.mark.slow
def test_a_run_launched_with_a_bad_tag_fails_naming_it_through_graphql(demo, graphql):
    run_id = graphql.launch("dim_customer_job", {"dms/chunks": "abc"})
    run = graphql.wait(run_id)
    assert run["runOrError"]["status"] == "FAILURE"
    [failure] = [
        e for e in run["logsForRun"]["events"] if e["__typename"] == "ExecutionStepFailureEvent"
    ]
    assert failure["stepKey"] == "dim_customer"
    assert (
        "run tag dms/chunks='abc' must be a whole number of at least 1"
        in failure["error"]["message"]
    )
    assert demo.prclog(run_id) == []
