"""engine.strategy: every combination of a load's facts gives the strategy the plan,
its chunks and its commit follow, and the source is probed only when it matters."""

import itertools

import pytest

from dms_orchestration.engine.strategy import (
    Apply,
    LoadFacts,
    Staging,
    UniqueRule,
    load_strategy,
)

FLAGS = ["created", "empty", "full_extract", "same_database", "integer_key", "parallel_reads"]
SIZES = [(1, 1), (1, 3), (3, 3), (2, 1)]  # (chunks asked or earned, earned)


def expected(f: dict, chunks: int, earned: int, unique: bool, one_table: bool) -> dict:
    """The rules, written out independently of load_strategy's code."""
    unique_key = unique and (chunks > 1 or f["full_extract"])
    compares_full = f["same_database"] and f["full_extract"] and not f["empty"]
    staged = compares_full and not unique_key and not one_table
    split = (
        compares_full
        and not staged
        and chunks == 1
        and earned >= 2
        and f["parallel_reads"]
        and f["integer_key"]
    )
    return {
        "apply": Apply.INSERT_ALL if f["empty"] else Apply.COMPARE,
        "staging": (
            Staging.STREAMED
            if not f["same_database"]
            else Staging.STAGED
            if staged
            else Staging.IN_PLACE
        ),
        "unique_rule": (
            UniqueRule.AFTER_ROWS if f["created"] and f["empty"] else UniqueRule.BEFORE_ROWS
        ),
        "cuts_check_duplicates": not (f["created"] and f["empty"]),
        "unique_source_key": unique_key,
        "parts": earned if split else 0,
        "chunks": chunks,
        "full_extract": f["full_extract"],
    }


CASES = [
    (dict(zip(FLAGS, values, strict=True)), chunks, earned, unique, one_table)
    for values in itertools.product([False, True], repeat=len(FLAGS))
    for chunks, earned in SIZES
    for unique in (False, True)
    for one_table in (False, True)
]


@pytest.mark.parametrize(("flags", "chunks", "earned", "unique", "one_table"), CASES)
def test_every_combination_of_facts_gives_its_strategy(flags, chunks, earned, unique, one_table):
    asked = []

    def probe(name, answer):
        def ask():
            asked.append(name)
            return answer

        return ask

    facts = LoadFacts(
        **flags,
        chunks=chunks,
        earned=earned,
        unique_source_key=probe("unique", unique),
        reads_one_table=probe("one table", one_table),
    )
    strategy = load_strategy(facts)
    want = expected(flags, chunks, earned, unique, one_table)
    assert strategy.model_dump() == {k: v for k, v in want.items()}
    # the probes are queries: asked only when the answer changes the strategy
    assert ("unique" in asked) == (chunks > 1 or flags["full_extract"])
    compares_full = flags["same_database"] and flags["full_extract"] and not flags["empty"]
    assert ("one table" in asked) == (compares_full and not want["unique_source_key"])


def test_the_cases_cover_every_value_of_the_strategy():
    seen = {
        (s.apply, s.staging, s.unique_rule, s.parts > 0, s.unique_source_key)
        for s in (
            load_strategy(
                LoadFacts(
                    **flags,
                    chunks=chunks,
                    earned=earned,
                    unique_source_key=lambda u=unique: u,
                    reads_one_table=lambda o=one_table: o,
                )
            )
            for flags, chunks, earned, unique, one_table in CASES
        )
    }
    assert {v[0] for v in seen} == set(Apply)
    assert {v[1] for v in seen} == set(Staging)
    assert {v[2] for v in seen} == set(UniqueRule)
    assert {v[3] for v in seen} == {False, True} and {v[4] for v in seen} == {False, True}


def facts(**given) -> LoadFacts:
    base = dict(
        created=False,
        empty=False,
        full_extract=True,
        same_database=True,
        chunks=1,
        earned=1,
        integer_key=True,
        parallel_reads=True,
        unique_source_key=lambda: False,
        reads_one_table=lambda: False,
    )
    return LoadFacts(**{**base, **given})


def yes() -> bool:
    return True


# fmt: off
NAMED = [  # case, facts that differ from a full delta in one database: apply | staging | ...
    ("first load into a new table", dict(created=True, empty=True),
     "insert all | in place | after rows | 0"),
    ("into an empty table that existed", dict(empty=True),
     "insert all | in place | before rows | 0"),
    ("full delta reading a join", {}, "compare | staged | before rows | 0"),
    ("full delta reading one table", dict(reads_one_table=yes),
     "compare | in place | before rows | 0"),
    ("full delta under the source's unique key", dict(unique_source_key=yes),
     "compare | in place | before rows | 0"),
    ("a window's delta", dict(full_extract=False), "compare | in place | before rows | 0"),
    ("from another database", dict(same_database=False), "compare | streamed | before rows | 0"),
    ("one chunk that earned three", dict(earned=3, reads_one_table=yes),
     "compare | in place | before rows | 3"),
    ("three chunks", dict(chunks=3, earned=3, reads_one_table=yes),
     "compare | in place | before rows | 0"),
    ("one chunk that earned three, text key",
     dict(earned=3, integer_key=False, reads_one_table=yes),
     "compare | in place | before rows | 0"),
    ("one chunk that earned three, into SQLite",
     dict(earned=3, parallel_reads=False, reads_one_table=yes),
     "compare | in place | before rows | 0"),
]
# fmt: on


@pytest.mark.parametrize(("case", "given", "want"), NAMED)
def test_named_cases(case, given, want):
    s = load_strategy(facts(**given))
    assert f"{s.apply} | {s.staging} | {s.unique_rule} | {s.parts}" == want, case


def test_a_strategy_survives_the_plans_json():
    strategy = load_strategy(facts(earned=3, reads_one_table=yes))
    assert strategy.parts == 3 and strategy.staging is Staging.IN_PLACE
    again = type(strategy).model_validate_json(strategy.model_dump_json())
    assert again == strategy and again.staging is Staging.IN_PLACE
