"""Sensors: job dependencies (DMS_JOBSCH.DPND_JOBSCHID), the DMS_PRCREQ request queue,
and closing the log rows of runs that failed or were stopped outside a load's code."""

from collections.abc import Iterator, Mapping, Sequence

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from dms_orchestration.db.connect import metadata_engine
from dms_orchestration.defs.assets import TAG
from dms_orchestration.defs.resources import DmsResource
from dms_orchestration.defs.translator import dagster_name
from dms_orchestration.dmslog.writer import close_run
from dms_orchestration.metadata.models import Catalog
from dms_orchestration.metadata.requests import Request, claim, requests_in, update_request

QUEUE_INTERVAL_S = 5
RUNNING = dg.DefaultSensorStatus.RUNNING
ACTIVE = (
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
)


# MAPREF -> job name in the definitions this process built last (build_definitions sets
# them: the translator names the jobs, and the queue finds a mapping's job by MAPREF)
_job_names: dict[str, str] = {}


def use_job_names(names: Mapping[str, str]) -> None:
    _job_names.clear()
    _job_names.update(names)


def job_name(mapref: str) -> str:
    """The job of a mapping, as the translator named it."""
    return _job_names.get(mapref) or f"{dagster_name(mapref, 'blank')}_job"


def dependency_sensor(
    parent: UnresolvedAssetJobDefinition,
    child: UnresolvedAssetJobDefinition,
    jobschid: int,
    name: str | None = None,
) -> dg.RunStatusSensorDefinition:
    @dg.run_status_sensor(
        name=name or f"{child.name}_after_{parent.name}",
        run_status=dg.DagsterRunStatus.SUCCESS,
        monitored_jobs=[parent],
        request_job=child,
        default_status=RUNNING,
        description=f"Runs {child.name} after {parent.name} succeeds (DMS_JOBSCH {jobschid})",
    )
    def after_parent(context: dg.RunStatusSensorContext):
        return dg.RunRequest(
            run_key=f"after-{context.dagster_run.run_id}", tags={f"{TAG}jobschid": str(jobschid)}
        )

    return after_parent


def dependency_cycles(edges: Mapping[str, set[str]]) -> list[list[str]]:
    """Cycles in child -> parents edges, each as a path [a, b, ..., a]: one per edge that
    closes a cycle, so leaving those edges out leaves none. A loop, not recursion: a
    chain of any length."""
    cycles, state = [], {}
    for root in sorted(edges):
        if root in state:
            continue
        state[root], path, parents = "open", [root], [iter(sorted(edges[root]))]
        while parents:
            parent = next(parents[-1], None)
            if parent is None:
                state[path.pop()] = "done"
                parents.pop()
            elif state.get(parent) == "open":
                cycles.append(path[path.index(parent) :] + [parent])
            elif parent not in state:
                state[parent] = "open"
                path.append(parent)
                parents.append(iter(sorted(edges.get(parent, ()))))
    return cycles


# ------------------------------------------------------------------ request queue


def _mapref_of(request: Request, catalog: Catalog) -> str | None:
    if request.mapref:
        return request.mapref
    for job in catalog.jobs:
        if job.id == request.job_id:
            return job.mapref
    return None


def _runs(instance: dg.DagsterInstance, request_id: int) -> list[dg.DagsterRun]:
    return list(instance.get_runs(filters=dg.RunsFilter(tags={f"{TAG}prcreqid": str(request_id)})))


def _never_started(instance: dg.DagsterInstance, run: dg.DagsterRun) -> bool:
    stats = instance.get_run_stats(run.run_id)
    return stats.start_time is None


def _run_request(request: Request, mapref: str, attempt: int, day=None) -> dg.RunRequest:
    tags = {f"{TAG}prcreqid": str(request.id), f"{TAG}mapref": mapref}
    params = dict(request.params)
    if day is not None:
        params["PARAM1"] = day.isoformat()  # HISTORY: the day is the load's PARAM1
        tags[f"{TAG}histday"] = day.isoformat()
    for name, value in params.items():
        tags[f"{TAG}{name.lower()}"] = value
    key = f"prcreq-{request.id}-{day.isoformat() if day else 'now'}-{attempt}"
    return dg.RunRequest(run_key=key, job_name=job_name(mapref), tags=tags)


