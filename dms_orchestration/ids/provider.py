"""Unique ids for DMS entities, drawn a block per round trip from a sequence (SEQUENCE mode)
or from the DMS_IDPOOL counter (TABLE_COUNTER mode), as DMS_PARAMS configures.

Either mode continues above every id the other handed out, so switching ID_GENERATION_MODE
never reissues one: a sequence is raised above the counter before it serves a provider,
and every counter reservation takes the sequence's position into account."""

from __future__ import annotations

import contextlib
import logging
import operator
import os
import re
import threading
import weakref
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace

import sqlalchemy as sa

from dms_orchestration.db.connect import database_key, dms_schema, write_transaction
from dms_orchestration.db.dialects import Dialect, dialect_of
from dms_orchestration.db.schema import ENTITY_SEQUENCES, TABLES_BY_NAME, T, dms_idpool, dms_params

log = logging.getLogger(__name__)

SEQUENCE = "SEQUENCE"
TABLE_COUNTER = "TABLE_COUNTER"
MODES = (SEQUENCE, TABLE_COUNTER)

CONFIG_TYPE = "DMSCONFIG"
MODE_PARAM = "ID_GENERATION_MODE"
BLOCK_PARAM = "ID_BLOCK_SIZE"
DEFAULT_BLOCK_SIZE = 500
# a block is drawn in one statement (generate_series / CONNECT BY): keep a typo from
# asking the database for billions of rows
MAX_BLOCK_SIZE = 1_000_000
ENTITYNM_SIZE = TABLES_BY_NAME["DMS_IDPOOL"].column("ENTITYNM").size

_ENTITY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_$#]{0,127}")
_ENTITY_OF_SEQUENCE = {seq: entity for entity, seq in ENTITY_SEQUENCES.items()}
_POOL_ATTEMPTS = 5


class IdConfigError(ValueError):
    """The id configuration (a DMS_PARAMS row) or an entity name is wrong; the message names it."""


def normalize_entity(name: str) -> str:
    """The entity an id is for, upper case; a sequence name ('DMS_PRCLOGSEQ', 'DIM_X_SEQ')
    means the entity it serves, so legacy callers that pass sequence names share its ids."""
    if not isinstance(name, str) or not _ENTITY_RE.fullmatch(name):
        raise IdConfigError(
            f"invalid id entity name {name!r}: expected a table name matching "
            f"{_ENTITY_RE.pattern} (letters, digits, _ $ #; at most 128 characters)"
        )
    entity = name.upper()
    if entity in _ENTITY_OF_SEQUENCE:
        return _ENTITY_OF_SEQUENCE[entity]
    if entity not in ENTITY_SEQUENCES and entity.endswith("_SEQ") and len(entity) > 4:
        return entity[: -len("_SEQ")]
    return entity


def pool_names(entity: str) -> tuple[str, ...]:
    """Every DMS_IDPOOL.ENTITYNM an entity's counter may be kept under: its own name (the
    one written), then its sequence's spellings, which the legacy tool used
    (DMS_JOBLOGSEQ, DIM_X_SEQ): the counter continues above all of them."""
    entity = normalize_entity(entity)
    names = dict.fromkeys([entity, sequence_name(entity), f"{entity}_SEQ"])
    return tuple(n for n in names if len(n) <= ENTITYNM_SIZE)


def sequence_name(entity: str) -> str:
    """The sequence that serves an entity in SEQUENCE mode."""
    entity = normalize_entity(entity)
    return ENTITY_SEQUENCES.get(entity, f"{entity}_SEQ")


@dataclass(frozen=True)
class IdConfig:
    """DMSCONFIG id settings as read from DMS_PARAMS (None: not set)."""

    mode: str | None = None
    block_size: int = DEFAULT_BLOCK_SIZE
    modes: dict[str, str] = field(default_factory=dict)
    block_sizes: dict[str, int] = field(default_factory=dict)
    # PRCDs that ask for SEQUENCE, for the notice on databases without sequences
    sequence_params: tuple[str, ...] = ()


