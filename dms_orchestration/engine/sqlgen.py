"""The SQL of a load, as pure functions: spec + dialect in, statement text out.

Nothing here runs SQL, so every statement can be read, stored for review (DMS_JOBFLW)
and checked against another dialect's parser. Identifiers come from validated metadata
and are quoted by the dialect; values are always bind parameters:
:dms_lo / :dms_hi (chunk key range), :dms_cut1.. (key ranges of a single chunk's
parts), :dms_chk_from / :dms_chk_to (checkpoint window), :dms_now (load time),
:dms_skey0 (first surrogate key - 1), :dms_slice_from / :dms_slice_to (a slice of the
work table), :p1..:p10 (request params).

The flow of a chunk: the transform query (source dialect) computes the target columns;
its rows reach the target as the staging table S (streamed, or filled in the same
database when the source query is dear to run twice) or as a subquery (same database);
they meet the current target rows in one join, and work table A keeps the keys that need
a write (I insert, V new version, U update in place, D absent; the N unchanged keys of a
full extract are only counted, a window keeps them); a few set-based statements then
apply A.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from dms_orchestration.db.dialects import Dialect
from dms_orchestration.db.sqltext import escape_binds
from dms_orchestration.engine.spec import AGGREGATES, LoadSpec, TargetColumn
from dms_orchestration.vocabulary import CheckpointStrategy, DeleteHandling, Family

SRCCNT = "dms_srccnt"  # source rows behind a staged row (aggregated mappings)
TSKEY = "dms_tskey"  # the SKEY of the current target row a staged row meets
ACT = "dms_act"
ROW = "dms_row"  # the number of a previewed row


@dataclass(frozen=True)
class ChunkBounds:
    """Which binds bound chunk i of n: the first chunk has no lower, the last no upper."""

    lower: bool
    upper: bool
    lo: str = "dms_lo"  # the binds' names
    hi: str = "dms_hi"

    @staticmethod
    def of(index: int, count: int) -> ChunkBounds:
        return ChunkBounds(lower=index > 0, upper=index < count - 1)

    @staticmethod
    def parts(count: int) -> list[ChunkBounds]:
        """The key ranges of a single chunk's parts: part j from :dms_cut{j} (excluded)
        to :dms_cut{j+1}."""
        return [
            ChunkBounds(j > 0, j < count - 1, lo=f"dms_cut{j}", hi=f"dms_cut{j + 1}")
            for j in range(count)
        ]


def _source(spec: LoadSpec) -> str:
    return escape_binds(spec.source_sql)[0]


def _key_range(d: Dialect, expr: str, key: TargetColumn, bounds: ChunkBounds) -> list[str]:
    ordered = d.key_order(expr, key.dtype.family)
    conds = []
    if bounds.lower:  # (the plan refused NULL keys: they would fall between chunks)
        conds.append(f"{ordered} > :{bounds.lo}")
    if bounds.upper:
        conds.append(f"{ordered} <= :{bounds.hi}")
    return conds


def _source_key(d: Dialect, spec: LoadSpec) -> str:
    """The first business key over the source, in the target's type: chunk ranges compare
    it as the target's column compares (a source may hold integer keys as text)."""
    key = spec.keys[0]
    return d.typed(key.logic, key.dtype.family, d.type_sql(key.dtype.sqlalchemy_type()))


def _checkpoint_filter(d: Dialect, spec: LoadSpec, windowed: bool) -> list[str]:
    if not windowed:
        return []
    assert spec.checkpoint_column is not None  # (a window is over CHKPNTCLNM: KEY, PYTHON)
    col = f"SRC.{d.quote(spec.checkpoint_column)}"
    if (
        spec.checkpoint_strategy == CheckpointStrategy.PYTHON
    ):  # the function's window, either end open
        return [
            f"(:dms_chk_from IS NULL OR {col} > :dms_chk_from)",
            f"(:dms_chk_to IS NULL OR {col} <= :dms_chk_to)",
        ]
    # KEY without a checkpoint yet: the first load reads everything (NULL values too)
    return [f"(:dms_chk_from IS NULL OR ({col} > :dms_chk_from AND {col} <= :dms_chk_to))"]


