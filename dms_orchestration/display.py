"""How the `dms` command shows loads: the progress of `dms run` on stderr (a live bar on a
terminal, a plain line every few seconds otherwise), the table of `dms status` and the
rows of `dms mappings preview`."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Column, Table

from dms_orchestration.dmslog.reader import LoadState
from dms_orchestration.dmslog.stats import LoadStats
from dms_orchestration.settings import dms_now
from dms_orchestration.vocabulary import Status

if TYPE_CHECKING:
    from dms_orchestration.engine.preview import Preview

PLAIN_EVERY_S = 5.0  # a plain progress line this often (the first at once)
STATUS_STYLE = {Status.IP: "yellow", Status.PC: "green", Status.FL: "red", Status.ST: "magenta"}
_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$", re.IGNORECASE)
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(seconds: float | None) -> str:
    """4.2 s, 3 min 20 s, 2 h 05 min."""
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _rows(state: LoadState) -> str:
    if state.running and state.estimated_rows:
        return f"{state.rows:,} of ~{state.estimated_rows:,} rows read"
    return f"{state.rows:,} rows read"


def progress_text(state: LoadState) -> str:
    """Chunks done, how far, rows read, rows/s and time left, as far as known."""
    parts = [f"{state.chunks_done}/{state.chunks or '?'} chunks done"]
    if state.progress is not None:
        parts.append(f"{state.progress:.0%}")
    parts.append(_rows(state))
    if state.rows:
        parts.append(f"{state.rows_per_second:,.0f} rows/s")
    if state.eta_seconds is not None and state.rows:
        parts.append(f"~{duration(state.eta_seconds)} left")
    return ", ".join(parts)


class _PlainLines:
    """A line on stderr at once, then every PLAIN_EVERY_S: for logs and pipes."""

    def __init__(self, console: Console, mapref: str) -> None:
        self.console, self.mapref = console, mapref
        self._next = 0.0

    def __call__(self, state: LoadState) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + PLAIN_EVERY_S
        self.console.print(
            f"{self.mapref}: {progress_text(state)}, {duration(state.seconds)} elapsed",
            highlight=False,
            soft_wrap=True,
        )

    def stop(self) -> None:
        pass


class _LiveBar:
    """A rich progress bar, redrawn at each reading (no refresh thread of its own: the
    load may fork chunk processes, and a fork copies the locks a thread holds)."""

    def __init__(self, console: Console, mapref: str) -> None:
        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=console,
            auto_refresh=False,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self.task = self.bar.add_task(mapref, total=100, detail="planning")
        self.bar.start()

    def __call__(self, state: LoadState) -> None:
        self.bar.update(
            self.task, completed=100 * (state.progress or 0.0), detail=progress_text(state)
        )
        self.bar.refresh()

    def stop(self) -> None:
        self.bar.stop()


@contextlib.contextmanager
def run_progress(
    console: Console, mapref: str, enabled: bool = True
) -> Iterator[Callable[[LoadState], None] | None]:
    """The `on_progress` of `dms run`: a live bar when `console` is a terminal, plain
    lines otherwise, nothing when not `enabled`; the bar is stopped on the way out."""
    if not enabled:
        yield None
        return
    show = _LiveBar(console, mapref) if console.is_terminal else _PlainLines(console, mapref)
    try:
        yield show
    finally:
        show.stop()


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """`--since`: a span back from now (30m, 24h, 7d) or a date / date and time."""
    now = now or dms_now()
    span = _SPAN.match(text)
    if span:
        return now - timedelta(seconds=float(span.group(1)) * _UNIT_S[span.group(2).lower()])
    try:
        return datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"--since {text!r}: give a span (30m, 24h, 7d) or a date / date and time "
            "(2026-01-31, 2026-01-31 06:00)"
        ) from None


def _progress_cell(state: LoadState) -> str:
    if state.status == Status.PC:
        return "100%"
    text = f"{state.chunks_done}/{state.chunks or '?'} chunks"
    if state.running and state.progress is not None:
        text = f"{state.progress:.0%} ({text})"
    if state.eta_seconds is not None and state.rows:
        text += f", ~{duration(state.eta_seconds)} left"
    return text


def status_table(states: list[LoadState], since: datetime) -> Table:
    """`dms status`: one row per load, newest first."""
    table = Table(
        "PRCID",
        "mapping",
        "status",
        "progress",
        "rows",
        "rows/s",
        "started",
        "duration",
        "run id",
        title=f"loads running or started since {since:%Y-%m-%d %H:%M:%S}",
    )
    for s in states:
        style = STATUS_STYLE.get(s.status, "")
        table.add_row(
            str(s.prcid),
            s.mapref or "",
            f"[{style}]{s.status}[/{style}]" if style else s.status,
            _progress_cell(s),
            f"{s.rows:,}",
            f"{s.rows_per_second:,.0f}" if s.rows else "",
            f"{s.started:%Y-%m-%d %H:%M:%S}" if s.started else "",
            duration(s.seconds),
            s.run_id or "",
        )
    return table


def _rate(value: float | None) -> str:
    return "" if value is None else f"{value:.1%}"


def stats_summary(stats: LoadStats) -> str:
    """`dms stats`: the window in one line."""
    s = stats.summary()
    parts = [
        f"{s['loads']:,} loads ({s['succeeded']:,} succeeded, {s['failed']:,} failed, "
        f"{s['stopped']:,} stopped, {s['running']:,} running)",
        f"success rate {_rate(s['success_rate']) or 'n/a'}",
        f"p50 {duration(s['p50_seconds']) or 'n/a'}, p95 {duration(s['p95_seconds']) or 'n/a'}",
        f"{s['loads_per_day']:,.1f} loads/day, {s['rows_per_day']:,.0f} rows/day",
    ]
    return f"since {stats.since:%Y-%m-%d %H:%M:%S}: " + "; ".join(parts)


def stats_tables(stats: LoadStats) -> list[Table]:
    """`dms stats`: a row per day, then the slowest mappings."""
    days = Table(
        Column("day", no_wrap=True, min_width=10),
        "loads", "ok", "failed", "stopped", "success", "p50", "p95", "rows",
        title="loads per day",
    )  # fmt: skip
    for day, tally in stats.days.items():
        f = tally.figures()
        days.add_row(
            f"{day:%Y-%m-%d}",
            f"{f['loads']:,}",
            f"{f['succeeded']:,}",
            f"[red]{f['failed']:,}[/red]" if f["failed"] else "0",
            f"{f['stopped']:,}",
            _rate(f["success_rate"]),
            duration(f["p50_seconds"]),
            duration(f["p95_seconds"]),
            f"{f['rows']:,}",
        )
    slowest = Table("mapping", "loads", "p50", "p95", "longest", title="slowest mappings")
    for ref, f in stats.slowest():
        slowest.add_row(
            ref,
            f"{f['loads']:,}",
            duration(f["p50_seconds"]),
            duration(f["p95_seconds"]),
            duration(f["max_seconds"]),
        )
    return [days, slowest]


ACTION_STYLE = {"INSERT": "green", "UPDATE": "yellow", "EXPIRE": "magenta", "UNCHANGED": "dim"}


def preview_table(shown: Preview) -> Table:
    """`dms mappings preview`: a row per previewed row, its action first; the values
    that differ from the current target row in bold, marked *."""
    table = Table("action", *shown.columns, title=f"{shown.mapref} -> {shown.target}")
    for row in shown.rows:
        style = ACTION_STYLE[row.action]
        cells = [
            f"[bold]{_cell(v)} *[/bold]" if name in row.changed else _cell(v)
            for name, v in row.values.items()
        ]
        table.add_row(f"[{style}]{row.action}[/{style}]", *cells)
    return table


def _cell(value) -> str:
    return "NULL" if value is None else escape(str(value))
