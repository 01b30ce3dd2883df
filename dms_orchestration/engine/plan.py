"""plan(): everything decided once per load, before any chunk runs.

Opens DMS_PRCLOG (IP, the mapping's load lock), makes sure the target table fits the
mapping, fixes the checkpoint window, estimates the source rows, chooses the chunk
count and the key boundaries, stores the load's SQL in DMS_JOBFLW for review, and opens
the load's DMS_JOBLOG row (IP, with what it set out to do in PRCMSG).
The plan is plain data (JSON), so chunks can run in other processes.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict

from dms_orchestration.db import schema as s
from dms_orchestration.db.connect import metadata_engine
from dms_orchestration.db.connections import connection_engine
from dms_orchestration.db.dialects import DBTYP_TO_DIALECT, Dialect, dialect_of
from dms_orchestration.db.sqltext import bound_text, param_number
from dms_orchestration.dmslog.lock import LoadTarget, RunAlive, lock_place, open_load
from dms_orchestration.dmslog.reader import last_load_start
from dms_orchestration.dmslog.writer import log_writer, running_message
from dms_orchestration.engine import sqlgen
from dms_orchestration.engine.checkpoint import (
    CheckpointError,
    Window,
    as_text,
    checkpoint_function,
    last_checkpoint,
)
from dms_orchestration.engine.errors import (
    duplicate_key_error,
    null_key_error,
    record_load_end,
)
from dms_orchestration.engine.jobflow import store_load_sql
from dms_orchestration.engine.spec import LoadSpec, load_spec
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
    full_extract: bool
    initial: bool = False  # the target was empty: every row is new, no comparison needed
    # the one chunk of a first load builds the unique business-key rule after its rows,
    # in its own transaction (a duplicate key then fails the chunk)
    unique_in_chunk: bool = False
    skey_mode: str
    same_database: bool
    # a full-extract delta in one database whose source query is more than a read of one
    # table: staged once per chunk rather than run twice (join, then count)
    stage_source: bool = False
    # the source's own unique NOT NULL key is the business key (PostgreSQL): no NULL or
    # duplicate key can come, so a full-extract chunk need not count the source rows
    unique_source_key: bool = False
    # a single chunk's key cuts: its classify reads the key ranges between them side by
    # side (a full-extract delta big enough to earn several chunks, run as one)
    parts: list[Any] = []
    estimated_rows: int
    estimate_method: str

    @property
    def mapref(self) -> str:
        return self.mapping.ref

    @property
    def window(self) -> Window:
        bounded = (self.mapping.checkpoint_strategy or "").upper() == "PYTHON"
        return Window(self.window_start, self.window_end, self.windowed, bounded)

    @property
    def partial_note(self) -> str | None:
        """Why keys absent from the source were left alone though DELHNDL asks to delete
        or expire them: parameters narrowed an otherwise full extract."""
        handling = (self.mapping.delete_handling or "IGNORE").strip().upper()
        given = [f"PARAM{name[1:]}" for name, value in sorted(self.params.items()) if value]
        if handling == "IGNORE" or not given or not self.window.reads_everything:
            return None
        done = "deleted" if handling == "DELETE" else "expired"
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


def _bound(value) -> Any:
    """A key boundary as JSON that binds back to the same comparison."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else str(value)
    return as_text(value)


def read_window(
    spec: LoadSpec, src: sa.Engine, meta: sa.Engine, params: dict, full: bool
) -> Window:
    """The checkpoint window of the next load: which source rows it reads (reads only)."""
    if spec.checkpoint_strategy == "NONE":
        return Window(None, None, windowed=False)
    if spec.checkpoint_strategy == "PYTHON":
        if not spec.checkpoint_column:
            raise CheckpointError(f"mapping {spec.mapref}: PYTHON checkpoints need CHKPNTCLNM")
        fn = checkpoint_function(spec.checkpoint_function or "")
        start, end = fn(None if full else last_checkpoint(meta, spec.mapref), dict(params))
        return Window(as_text(start), as_text(end), windowed=True, bounded=True)
    start = None if full else last_checkpoint(meta, spec.mapref)
    d = dialect_of(src)
    query = bound_text(sqlgen.checkpoint_max(d, spec), {"dms_chk_from": start, **params})
    with src.connect() as conn:
        end = conn.execute(query).scalar()
    return Window(start, as_text(end) if end is not None else start, windowed=True)


def window_binds(window: Window, params: dict) -> dict:
    """The binds of a plan-time query over the source rows: the window and the params."""
    return {"dms_chk_from": window.start, "dms_chk_to": window.end, **params}


def _extract(src: sa.Engine, spec: LoadSpec, window: Window, params: dict) -> sa.TextClause:
    sql = sqlgen.extract(dialect_of(src), spec, window.windowed)
    return bound_text(sql, window_binds(window, params))