def _where(conds: list[str]) -> str:
    return f" WHERE {' AND '.join(conds)}" if conds else ""


def transform_query(spec: LoadSpec, d: Dialect, bounds: ChunkBounds, windowed: bool) -> str:
    """The target columns of one chunk, computed over the source query (alias SRC):
    keys, then the columns in EXCSEQ order, then the source row count."""
    q = d.quote
    key_exprs = [k.logic for k in spec.keys]
    inner = [f"{k.logic} AS {q(k.name)}" for k in spec.keys]
    for c in spec.columns:
        if c.is_lookup:
            continue
        expr = f"{AGGREGATES[c.combine]}({c.logic})" if spec.aggregated else c.logic
        inner.append(f"{expr} AS {q(c.name)}")
    inner.append(f"COUNT(*) AS {SRCCNT}" if spec.aggregated else f"1 AS {SRCCNT}")
    conds = _key_range(d, _source_key(d, spec), spec.keys[0], bounds)
    conds += _checkpoint_filter(d, spec, windowed)
    sql = f"SELECT {', '.join(inner)} FROM ({_source(spec)}) SRC{_where(conds)}"
    if spec.aggregated:
        sql += f" GROUP BY {', '.join(key_exprs)}"
    lookups = [c for c in spec.columns if c.is_lookup]
    if not lookups:
        return sql
    # lookups join after grouping: one value per business key
    outer = [f"X.{q(k.name)}" for k in spec.keys]
    joins = []
    for i, c in enumerate(spec.columns):
        if c.is_lookup:
            assert c.lookup_key is not None and c.lookup_value is not None  # (the rules)
            alias = f"L{i}"
            outer.append(f"{alias}.{q(c.lookup_value)} AS {q(c.name)}")
            joins.append(
                f" LEFT JOIN ({escape_binds(c.logic)[0]}) {alias}"
                f" ON {alias}.{q(c.lookup_key)} = X.{q(spec.keys[0].name)}"
            )
        else:
            outer.append(f"X.{q(c.name)}")
    outer.append(f"X.{SRCCNT}")
    return f"SELECT {', '.join(outer)} FROM ({sql}) X{''.join(joins)}"


def target_table(d: Dialect, spec: LoadSpec) -> str:
    return d.qualified(spec.schema, spec.table)


def work_table(d: Dialect, spec: LoadSpec, kind: str, prcid: int, chunk: int) -> str:
    """Chunk-private staging / work table in the target schema (dropped after the chunk;
    `DMS_S_...` / `DMS_A_...` left behind by a crash are dropped by the next load)."""
    return d.qualified(spec.schema, f"dms_{kind}_{prcid}_{chunk}")


def create_staging(d: Dialect, spec: LoadSpec, name: str) -> str:
    cols = [f"{d.quote(c.name)} {d.type_sql(c.dtype.sqlalchemy_type())}" for c in spec.all_columns]
    cols.append(f"{SRCCNT} {d.type_sql(sa.BigInteger())}")
    return d.create_scratch_table(name, cols)


def staging_columns(d: Dialect, spec: LoadSpec) -> list[str]:
    return [d.quote(c.name) for c in spec.all_columns] + [SRCCNT]


def stage(d: Dialect, spec: LoadSpec, name: str, transform: str) -> str:
    """Fill the staging table from the transform in the same database (a source query
    that is dear to run twice)."""
    return f"INSERT INTO {name} ({', '.join(staging_columns(d, spec))}) {transform}"


