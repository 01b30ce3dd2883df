"""One asset per current mapping: a graph of plan -> one step per chunk (dynamic fan-out,
N decided by the engine at run time) -> commit, plus its asset checks.

The Dagster layer holds no SQL: every step calls the engine. Run tags carry what a run
was asked for: dms/param1..10, dms/full, dms/chunks, dms/prcreqid, dms/jobschid.
"""

import functools
import inspect
import json
import random
from collections.abc import Sequence

import dagster as dg
import sqlglot
from sqlglot import exp

from dms_orchestration.db.connect import metadata_engine
from dms_orchestration.db.dialects import DBTYP_TO_DIALECT, DIALECTS
from dms_orchestration.defs.materialization import materialization_metadata, row_count
from dms_orchestration.defs.resources import DmsResource
from dms_orchestration.defs.run_config import check_run_tags
from dms_orchestration.defs.runs import run_alive
from dms_orchestration.defs.translator import CatalogNames, MappingNames
from dms_orchestration.dmslog.writer import close_process
from dms_orchestration.engine import commit, plan, run_chunk
from dms_orchestration.engine.checks import current_rows, reconcile
from dms_orchestration.engine.chunk import ChunkResult
from dms_orchestration.engine.errors import describe, is_interruption, is_transient
from dms_orchestration.engine.plan import LoadPlan
from dms_orchestration.engine.spec import MappingInvalid
from dms_orchestration.metadata.models import Catalog, Finding, Mapping
from dms_orchestration.metadata.validation import rule_findings
from dms_orchestration.settings import Settings

TAG = "dms/"
RETRY_DEFAULTS = {"RETRY_MAX": 3, "RETRY_DELAY_SECONDS": 5}


def source_dialect(mapping: Mapping, metadata_dialect: str) -> str:
    """The sqlglot dialect of a mapping's source SQL: its connection's DBTYP, else the
    metadata database's ('' when neither is known: sqlglot's standard SQL)."""
    con = mapping.source_connection
    name = DBTYP_TO_DIALECT.get((con.db_type or "").upper(), "") if con else metadata_dialect
    return DIALECTS[name].sqlglot_name if name in DIALECTS else ""


def _tables_read(sql: str, dialect: str) -> set[tuple[str | None, str]]:
    """(schema, table) of every table a query reads; nothing when it does not parse."""
    try:
        tree = sqlglot.parse_one(sql, read=dialect or None)
        ctes = {c.alias_or_name.upper() for c in tree.find_all(exp.CTE)}
        return {
            ((t.db or "").upper() or None, t.name.upper())
            for t in tree.find_all(exp.Table)
            if t.name and t.name.upper() not in ctes
        }
    except Exception:  # any text a legacy row holds: the parser's failures are not ours
        return set()


def upstream_mappings(catalog: Catalog, metadata_dialect: str) -> dict[str, list[str]]:
    """MAPREF -> the mappings whose target tables its source SQL (and lookups) read."""
    by_table: dict[str, list[Mapping]] = {}
    for m in catalog.mappings.values():
        if m.target_table:
            by_table.setdefault(m.target_table.upper(), []).append(m)
    deps = {}
    for m in catalog.mappings.values():
        dialect = source_dialect(m, metadata_dialect)
        read: set[tuple[str | None, str]] = set()
        sqls = [m.source.sql if m.source else None] + [c.logic for c in m.columns if c.is_lookup]
        for sql in filter(None, sqls):
            read |= _tables_read(sql, dialect)
        deps[m.ref] = sorted(
            {
                other.ref
                for schema, table in read
                for other in by_table.get(table, ())
                if other.ref != m.ref
                and (
                    schema is None
                    or not other.target_schema
                    or schema == other.target_schema.upper()
                )
            }
        )
    return deps


def findings_text(findings: Sequence[Finding]) -> str:
    if not findings:
        return "no findings"
    return "\n".join(
        f"- **{f.severity}** {f.column + ': ' if f.column else ''}{f.message}" for f in findings
    )


def run_options(tags: dict[str, str]) -> dict:
    """What a run asks of its load, from its tags."""
    params = {f"p{i}": tags[f"{TAG}param{i}"] for i in range(1, 11) if f"{TAG}param{i}" in tags}
    chunks = tags.get(f"{TAG}chunks")
    as_int = lambda name: int(tags[name]) if tags.get(name) else None  # noqa: E731
    return {
        "params": params,
        "full": tags.get(f"{TAG}full", "").lower() in ("1", "true", "yes"),
        "chunks": int(chunks) if chunks else None,
        "prcreqid": as_int(f"{TAG}prcreqid"),
        "jobschid": as_int(f"{TAG}jobschid"),
    }


