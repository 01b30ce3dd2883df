"""The `dms/...` run tags a run may carry, checked before a load starts: a tag DMS does
not know, or a value it cannot use, fails the run with one line naming the tag, before
anything is written (no DMS_PRCLOG row, no target change)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import date

import dagster as dg

TAG = "dms/"
PARAM_SIZE = 4000  # DMS_PRCLOG.PARAM1..PARAM10
TRUE, FALSE = ("1", "true", "yes"), ("0", "false", "no", "")  # as run_options reads them


def _whole_number(least: int) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        text = value.strip()
        if not re.fullmatch(r"[+]?\d+", text) or int(text) < least:
            return f"must be a whole number of at least {least}"
        return None

    return check


def _flag(value: str) -> str | None:
    if value.strip().lower() not in TRUE + FALSE:
        return "must be true or false"
    return None


def _day(value: str) -> str | None:
    try:
        date.fromisoformat(value.strip())
    except ValueError:
        return "must be a day as YYYY-MM-DD"
    return None


def _param(value: str) -> str | None:
    if len(value) > PARAM_SIZE:
        return f"is {len(value)} characters long, DMS_PRCLOG keeps at most {PARAM_SIZE}"
    return None


def _any(value: str) -> str | None:
    return None


# tag (after dms/) -> its check: None when the value is good, else what is wrong with it
RUN_TAGS: dict[str, Callable[[str], str | None]] = {
    **{f"param{i}": _param for i in range(1, 11)},  # the load's :p1..:p10
    "full": _flag,  # a full extract: the checkpoint is not applied
    "chunks": _whole_number(1),  # the chunks asked for (the plan caps them at MAX_CHUNKS)
    "prcreqid": _whole_number(1),  # the DMS_PRCREQ request the run serves
    "jobschid": _whole_number(1),  # the DMS_JOBSCH row that started it
    "jobid": _whole_number(1),  # the job's DMS_JOB row (a job tag)
    "histday": _day,  # the day a HISTORY request loads
    "mapref": _any,  # the mapping the job loads (a job tag)
    "rprtref": _any,  # the report the job writes (a job tag)
    "flupldref": _any,  # the file load the job runs (a job tag)
    "run_worker_pid": _whole_number(1),  # the run's worker (set by ForkedRunLauncher)
    "run_worker_started": _any,  # when that process started (set by ForkedRunLauncher)
}


def run_tag_problem(tags: Mapping[str, str]) -> str | None:
    """What is wrong with a run's `dms/...` tags, as one line naming the tag; None when
    nothing is."""
    for tag in sorted(t for t in tags if t.startswith(TAG)):
        name, value = tag[len(TAG) :], str(tags[tag])
        check = RUN_TAGS.get(name)
        if check is None:
            known = "dms/param1..dms/param10, " + ", ".join(
                f"{TAG}{n}" for n in RUN_TAGS if not n.startswith("param")
            )
            return f"run tag {tag} is not a DMS run tag (they are {known})"
        if problem := check(value):
            return f"run tag {tag}={value[:60]!r} {problem}"
    return None


def check_run_tags(tags: Mapping[str, str]) -> None:
    """Fail the run (dg.Failure, one line, no retry) when its dms/ tags are bad."""
    if problem := run_tag_problem(tags):
        raise dg.Failure(description=problem, allow_retries=False)
