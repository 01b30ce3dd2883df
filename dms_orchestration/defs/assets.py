"""One asset per current mapping, materialized by one step that loads it (plan -> its
chunks side by side, N decided by the engine at run time -> commit) and then checks it.

The Dagster layer holds no SQL: every step calls the engine. Run tags carry what a run
was asked for: dms/param1..10, dms/full, dms/chunks, dms/prcreqid, dms/jobschid.
"""

import functools
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import dagster as dg
import sqlglot
from sqlglot import exp

from dms_orchestration.db.dialects import sqlglot_dialect
from dms_orchestration.defs.chunks import ChunkRetry, run_visible_chunks
from dms_orchestration.defs.materialization import (
    Loaded,
    loaded,
    materialization_metadata,
    row_count,
)
from dms_orchestration.defs.resources import RESOURCE_KEYS, dms_services
from dms_orchestration.defs.run_config import check_run_tags
from dms_orchestration.defs.runs import run_alive
from dms_orchestration.defs.translator import MappingNames
from dms_orchestration.engine import plan
from dms_orchestration.engine.checks import current_rows, reconcile
from dms_orchestration.engine.load import run_and_commit
from dms_orchestration.engine.spec import MappingInvalid
from dms_orchestration.metadata.models import Catalog, Finding, Mapping
from dms_orchestration.metadata.validation import rule_findings
from dms_orchestration.settings import Settings
from dms_orchestration.vocabulary import Severity

TAG = "dms/"
RETRY_DEFAULTS = {"RETRY_MAX": 3, "RETRY_DELAY_SECONDS": 5}


def source_dialect(mapping: Mapping, metadata_dialect: str) -> str:
    """The sqlglot dialect of a mapping's source SQL: its connection's DBTYP, else the
    metadata database's ('' when neither is known: sqlglot's standard SQL)."""
    return sqlglot_dialect(mapping.source_connection, metadata_dialect)


def tables_read(sql: str, dialect: str) -> set[tuple[str | None, str]]:
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


_WORD = r"[\w$#]+"


def _words(sql: str) -> set[str]:
    """The words of a text, upper case: a table it names is one of them (quoted or
    not), when the table's name is a word itself."""
    return set(re.findall(_WORD, sql.upper()))


def upstream_mappings(catalog: Catalog, metadata_dialect: str) -> dict[str, list[str]]:
    """MAPREF -> the mappings whose target tables its source SQL (and lookups) read."""
    by_table: dict[str, list[Mapping]] = {}
    for m in catalog.mappings.values():
        if m.target_table:
            by_table.setdefault(m.target_table.upper(), []).append(m)
    # SQL that names no target table (not even as a word) reads none: it need not be
    # parsed, unless a target's name is no word (then every SQL is)
    words = all(re.fullmatch(_WORD, name) for name in by_table)
    deps = {}
    for m in catalog.mappings.values():
        dialect = source_dialect(m, metadata_dialect)
        read: set[tuple[str | None, str]] = set()
        sqls = [m.source.sql if m.source else None] + [c.logic for c in m.columns if c.is_lookup]
        for sql in (q for q in sqls if q and (not words or _words(q) & by_table.keys())):
            read |= tables_read(sql, dialect)
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


def _retry_delay(catalog: Catalog) -> float:
    default = RETRY_DEFAULTS["RETRY_DELAY_SECONDS"]
    try:
        return float(str(catalog.param("RETRY_DELAY_SECONDS", str(default))).strip())
    except ValueError:
        return default


def chunk_retry(catalog: Catalog) -> ChunkRetry:
    """How a chunk retries its transient errors: RETRY_MAX, RETRY_DELAY_SECONDS."""
    retry_max = catalog.int_param("RETRY_MAX", RETRY_DEFAULTS["RETRY_MAX"])
    return ChunkRetry(retry_max, _retry_delay(catalog))


def refuse_blocked(mapping: Mapping, blocking: Sequence[Finding]) -> None:
    """Raise MappingInvalid with every ERROR finding when the definitions found one that
    blocks the mapping (a cycle, a schedule, a shared table, its rows): before any SQL."""
    if blocking:
        rules = [f for f in rule_findings(mapping) if f.severity == Severity.ERROR]
        raise MappingInvalid(
            mapping.ref,
            [(f"{f.column}: " if f.column else "") + f.message for f in [*blocking, *rules]],
        )


@dataclass(frozen=True)
class MappingLoad:
    """What the load step of one mapping needs besides the run: the mapping as the code
    location read it, the findings that block it, its pool and its chunks' retries."""

    mapping: Mapping
    blocking: Sequence[Finding]
    pool: str
    retry: ChunkRetry


