"""The operations dashboard (the legacy Dashboard module, Dagster-native): the asset
`operations/load_stats`, computed from DMS_PRCLOG / DMS_JOBLOG by the job
`dms_operations_job` every hour (schedule `dms_operations_schedule`, running by default).

Each materialization carries the last `window_hours` (default 24) as numeric metadata,
which Dagster plots over time on the asset's page: loads_per_day, success_rate,
p50_duration_seconds, p95_duration_seconds, rows_per_day, failed_loads; the slowest
mappings as a table. `dms stats` prints the same for any window.
"""

from datetime import timedelta

import dagster as dg

from dms_orchestration.defs.jobs import mapping_job
from dms_orchestration.defs.resources import MetadataDatabase
from dms_orchestration.dmslog.stats import LoadStats, load_stats
from dms_orchestration.settings import dms_now

KEY = dg.AssetKey(["operations", "load_stats"])
JOB = "dms_operations_job"
SCHEDULE = "dms_operations_schedule"
CRON = "0 * * * *"
PLOTTED = {  # metadata key -> the summary figure it plots
    "loads_per_day": "loads_per_day",
    "success_rate": "success_rate",
    "p50_duration_seconds": "p50_seconds",
    "p95_duration_seconds": "p95_seconds",
    "rows_per_day": "rows_per_day",
    "failed_loads": "failed",
    "loads": "loads",
}
SLOWEST_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("mapref", "string"),
        dg.TableColumn("loads", "int"),
        dg.TableColumn("p50_seconds", "float"),
        dg.TableColumn("p95_seconds", "float"),
        dg.TableColumn("max_seconds", "float"),
    ]
)


class StatsWindow(dg.Config):
    window_hours: int = 24  # the loads that started in the last this many hours


def stats_metadata(stats: LoadStats, window_hours: int) -> dict:
    """Numbers Dagster plots (a figure with no loads to tell it is left out, not zero)."""
    summary = stats.summary()
    metadata: dict = {"window_hours": window_hours}
    for key, figure in PLOTTED.items():
        value = summary[figure]
        if value is not None:
            metadata[key] = dg.MetadataValue.float(round(float(value), 4))
    metadata["slowest_mappings"] = dg.MetadataValue.table(
        records=[
            dg.TableRecord(
                {
                    "mapref": ref,
                    "loads": f["loads"],
                    "p50_seconds": round(f["p50_seconds"], 3),
                    "p95_seconds": round(f["p95_seconds"], 3),
                    "max_seconds": round(f["max_seconds"], 3),
                }
            )
            for ref, f in stats.slowest()
        ],
        schema=SLOWEST_SCHEMA,
    )
    return metadata


@dg.asset(
    key=KEY,
    group_name="operations",
    description="Run metrics of the DMS loads (DMS_PRCLOG / DMS_JOBLOG), plotted over time",
    kinds={"dms"},
)
def load_stats_asset(config: StatsWindow, dms_metadata: MetadataDatabase) -> dg.MaterializeResult:
    until = dms_now()
    stats = load_stats(dms_metadata.engine(), until - timedelta(hours=config.window_hours), until)
    return dg.MaterializeResult(metadata=stats_metadata(stats, config.window_hours))


def operations_job():
    return mapping_job(JOB, KEY, description="Compute the operations dashboard", tags={})


def operations_schedule(job, timezone: str) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name=SCHEDULE,
        job=job,
        cron_schedule=CRON,
        execution_timezone=timezone,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="The operations dashboard, every hour",
    )


def operations_definitions(resources: dict, timezone: str) -> dg.Definitions:
    """The dashboard's asset, job and schedule, alone (a run worker's)."""
    job = operations_job()
    return dg.Definitions(
        assets=[load_stats_asset],
        jobs=[job],
        schedules=[operations_schedule(job, timezone)],
        resources=resources,
    )