def _backoff(base: float, attempt: int) -> float:
    """Exponential backoff with +/- 25% jitter."""
    return base * (2**attempt) * random.uniform(0.75, 1.25)


def _retry_delay(catalog: Catalog) -> float:
    default = RETRY_DEFAULTS["RETRY_DELAY_SECONDS"]
    try:
        return float(str(catalog.param("RETRY_DELAY_SECONDS", str(default))).strip())
    except ValueError:
        return default


def refuse_blocked(mapping: Mapping, blocking: Sequence[Finding]) -> None:
    """Raise MappingInvalid with every ERROR finding when the definitions found one that
    blocks the mapping (a cycle, a schedule, a shared table, its rows): before any SQL."""
    if blocking:
        rules = [f for f in rule_findings(mapping) if f.severity == "ERROR"]
        raise MappingInvalid(
            mapping.ref,
            [(f"{f.column}: " if f.column else "") + f.message for f in [*blocking, *rules]],
        )


class LoadSteps:
    """The three steps of every mapping's graph, defined once and shared: a step finds
    its mapping from the graph it runs in (one graph per mapping, named by the
    translator), and refuses a mapping whose `blocking` findings say it cannot load."""

    def __init__(
        self,
        catalog: Catalog,
        names: CatalogNames,
        blocking: dict[str, list[Finding]],
        max_deps: int,
    ) -> None:
        self.by_graph = {names.mappings[ref].graph: m for ref, m in catalog.mappings.items()}
        retry_max = catalog.int_param("RETRY_MAX", RETRY_DEFAULTS["RETRY_MAX"])
        retry_delay = _retry_delay(catalog)
        self.after = [f"after_{i}" for i in range(max_deps)]
        mapping_of = self.mapping_of

        @dg.op(
            name="dms_plan", ins={n: dg.In(dg.Nothing) for n in self.after}, out=dg.DynamicOut(str)
        )
        def plan_step(context: dg.OpExecutionContext, dms: DmsResource):
            mapping = mapping_of(context)
            check_run_tags(context.run.tags)
            refuse_blocked(mapping, blocking.get(mapping.ref, []))
            options = run_options(dict(context.run.tags))
            load_plan = plan(
                mapping,
                options["params"],
                chunks=options["chunks"],
                full=options["full"],
                settings=dms.settings(),
                runid=context.run_id,
                prcreqid=options["prcreqid"],
                jobschid=options["jobschid"],
                run_alive=functools.partial(run_alive, context.instance),
            )
            context.log.info(
                f"{mapping.ref}: process {load_plan.prcid}, {load_plan.chunk_count} chunk(s) "
                f"for ~{load_plan.estimated_rows} rows ({load_plan.estimate_method})"
            )
            data = load_plan.model_dump_json()
            for i in range(load_plan.chunk_count):
                yield dg.DynamicOutput(data, mapping_key=f"c{i:04d}")

        def chunk_step(context: dg.OpExecutionContext, dms: DmsResource, plan_json: str) -> str:
            load_plan = LoadPlan.model_validate_json(plan_json)
            index = int(context.get_mapping_key()[1:])
            settings = dms.settings()
            try:  # progress as Dagster events, while DMS_JOBLOG gets it too
                result = run_chunk(
                    load_plan, index, settings, on_progress=lambda p: context.log.info(p.describe())
                )
            except BaseException as exc:
                retry = context.retry_number
                if not is_interruption(exc) and is_transient(exc) and retry < retry_max:
                    wait = _backoff(retry_delay, retry)
                    context.log.warning(
                        f"chunk {index}: transient error, retry in {wait:.0f}s: {describe(exc)}"
                    )
                    raise dg.RetryRequested(max_retries=retry_max, seconds_to_wait=wait) from exc
                status = "ST" if is_interruption(exc) else "FL"
                close_process(metadata_engine(settings), load_plan.prcid, status, describe(exc))
                raise
            return json.dumps({"plan": plan_json, "result": result.model_dump_json()})

        pools = {(n.pool, n.chunk_step) for n in names.mappings.values()}
        self.chunk_steps = {
            pool: dg.op(name=op_name, pool=pool)(chunk_step) for pool, op_name in sorted(pools)
        }

        @dg.op(name="dms_commit")
        def commit_step(context: dg.OpExecutionContext, dms: DmsResource, chunks: list[str]):
            items = [json.loads(c) for c in chunks]
            load_plan = LoadPlan.model_validate_json(items[0]["plan"])
            results = [ChunkResult.model_validate_json(i["result"]) for i in items]
            done = commit(load_plan, results, dms.settings())
            if done.note:
                context.log.warning(f"{done.mapref}: {done.note}")
            rows = row_count(load_plan.mapping, dms.settings(), context.log)
            yield dg.Output(None, metadata=materialization_metadata(done, rows))

        self.plan_step, self.commit_step = plan_step, commit_step

    def mapping_of(self, context: dg.OpExecutionContext) -> Mapping:
        return self.by_graph[context.op_handle.parent.name]


