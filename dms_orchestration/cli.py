"""The `dms` command: DMS-side chores (schema, mapping files, validation, ids, demo).

Every command takes --url (or the global `dms --url URL ...`); otherwise the metadata
database comes from DMS_DATABASE_URL, the legacy DB_TYPE variables, or the embedded
SQLite default under DMS_HOME.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import signal
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import sqlalchemy as sa
import typer
from rich.console import Console
from rich.table import Table

from dms_orchestration.db.connect import metadata_engine
from dms_orchestration.db.ddl import init_schema
from dms_orchestration.settings import Settings, load_settings
from dms_orchestration.vocabulary import Severity, Status

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False)
db_app = typer.Typer(help="The DMS metadata schema.", no_args_is_help=True)
mappings_app = typer.Typer(help="Mapping files: import, export, validate.", no_args_is_help=True)
ids_app = typer.Typer(
    help="Ids: numeric (ID provider) and formatted (PREFIX-AAA0001).", no_args_is_help=True
)
app.add_typer(db_app, name="db")
app.add_typer(mappings_app, name="mappings")
app.add_typer(ids_app, name="ids")
schedule_app = typer.Typer(
    help="Schedules and dependencies (the legacy PKGDWPRC API).", no_args_is_help=True
)
queue_app = typer.Typer(help="Requests in DMS_PRCREQ for the queue sensor.", no_args_is_help=True)
app.add_typer(schedule_app, name="schedule")
app.add_typer(queue_app, name="queue")
report_app = typer.Typer(
    help="Reports (DMS_RPRT): a query written to a file.", no_args_is_help=True
)
app.add_typer(report_app, name="report")
files_app = typer.Typer(
    help="File loads (DMS_FLUPLD): landed files into tables.", no_args_is_help=True
)
app.add_typer(files_app, name="files")

out = Console()
err = Console(stderr=True, soft_wrap=True)  # an error is one line, whatever the terminal

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url", help="SQLAlchemy URL of the metadata database (overrides the environment)."
    ),
]


class CliState:
    url: str | None = None


_state = CliState()


@app.callback()
def main(url: UrlOption = None, verbose: Annotated[bool, typer.Option("-v", "--verbose")] = False):
    """DMS Orchestration: run DMS warehouse-load metadata on Dagster."""
    _state.url = url
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
    )


def _settings(url: str | None) -> Settings:
    return load_settings(url or _state.url)


def _engine(settings: Settings) -> sa.Engine:
    engine = metadata_engine(settings)
    if settings.source == "embedded":
        init_schema(engine)  # our own embedded database: create it on first use
    return engine


def _fails_cleanly(fn):
    """Known failures print one clear line and exit 1, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ValueError, LookupError) as exc:  # our errors are ValueErrors with clear text
            err.print(f"[red]error:[/red] {exc}", highlight=False)
            raise typer.Exit(1) from None
        except sa.exc.SQLAlchemyError as exc:
            first = str(exc.orig if getattr(exc, "orig", None) else exc).strip().splitlines()[0]
            err.print(f"[red]database error:[/red] {first}", highlight=False)
            raise typer.Exit(1) from None

    return wrapper


# ------------------------------------------------------------------ db


@db_app.command("init")
@_fails_cleanly
def db_init(url: UrlOption = None):
    """Create the DMS tables, indexes and sequences that are missing (and nothing else)."""
    settings = _settings(url)
    report = init_schema(metadata_engine(settings))
    out.print(f"metadata database: {settings.safe_url}", highlight=False)
    out.print(f"created: {', '.join(report.created) or 'nothing (all present)'}")
    for table, cols in report.missing_columns.items():
        err.print(
            f"[yellow]warning:[/yellow] existing table {table} lacks contract columns "
            f"{', '.join(cols)}; left as it is (add them with ALTER TABLE when ready)"
        )
    for index, why in report.index_problems.items():
        err.print(f"[yellow]warning:[/yellow] index {index} not created: {why}", highlight=False)


# ------------------------------------------------------------ mappings