def _estimate(src: sa.Engine, spec: LoadSpec, window: Window, params: dict) -> tuple[int, str]:
    d = dialect_of(src)
    with src.connect() as conn:
        rows = d.estimate_rows(conn, _extract(src, spec, window, params))
    return rows, (
        "planner estimate (EXPLAIN)" if d.name == "postgresql" else "count of the extract"
    )


def _stage_source(src: sa.Engine, spec: LoadSpec, window: Window, params: dict) -> bool:
    """Whether a same-database full extract should be staged: its chunks would otherwise
    run the source query twice (the join, then the count of its rows), which costs
    little only when the query reads one table."""
    with src.connect() as conn:
        return not dialect_of(src).reads_one_table(conn, _extract(src, spec, window, params))


def _unique_source_key(src: sa.Engine, spec: LoadSpec, window: Window, params: dict) -> bool:
    """Whether one source row per business key is certain: one key column, no MAPCMBCD or
    lookup, and the source's own unique NOT NULL key on it (PostgreSQL tells)."""
    if len(spec.keys) != 1 or spec.aggregated or any(c.is_lookup for c in spec.columns):
        return False
    d = dialect_of(src)
    keys = bound_text(sqlgen.source_keys(d, spec, window.windowed), window_binds(window, params))
    with src.connect() as conn:
        return d.key_is_unique(conn, keys)


def _boundaries(
    src: sa.Engine,
    spec: LoadSpec,
    window: Window,
    params: dict,
    n: int,
    count_duplicates: bool,
    unique_key: bool,
) -> list:
    """Upper key bounds of chunks 0..n-2. Integer keys: n even steps between the smallest
    and largest key (an index answers MIN / MAX); other keys: n tiles of the sorted keys.
    NULL keys fail the load (they would fall between chunks). With `count_duplicates`
    either query also finds duplicate keys, which must fail the load before any chunk
    writes (a chunk finds only its own); keys of several columns or from lookups need a
    GROUP BY over the whole transform. Not on a first load: its unique rule is built at
    commit, and a duplicate then takes the first load back out (so integer keys are not
    sorted here); nor for the parts of a single chunk, which finds its duplicates itself.
    Nor when the source's own unique NOT NULL key is the business key (`unique_key`):
    MIN and MAX then come from its index."""
    d = dialect_of(src)
    values = {"dms_n": n, **window_binds(window, params)}
    with src.connect() as conn:
        if spec.keys[0].dtype.family == "INTEGER":  # (the key as the target's integer)
            checks = "none" if unique_key else "all" if count_duplicates else "nulls"
            sql = sqlgen.key_range(d, spec, window.windowed, checks)
            lo, hi, nulls, duplicates = conn.execute(bound_text(sql, values)).first()
            steps = [] if lo is None else _even_steps(int(lo), int(hi), n)
        else:
            tiles = conn.execute(bound_text(sqlgen.key_tiles(d, spec, window.windowed), values))
            tiles = tiles.all()
            nulls = sum(int(t[2] or 0) for t in tiles)
            duplicates = any(t[3] > 1 for t in tiles)
            steps = [_bound(t[1]) for t in tiles[:-1] if t[1] is not None]
        if nulls:
            raise null_key_error(spec, nulls, [spec.keys[0].name])
        if duplicates and _tiles_count_duplicates(spec):
            sql = sqlgen.duplicate_source_keys(d, spec, window.windowed)
            raise duplicate_key_error(spec, conn.execute(bound_text(sql, values)).all())
        if count_duplicates and _keys_repeat_beyond_tiles(spec):
            sql = sqlgen.duplicate_transform_keys(d, spec, window.windowed)
            dups = conn.execute(bound_text(sql, values)).all()
            if dups:
                raise duplicate_key_error(spec, dups)
    return steps


def _parts(
    src: sa.Engine,
    tgt: sa.Engine,
    spec: LoadSpec,
    window: Window,
    params: dict,
    earned: int,
    unique_key: bool,
) -> list:
    """Key cuts of a full-extract delta run as one chunk though its size earned several:
    where the target database reads a transaction's key ranges side by side, its one
    chunk still compares source and target on every core (measured: 1M rows, 2 parts,
    classify 0.75 -> 0.43 s). Integer keys only (MIN / MAX, no sort of the keys)."""
    if earned < 2 or dialect_of(tgt).parallel_read_session() is None:
        return []
    if spec.keys[0].dtype.family != "INTEGER":
        return []
    return _boundaries(src, spec, window, params, earned, False, unique_key)