def _current_conditions(
    d: Dialect, spec: LoadSpec, bounds: ChunkBounds, alias: str = ""
) -> list[str]:
    """What makes a target row one of the chunk's current rows (`alias`: "T." or none)."""
    conds = [f"{alias}CURFLG = 'Y'"] if spec.scd2 else []
    return conds + _key_range(d, f"{alias}{d.quote(spec.keys[0].name)}", spec.keys[0], bounds)


def _current_rows(d: Dialect, spec: LoadSpec, bounds: ChunkBounds) -> str:
    return f"SELECT * FROM {target_table(d, spec)}{_where(_current_conditions(d, spec, bounds))}"


def _typed(d: Dialect, c: TargetColumn, alias: str = "S") -> str:
    return d.typed(
        f"{alias}.{d.quote(c.name)}", c.dtype.family, d.type_sql(c.dtype.sqlalchemy_type())
    )


def _key_match(d: Dialect, spec: LoadSpec) -> str:
    """Staged row S meets target row T: equal business keys, in the target's types."""
    return " AND ".join(f"{_typed(d, k)} = T.{d.quote(k.name)}" for k in spec.keys)


def classify(
    d: Dialect,
    spec: LoadSpec,
    sources: list[tuple[str, ChunkBounds]],
    work: str,
    full: bool,
) -> str:
    """CREATE the work table A: the staged keys with the current target row each meets,
    and what to do (I insert, V new version, U update in place, D absent, N nothing).
    A full extract meets every current row (FULL JOIN), so keys absent from the source
    are found, and its unchanged keys stay out: they are most of a delta and need no
    write; the chunk counts them (staged_counts, met_rows). A checkpoint window keeps
    them (it is small by design): its counts then come from A, without reading the
    source again. `sources`: the staged rows (staging table or transform) and their key
    range; several for a single chunk's parts (a full extract), joined by UNION ALL,
    which PostgreSQL reads side by side (Parallel Append)."""
    if not full:
        ((staged, bounds),) = sources
        return d.create_work_table(work, _classify_select(d, spec, staged, bounds, full))
    return d.create_work_table(
        work,
        " UNION ALL ".join(
            f"SELECT * FROM ({_classify_select(d, spec, staged, bounds, full)}) J "
            f"WHERE {ACT} <> 'N'"
            for staged, bounds in sources
        ),
    )


def _changed(d: Dialect, c: TargetColumn, present: set[str] | None = None) -> str:
    """Staged row S differs from target row T in column c (`present`: the target's
    columns, upper case; one it lacks compares as NULL: the load adds it so)."""
    current = f"T.{d.quote(c.name)}" if present is None or c.name in present else "NULL"
    return d.is_distinct(_typed(d, c), current)


def _action(d: Dialect, spec: LoadSpec, full: bool, present: set[str] | None = None) -> str:
    """What the load does with staged row S and the current target row T it meets: I
    insert, D absent (a full extract), V new version (an SCD2 column changed), U update
    in place (an SCD1 column changed), N nothing."""
    changed = {
        scd: " OR ".join(_changed(d, c, present) for c in spec.columns if c.scd == scd)
        for scd in (1, 2)
    }
    case = ["WHEN T.SKEY IS NULL THEN 'I'"]
    if full:
        case.append(f"WHEN S.{d.quote(spec.keys[0].name)} IS NULL THEN 'D'")
    if changed[2]:
        case.append(f"WHEN {changed[2]} THEN 'V'")
    if changed[1]:
        case.append(f"WHEN {changed[1]} THEN 'U'")
    return f"CASE {' '.join(case)} ELSE 'N' END"


def first_rows(d: Dialect, spec: LoadSpec, transform: str, n: int) -> str:
    """The first n rows of a transform, in business key order."""
    keys = ", ".join(str(i) for i in range(1, len(spec.keys) + 1))
    return d.limit(f"SELECT * FROM ({transform}) P ORDER BY {keys}", n)