@mappings_app.command("import")
@_fails_cleanly
def mappings_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Mapping YAML file")],
    url: UrlOption = None,
):
    """Upsert connections, source SQL, mappings, columns, jobs and schedules from FILE.

    Changed rows get a new CURFLG='Y' version (the old one becomes 'N'); unchanged rows
    are left alone. All or nothing: a bad file changes nothing.
    """
    from dms_orchestration.metadata.authoring import import_mapping_file
    from dms_orchestration.metadata.mapping_file import read_mapping_file

    report = import_mapping_file(_engine(_settings(url)), read_mapping_file(file))
    table = Table("table", "new", "changed", "unchanged", "retired", title=f"import {file}")
    for row in report.summary():
        table.add_row(*(str(v) for v in row))
    out.print(table)
    out.print("no changes" if report.is_noop else "imported")


@mappings_app.command("export")
@_fails_cleanly
def mappings_export(
    maprefs: Annotated[list[str] | None, typer.Argument(help="MAPREFs (default: all)")] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="File to write")] = None,
    url: UrlOption = None,
):
    """Write current mappings (with their connections, SQL, jobs, schedules) as YAML."""
    from dms_orchestration.metadata.authoring import export_mapping_file
    from dms_orchestration.metadata.mapping_file import dump_mapping_file

    text = dump_mapping_file(export_mapping_file(_engine(_settings(url)), maprefs or None))
    if output:
        output.write_text(text)
        err.print(f"wrote {output}")
    else:
        sys.stdout.write(text)


@mappings_app.command("validate")
@_fails_cleanly
def mappings_validate(
    maprefs: Annotated[list[str] | None, typer.Argument(help="MAPREFs (default: all)")] = None,
    url: UrlOption = None,
):
    """Check mappings and record the findings in DMS_MAPERR. Exit 1 on any ERROR."""
    settings = _settings(url)
    report = _validate(settings, maprefs or None)
    if report.has_errors:
        raise typer.Exit(1)


def _validate(settings: Settings, maprefs: list[str] | None):
    from dms_orchestration.metadata.validation import validate_mappings

    report = validate_mappings(_engine(settings), settings, maprefs)
    if maprefs is None:  # all: the file loads and reports too
        report.findings.extend(_other_findings(settings))
    table = Table("mapping", "column", "severity", "finding", title="validation findings")
    for f in report.findings:
        colour = "red" if f.severity == Severity.ERROR else "yellow"
        table.add_row(f.mapref, f.column or "", f"[{colour}]{f.severity}[/{colour}]", f.message)
    if report.findings:
        out.print(table)
    errors = sum(f.severity == Severity.ERROR for f in report.findings)
    warnings = len(report.findings) - errors
    out.print(f"{len(report.checked)} mapping(s) checked: {errors} error(s), {warnings} warning(s)")
    return report


