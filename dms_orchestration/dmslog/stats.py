"""Run metrics from the log tables (the legacy Dashboard module): loads per day, success
rate, p50 / p95 duration, rows per day, the slowest mappings.

A load is a DMS_PRCLOG row of a mapping (reports and file loads are not loads) that
started in the window; its rows are the source rows of its whole-load DMS_JOBLOG row.
Success rate = succeeded / (succeeded + failed): a stopped load was asked to stop. The
durations are those of the succeeded loads (ENDDT - STRTDT). The log is read once, as a
stream of one short tuple per load, whatever its size.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime

import sqlalchemy as sa

from dms_orchestration.db.schema import dms_joblog, dms_mapr, dms_prclog
from dms_orchestration.settings import dms_now
from dms_orchestration.vocabulary import Status

SLOWEST = 5  # mappings named as the slowest


def percentile(sorted_values: list[float], q: float) -> float | None:
    """The q-th percentile (0..1) by the nearest rank: a duration one load really took."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass
class Tally:
    """The loads of one day, one mapping, or the whole window."""

    loads: int = 0
    succeeded: int = 0
    failed: int = 0
    stopped: int = 0
    running: int = 0
    rows: int = 0
    durations: list[float] = field(default_factory=list)  # of the succeeded loads, seconds

    def add(self, status: str, seconds: float | None, rows: int | None) -> None:
        self.loads += 1
        if status == Status.PC:
            self.succeeded += 1
            self.rows += rows or 0
            if seconds is not None:
                self.durations.append(seconds)
        elif status == Status.FL:
            self.failed += 1
        elif status == Status.ST:
            self.stopped += 1
        else:
            self.running += 1

    @property
    def success_rate(self) -> float | None:
        ended = self.succeeded + self.failed
        return self.succeeded / ended if ended else None

    def figures(self) -> dict:
        durations = sorted(self.durations)
        return {
            "loads": self.loads,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "stopped": self.stopped,
            "running": self.running,
            "success_rate": self.success_rate,
            "p50_seconds": percentile(durations, 0.50),
            "p95_seconds": percentile(durations, 0.95),
            "max_seconds": durations[-1] if durations else None,
            "rows": self.rows,
        }


@dataclass
class LoadStats:
    since: datetime
    until: datetime
    total: Tally
    days: dict[date, Tally]
    mappings: dict[str, Tally]

    @property
    def day_span(self) -> float:
        """The window in days (at least an hour's worth: a fresh window is no tiny divisor)."""
        return max((self.until - self.since).total_seconds(), 3600) / 86400

    def summary(self) -> dict:
        """The window's figures, per day where it says so (what the dashboard plots)."""
        figures = self.total.figures()
        return {
            **figures,
            "loads_per_day": self.total.loads / self.day_span,
            "rows_per_day": self.total.rows / self.day_span,
        }

    def slowest(self, n: int = SLOWEST) -> list[tuple[str, dict]]:
        """The mappings whose succeeded loads took longest (p95, then the longest one)."""
        timed = [(ref, t.figures()) for ref, t in self.mappings.items() if t.durations]
        timed.sort(key=lambda item: (-item[1]["p95_seconds"], -item[1]["max_seconds"], item[0]))
        return timed[:n]


CSV_COLUMNS = (
    "scope", "key", "loads", "succeeded", "failed", "stopped", "running", "success_rate",
    "p50_seconds", "p95_seconds", "max_seconds", "rows",
)  # fmt: skip


def csv_rows(stats: LoadStats) -> Iterator[list]:
    """`dms stats --csv`: the header, the window (scope total), each day (scope day), each
    mapping, slowest first (scope mapping)."""
    yield list(CSV_COLUMNS)
    window = f"{stats.since:%Y-%m-%d %H:%M:%S}/{stats.until:%Y-%m-%d %H:%M:%S}"
    scopes = [("total", window, stats.total)]
    scopes += [("day", f"{day:%Y-%m-%d}", t) for day, t in stats.days.items()]
    ordered = sorted(
        stats.mappings.items(),
        key=lambda item: (-(percentile(sorted(item[1].durations), 0.95) or -1), item[0]),
    )
    scopes += [("mapping", ref, t) for ref, t in ordered]
    for scope, key, t in scopes:
        f = t.figures()
        yield [scope, key, *("" if f[c] is None else _plain(f[c]) for c in CSV_COLUMNS[2:])]


def _plain(value) -> str:
    return f"{value:.4f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max((end - start).total_seconds(), 0.0)


def tally(
    rows: Iterable[tuple[str, str, datetime, datetime | None, int | None]],
    since: datetime,
    until: datetime,
) -> LoadStats:
    """(MAPREF, PRCSTS, STRTDT, ENDDT, SRCROWS) per load -> the stats of the window."""
    total, days, mappings = Tally(), defaultdict(Tally), defaultdict(Tally)
    for mapref, status, start, end, srcrows in rows:
        seconds = _seconds(start, end)
        code = (status or "").strip().upper()
        for t in (total, days[start.date()], mappings[mapref]):
            t.add(code, seconds, srcrows)
    return LoadStats(since, until, total, dict(sorted(days.items())), dict(mappings))


def load_stats(engine: sa.Engine, since: datetime, until: datetime | None = None) -> LoadStats:
    """The loads that started in [since, until) (until: now on the DMS clock)."""
    until = until or dms_now()
    p, j = dms_prclog.c, dms_joblog.c
    # (a legacy log may hold two whole-load rows of a load: it is still one load)
    srcrows = (
        sa.select(sa.func.max(j.srcrows))
        .where(j.prcid == p.prcid, j.chunkno.is_(None))
        .scalar_subquery()
    )
    query = sa.select(p.mapref, p.prcsts, p.strtdt, p.enddt, srcrows).where(
        p.strtdt >= since,
        p.strtdt < until,
        p.mapref.in_(sa.select(dms_mapr.c.mapref)),
    )
    with engine.connect() as conn:
        result = conn.execution_options(yield_per=10_000).execute(query)
        return tally(((r[0], r[1], r[2], r[3], r[4]) for r in result), since, until)