def _parse_mode(prcd: str, value: str) -> str:
    mode = value.strip().upper()
    if mode not in MODES:
        raise IdConfigError(
            f"DMS_PARAMS {CONFIG_TYPE} {prcd} = {value!r}: unknown id generation mode "
            f"(expected {' or '.join(MODES)})"
        )
    return mode


def _parse_block_size(prcd: str, value: str) -> int:
    try:
        size = int(value.strip())
    except ValueError:
        raise IdConfigError(
            f"DMS_PARAMS {CONFIG_TYPE} {prcd} = {value!r}: block size is not an integer"
        ) from None
    if not 1 <= size <= MAX_BLOCK_SIZE:
        raise IdConfigError(
            f"DMS_PARAMS {CONFIG_TYPE} {prcd} = {value!r}: block size must be between 1 "
            f"and {MAX_BLOCK_SIZE}"
        )
    return size


def parse_config(rows: list[tuple[str, str | None]]) -> IdConfig:
    """Build the id config from (PRCD, PRVAL) rows of PRTYP='DMSCONFIG'; other keys are ignored."""
    mode: str | None = None
    block_size = DEFAULT_BLOCK_SIZE
    modes: dict[str, str] = {}
    block_sizes: dict[str, int] = {}
    sequence_params: list[str] = []
    seen: dict[tuple[str, str | None], str] = {}
    for prcd, prval in rows:
        base, dot, suffix = (prcd or "").strip().upper().partition(".")
        if base not in (MODE_PARAM, BLOCK_PARAM):
            continue
        value = (prval or "").strip()
        if not value:
            continue  # blank = not set (Oracle stores '' as NULL anyway)
        entity = None
        if dot:
            try:
                entity = normalize_entity(suffix)
            except IdConfigError as exc:
                raise IdConfigError(f"DMS_PARAMS {CONFIG_TYPE} {prcd}: {exc}") from None
        key = (base, entity)
        if key in seen:
            # e.g. ID_BLOCK_SIZE.DMS_PRCLOG and ID_BLOCK_SIZE.DMS_PRCLOGSEQ: no silent winner
            raise IdConfigError(
                f"DMS_PARAMS {CONFIG_TYPE} {prcd} and {seen[key]} set the same thing; keep one"
            )
        seen[key] = prcd
        if base == MODE_PARAM:
            parsed_mode = _parse_mode(prcd, value)
            if parsed_mode == SEQUENCE:
                sequence_params.append(prcd)
            if entity:
                modes[entity] = parsed_mode
            else:
                mode = parsed_mode
        else:
            size = _parse_block_size(prcd, value)
            if entity:
                block_sizes[entity] = size
            else:
                block_size = size
    return IdConfig(mode, block_size, modes, block_sizes, tuple(sequence_params))


@dataclass(frozen=True)
class IdOverrides:
    """Id settings given by the deployment (the Dagster resource `dms_ids`), above those
    of DMS_PARAMS: a setting for an entity wins over one for all entities, and of two
    settings alike, this one wins over DMS_PARAMS'."""

    mode: str | None = None
    block_size: int | None = None
    modes: tuple[tuple[str, str], ...] = ()  # (entity, mode)
    block_sizes: tuple[tuple[str, int], ...] = ()  # (entity, block size)

    @classmethod
    def of(
        cls,
        mode: str | None = None,
        block_size: int | None = None,
        modes: Mapping[str, str] | None = None,
        block_sizes: Mapping[str, int] | None = None,
    ) -> IdOverrides:
        """Checked as DMS_PARAMS rows are (an IdConfigError names the setting at fault)."""

        def checked_size(name: str, value: int) -> int:
            return _parse_block_size(name, str(value))

        def entity(name: str) -> str:
            try:
                return normalize_entity(name)
            except IdConfigError as exc:
                raise IdConfigError(f"dms_ids: {exc}") from None

        return cls(
            mode=_parse_mode("dms_ids mode", mode) if mode else None,
            block_size=checked_size("dms_ids block_size", block_size) if block_size else None,
            modes=tuple(
                sorted(
                    (entity(e), _parse_mode(f"dms_ids entity_modes[{e}]", m))
                    for e, m in (modes or {}).items()
                )
            ),
            block_sizes=tuple(
                sorted(
                    (entity(e), checked_size(f"dms_ids entity_block_sizes[{e}]", n))
                    for e, n in (block_sizes or {}).items()
                )
            ),
        )

    def apply(self, config: IdConfig) -> IdConfig:
        """(SEQUENCE on a database without sequences is TABLE_COUNTER, as for DMS_PARAMS.)"""
        return replace(
            config,
            mode=self.mode or config.mode,
            block_size=self.block_size or config.block_size,
            modes={**config.modes, **dict(self.modes)},
            block_sizes={**config.block_sizes, **dict(self.block_sizes)},
        )