@mappings_app.command("preview")
@_fails_cleanly
def mappings_preview(
    mapref: Annotated[str, typer.Argument(help="The mapping to preview")],
    rows: Annotated[int, typer.Option("-n", "--rows", min=1, max=1000, help="How many rows")] = 20,
    param: Annotated[
        list[str] | None, typer.Option("--param", help="PARAM1..PARAM10 as NAME=VALUE")
    ] = None,
    full: Annotated[bool, typer.Option("--full", help="As a full extract would")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON, for scripts")] = False,
    url: UrlOption = None,
):
    """The first rows the next load of MAPREF would write (target columns after MAPLOGIC,
    lookups and MAPCMBCD) and what each would do against the current target: INSERT,
    UPDATE (in place), EXPIRE (a new SCD2 version) or UNCHANGED. Writes nothing."""
    from dms_orchestration.display import preview_table
    from dms_orchestration.engine.preview import preview
    from dms_orchestration.metadata.catalog import load_mapping

    settings = _settings(url)
    mapping = load_mapping(_engine(settings), mapref).mappings[mapref]
    shown = preview(mapping, _parse_params(param), rows, full=full, settings=settings)
    if as_json:
        sys.stdout.write(json.dumps(shown.as_json(), indent=2, default=str) + "\n")
        return
    wide = Console(width=None if out.is_terminal else 100_000)
    if shown.rows:
        wide.print(preview_table(shown))
    wide.print(shown.summary(), highlight=False)


def _other_findings(settings: Settings) -> list:
    """The findings of every file load and report, recorded in DMS_MAPERR by their
    FLUPLDREF / RPRTREF."""
    from dms_orchestration.engine.file_load import file_load_findings, target_dialect
    from dms_orchestration.engine.report import report_findings
    from dms_orchestration.metadata.catalog import load_file_loads, load_reports
    from dms_orchestration.metadata.validation import record_findings

    engine = _engine(settings)
    backend = engine.dialect.name
    found = []
    for fl in load_file_loads(engine).values():
        problems = file_load_findings(fl, target_dialect(fl, backend))
        found += record_findings(engine, settings, fl.ref, problems)
    for report in load_reports(engine).values():
        found += record_findings(engine, settings, report.ref, report_findings(report, backend))
    return found


@mappings_app.command("schema")
def mappings_schema():
    """Print the JSON Schema of the mapping file (for editors)."""
    from dms_orchestration.metadata.mapping_file import json_schema

    sys.stdout.write(json.dumps(json_schema(), indent=2) + "\n")


# ----------------------------------------------------------------- ids

CountOption = Annotated[int, typer.Option("-n", "--count", min=1, help="How many ids")]


@ids_app.command("next")
@_fails_cleanly
def ids_next(
    entity: Annotated[str, typer.Argument(help="Entity: a DMS table (DMS_PRCLOG) or target table")],
    n: CountOption = 1,
    url: UrlOption = None,
):
    """Print N new numeric ids for ENTITY, one per line."""
    from dms_orchestration.ids.provider import next_ids

    sys.stdout.write("".join(f"{i}\n" for i in next_ids(_engine(_settings(url)), entity, n)))


@ids_app.command("format")
@_fails_cleanly
def ids_format(
    prefix: Annotated[str, typer.Argument(help="Prefix, e.g. CUS")],
    n: CountOption = 1,
    url: UrlOption = None,
):
    """Print N new formatted ids PREFIX-AAA0001, one per line."""
    from dms_orchestration.ids.formatted import generate_ids

    sys.stdout.write("".join(f"{i}\n" for i in generate_ids(_engine(_settings(url)), prefix, n)))


@ids_app.command("reset")
@_fails_cleanly
def ids_reset(
    prefix: Annotated[str, typer.Argument(help="Prefix, e.g. CUS")],
    last_id: Annotated[str, typer.Argument(metavar="ID", help="The id to continue after")],
    url: UrlOption = None,
):
    """Reset PREFIX so that the next id follows ID."""
    from dms_orchestration.ids.formatted import reset_prefix

    stored = reset_prefix(_engine(_settings(url)), prefix, last_id)
    out.print(f"{prefix}: last id is now {stored}", highlight=False)


@ids_app.command("stats")
@_fails_cleanly
def ids_stats(url: UrlOption = None):
    """Print statistics of the formatted-id prefixes as JSON."""
    from dms_orchestration.ids.formatted import prefix_statistics

    sys.stdout.write(json.dumps(prefix_statistics(_engine(_settings(url))), indent=2) + "\n")


@ids_app.command("health")
def ids_health(url: UrlOption = None):
    """Health check of the formatted-id manager, as JSON; exit 1 when unhealthy."""
    from dms_orchestration.ids.formatted import health_check

    try:
        engine = _engine(_settings(url))
    except (ValueError, sa.exc.SQLAlchemyError) as exc:
        result = {
            "status": "unhealthy",
            "message": f"cannot reach the metadata database: {exc}",
            "prefix_count": None,
            "test_id_generated": None,
            "timestamp": datetime.now(UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
        }
    else:
        result = health_check(engine)
    sys.stdout.write(json.dumps(result, indent=2) + "\n")
    if result["status"] != "healthy":
        raise typer.Exit(1)


@app.command("health")
def health(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object, for probes")] = False,
    heartbeat_age: Annotated[
        float,
        typer.Option(
            "--heartbeat-age", min=1, help="Seconds after which a daemon's heartbeat is too old"
        ),
    ] = 120,
    url: UrlOption = None,
):
    """Health of everything a load needs: the metadata database, every DMS_DBCONDTLS
    connection, the Dagster instance and its daemons, loads stuck in IP, requests stuck in
    CLAIMED. One line per check; exit 1 when any check fails."""
    from dms_orchestration.health import Check, health_checks, healthy, report

    try:
        settings = _settings(url)
    except ValueError as exc:
        checks = [Check("metadata_database", "fail", str(exc))]
    else:
        checks = health_checks(settings, heartbeat_age)
    if as_json:
        sys.stdout.write(json.dumps(report(checks), indent=2) + "\n")
    else:
        for check in checks:
            out.print(check.line, highlight=False, soft_wrap=True, markup=False)
    if not healthy(checks):
        raise typer.Exit(1)


# ----------------------------------------------------------------- run


def _parse_params(pairs: list[str] | None) -> dict[str, str]:
    params = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--param {pair!r}: use NAME=VALUE, e.g. PARAM1=2026-01-01")
        params[name.strip()] = value
    return params


def _stop_on_sigterm(_signum, _frame) -> None:
    raise KeyboardInterrupt("SIGTERM")


@contextlib.contextmanager
def _sigterm_stops():
    """A SIGTERM (a service manager, `kill`) stops the load as Ctrl-C does: the chunks
    roll back, the log says ST, the lock is freed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _dagster_run_alive(runid: str) -> bool | None:
    """Whether the Dagster run holding a load is alive (imports Dagster only when asked)."""
    from dms_orchestration.defs.runs import run_alive_here

    return run_alive_here(runid)


@app.command("run")
def run(
    mapref: Annotated[str, typer.Argument(help="The mapping to load")],
    chunks: Annotated[
        int | None, typer.Option("--chunks", min=1, help="Force N chunks (default: estimated)")
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", help="PARAM1..PARAM10 as NAME=VALUE")
    ] = None,
    full: Annotated[
        bool, typer.Option("--full", help="Ignore the checkpoint: full extract")
    ] = False,
    sequential: Annotated[
        bool, typer.Option("--sequential", help="Run the chunks one after another here")
    ] = False,
    progress: Annotated[
        bool,
        typer.Option(
            "--progress/--no-progress",
            help="Show progress on stderr: a live bar on a terminal, else a line every 5 s",
        ),
    ] = True,
    url: UrlOption = None,
):
    """Load one mapping now (plan, chunks in parallel, commit); print its counts."""
    from dms_orchestration.display import run_progress
    from dms_orchestration.engine import load
    from dms_orchestration.metadata.catalog import load_mapping

    try:
        settings = _settings(url)
        mapping = load_mapping(_engine(settings), mapref).mappings[mapref]
        with _sigterm_stops(), run_progress(err, mapref, progress) as show:
            result = load(
                mapping,
                _parse_params(param),
                chunks=chunks,
                full=full,
                parallel=not sequential,
                settings=settings,
                url=url or _state.url,
                run_alive=_dagster_run_alive,
                on_progress=show,
            )
    except Exception as exc:  # a failed load is one clear line; its detail is in DMS_JOBERR
        text = str(getattr(exc, "orig", None) or exc).strip()
        err.print(f"[red]error:[/red] load of {mapref} failed: {text}", highlight=False)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the chunks rolled back or committed
        err.print(f"load of {mapref} stopped (DMS_PRCLOG says what was applied)")
        raise typer.Exit(130) from None
    c = result.counts
    out.print(
        f"{mapref} PC PRCID={result.prcid} CHUNKS={result.chunk_count} SRCROWS={c.srcrows} "
        f"INSROWS={c.insrows} UPDROWS={c.updrows} EXPROWS={c.exprows} DELROWS={c.delrows} "
        f"UNCHROWS={c.unchrows} SECONDS={result.seconds:.2f}"
        + (f" CHKPNTVAL={result.checkpoint}" if result.checkpoint is not None else ""),
        highlight=False,
        soft_wrap=True,
    )
    if result.note:
        err.print(f"note: {result.note}", highlight=False, soft_wrap=True)


@app.command("status")
@_fails_cleanly
def status(
    maprefs: Annotated[
        list[str] | None, typer.Argument(help="Only these mappings (default: all)")
    ] = None,
    since: Annotated[
        str,
        typer.Option("--since", help="Loads started since: 30m, 24h, 7d, or a date / date-time"),
    ] = "24h",
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many loads")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="A JSON list, for scripts")] = False,
    url: UrlOption = None,
):
    """Running and recent loads (DMS_PRCLOG + DMS_JOBLOG): mapping, status, progress,
    rows, started, duration, run id; newest first."""
    from dms_orchestration.display import parse_since, status_table
    from dms_orchestration.dmslog.reader import recent_loads

    start = parse_since(since)
    states = recent_loads(_engine(_settings(url)), start, maprefs or (), limit)
    if as_json:
        sys.stdout.write(json.dumps([s.as_json() for s in states], indent=2) + "\n")
        return
    if states:
        out.print(status_table(states, start))
    else:
        out.print(f"no load running or started since {start:%Y-%m-%d %H:%M:%S}")


@app.command("stats")
@_fails_cleanly
def stats(
    since: Annotated[
        str,
        typer.Option("--since", help="Loads started since: 30m, 24h, 7d, or a date / date-time"),
    ] = "7d",
    as_csv: Annotated[bool, typer.Option("--csv", help="CSV on stdout, for scripts")] = False,
    url: UrlOption = None,
):
    """Run metrics of the loads (DMS_PRCLOG / DMS_JOBLOG), as the operations dashboard
    asset plots them: loads per day, success rate, p50 / p95 duration, rows per day, the
    slowest mappings."""
    import csv

    from dms_orchestration.display import parse_since, stats_summary, stats_tables
    from dms_orchestration.dmslog.stats import csv_rows, load_stats

    result = load_stats(_engine(_settings(url)), parse_since(since))
    if as_csv:
        csv.writer(sys.stdout, lineterminator="\n").writerows(csv_rows(result))
        return
    out.print(stats_summary(result), highlight=False, soft_wrap=True)
    if result.total.loads:
        for table in stats_tables(result):
            out.print(table)


# ------------------------------------------------------------ report


@report_app.command("run")
def report_run(
    rprtref: Annotated[str, typer.Argument(help="The report to write")],
    param: Annotated[
        list[str] | None, typer.Option("--param", help="PARAM1..PARAM10 as NAME=VALUE")
    ] = None,
    url: UrlOption = None,
):
    """Write one report now; print `RPRTREF PC ROWS=.. FILE=..` (exit 1 on failure)."""
    from dms_orchestration.engine.errors import error_text
    from dms_orchestration.engine.report import run_report
    from dms_orchestration.metadata.catalog import load_reports

    try:
        settings = _settings(url)
        reports = load_reports(_engine(settings))
        if rprtref not in reports:
            raise ValueError(f"no current report named {rprtref}")
        done = run_report(reports[rprtref], _parse_params(param), settings=settings)
    except Exception as exc:  # one clear line; DMS_PRCLOG has the reason too
        text = (error_text(exc) or type(exc).__name__).splitlines()[0]
        err.print(f"[red]error:[/red] report {rprtref} failed: {text}", highlight=False)
        raise typer.Exit(1) from None
    out.print(f"{rprtref} PC ROWS={done.rows} FILE={done.path}", highlight=False, soft_wrap=True)


# ------------------------------------------------------------ files


def _file_loads(settings: Settings, flupldref: str | None):
    from dms_orchestration.metadata.catalog import load_file_loads

    loads = load_file_loads(_engine(settings))
    if flupldref is None:
        return list(loads.values())
    if flupldref not in loads:
        raise ValueError(f"no current file load named {flupldref}")
    return [loads[flupldref]]


@files_app.command("scan")
@_fails_cleanly
def files_scan(
    flupldref: Annotated[str | None, typer.Argument(help="One file load (default: all)")] = None,
    url: UrlOption = None,
):
    """List the landed files no load has committed yet: `FLUPLDREF FILE`, one per line."""
    from dms_orchestration.engine.file_load import pending_files

    settings = _settings(url)
    meta = _engine(settings)
    count = 0
    for fl in _file_loads(settings, flupldref):
        for path, _ in pending_files(fl, meta, settings.dms_home):
            out.print(f"{fl.ref} {path}", highlight=False, soft_wrap=True)
            count += 1
    if not count:
        err.print("no pending file")


@files_app.command("load")
@_fails_cleanly
def files_load(
    flupldref: Annotated[str, typer.Argument(help="The file load")],
    files: Annotated[
        list[Path] | None, typer.Argument(help="These files (default: the pending ones)")
    ] = None,
    url: UrlOption = None,
):
    """Load the pending (or the named) files, one transaction each; print
    `FLUPLDREF FILE PC|FL ROWS=.. BAD=.. SECONDS=..` per file; exit 1 if any failed."""
    from dms_orchestration.engine.file_load import (
        content_hash,
        load_file,
        loaded_digests,
        max_bad_rows,
        pending_files,
    )

    settings = _settings(url)
    meta = _engine(settings)
    [fl] = _file_loads(settings, flupldref)
    if files:
        loaded = loaded_digests(meta, fl.ref)
        chosen = []
        for path in files:
            if not path.is_file():
                raise ValueError(f"no file {path}")
            digest = content_hash(path)
            if digest in loaded:
                err.print(f"{path}: already loaded by PRCID {loaded[digest]} (same content)")
            else:
                chosen.append((path, digest))
    else:
        chosen = pending_files(fl, meta, settings.dms_home)
    failed = 0
    limit = max_bad_rows(meta)
    for path, digest in chosen:
        result = load_file(fl, path, settings=settings, max_bad_rows=limit, digest=digest)
        out.print(result.line(), highlight=False, soft_wrap=True)
        if result.status != Status.PC:
            failed += 1
            err.print(f"{fl.ref} {path}: {result.message}", highlight=False)
    if not chosen:
        err.print("no pending file")
    if failed:
        raise typer.Exit(1)


# ------------------------------------------------------------ schedule


@schedule_app.command("set")
@_fails_cleanly
def schedule_set(
    mapref: Annotated[str, typer.Argument(help="The mapping to schedule")],
    freq: Annotated[str, typer.Option("--freq", help="YR HY QT MN FN WK DL ID")],
    day: Annotated[str | None, typer.Option("--day", help="FRQDD: MM-DD, day, L, MON..SUN")] = None,
    hour: Annotated[int | None, typer.Option("--hour", min=0, max=23)] = None,
    minute: Annotated[int | None, typer.Option("--minute", min=0, max=59)] = None,
    start: Annotated[datetime | None, typer.Option("--start", formats=["%Y-%m-%d"])] = None,
    end: Annotated[datetime | None, typer.Option("--end", formats=["%Y-%m-%d"])] = None,
    url: UrlOption = None,
):
    """Set MAPREF's clock schedule; prints the DMS_JOBSCH id."""
    from dms_orchestration.metadata.scheduling import create_job_schedule

    engine = _engine(_settings(url))
    out.print(create_job_schedule(engine, mapref, freq, day, hour, minute, start, end))


@schedule_app.command("depend")
@_fails_cleanly
def schedule_depend(
    child: Annotated[str, typer.Argument(help="The mapping that runs after")],
    on: Annotated[str, typer.Option("--on", help="The mapping it runs after")],
    url: UrlOption = None,
):
    """Run CHILD after PARENT's job succeeds; prints the DMS_JOBSCH id."""
    from dms_orchestration.metadata.scheduling import create_job_dependency

    out.print(create_job_dependency(_engine(_settings(url)), child, on))


def _switch(mapref: str, enabled: bool, url: str | None) -> None:
    from dms_orchestration.metadata.scheduling import enable_disable_schedule

    for jobschid in enable_disable_schedule(_engine(_settings(url)), mapref, enabled):
        out.print(jobschid)


@schedule_app.command("enable")
@_fails_cleanly
def schedule_enable(mapref: str, url: UrlOption = None):
    """Switch MAPREF's schedules on; prints their DMS_JOBSCH ids."""
    _switch(mapref, True, url)


@schedule_app.command("disable")
@_fails_cleanly
def schedule_disable(mapref: str, url: UrlOption = None):
    """Switch MAPREF's schedules off (still defined); prints their DMS_JOBSCH ids."""
    _switch(mapref, False, url)


# --------------------------------------------------------------- queue


@queue_app.command("immediate")
@_fails_cleanly
def queue_immediate(
    mapref: str,
    param: Annotated[list[str] | None, typer.Option("--param", help="NAME=VALUE")] = None,
    url: UrlOption = None,
):
    """Ask for a load now; prints the DMS_PRCREQ id."""
    from dms_orchestration.metadata.scheduling import queue_immediate_job

    out.print(queue_immediate_job(_engine(_settings(url)), mapref, _parse_params(param)))


@queue_app.command("history")
@_fails_cleanly
def queue_history(
    mapref: str,
    start: Annotated[datetime, typer.Option("--from", formats=["%Y-%m-%d"])],
    end: Annotated[datetime, typer.Option("--to", formats=["%Y-%m-%d"])],
    url: UrlOption = None,
):
    """Ask for one load per day from --from to --to, oldest first; prints the id."""
    from dms_orchestration.metadata.scheduling import queue_history_job

    out.print(queue_history_job(_engine(_settings(url)), mapref, start.date(), end.date()))


@queue_app.command("stop")
@_fails_cleanly
def queue_stop(
    mapref: Annotated[str | None, typer.Argument(help="Stop this mapping's running runs")] = None,
    request: Annotated[
        int | None, typer.Option("--request", help="Stop this request's run")
    ] = None,
    url: UrlOption = None,
):
    """Ask to stop running loads; prints the DMS_PRCREQ id."""
    from dms_orchestration.metadata.scheduling import queue_stop_request

    out.print(queue_stop_request(_engine(_settings(url)), mapref, request))


# ---------------------------------------------------------------- demo


@app.command("demo")
@_fails_cleanly
def demo(url: UrlOption = None):
    """The demo on the embedded default: create the databases, load the retail metadata,
    validate it, materialize every asset through Dagster, change the source, load again
    (SCD2 versions appear) and print what each load did."""
    from dms_orchestration.defs.demo_run import run_demo
    from dms_orchestration.defs.ui import ui_hint
    from dms_orchestration.demo import load_demo_metadata

    settings = _settings(url)
    load_demo_metadata(settings, out)
    if _validate(settings, None).has_errors:
        raise typer.Exit(1)
    run_demo(settings, out)
    out.print(
        f"\nNext: open the Dagster UI on this data with\n  {ui_hint(settings, url)}\n"
        "and browse to http://127.0.0.1:3000",
        highlight=False,
        soft_wrap=True,
    )


UI_LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


@app.command("ui")
@_fails_cleanly
def ui(
    host: Annotated[str, typer.Option("--host", "-h", help="Address to serve on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", help="Port to serve on.")] = 3000,
    log_level: Annotated[
        str,
        typer.Option(
            "--log-level",
            help="Log level of the webserver and daemon in this terminal (info: the daemon's "
            "line for every sensor tick too); runs and ticks are in the UI whatever it is.",
        ),
    ] = "warning",
    url: UrlOption = None,
):
    """Open the Dagster UI (`dg dev`: webserver, daemon, code server) on the DMS metadata, with
    DAGSTER_HOME = <DMS_HOME>/dagster, the instance `dms demo` used (or DAGSTER_HOME when set).
    Ctrl-C stops it."""
    import os

    from dms_orchestration.defs.ui import missing_metadata_database, ui_command

    if log_level.lower() not in UI_LOG_LEVELS:
        raise ValueError(f"--log-level {log_level!r}: one of {', '.join(UI_LOG_LEVELS)}")
    settings = _settings(url)
    problem = missing_metadata_database(settings)
    if problem:
        raise ValueError(problem)
    command = ui_command(settings, host, port, log_level.lower())
    out.print(
        f"Dagster UI on {command.address} (DAGSTER_HOME={command.cwd}, metadata "
        f"{settings.safe_url}); Ctrl-C stops it",
        highlight=False,
        soft_wrap=True,
    )
    sys.stdout.flush()
    os.chdir(command.cwd)
    os.execve(command.argv[0], command.argv, command.env)


if __name__ == "__main__":  # pragma: no cover
    app()
