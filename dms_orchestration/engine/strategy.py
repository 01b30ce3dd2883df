"""How a load reads, stages, splits and applies its source: one value (`LoadStrategy`),
decided by a pure function from what the plan found out (`LoadFacts`). The plan, its
chunks and its commit read the value; they do not decide again."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class Apply(StrEnum):
    """How the staged rows reach the target."""

    INSERT_ALL = "insert all"  # the target was empty: every row is new, nothing to compare
    COMPARE = "compare"  # classify the keys against the current rows, then apply


class Staging(StrEnum):
    """Where a chunk reads its source rows from."""

    IN_PLACE = "in place"  # one database: its statements read the transform query itself
    STAGED = "staged"  # one database: the transform query is staged once per chunk
    STREAMED = "streamed"  # another database: the rows are streamed into a staging table


class UniqueRule(StrEnum):
    """When the target's unique business-key rule (its index) is built."""

    BEFORE_ROWS = "before rows"  # by the plan, with every other index
    # a first load: after its rows (in its one chunk, or at commit); a duplicate key then
    # takes the first load back out
    AFTER_ROWS = "after rows"


@dataclass(frozen=True)
class LoadFacts:
    """What the plan found out before it decides. The two source probes are asked only
    when the decision depends on them (each is a query)."""

    created: bool  # this load created the target table
    empty: bool  # the target holds no rows (and the mapping does not aggregate)
    full_extract: bool  # the window reads every source row and no parameter narrows it
    same_database: bool  # source and target are one database
    chunks: int  # chunks asked for, or earned by the estimate
    earned: int  # chunks the estimate earned
    integer_key: bool  # the (first) business-key column is an integer
    parallel_reads: bool  # the target reads a transaction's key ranges side by side
    unique_source_key: Callable[[], bool]  # the source's own unique NOT NULL key is the key
    reads_one_table: Callable[[], bool]  # the transform query reads one table


class LoadStrategy(BaseModel):
    model_config = ConfigDict(frozen=True)

    full_extract: bool
    apply: Apply
    staging: Staging
    unique_rule: UniqueRule
    chunks: int  # key ranges the source is cut in (fewer when the keys are fewer)
    # one source row per key is certain: a full-extract chunk need not count the source
    # rows, and the plan's key cuts need not look for NULL or duplicate keys
    unique_source_key: bool = False
    # the plan's key cuts count duplicate keys too (a first load finds them at its unique
    # rule instead)
    cuts_check_duplicates: bool = True
    # key ranges a single chunk classifies side by side (0: one range): a full-extract
    # delta in one database whose size earned several chunks but runs as one
    parts: int = 0

    @property
    def initial(self) -> bool:
        return self.apply is Apply.INSERT_ALL


def load_strategy(facts: LoadFacts) -> LoadStrategy:
    """The strategy of a load, from its facts (pure: no query but the facts' probes)."""
    initial = facts.empty
    first_build = facts.created and initial
    # (used by the key checks of several chunks and the counts of a full extract)
    unique_key = (facts.chunks > 1 or facts.full_extract) and facts.unique_source_key()
    # a first load reads its source once; a window's work table keeps every row; a source
    # key trusted as unique is a column of the one table the source reads
    compares_full = facts.same_database and facts.full_extract and not initial
    staged = compares_full and not unique_key and not facts.reads_one_table()
    if not facts.same_database:
        staging = Staging.STREAMED
    else:
        staging = Staging.STAGED if staged else Staging.IN_PLACE
    split = (
        compares_full
        and not staged
        and facts.chunks == 1
        and facts.earned >= 2
        and facts.parallel_reads
        and facts.integer_key
    )
    return LoadStrategy(
        full_extract=facts.full_extract,
        apply=Apply.INSERT_ALL if initial else Apply.COMPARE,
        staging=staging,
        unique_rule=UniqueRule.AFTER_ROWS if first_build else UniqueRule.BEFORE_ROWS,
        chunks=facts.chunks,
        unique_source_key=unique_key,
        cuts_check_duplicates=not first_build,
        parts=facts.earned if split else 0,
    )