# metadata database -> the deployment's id settings in this process (`using_id_overrides`)
_overrides: dict[tuple[str, str | None], IdOverrides] = {}


@contextlib.contextmanager
def using_id_overrides(engine: sa.Engine, overrides: IdOverrides | None) -> Iterator[None]:
    """Ids of the engine's database drawn in this block (and its forked children) follow
    `overrides` above DMS_PARAMS; ids reserved under other settings are dropped (a gap)."""
    key = database_key(engine)
    before = _overrides.get(key)
    _set_overrides(key, overrides)
    try:
        yield
    finally:
        _set_overrides(key, before)


def _set_overrides(key: tuple[str, str | None], overrides: IdOverrides | None) -> None:
    if overrides is None or overrides == IdOverrides():
        _overrides.pop(key, None)
    else:
        _overrides[key] = overrides


class IdProvider:
    """Hands out ids per entity from blocks reserved in the database.

    Every reservation is committed in its own connection before any id of it is used, so
    ids are never reused (a crash leaves a gap). One lock per provider makes it safe for
    threads; the database makes it safe across processes. Ids of one entity increase
    within a process.
    """

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.dialect = dialect_of(engine)
        self.schema = dms_schema(engine)
        self._key = database_key(engine)
        self._overridden: IdOverrides | None = None
        self.round_trips = 0
        self._lock = threading.Lock()
        self._config: IdConfig | None = None
        self._cache: dict[str, deque[int]] = {}
        self._noticed_no_sequences = False
        # entities whose sequence was seen above their DMS_IDPOOL counter by this provider
        self._sequence_checked: set[str] = set()
        self._reservations: dict[str, sa.Update] = {}
        _providers.add(self)

    # configuration ---------------------------------------------------------------------

    def refresh_config(self) -> None:
        """Re-read DMS_PARAMS; ids already reserved under the old settings are dropped
        (a gap), so the new mode and block size apply from the next id on."""
        with self._lock:
            self._config = self._read_config()
            self._cache.clear()
            self._sequence_checked.clear()  # the mode may have switched: look again

    def mode_for(self, entity: str) -> str:
        """The mode the entity's ids come from here: SEQUENCE or TABLE_COUNTER."""
        entity = normalize_entity(entity)
        with self._lock:
            return self._mode(self._current_config(), entity)

    def block_size_for(self, entity: str) -> int:
        entity = normalize_entity(entity)
        with self._lock:
            return self._block_size(self._current_config(), entity)

    def _read_config(self) -> IdConfig:
        p = dms_params
        stmt = sa.select(p.c.prcd, p.c.prval).where(p.c.prtyp == CONFIG_TYPE)
        with self.engine.connect() as conn:
            rows = [tuple(r) for r in conn.execute(stmt)]
        config = parse_config(rows)
        self._notice_fallback(config)
        return config

    def _current_config(self) -> IdConfig:
        if self._config is None:
            self._config = self._read_config()
        overrides = _overrides.get(self._key)
        if overrides != self._overridden:  # new settings from the next id on
            self._overridden = overrides
            self._cache.clear()
            self._sequence_checked.clear()
        return overrides.apply(self._config) if overrides else self._config

    def _notice_fallback(self, config: IdConfig) -> None:
        if self.dialect.capabilities.sequences or self._noticed_no_sequences:
            return
        self._noticed_no_sequences = True
        if config.sequence_params:
            log.warning(
                "%s has no sequences: %s asks for SEQUENCE ids, using TABLE_COUNTER "
                "(DMS_IDPOOL) instead",
                self.dialect.name,
                ", ".join(config.sequence_params),
            )
        else:
            log.info(
                "%s has no sequences: ids come from TABLE_COUNTER mode (DMS_IDPOOL)",
                self.dialect.name,
            )

    def _mode(self, config: IdConfig, entity: str) -> str:
        if not self.dialect.capabilities.sequences:
            return TABLE_COUNTER
        return config.modes.get(entity) or config.mode or SEQUENCE

    def _block_size(self, config: IdConfig, entity: str) -> int:
        return config.block_sizes.get(entity, config.block_size)

    # ids -------------------------------------------------------------------------------

    def next_id(self, entity: str) -> int:
        return self.next_ids(entity, 1)[0]

    def next_ids(self, entity: str, n: int) -> list[int]:
        """n new ids for the entity, increasing; one reservation statement at most, once the
        entity's sequence or DMS_IDPOOL row exists."""
        n = operator.index(n)
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        entity = normalize_entity(entity)
        with self._lock:
            cached = self._cache.setdefault(entity, deque())
            if len(cached) < n:
                config = self._current_config()
                block = self._block_size(config, entity)
                want = max(n - len(cached), block)
                if self._mode(config, entity) == SEQUENCE:
                    cached.extend(self._reserve_from_sequence(entity, want))
                else:
                    cached.extend(self._reserve_from_pool(entity, want, block))
            return [cached.popleft() for _ in range(n)]

    def reserve_range(self, entity: str, n: int) -> range:
        """n consecutive new ids from DMS_IDPOOL in one atomic statement, past the cache:
        a set-based insert numbers its rows from the range's start (SKEY)."""
        n = operator.index(n)
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        entity = normalize_entity(entity)
        with self._lock:
            block = self._block_size(self._current_config(), entity)
            return self._reserve_from_pool(entity, n, block)

    # SEQUENCE mode ---------------------------------------------------------------------

    def _qualified(self, name: str) -> str:
        return f"{self.schema}.{name}" if self.schema else name

    def _reserve_from_sequence(self, entity: str, n: int) -> list[int]:
        # the first draw here reads the ids used beside it: the sequence may be behind ids
        # that TABLE_COUNTER mode or plain SQL handed out (a mode switch; `dms db init`)
        check = entity not in self._sequence_checked
        values, floor = self._draw_or_create(entity, n, check)
        if check:
            if values[0] <= floor:
                self._raise_sequence(entity, floor)
                kept = [v for v in values if v > floor]
                values = sorted(kept + self._draw(entity, n - len(kept))[0])
            self._sequence_checked.add(entity)
        return values

    def _raise_sequence(self, entity: str, floor: int) -> None:
        name = sequence_name(entity)
        with self.engine.begin() as conn:
            self.round_trips += 1
            self.dialect.raise_sequence(conn, name, self.schema, floor)
        log.info("sequence %s raised above id %d, which %s already used", name, floor, entity)

    def _draw_or_create(self, entity: str, n: int, check: bool) -> tuple[list[int], int]:
        try:
            return self._draw(entity, n, check)
        except sa.exc.DBAPIError as exc:
            if exc.connection_invalidated:
                raise
            # only a missing sequence is ours to fix. If it exists now, another process
            # created it since our draw failed, or the error was something else: then the
            # second draw raises it for the caller.
            if not self._sequence_exists(entity):
                self._create_sequence(entity)
        return self._draw(entity, n, check)

    def _draw(self, entity: str, n: int, check: bool = False) -> tuple[list[int], int]:
        """n values of the entity's sequence and, when checking, the highest id used."""
        sequence = self._qualified(sequence_name(entity))
        if check:
            stmt = self.dialect.next_values_with(sequence, n, highest_used_id(self.dialect, entity))
        else:
            stmt = self.dialect.next_values(sequence, n)
        # nextval is not transactional: the value is ours once drawn, no commit needed
        with self.engine.connect() as conn:
            self.round_trips += 1
            rows = conn.execute(stmt).all()
        if len(rows) != n:
            raise RuntimeError(f"asked {sequence_name(entity)} for {n} values, got {len(rows)}")
        # the values of one statement need not come back in order
        return sorted(int(r[0]) for r in rows), int(rows[0][1]) if check else 0

    def _sequence_exists(self, entity: str) -> bool:
        with self.engine.connect() as conn:
            self.round_trips += 1
            return self.dialect.sequence_exists(conn, sequence_name(entity), self.schema)

    def _create_sequence(self, entity: str) -> None:
        """Create a new entity's sequence, starting above every id it may already have:
        its contract table's rows and its DMS_IDPOOL counter (an earlier TABLE_COUNTER)."""
        name = self._qualified(sequence_name(entity))
        start = self._highest_used(entity) + 1
        stmt = self.dialect.create_sequence(name, start, if_not_exists=True)
        try:
            with self.engine.begin() as conn:
                self.round_trips += 1
                conn.exec_driver_sql(stmt)
        except sa.exc.DBAPIError:
            # another process created it at the same moment (even IF NOT EXISTS can race
            # on PostgreSQL); theirs serves us as well
            if not self._sequence_exists(entity):
                raise
        log.info("sequence %s for id entity %s is in place (start %d)", name, entity, start)

    def _highest_used(self, entity: str) -> int:
        with self.engine.connect() as conn:
            self.round_trips += 1
            return int(conn.execute(sa.select(highest_used_id(self.dialect, entity))).scalar())

    # TABLE_COUNTER mode ----------------------------------------------------------------

    def _check_pool_name(self, entity: str) -> None:
        if len(entity) > ENTITYNM_SIZE:
            raise IdConfigError(
                f"id entity {entity!r} is longer than DMS_IDPOOL.ENTITYNM ({ENTITYNM_SIZE} "
                "characters): TABLE_COUNTER mode cannot serve it"
            )

    def _reserve_from_pool(self, entity: str, n: int, block: int) -> range:
        self._check_pool_name(entity)
        update = self._reservations.get(entity)
        if update is None:
            update = self._reservations[entity] = reservation(self.dialect, self.schema, entity)
        for _ in range(_POOL_ATTEMPTS):
            with write_transaction(self.engine) as conn:
                self.round_trips += 1
                last = conn.execute(update, {"dms_n": n, "dms_block": block}).scalar()
            if last is not None:
                last = int(last)
                return range(last - n + 1, last + 1)
            self._insert_pool_row(entity, block)
        raise RuntimeError(f"could not create or update the DMS_IDPOOL row of {entity}")

    def _insert_pool_row(self, entity: str, block: int, lastval: int = 0) -> None:
        pool = dms_idpool
        used = _max_id_subquery(entity)
        stmt = sa.insert(pool).values(
            entitynm=entity,
            lastval=lastval if used is None else self.dialect.greatest(sa.literal(lastval), used),
            blksz=block,
            recupdt=sa.func.current_timestamp(),
        )
        try:
            with write_transaction(self.engine) as conn:
                self.round_trips += 1
                conn.execute(stmt)
        except sa.exc.IntegrityError:
            pass  # another process inserted it first; the retried UPDATE uses its row

    # both modes, for ids that live elsewhere (target SKEYs) ---------------------------

    def pool_counter(self, entity: str) -> int:
        """The highest id the entity's DMS_IDPOOL counters have handed out (0: none)."""
        entity = normalize_entity(entity)
        with self.engine.connect() as conn:
            self.round_trips += 1
            return int(conn.execute(sa.select(_counter_subquery(pool_names(entity)))).scalar())

    def raise_pool(self, entity: str, floor: int) -> None:
        """The entity's counter continues above floor (ids its sequence or plain SQL used
        where this provider cannot see them: a target's SKEYs); it never goes down."""
        entity = normalize_entity(entity)
        self._check_pool_name(entity)
        if floor <= 0:
            return
        pool = dms_idpool
        counter = self.dialect.greatest(sa.func.coalesce(pool.c.lastval, 0), sa.literal(floor))
        update = (
            sa.update(pool)
            .where(pool.c.entitynm == entity)
            .values(lastval=counter, recupdt=sa.func.current_timestamp())
        )
        for _ in range(_POOL_ATTEMPTS):
            with write_transaction(self.engine) as conn:
                self.round_trips += 1
                if conn.execute(update).rowcount:
                    return
            with self._lock:
                block = self._block_size(self._current_config(), entity)
            self._insert_pool_row(entity, block, floor)
        raise RuntimeError(f"could not create or update the DMS_IDPOOL row of {entity}")