def _even_steps(lo: int, hi: int, n: int) -> list[int]:
    return sorted({lo + (hi - lo) * i // n for i in range(1, n)} - {hi})


def _tiles_count_duplicates(spec: LoadSpec) -> bool:
    """Whether the key tiles' counts cover every duplicate a chunk could stage: one key
    column, no aggregation, no lookup that could add rows."""
    return (
        len(spec.keys) == 1 and not spec.aggregated and not any(c.is_lookup for c in spec.columns)
    )


def _keys_repeat_beyond_tiles(spec: LoadSpec) -> bool:
    """Whether duplicate keys can hide from the first key column's counts: several key
    columns (without MAPCMBCD, which groups by all of them), or a lookup that returns
    several rows for a key. The plan then looks for them over the whole transform."""
    return any(c.is_lookup for c in spec.columns) or (len(spec.keys) > 1 and not spec.aggregated)


def _ensure_skey_sequence(tgt: sa.Engine, meta: sa.Engine, spec: LoadSpec) -> None:
    """SEQUENCE mode: the target table's own <TRGTBNM>_SEQ, next to it, above the SKEYs
    it holds and those DMS_IDPOOL handed out (an earlier TABLE_COUNTER mode)."""
    d = dialect_of(tgt)
    name = f"{spec.table}_SEQ"
    schema = spec.schema.lower() if spec.schema else None
    counter = provider_for(meta).pool_counter(spec.table)
    with tgt.begin() as conn:
        table = d.qualified(spec.schema, spec.table)
        held = conn.exec_driver_sql(f"SELECT MAX(SKEY) FROM {table}").scalar() or 0
        floor = max(int(held), counter)
        if d.sequence_exists(conn, name, schema):
            d.raise_sequence(conn, name, spec.schema, floor)
            return
        start = floor + 1
        # CACHE: each session takes its SKEYs 1000 at a time (parallel chunks do not
        # wait for each other; a gap of unused values is harmless for surrogate keys)
        stmt = d.create_sequence(d.qualified(spec.schema, name), int(start)) + " CACHE 1000"
        if d.name == "postgresql":
            stmt = stmt.replace("CREATE SEQUENCE", "CREATE SEQUENCE IF NOT EXISTS", 1)
        conn.exec_driver_sql(stmt)


def skey_floor_query(d: Dialect, spec: LoadSpec) -> sa.Select:
    """The highest SKEY the target holds and the highest its sequence handed out, if any."""
    table = sa.text(d.qualified(spec.schema, spec.table))
    parts = [sa.select(sa.literal_column("MAX(SKEY)")).select_from(table).scalar_subquery()]
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
    prcids = {int(WORK_TABLE.match(n.lower()).group(1)) for n in names}
    p = s.dms_prclog
    with meta.connect() as conn:
        ours = set(
            conn.execute(
                sa.select(p.c.prcid).where(
                    p.c.prcid.in_(prcids), p.c.mapref == spec.mapref, p.c.prcsts != "IP"
                )
            ).scalars()
        )
    d = dialect_of(tgt)
    for name in names:
        if int(WORK_TABLE.match(name.lower()).group(1)) in ours:
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
        schemas_apart=dialect != "sqlite",
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
        initial = not spec.aggregated and is_empty(tgt, spec)
        if not (created and initial):
            # all indexes now, unless a first load builds them after its rows (at commit);
            # also repairs a first load that died before its commit
            ensure_indexes(tgt, spec)
        _drop_leftovers(tgt, meta, spec)
        window = read_window(spec, src, meta, params, full)
        estimate, method = _estimate(src, spec, window, params)
        earned = choose_chunk_count(estimate, config, dialect_of(tgt).concurrent_writers)
        n = chunks or earned
        # a first load builds the unique rule after its rows: in its one chunk, or at
        # commit (a duplicate key then takes the first load back out)
        first_build = bool(created and initial)
        full_extract = window.reads_everything and not any(params.values())
        # (used by the key checks of several chunks and the counts of a full extract)
        unique_key = (n > 1 or full_extract) and _unique_source_key(src, spec, window, params)
        boundaries = (
            _boundaries(src, spec, window, params, n, not first_build, unique_key) if n > 1 else []
        )
        same = same_database(src, tgt)
        # (a first load reads its source once; a window's work table keeps every row; a
        # source key trusted as unique is a column of the one table the source reads)
        stage = (
            same
            and full_extract
            and not initial
            and not unique_key
            and _stage_source(src, spec, window, params)
        )
        parts = (
            _parts(src, tgt, spec, window, params, earned, unique_key)
            if n == 1 and same and full_extract and not initial and not stage
            else []
        )
        skey_mode = TABLE_COUNTER
        if dialect_of(tgt).has_sequences and provider_for(meta).mode_for(spec.table) == SEQUENCE:
            skey_mode = SEQUENCE
            _ensure_skey_sequence(tgt, meta, spec)
        else:
            _skey_counter_above_target(tgt, meta, spec)
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
            window_start=window.start,
            window_end=window.end,
            windowed=window.windowed,
            full_extract=full_extract,
            initial=initial,
            unique_in_chunk=first_build and not boundaries,
            skey_mode=skey_mode,
            same_database=same,
            stage_source=stage,
            unique_source_key=unique_key,
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