def mapping_asset(
    names: MappingNames,
    steps: LoadSteps,
    deps: Sequence[dg.AssetKey],
    findings: Sequence[Finding],
    lineage: dict | None = None,
) -> dg.AssetsDefinition:
    """The mapping's asset as the translator named it, with its findings and column
    lineage (defs/lineage.py) in the metadata. Its steps read `<graph>.plan`,
    `<graph>.chunk[c0000]`, `<graph>.commit` in a run (aliases of the shared ops)."""
    after = {f"after_{i}": dep for i, dep in enumerate(deps)}
    plan_step, commit_step = steps.plan_step, steps.commit_step
    chunk_step = steps.chunk_steps[names.pool]

    def compose(**upstream):
        plans = plan_step.alias("plan")(**upstream)
        return commit_step.alias("commit")(plans.map(chunk_step.alias("chunk")).collect())

    compose.__signature__ = inspect.Signature(
        [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY) for n in after]
    )
    spec = names.spec.replace_attributes(
        key=names.key,
        metadata={
            **names.spec.metadata,
            **(lineage or {}),
            "dms/findings": dg.MetadataValue.md(findings_text(findings)),
        },
    )
    return dg.graph_multi_asset(
        name=names.graph,
        outs={"result": dg.AssetOut.from_spec(spec)},
        group_name=spec.group_name,  # graph_multi_asset reads the group here only
        ins={n: dg.AssetIn(key=k, dagster_type=dg.Nothing) for n, k in after.items()},
    )(compose)


CURRENT_ROWS = "one_current_row_per_key"
RECONCILIATION = "source_target_reconciliation"


def _evaluate_check(
    mapping: Mapping, key: dg.AssetKey, check_name: str, settings: Settings
) -> dg.AssetCheckResult:
    if check_name == CURRENT_ROWS:
        result = current_rows(mapping, settings)
        return dg.AssetCheckResult(
            asset_key=key,
            check_name=CURRENT_ROWS,
            passed=result.passed,
            metadata={
                "keys with several current rows": result.keys_with_several_current_rows,
                "sample": ", ".join(result.sample),
            },
        )
    r = reconcile(mapping, settings)
    # keys a source no longer has stay in the target when DELHNDL is IGNORE
    keeps_absent = (mapping.delete_handling or "IGNORE").upper() == "IGNORE"
    return dg.AssetCheckResult(
        asset_key=key,
        check_name=RECONCILIATION,
        passed=r.difference == 0 or (keeps_absent and r.difference > 0),
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "source keys": r.source_keys,
            "current target rows": r.target_rows,
            "difference": r.difference,
        },
    )


def mapping_checks(mapping: Mapping, names: MappingNames) -> dg.AssetChecksDefinition:
    """Both checks of one mapping's asset: a run evaluates those of the assets it
    materializes. The current-row check blocks downstream assets.

    One definition per asset, never one for all assets: a checks definition's op takes
    every asset it checks as an input, and keeps them all when Dagster subsets it to one
    job's asset, so a shared definition pulled every asset into every job and resolving
    the jobs grew with the square of the number of mappings."""
    key = names.key
    specs = [
        dg.AssetCheckSpec(
            CURRENT_ROWS,
            asset=key,
            blocking=True,
            description="Exactly one current row per business key",
        ),
        dg.AssetCheckSpec(
            RECONCILIATION,
            asset=key,
            description="Distinct source keys vs current target rows (a warning)",
        ),
    ]

    @dg.multi_asset_check(specs=specs, can_subset=True, name=names.checks)
    def dms_checks(context: dg.AssetCheckExecutionContext, dms: DmsResource):
        settings = dms.settings()
        for check_key in sorted(context.selected_asset_check_keys, key=str):
            yield _evaluate_check(mapping, key, check_key.name, settings)

    return dms_checks