def bound_rows(d: Dialect, spec: LoadSpec, count: int) -> str:
    """`count` staged rows of bound values (:dms_v<row>_<column>, in the order of
    staging_columns) as a table, numbered (ROW)."""
    names = staging_columns(d, spec)
    return " UNION ALL ".join(
        d.select_values(
            ", ".join([f"{i} AS {ROW}", *(f":dms_v{i}_{j} AS {n}" for j, n in enumerate(names))])
        )
        for i in range(count)
    )


def preview_select(d: Dialect, spec: LoadSpec, staged: str, present: set[str]) -> str:
    """Staged rows S (bound_rows) in the target's types, each with what the load
    would do against the current target row it meets (ACT) and, per column, whether it
    differs (1 / 0), in staging order; reads the target, writes nothing. `present`: the
    target's columns, upper case."""
    q = d.quote
    cols = [f"{_typed(d, c)} AS {q(c.name)}" for c in spec.all_columns]
    cols.append(f"{_action(d, spec, False, present)} AS {ACT}")
    cols += [
        f"CASE WHEN T.SKEY IS NOT NULL AND {_changed(d, c, present)} THEN 1 ELSE 0 END"
        for c in spec.columns
    ]
    current = _current_conditions(d, spec, ChunkBounds.of(0, 1), "T.")
    on = " AND ".join([_key_match(d, spec), *current])
    return (
        f"SELECT {', '.join(cols)} FROM ({staged}) S "
        f"LEFT JOIN {target_table(d, spec)} T ON {on} ORDER BY S.{ROW}"
    )


def _classify_select(
    d: Dialect, spec: LoadSpec, staged: str, bounds: ChunkBounds, full: bool
) -> str:
    q = d.quote
    cols = [
        f"COALESCE({_typed(d, k)}, T.{q(k.name)}) AS {q(k.name)}"
        if full
        else f"{_typed(d, k)} AS {q(k.name)}"
        for k in spec.keys
    ]
    cols += [f"{_typed(d, c)} AS {q(c.name)}" for c in spec.columns]
    cols.append(f"S.{SRCCNT} AS {SRCCNT}")
    cols.append(f"T.SKEY AS {TSKEY}")
    cols.append(f"{_action(d, spec, full)} AS {ACT}")
    kind = "FULL OUTER JOIN" if full else "LEFT JOIN"
    select = f"SELECT {', '.join(cols)} FROM {staged} S {kind} "
    if d.capabilities.flattens_outer_join_subquery:
        return select + f"({_current_rows(d, spec, bounds)}) T ON {_key_match(d, spec)}"
    # the target table itself, so that each staged row searches its index for the current
    # row (a subquery here would be materialized without an index and scanned per staged
    # row); its other rows meet no staged row, and a FULL JOIN then returns them, as
    # absent keys: the WHERE leaves out those that are not current rows of the chunk
    current = _current_conditions(d, spec, bounds, "T.")
    on = " AND ".join([_key_match(d, spec), *current])
    sql = select + f"{target_table(d, spec)} T ON {on}"
    if full and current:
        sql += f" WHERE T.SKEY IS NULL OR ({' AND '.join(current)})"
    return sql


def staged_counts(staged: str) -> str:
    """Staged rows and the source rows behind them (of the staging table, the transform,
    or a work table that keeps every staged row)."""
    return f"SELECT COUNT(*), SUM({SRCCNT}) FROM {staged} A"


def met_rows(d: Dialect, spec: LoadSpec, work: str, bounds: ChunkBounds, full: bool) -> str:
    """How many current target rows of the chunk the staged rows meet: all of them on a
    full extract (absent ones are the work table's D rows), else the distinct rows met
    in the work table (which keeps every staged row of a window). More staged rows
    meeting a row than rows met: duplicate keys."""
    if full:
        return f"SELECT COUNT(*) FROM ({_current_rows(d, spec, bounds)}) T"
    return f"SELECT COUNT(DISTINCT {TSKEY}) FROM {work}"


