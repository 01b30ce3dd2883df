"""plan(): everything decided once per load, before any chunk runs.

Opens DMS_PRCLOG (IP, the mapping's load lock), makes sure the target table fits the
mapping, fixes the checkpoint window, estimates the source rows, chooses the chunk
count and the key boundaries, stores the load's SQL in DMS_JOBFLW for review, and opens
the load's DMS_JOBLOG row (IP, with what it set out to do in PRCMSG).
The plan is plain data (JSON), so chunks can run in other processes.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict

from dms_orchestration.db import schema as s
from dms_orchestration.db.connect import metadata_engine
from dms_orchestration.db.connections import connection_engine
from dms_orchestration.db.dialects import DBTYP_TO_DIALECT, Dialect, dialect_of, has_schemas
from dms_orchestration.db.sqltext import param_number
from dms_orchestration.dmslog.lock import LoadTarget, RunAlive, lock_place, open_load
from dms_orchestration.dmslog.reader import last_load_start
from dms_orchestration.dmslog.writer import log_writer, running_message
from dms_orchestration.engine import sqlgen
from dms_orchestration.engine.checkpoint import (
    Window,
)
from dms_orchestration.engine.errors import (
    record_load_end,
)
from dms_orchestration.engine.jobflow import store_load_sql
from dms_orchestration.engine.source import SourceRead, read_window
from dms_orchestration.engine.spec import LoadSpec, load_spec
from dms_orchestration.engine.strategy import LoadFacts, LoadStrategy, UniqueRule, load_strategy
from dms_orchestration.engine.target import (
    WORK_TABLE,
    ensure_indexes,
    ensure_target,
    is_empty,
    leftover_work_tables,
)
from dms_orchestration.ids.provider import SEQUENCE, TABLE_COUNTER, provider_for
from dms_orchestration.metadata.models import Mapping
from dms_orchestration.settings import ConfigError, Settings, dms_now, load_settings
from dms_orchestration.vocabulary import CheckpointStrategy, DeleteHandling, Family, Status

CHUNK_DEFAULTS = {
    "MIN_ROWS_FOR_PARALLEL": 100_000,
    "CHUNK_ROWS": 500_000,
    "MAX_PARALLEL_CHUNKS": 4,
    # chunks a load may be asked for (each is a transaction, a step, a connection)
    "MAX_CHUNKS": 64,
}


class LoadPlan(BaseModel):
    model_config = ConfigDict(frozen=True)

    mapping: Mapping
    prcid: int
    jobid: int | None = None
    params: dict[str, str | None] = {}  # p1..p10
    load_time: datetime  # on the DMS clock: RECCRDT / RECUPDT / VLDFRM / VLDTO of the load
    started_at: datetime  # local wall clock, for the load's duration
    chunk_count: int
    parallel_limit: int = CHUNK_DEFAULTS["MAX_PARALLEL_CHUNKS"]  # chunks run at once, at most
    boundaries: list[Any] = []  # upper key bound of chunks 0..n-2
    window_start: str | None = None
    window_end: str | None = None
    windowed: bool = False
    strategy: LoadStrategy
    skey_mode: str
    # the key cuts of a single chunk's parts (strategy.parts): its classify reads the key
    # ranges between them side by side
    parts: list[Any] = []
    estimated_rows: int
    estimate_method: str

    @property
    def mapref(self) -> str:
        return self.mapping.ref

    @property
    def builds_unique_rule_in_chunk(self) -> bool:
        """A first load of one chunk builds the unique business-key rule after its rows,
        in its own transaction (a duplicate key then fails the chunk); of several, at
        commit."""
        return self.strategy.unique_rule is UniqueRule.AFTER_ROWS and self.chunk_count == 1

    @property
    def window(self) -> Window:
        bounded = (self.mapping.checkpoint_strategy or "").upper() == CheckpointStrategy.PYTHON
        return Window(self.window_start, self.window_end, self.windowed, bounded)

    @property
    def partial_note(self) -> str | None:
        """Why keys absent from the source were left alone though DELHNDL asks to delete
        or expire them: parameters narrowed an otherwise full extract."""
        handling = (self.mapping.delete_handling or DeleteHandling.IGNORE).strip().upper()
        given = [f"PARAM{name[1:]}" for name, value in sorted(self.params.items()) if value]
        if handling == DeleteHandling.IGNORE or not given or not self.window.reads_everything:
            return None
        done = "deleted" if handling == DeleteHandling.DELETE else "expired"
        return (
            f"partial extract ({', '.join(given)} given): keys absent from it were not "
            f"{done} (DELHNDL {handling} applies to full extracts only)"
        )

    def binds(self, chunk: int) -> dict[str, Any]:
        lo = self.boundaries[chunk - 1] if chunk > 0 else None
        hi = self.boundaries[chunk] if chunk < self.chunk_count - 1 else None
        return {
            "dms_lo": lo,
            "dms_hi": hi,
            "dms_now": self.load_time,
            "dms_chk_from": self.window_start,
            "dms_chk_to": self.window_end,
            **{f"dms_cut{j}": cut for j, cut in enumerate(self.parts, start=1)},
            **self.params,
        }


def normalize_params(params: dict[str, str | None] | None) -> dict[str, str | None]:
    """PARAM1..PARAM10 (or p1..p10) -> p1..p10, the binds of the source SQL."""
    return {f"p{param_number(name)}": value for name, value in (params or {}).items()}


def chunk_settings(meta: sa.Engine) -> dict[str, int]:
    p = s.dms_params
    with meta.connect() as conn:
        rows = conn.execute(
            sa.select(p.c.prcd, p.c.prval).where(
                p.c.prtyp == "DMSCONFIG", p.c.prcd.in_(list(CHUNK_DEFAULTS))
            )
        ).all()
    values = dict(CHUNK_DEFAULTS)
    for code, value in rows:
        try:
            values[code] = int(str(value).strip())
            if values[code] < 1:
                raise ValueError
        except ValueError:
            raise ConfigError(
                f"DMS_PARAMS DMSCONFIG {code}={value!r} is not a positive integer"
            ) from None
    return values


def choose_chunk_count(
    estimate: int, config: dict[str, int], concurrent_writers: bool = True
) -> int:
    # (a target that takes one writer at a time, SQLite, gains nothing from chunks)
    if estimate < config["MIN_ROWS_FOR_PARALLEL"] or not concurrent_writers:
        return 1
    return max(1, min(config["MAX_PARALLEL_CHUNKS"], math.ceil(estimate / config["CHUNK_ROWS"])))


def _facts(
    source: SourceRead, tgt: sa.Engine, created: bool, empty: bool, chunks: int, earned: int
) -> LoadFacts:
    """What the load's strategy is decided from; the source's two probes are left for
    load_strategy to ask when they matter."""
    return LoadFacts(
        created=created,
        empty=empty,
        full_extract=source.full_extract,
        same_database=same_database(source.engine, tgt),
        chunks=chunks,
        earned=earned,
        integer_key=source.spec.keys[0].dtype.family == Family.INTEGER,
        parallel_reads=dialect_of(tgt).parallel_read_session() is not None,
        unique_source_key=source.unique_key,
        reads_one_table=source.reads_one_table,
    )


def _skey_mode(tgt: sa.Engine, meta: sa.Engine, spec: LoadSpec) -> str:
    """How the load's new SKEYs are drawn: the target's own sequence (SEQUENCE mode, where
    the database has sequences), else DMS_IDPOOL ranges; either continues above every
    SKEY the other mode handed out."""
    if (
        dialect_of(tgt).capabilities.sequences
        and provider_for(meta).mode_for(spec.table) == SEQUENCE
    ):
        _ensure_skey_sequence(tgt, meta, spec)
        return SEQUENCE
    _skey_counter_above_target(tgt, meta, spec)
    return TABLE_COUNTER


def _key_cuts(source: SourceRead, strategy: LoadStrategy) -> tuple[list[Any], list[Any]]:
    """The key cuts between the load's chunks, and between a single chunk's parts: where
    the target reads a transaction's key ranges side by side, a single chunk still
    compares source and target on every core (benchmarks/README.md). The parts find their own
    duplicates."""
    unique_key = strategy.unique_source_key
    chunks = strategy.chunks
    boundaries = (
        source.key_cuts(
            chunks, count_duplicates=strategy.cuts_check_duplicates, unique_key=unique_key
        )
        if chunks > 1
        else []
    )
    parts = (
        source.key_cuts(strategy.parts, count_duplicates=False, unique_key=unique_key)
        if strategy.parts
        else []
    )
    return boundaries, parts


def _ensure_skey_sequence(tgt: sa.Engine, meta: sa.Engine, spec: LoadSpec) -> None:
    """SEQUENCE mode: the target table's own <TRGTBNM>_SEQ, next to it, above the SKEYs
    it holds and those DMS_IDPOOL handed out (an earlier TABLE_COUNTER mode)."""
    d = dialect_of(tgt)
    name = f"{spec.table}_SEQ"
    schema = spec.schema.lower() if spec.schema else None
    counter = provider_for(meta).pool_counter(spec.table)
    with tgt.begin() as conn:
        held = conn.exec_driver_sql(sqlgen.highest_skey(d, spec)).scalar() or 0
        floor = max(int(held), counter)
        if d.sequence_exists(conn, name, schema):
            d.raise_sequence(conn, name, spec.schema, floor)
            return
        start = floor + 1
        # CACHE: each session takes its SKEYs 1000 at a time (parallel chunks do not
        # wait for each other; a gap of unused values is harmless for surrogate keys)
        qualified = d.qualified(spec.schema, name)
        conn.exec_driver_sql(
            d.create_sequence(qualified, int(start), cache=1000, if_not_exists=True)
        )


def skey_floor_query(d: Dialect, spec: LoadSpec) -> sa.Select[*tuple[Any, ...]]:
    """The highest SKEY the target holds and the highest its sequence handed out, if any."""
    table = sa.text(d.qualified(spec.schema, spec.table))
    parts: list[sa.ColumnElement[Any]] = [
        sa.select(sa.literal_column("MAX(SKEY)")).select_from(table).scalar_subquery()
    ]
    position = d.sequence_position(f"{spec.table}_SEQ", spec.schema)
    if position is not None:
        parts.append(position)
    return sa.select(*parts)


def _skey_counter_above_target(tgt: sa.Engine, meta: sa.Engine, spec: LoadSpec) -> None:
    """TABLE_COUNTER mode: the DMS_IDPOOL counter continues above the SKEYs the target
    holds and those its sequence handed out (an earlier SEQUENCE mode)."""
    with tgt.connect() as conn:
        row = conn.execute(skey_floor_query(dialect_of(tgt), spec)).one()
    provider_for(meta).raise_pool(spec.table, max(int(v or 0) for v in row))


def _drop_leftovers(tgt: sa.Engine, meta: sa.Engine, spec: LoadSpec) -> None:
    names = leftover_work_tables(tgt, spec)
    if not names:
        return
    # (leftover_work_tables names only tables WORK_TABLE matches)
    prcids = {int(cast(re.Match[str], WORK_TABLE.match(n.lower())).group(1)) for n in names}
    p = s.dms_prclog
    with meta.connect() as conn:
        ours = set(
            conn.execute(
                sa.select(p.c.prcid).where(
                    p.c.prcid.in_(prcids), p.c.mapref == spec.mapref, p.c.prcsts != Status.IP
                )
            ).scalars()
        )
    d = dialect_of(tgt)
    for name in names:
        if int(cast(re.Match[str], WORK_TABLE.match(name.lower())).group(1)) in ours:
            with tgt.begin() as conn:
                conn.exec_driver_sql(sqlgen.drop_table(d.qualified(spec.schema, name)))


def _load_time(meta: sa.Engine, mapref: str) -> datetime:
    """Now, but always after the mapping's last load: a version is never closed at the
    instant it was opened (clocks step back, loads follow each other within a tick)."""
    now, last = dms_now(), last_load_start(meta, mapref)
    if isinstance(last, str):  # SQLite hands back its text
        last = datetime.fromisoformat(last)
    return now if last is None or now > last else last + timedelta(microseconds=1)


def load_target(mapping: Mapping, settings: Settings) -> LoadTarget:
    """The table a mapping writes, for the load lock (SQLite: one name, one table)."""
    con = mapping.target_connection
    dialect = (
        DBTYP_TO_DIALECT.get((con.db_type or "").upper())
        if con
        else settings.database_url.get_backend_name()
    )
    return LoadTarget(
        connection_id=mapping.target_connection_id,
        schema=mapping.target_schema,
        table=mapping.target_table or "",
        schemas_apart=has_schemas(dialect),
    )


def resolve(mapping: Mapping, settings: Settings) -> tuple[LoadSpec, sa.Engine, sa.Engine]:
    """The load spec and the source and target engines of a mapping."""
    src = connection_engine(mapping.source_connection, settings)
    tgt = connection_engine(mapping.target_connection, settings)
    spec = load_spec(
        mapping, dialect_of(tgt).name, settings.cdr_schema, dialect_of(src).sqlglot_name
    )
    return spec, src, tgt


def same_database(a: sa.Engine, b: sa.Engine) -> bool:
    return a.url.render_as_string(hide_password=False) == b.url.render_as_string(
        hide_password=False
    )


def plan(
    mapping: Mapping,
    params: dict[str, str | None] | None = None,
    *,
    chunks: int | None = None,
    full: bool = False,
    settings: Settings | None = None,
    runid: str | None = None,
    jobid: int | None = None,
    prcreqid: int | None = None,
    jobschid: int | None = None,
    run_alive: RunAlive | None = None,
) -> LoadPlan:
    """Everything decided once per load; opens the load's DMS_PRCLOG row (IP) under the
    lock of its mapping and target table (dmslog.lock). `runid`: the orchestrator run
    the load belongs to, alive while `run_alive(runid)` says so; without one, this
    process holds the lock until the load ends."""
    started = datetime.now()
    settings = settings or load_settings()
    meta = metadata_engine(settings)
    params = normalize_params(params)
    if jobid is None and mapping.jobs:
        jobid = mapping.jobs[0].id
    config = chunk_settings(meta)
    if chunks is not None and not 1 <= chunks <= config["MAX_CHUNKS"]:
        raise ConfigError(
            f"mapping {mapping.ref}: {chunks} chunks asked for; a load takes 1 to "
            f"{config['MAX_CHUNKS']} chunks (DMS_PARAMS DMSCONFIG MAX_CHUNKS)"
        )
    prcid = open_load(
        meta,
        mapref=mapping.ref,
        target=load_target(mapping, settings),
        place=lock_place(settings),
        run_alive=run_alive,
        jobid=jobid,
        jobschid=jobschid,
        prcreqid=prcreqid,
        runid=runid,
        params=[params.get(f"p{i}") for i in range(1, 11)],
    )
    try:
        spec, src, tgt = resolve(mapping, settings)
        # (a column added to an existing table is no new table)
        created = any(done.startswith("created table") for done in ensure_target(tgt, spec))
        empty = not spec.aggregated and is_empty(tgt, spec)
        _drop_leftovers(tgt, meta, spec)
        source = SourceRead(src, spec, read_window(spec, src, meta, params, full), params)
        estimate, method = source.estimate()
        earned = choose_chunk_count(
            estimate, config, dialect_of(tgt).capabilities.concurrent_writers
        )
        facts = _facts(source, tgt, created, empty, chunks or earned, earned)
        strategy = load_strategy(facts)
        if strategy.unique_rule is UniqueRule.BEFORE_ROWS:
            # all indexes now (a first load builds them after its rows, at commit); also
            # repairs a first load that died before its commit
            ensure_indexes(tgt, spec)
        boundaries, parts = _key_cuts(source, strategy)
        skey_mode = _skey_mode(tgt, meta, spec)
        result = LoadPlan(
            mapping=mapping,
            prcid=prcid,
            jobid=jobid,
            params=params,
            load_time=_load_time(meta, mapping.ref),
            started_at=started,
            chunk_count=len(boundaries) + 1,
            parallel_limit=config["MAX_PARALLEL_CHUNKS"],
            boundaries=boundaries,
            window_start=source.window.start,
            window_end=source.window.end,
            windowed=source.window.windowed,
            strategy=strategy,
            skey_mode=skey_mode,
            parts=parts,
            estimated_rows=estimate,
            estimate_method=method,
        )
        store_load_sql(meta, result, spec, dialect_of(src), dialect_of(tgt))
        log_writer(meta).open_load_row(  # IP: its chunks sum their rows into it as they go
            prcid=prcid,
            mapref=mapping.ref,
            jobid=jobid,
            chunkcnt=result.chunk_count,
            start=result.load_time,
            message=running_message(result.chunk_count, estimate, method),
        )
        return result
    except BaseException as exc:
        record_load_end(meta, prcid=prcid, mapref=mapping.ref, jobid=jobid, exc=exc)
        raise