def _follow(context, request: Request, mapref: str, retry_max: int) -> Iterator[dg.RunRequest]:
    """A CLAIMED request: record its run, retry a launch that failed, close it when done."""
    engine = metadata_engine(context.resources.dms.settings())
    # get_runs is newest first: oldest first, then by day (stable), so the last is the latest
    runs = sorted(
        reversed(_runs(context.instance, request.id)), key=lambda r: r.tags.get(f"{TAG}histday", "")
    )
    if not runs:
        return
    last = runs[-1]
    if request.run_id != last.run_id:
        update_request(engine, request.id, runid=last.run_id)
    if last.status in ACTIVE:
        return
    attempt = request.retry_count or 0
    day = last.tags.get(f"{TAG}histday")
    if last.status == dg.DagsterRunStatus.FAILURE and _never_started(context.instance, last):
        if attempt + 1 > retry_max:
            update_request(
                engine,
                request.id,
                reqsts="DEAD",
                retrycnt=attempt,
                errmsg=f"run {last.run_id} could not be launched after {attempt} retries",
            )
            return
        update_request(engine, request.id, retrycnt=attempt + 1)
        day_value = next((d for d in request.history_days if d.isoformat() == day), None)
        yield _run_request(request, mapref, attempt + 1, day_value)
        return
    if last.status != dg.DagsterRunStatus.SUCCESS:
        update_request(
            engine,
            request.id,
            reqsts="FAILED",
            errmsg=f"run {last.run_id} ended {last.status.value}",
        )
        return
    if request.type == "HISTORY":
        done = {
            r.tags.get(f"{TAG}histday") for r in runs if r.status == dg.DagsterRunStatus.SUCCESS
        }
        remaining = [d for d in request.history_days if d.isoformat() not in done]
        if remaining:
            yield _run_request(request, mapref, 0, remaining[0])  # oldest first, one at a time
            return
    update_request(engine, request.id, reqsts="DONE")


def _stop(context, request: Request, mapref: str | None, catalog: Catalog) -> None:
    engine = metadata_engine(context.resources.dms.settings())
    instance = context.instance
    if request.target_request_id:
        runs = _runs(instance, request.target_request_id)
    elif mapref:
        runs = list(
            instance.get_runs(
                filters=dg.RunsFilter(job_name=job_name(mapref), statuses=list(ACTIVE))
            )
        )
    else:
        runs = []
    active = [r for r in runs if r.status in ACTIVE]
    for run in active:
        instance.run_launcher.terminate(run.run_id)
    update_request(
        engine,
        request.id,
        reqsts="DONE",
        runid=active[0].run_id if active else None,
        errmsg=None if active else "no running run matched the STOP request",
    )


def queue_sensor(
    jobs: Sequence[UnresolvedAssetJobDefinition], catalog: Catalog
) -> dg.SensorDefinition:
    retry_max = catalog.int_param("RETRY_MAX", 3)
    job_names = {j.name for j in jobs}

    @dg.sensor(
        name="dms_request_queue",
        jobs=list(jobs),
        minimum_interval_seconds=QUEUE_INTERVAL_S,
        default_status=RUNNING,
        required_resource_keys={"dms"},
        description="Serves DMS_PRCREQ: IMMEDIATE, HISTORY and STOP requests",
    )
    def dms_request_queue(context: dg.SensorEvaluationContext):
        engine = metadata_engine(context.resources.dms.settings())
        requests: list[dg.RunRequest] = []
        for request in requests_in(engine, "CLAIMED"):
            mapref = _mapref_of(request, catalog)
            if mapref and request.type in ("IMMEDIATE", "HISTORY"):
                requests += list(_follow(context, request, mapref, retry_max))
        for request in requests_in(engine, "NEW"):
            if not claim(engine, request.id):
                continue  # another daemon took it
            mapref = _mapref_of(request, catalog)
            kind = (request.type or "").upper()
            if kind == "STOP":
                _stop(context, request, mapref, catalog)
            elif kind not in ("IMMEDIATE", "HISTORY"):
                update_request(
                    engine,
                    request.id,
                    reqsts="FAILED",
                    errmsg=f"request type {request.type!r} is not served here",
                )
            elif not mapref or job_name(mapref) not in job_names:
                update_request(
                    engine,
                    request.id,
                    reqsts="FAILED",
                    errmsg=f"no active job for JOBID={request.job_id} MAPREF={request.mapref}",
                )
            elif kind == "HISTORY" and not request.history_days:
                update_request(
                    engine, request.id, reqsts="FAILED", errmsg="HISTORY needs HSTFRMDT <= HSTTODT"
                )
            else:
                days = request.history_days
                requests.append(
                    _run_request(request, mapref, 0, days[0] if kind == "HISTORY" else None)
                )
        return requests or dg.SkipReason("no request to serve")

    return dms_request_queue


# ------------------------------------------------------------------ log rows of ended runs


@dg.run_failure_sensor(
    name="dms_close_failed_runs",
    default_status=RUNNING,
    description="DMS_PRCLOG FL for a run that failed outside a load step",
)
def close_failed_runs(context: dg.RunFailureSensorContext, dms: DmsResource):
    close_run(
        metadata_engine(dms.settings()),
        context.dagster_run.run_id,
        "FL",
        context.failure_event.message or "run failed",
    )


@dg.run_status_sensor(
    name="dms_close_stopped_runs",
    run_status=dg.DagsterRunStatus.CANCELED,
    default_status=RUNNING,
    description="DMS_PRCLOG ST for a stopped run",
)
def close_stopped_runs(context: dg.RunStatusSensorContext, dms: DmsResource):
    close_run(metadata_engine(dms.settings()), context.dagster_run.run_id, "ST", "run stopped")