def rows_without_key(d: Dialect, spec: LoadSpec) -> str:
    """The target's rows whose first business key is NULL: no chunk's key range holds
    them (a table the loader made has none: its key columns are NOT NULL)."""
    return (
        f"SELECT COUNT(*) FROM {target_table(d, spec)} WHERE {d.quote(spec.keys[0].name)} IS NULL"
    )


def duplicate_new_keys(d: Dialect, spec: LoadSpec, work: str) -> str:
    """Whether two staged rows bring the same new key (both 'I' in the work table)."""
    keys = ", ".join(d.quote(k.name) for k in spec.keys)
    return d.limit(f"SELECT 1 FROM {work} WHERE {ACT} = 'I' GROUP BY {keys} HAVING COUNT(*) > 1", 1)


def null_keys(d: Dialect, spec: LoadSpec, work: str) -> str:
    cond = " OR ".join(f"A.{d.quote(k.name)} IS NULL" for k in spec.keys)
    return f"SELECT COUNT(*) FROM {work} A WHERE {cond}"


def action_counts(work: str) -> str:
    return f"SELECT {ACT}, COUNT(*) FROM {work} GROUP BY {ACT}"


def _hash(d: Dialect, spec: LoadSpec, alias: str) -> str:
    return d.row_hash([(f"{alias}.{d.quote(c.name)}", *c.hash_type) for c in spec.columns])


def _update_in_place(d: Dialect, spec: LoadSpec, work: str, rows: str) -> str:
    """The U rows: every column of the current row (an SCD2 change would have made V)."""
    q = d.quote
    assignments = [(q(c.name), f"A.{q(c.name)}") for c in spec.columns]
    assignments += [("RWHKEY", _hash(d, spec, "A")), ("RECUPDT", ":dms_now")]
    join = f"T.SKEY = A.{TSKEY} AND A.{ACT} = 'U'{rows}"
    return d.update_from(target_table(d, spec), work, join, assignments)


def _apply_steps(spec: LoadSpec) -> list[tuple[str, tuple[str, ...] | None]]:
    """The apply steps of a mapping, in order, each with the work-table actions whose
    rows it writes, one target row each (None: every version of a key, no fixed count)."""
    steps: list[tuple[str, tuple[str, ...] | None]] = []
    if spec.scd2:
        # SCD1 changes in place first: their new row versions fit in the room the pages
        # keep (fillfactor), before the closed versions take it
        if any(c.scd == 1 for c in spec.columns):
            steps.append(("update", ("U",)))
        steps.append(
            ("expire", ("V", "D") if spec.delete_handling == DeleteHandling.EXPIRE else ("V",))
        )
    elif spec.columns:
        steps.append(("update", ("U",)))
    if spec.delete_handling == DeleteHandling.DELETE:
        steps.append(("delete", None if spec.scd2 else ("D",)))
    steps.append(("insert", ("I", "V")))
    return steps


def _codes(acts: tuple[str, ...]) -> str:
    return ", ".join(f"'{a}'" for a in acts)


