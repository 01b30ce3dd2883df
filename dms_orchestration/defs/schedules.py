"""A Dagster schedule per enabled DMS_JOBSCH row that has a clock (FRQCD), in
DMS_TIMEZONE. Disabled rows are defined but stopped; rows with DPND_JOBSCHID are sensors."""

import dagster as dg

from dms_orchestration.defs.assets import TAG
from dms_orchestration.defs.dagster_internals import UnresolvedAssetJobDefinition
from dms_orchestration.metadata.frequency import clock_for, describe, skip_reason
from dms_orchestration.metadata.models import Schedule


def schedule_definition(
    job: UnresolvedAssetJobDefinition,
    row: Schedule,
    timezone: str,
    name: str | None = None,
    source: str | None = None,
    run_tags: dict[str, str] | None = None,
) -> dg.ScheduleDefinition:
    """Raises FrequencyError for a row whose codes make no clock. `name`: the translator's
    (defs/translator.py), else `<job>_<frq>_<jobschid>`; `source`: the row the clock
    comes from, in the description (default `DMS_JOBSCH <id>`); `run_tags`: its runs'
    (default the JOBSCHID)."""
    clock = clock_for(row)
    run_tags = {f"{TAG}jobschid": str(row.id)} if run_tags is None else run_tags

    @dg.schedule(
        name=name or f"{job.name}_{(row.frequency or '').lower()}_{row.id}",
        cron_schedule=clock.cron,
        job=job,
        execution_timezone=timezone,
        default_status=(
            dg.DefaultScheduleStatus.RUNNING if row.enabled else dg.DefaultScheduleStatus.STOPPED
        ),
        description=f"{source or f'DMS_JOBSCH {row.id}'}: {describe(row)}",
        tags=run_tags,
    )
    def dms_schedule(context: dg.ScheduleEvaluationContext):
        tick = context.scheduled_execution_time
        reason = skip_reason(row, clock, tick.replace(tzinfo=None) if tick else tick)
        if reason:
            return dg.SkipReason(reason)
        return dg.RunRequest(tags=run_tags)

    return dms_schedule