def load_mapping(context: dg.AssetExecutionContext, settings: Settings, load: MappingLoad):
    """plan -> every chunk (side by side, each visible and retried) -> commit, as the
    engine's load() does, with the plan's load lock asking Dagster whether a run is alive."""
    mapping = load.mapping
    check_run_tags(context.run.tags)
    refuse_blocked(mapping, load.blocking)
    options = run_options(dict(context.run.tags))
    load_plan = plan(
        mapping,
        options["params"],
        chunks=options["chunks"],
        full=options["full"],
        settings=settings,
        runid=context.run.run_id,
        prcreqid=options["prcreqid"],
        jobschid=options["jobschid"],
        run_alive=functools.partial(run_alive, context.instance),
    )
    context.log.info(
        f"{mapping.ref}: process {load_plan.prcid}, {load_plan.chunk_count} chunk(s) "
        f"for ~{load_plan.estimated_rows} rows ({load_plan.estimate_method})"
    )
    return run_and_commit(
        load_plan,
        settings,
        lambda: run_visible_chunks(context, load_plan, settings, load.retry, load.pool),
        count_rows=True,  # the materialization's dagster/row_count
    )


CURRENT_ROWS = "one_current_row_per_key"
RECONCILIATION = "source_target_reconciliation"


def check_specs(key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    """The two checks of a mapping's asset; the current-row check blocks downstream
    assets."""
    return [
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


def mapping_asset(
    names: MappingNames,
    load: MappingLoad,
    deps: Sequence[dg.AssetKey],
    findings: Sequence[Finding],
    lineage: dict | None = None,
) -> dg.AssetsDefinition:
    """The mapping's asset as the translator named it, with its findings and column
    lineage (defs/lineage.py) in the metadata, and its checks: one step, named as the
    translator names the mapping's graph, that loads it and then checks it.

    The checks run in the load's step, after its commit, with what the load found (the
    source keys of a whole extract, the current rows): a step of their own cost a run
    ~0.05-0.1 s of step events and a read of the materialization back from the event
    log. Either part can run alone (the UI's "materialize without checks", "execute
    checks"). A blocking check that fails fails the step once the materialization is
    recorded (Dagster's rule for a check of its own asset's step): downstream assets do
    not run."""
    key = names.key
    spec = names.spec.replace_attributes(
        key=key,
        deps=deps,
        metadata={
            **names.spec.metadata,
            **(lineage or {}),
            "dms/findings": dg.MetadataValue.md(findings_text(findings)),
        },
    )

    @dg.multi_asset(
        name=names.graph,
        specs=[spec],
        check_specs=check_specs(key),
        can_subset=True,
        required_resource_keys=RESOURCE_KEYS,
    )
    def load_step(context: dg.AssetExecutionContext):
        with dms_services(context.resources) as settings:
            found = Loaded()
            if key in context.selected_asset_keys:
                done = load_mapping(context, settings, load)
                rows = done.target_rows or row_count(load.mapping, settings, context.log)
                if done.note:
                    context.log.warning(f"{done.mapref}: {done.note}")
                yield dg.MaterializeResult(
                    asset_key=key, metadata=materialization_metadata(done, rows)
                )
                found = loaded(done, rows)
            checks = sorted(c.name for c in context.selected_asset_check_keys)
            yield from evaluate_checks(load.mapping, key, checks, settings, found)

    return load_step


def evaluate_checks(
    mapping: Mapping, key: dg.AssetKey, names: Sequence[str], settings: Settings, found: Loaded
) -> list[dg.AssetCheckResult]:
    """The checks `names` of the mapping's asset, side by side (a connection each: each
    scans the target, or the source, once)."""
    if not names:
        return []
    with ThreadPoolExecutor(len(names)) as pool:
        return list(pool.map(lambda n: _evaluate_check(mapping, key, n, settings, found), names))


def _evaluate_check(
    mapping: Mapping,
    key: dg.AssetKey,
    check_name: str,
    settings: Settings,
    load: Loaded,
) -> dg.AssetCheckResult:
    """`load`: what this run's load of the asset found, if it ran."""
    if check_name == CURRENT_ROWS:
        result = current_rows(mapping, settings)
        how = f"unique index {result.enforced_by}" if result.enforced_by else "counted"
        return dg.AssetCheckResult(
            asset_key=key,
            check_name=CURRENT_ROWS,
            passed=result.passed,
            metadata={
                "keys with several current rows": result.keys_with_several_current_rows,
                "sample": ", ".join(result.sample),
                "enforced by": dg.MetadataValue.text(how),
            },
        )
    r = reconcile(mapping, settings, source_keys=load.source_keys, current=load.current_rows)
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
            "source keys from": dg.MetadataValue.text(
                "the source query" if r.source_counted else "this run's load (whole extract)"
            ),
            "current rows from": dg.MetadataValue.text(
                "this check" if load.current_rows is None else "this run's load, after commit"
            ),
        },
    )