def apply_statements(d: Dialect, spec: LoadSpec, work: str, skey: str) -> list[tuple[str, str]]:
    """(count name, statement) pairs that apply the work table to the target, in order.
    `skey` is the SQL of a new surrogate key (a sequence, or :dms_skey0 + row number).
    Where the dialect slices work tables, each statement but the DELETE takes the rows
    of one slice (binds from Dialect.work_slices) and the chunk runs them slice after
    slice; the DELETE, a pass over the target's versions, runs once."""
    q = d.quote
    t = target_table(d, spec)
    sliced = d.work_slice("A")
    rows = f" AND {sliced}" if sliced else ""

    def statement(name: str, acts: tuple[str, ...] | None) -> str:
        if name == "update":
            return _update_in_place(d, spec, work, rows)
        if name == "expire":
            assignments = [("CURFLG", "'N'"), ("VLDTO", ":dms_now"), ("RECUPDT", ":dms_now")]
            assert acts is not None  # (expire and insert name their actions: _apply_steps)
            join = f"T.SKEY = A.{TSKEY} AND A.{ACT} IN ({_codes(acts)}){rows}"
            return d.update_from(t, work, join, assignments)
        if name == "delete":
            # every version of an absent key goes
            if spec.scd2 and d.capabilities.semi_joins_exists:
                match = " AND ".join(f"A.{q(k.name)} = {t}.{q(k.name)}" for k in spec.keys)
                cond = f"EXISTS (SELECT 1 FROM {work} A WHERE A.{ACT} = 'D' AND {match})"
            elif spec.scd2:  # (the absent keys collected once, not a scan of A per row)
                keys = [q(k.name) for k in spec.keys]
                row = keys[0] if len(keys) == 1 else f"({', '.join(keys)})"
                cond = f"{row} IN (SELECT {', '.join(keys)} FROM {work} WHERE {ACT} = 'D')"
            else:
                cond = f"SKEY IN (SELECT {TSKEY} FROM {work} WHERE {ACT} = 'D')"
            return f"DELETE FROM {t} WHERE {cond}"
        assert acts is not None
        return _insert(d, spec, f"{work} A WHERE A.{ACT} IN ({_codes(acts)}){rows}", skey)

    return [(name, statement(name, acts)) for name, acts in _apply_steps(spec)]


def applied_rows(spec: LoadSpec, acts: dict[str, int]) -> dict[str, int]:
    """How many rows each apply statement must write, from the work table's actions
    (a DELETE of SCD2 versions has no fixed count)."""
    return {
        name: sum(acts.get(a, 0) for a in codes)
        for name, codes in _apply_steps(spec)
        if codes is not None
    }


def _insert(d: Dialect, spec: LoadSpec, source: str, skey: str, typed: bool = False) -> str:
    """INSERT new rows (alias A in `source`); `typed`: cast the values to the target's
    types first (rows straight from the transform rather than from the work table)."""
    q = d.quote

    def value(c: TargetColumn) -> str:
        return _typed(d, c, "A") if typed else f"A.{q(c.name)}"

    names = ["SKEY"] + [q(c.name) for c in spec.all_columns] + ["RWHKEY", "RECCRDT", "RECUPDT"]
    values = [skey] + [value(c) for c in spec.all_columns]
    hashed = [(value(c), *c.hash_type) for c in spec.columns]
    values += [d.row_hash(hashed), ":dms_now", ":dms_now"]
    if spec.scd2:
        names += ["CURFLG", "VLDFRM", "VLDTO"]
        values += ["'Y'", ":dms_now", "NULL"]
    return (
        f"INSERT INTO {target_table(d, spec)} ({', '.join(names)}) "
        f"SELECT {', '.join(values)} FROM {source}"
    )


def initial_insert(d: Dialect, spec: LoadSpec, staged: str, skey: str) -> str:
    """The first load into an empty target: every staged row is new, so no work table;
    the target's unique index refuses duplicate keys (the whole chunk rolls back)."""
    return _insert(d, spec, f"{staged} A", skey, typed=True)


def duplicate_staged_keys(d: Dialect, spec: LoadSpec, staged: str, limit: int = 5) -> str:
    keys = ", ".join(d.quote(k.name) for k in spec.keys)
    return d.limit(
        f"SELECT {keys}, COUNT(*) AS n FROM {staged} A GROUP BY {keys} "
        f"HAVING COUNT(*) > 1 ORDER BY {keys}",
        limit,
    )