def _max_id_subquery(entity: str) -> sa.ScalarSelect | None:
    """The highest id in the entity's contract table (None: not a contract table)."""
    spec = TABLES_BY_NAME.get(entity)
    if spec is None or spec.id_column is None:
        return None
    col = T[entity].c[spec.id_column.lower()]
    return sa.select(sa.func.coalesce(sa.func.max(col), 0)).scalar_subquery()


def _counter_subquery(names: tuple[str, ...]) -> sa.ColumnElement:
    """The highest LASTVAL among DMS_IDPOOL rows of these names, 0 when none."""
    other = dms_idpool.alias("dms_other")
    # (equalities, not IN: an IN of literals is rendered anew at every execution)
    named = sa.or_(*(other.c.entitynm == name for name in names))
    top = sa.select(sa.func.max(other.c.lastval)).where(named)
    return sa.func.coalesce(top.scalar_subquery(), 0)


def highest_used_id(dialect: Dialect, entity: str) -> sa.ColumnElement:
    """The highest id the entity's DMS_IDPOOL counters (any spelling) and contract table
    hold: a sequence must continue above it."""
    parts = [_counter_subquery(pool_names(entity))]
    used = _max_id_subquery(entity)
    if used is not None:
        parts.append(used)
    return dialect.greatest(*parts)


