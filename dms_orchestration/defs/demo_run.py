"""`dms demo` through Dagster: materialize every demo asset, change the source, load again
(SCD2 versions appear) and summarize what each load did, from the DMS log tables."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import dagster as dg
from rich.console import Console
from rich.table import Table

from dms_orchestration.db.connect import metadata_engine
from dms_orchestration.demo import change_source
from dms_orchestration.dmslog.reader import load_summaries
from dms_orchestration.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]


def dagster_home(settings: Settings) -> Path:
    """DAGSTER_HOME, or <DMS_HOME>/dagster with the project's dagster.yaml in it."""
    home = Path(os.environ.get("DAGSTER_HOME") or settings.dms_home / "dagster")
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists() and (REPO_ROOT / "dagster.yaml").exists():
        shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    return home


def materialize_all(settings: Settings, instance: dg.DagsterInstance) -> str:
    """Every asset of the code location, in dependency order, as one Dagster run."""
    from dms_orchestration.definitions import definitions

    defs = definitions(settings)
    # every asset but the landed files' (partitioned: a run per file, run by their sensor)
    graph = defs.resolve_asset_graph()
    keys = {key for key in graph.materializable_asset_keys if not graph.get(key).is_partitioned}
    job = defs.resolve_implicit_global_asset_job_def().get_subset(asset_selection=keys)
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    result = job.execute_in_process(
        run_config=quiet, instance=instance, tags={"dms/full": "true"}, raise_on_error=False
    )
    if not result.success:
        failed = [e.step_key for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        raise RuntimeError(
            f"Dagster run {result.run_id} failed in step(s) {', '.join(failed)}; "
            "see DMS_JOBERR and the run's logs"
        )
    return result.run_id


def load_landed_files(settings: Settings, console: Console) -> None:
    """The landed files of every file load, as `dms files load` loads them."""
    from dms_orchestration.engine.file_load import load_file, max_bad_rows, pending_files
    from dms_orchestration.metadata.catalog import load_file_loads

    meta = metadata_engine(settings)
    for fl in load_file_loads(meta).values():
        for path, digest in pending_files(fl, meta, settings.dms_home):
            limit = max_bad_rows(meta)
            done = load_file(fl, path, settings=settings, max_bad_rows=limit, digest=digest)
            console.print(f"landed file: {done.line()}", highlight=False, soft_wrap=True)


def run_demo(settings: Settings, console: Console) -> None:
    """Two loads of every demo asset through Dagster (metadata already imported)."""
    home = dagster_home(settings)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        console.print(f"DAGSTER_HOME: {home}", highlight=False)
        load_landed_files(settings, console)
        first = materialize_all(settings, instance)
        change_source(settings.dms_home)
        second = materialize_all(settings, instance)
    rows = load_summaries(metadata_engine(settings), [first, second])
    table = Table(
        "load",
        "mapping",
        "PRCSTS",
        "chunks",
        "SRC",
        "INS",
        "UPD",
        "EXP",
        "DEL",
        "UNCH",
        title="what each load did (DMS_PRCLOG / DMS_JOBLOG)",
    )
    for r in rows:
        table.add_row(
            "1" if r["runid"] == first else "2",
            r["mapref"],
            r["prcsts"],
            *(
                str(r[k] if r[k] is not None else "")
                for k in (
                    "chunkcnt",
                    "srcrows",
                    "insrows",
                    "updrows",
                    "exprows",
                    "delrows",
                    "unchrows",
                )
            ),
        )
    console.print(table)