def _unfit(sd: Dialect, td: Dialect, c: TargetColumn, expr: str) -> str | None:
    """A condition (source dialect `sd`) true where a value does not fit the target
    column (dialect `td`): longer than its length (blanks beyond it are cut without
    complaint), or outside the range of its integer type or its decimal digits (after
    rounding to the scale, as the cast does); None: nothing to check for the type."""
    t = c.dtype
    if t.family in (Family.STRING, Family.CHAR) and t.length:
        return f"LENGTH(RTRIM(CAST({expr} AS {sd.type_sql(sa.Text())}))) > {int(t.length)}"
    number = f"CAST({expr} AS {sd.type_sql(sa.Numeric())})"
    if t.family == Family.INTEGER:
        top = td.integer_max(t.sqlalchemy_type())
        return f"({number} >= {top}.5 OR {number} <= -{top + 1}.5)"
    if t.family == Family.DECIMAL and t.precision is not None:
        scale = t.scale or 0  # 10^(p-s) less half a unit of the scale, e.g. 999.995
        return f"ABS({number}) >= {'9' * (t.precision - scale) or '0'}.{'9' * scale}5"
    return None


def unfit_values(
    sd: Dialect, td: Dialect, spec: LoadSpec, transform: str, limit: int = 5
) -> str | None:
    """Some rows of the transform (source dialect) with a value the target's columns
    cannot hold: their business key, then the first such column's name; None: no
    column has a limit to check."""
    checked = [(c, _unfit(sd, td, c, f"X.{sd.quote(c.name)}")) for c in spec.all_columns]
    conds = [(c, cond) for c, cond in checked if cond]
    if not conds:
        return None
    keys = ", ".join(f"X.{sd.quote(k.name)}" for k in spec.keys)
    column = " ".join(f"WHEN {cond} THEN '{c.name}'" for c, cond in conds)
    faults = " OR ".join(cond for _c, cond in conds)
    return sd.limit(
        f"SELECT {keys}, CASE {column} END FROM ({transform}) X WHERE {faults} ORDER BY {keys}",
        limit,
    )


def pool_skey(d: Dialect, spec: LoadSpec) -> str:
    keys = ", ".join(f"A.{d.quote(k.name)}" for k in spec.keys)
    return f":dms_skey0 + ROW_NUMBER() OVER (ORDER BY {keys})"


def drop_table(name: str) -> str:
    return f"DROP TABLE {name}"


# ------------------------------------------------------------------ plan-time queries


def checkpoint_max(d: Dialect, spec: LoadSpec) -> str:
    assert spec.checkpoint_column is not None  # (KEY: the rules ask for CHKPNTCLNM)
    col = f"SRC.{d.quote(spec.checkpoint_column)}"
    return (
        f"SELECT MAX({col}) FROM ({_source(spec)}) SRC "
        f"WHERE (:dms_chk_from IS NULL OR {col} > :dms_chk_from)"
    )


def _from_source(d: Dialect, spec: LoadSpec, windowed: bool) -> str:
    """FROM the source rows a load reads: the source query (alias SRC), in the window."""
    return f"FROM ({_source(spec)}) SRC{_where(_checkpoint_filter(d, spec, windowed))}"


def extract(d: Dialect, spec: LoadSpec, windowed: bool) -> str:
    """The source rows a load reads (for the row estimate)."""
    return f"SELECT * {_from_source(d, spec, windowed)}"


def source_keys(d: Dialect, spec: LoadSpec, windowed: bool) -> str:
    """The first business-key column of the source rows (as k)."""
    return f"SELECT {_source_key(d, spec)} AS k {_from_source(d, spec, windowed)}"


def key_range(d: Dialect, spec: LoadSpec, windowed: bool, checks: str = "all") -> str:
    """Smallest and largest value, NULLs and duplicates of the first business-key column
    (integer keys: even chunk boundaries between the two). `checks`: "all"; "nulls" (no
    duplicate count, the one part that sorts the keys); "none" (MIN and MAX alone: an
    index answers them)."""
    nulls = "COUNT(*) - COUNT(k)" if checks != "none" else "0"
    dups = "COUNT(k) - COUNT(DISTINCT k)" if checks == "all" else "0"
    return f"SELECT MIN(k), MAX(k), {nulls}, {dups} FROM ({source_keys(d, spec, windowed)}) K"


