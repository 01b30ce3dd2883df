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
    job = defs.resolve_implicit_global_asset_job_def()
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


def run_demo(settings: Settings, console: Console) -> None:
    """Two loads of every demo asset through Dagster (metadata already imported)."""
    home = dagster_home(settings)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        console.print(f"DAGSTER_HOME: {home}", highlight=False)
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