def reservation(dialect: Dialect, schema: str | None, entity: str) -> sa.Update:
    """The one statement that reserves `dms_n` ids of the entity in DMS_IDPOOL (recording
    the block size `dms_block`) and returns the last: it continues above the counter, the
    legacy rows of other spellings, the contract table's rows (written with plain SQL) and
    the entity's sequence (SEQUENCE mode). One statement, so atomic: the row lock orders
    concurrent reservations. Built once per entity and provider (building costs more than
    the round trip's work in the server)."""
    pool = dms_idpool
    parts = [sa.func.coalesce(pool.c.lastval, 0)]
    legacy = pool_names(entity)[1:]
    if legacy:
        parts.append(_counter_subquery(legacy))
    used = _max_id_subquery(entity)
    if used is not None:
        parts.append(used)
    position = dialect.sequence_position(sequence_name(entity), schema)
    if position is not None:
        parts.append(sa.func.coalesce(position, 0))
    return (
        sa.update(pool)
        .where(pool.c.entitynm == entity)
        .values(
            lastval=dialect.greatest(*parts) + sa.bindparam("dms_n", type_=sa.BigInteger),
            blksz=sa.bindparam("dms_block", type_=sa.BigInteger),
            recupdt=sa.func.current_timestamp(),
        )
        .returning(pool.c.lastval)
    )


# every live provider, so that a forked child starts with none of its parent's ids
_providers: weakref.WeakSet[IdProvider] = weakref.WeakSet()
_by_engine: dict[sa.Engine, IdProvider] = {}
_by_engine_lock = threading.Lock()


def _after_fork_in_child() -> None:
    global _by_engine_lock
    _by_engine_lock = threading.Lock()
    for provider in list(_providers):
        # the parent hands out those same ids; a lock held by a parent thread stays held
        provider._lock = threading.Lock()
        provider._cache = {}


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def provider_for(engine: sa.Engine) -> IdProvider:
    """The provider of an engine (one per engine and process, so blocks are shared)."""
    with _by_engine_lock:
        provider = _by_engine.get(engine)
        if provider is None:
            provider = _by_engine[engine] = IdProvider(engine)
        return provider


def next_id(engine: sa.Engine, entity: str) -> int:
    return provider_for(engine).next_id(entity)


def next_ids(engine: sa.Engine, entity: str, n: int) -> list[int]:
    return provider_for(engine).next_ids(entity, n)