def duplicate_source_keys(d: Dialect, spec: LoadSpec, windowed: bool, limit: int = 5) -> str:
    """Some duplicate values of the first business-key column, with their counts."""
    k = _source_key(d, spec)
    return d.limit(
        f"SELECT {k} AS k, COUNT(*) AS n {_from_source(d, spec, windowed)} "
        f"GROUP BY {k} HAVING COUNT(*) > 1 ORDER BY {k}",
        limit,
    )


def duplicate_transform_keys(d: Dialect, spec: LoadSpec, windowed: bool) -> str:
    """Some duplicate business keys (every key column) of the whole transform, lookups
    joined: what the first key column's counts cannot tell."""
    staged = f"({transform_query(spec, d, ChunkBounds(False, False), windowed)})"
    return duplicate_staged_keys(d, spec, staged)


def key_tiles(d: Dialect, spec: LoadSpec, windowed: bool) -> str:
    """Upper bound, NULL keys and largest duplicate count of each of :dms_n tiles of the
    first business-key column, in key order: the chunk boundaries."""
    key = spec.keys[0]
    ordered = d.key_order("k", key.dtype.family)
    k = _source_key(d, spec)
    keyed = f"SELECT {k} AS k, COUNT(*) AS c {_from_source(d, spec, windowed)} GROUP BY {k}"
    tiled = f"SELECT k, c, NTILE(:dms_n) OVER (ORDER BY {ordered}) AS t FROM ({keyed}) K"
    return (
        f"SELECT t, MAX({ordered}), SUM(CASE WHEN k IS NULL THEN c ELSE 0 END), MAX(c) "
        f"FROM ({tiled}) X GROUP BY t ORDER BY t"
    )


# ------------------------------------------------------------ the target's counts and checks


def _current_only(spec: LoadSpec) -> str:
    return " WHERE CURFLG = 'Y'" if spec.scd2 else ""


def keys_with_several_current_rows(d: Dialect, spec: LoadSpec) -> str:
    keys = ", ".join(d.quote(k.name) for k in spec.keys)
    return (
        f"SELECT {keys} FROM {target_table(d, spec)}{_current_only(spec)} "
        f"GROUP BY {keys} HAVING COUNT(*) > 1"
    )


def current_row_count(d: Dialect, spec: LoadSpec) -> str:
    return f"SELECT COUNT(*) FROM {target_table(d, spec)}{_current_only(spec)}"


def target_row_counts(d: Dialect, spec: LoadSpec) -> str:
    """The target's rows and its current rows, in one scan."""
    current = "COUNT(CASE WHEN CURFLG = 'Y' THEN 1 END)" if spec.scd2 else "COUNT(*)"
    return f"SELECT COUNT(*), {current} FROM {target_table(d, spec)}"


def first_target_row(d: Dialect, spec: LoadSpec) -> str:
    """One row of the target, if it has any: a read of the table (a snapshot's first)."""
    return d.limit(f"SELECT 1 FROM {target_table(d, spec)}", 1)


def source_key_count(spec: LoadSpec) -> str:
    """The distinct business keys of the whole source extract (binds :p1..:p10)."""
    keys = ", ".join(k.logic for k in spec.keys)
    return f"SELECT COUNT(*) FROM (SELECT {keys} FROM ({_source(spec)}) SRC GROUP BY {keys}) K"


def highest_skey(d: Dialect, spec: LoadSpec) -> str:
    return f"SELECT MAX(SKEY) FROM {target_table(d, spec)}"


def any_row(d: Dialect, spec: LoadSpec) -> str:
    return d.limit(f"SELECT 1 FROM {target_table(d, spec)}", 1)


def delete_all(table: str) -> str:
    return f"DELETE FROM {table}"


def add_column(d: Dialect, spec: LoadSpec, column: str, type_sql: str) -> str:
    return f"ALTER TABLE {target_table(d, spec)} ADD {d.quote(column)} {type_sql}"
