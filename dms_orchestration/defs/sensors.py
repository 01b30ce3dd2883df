"""Sensors: job dependencies (DMS_JOBSCH.DPND_JOBSCHID), the DMS_PRCREQ request queue,
and closing the log rows of runs that failed or were stopped outside a load's code."""

from collections.abc import Mapping, Sequence
from datetime import date

import dagster as dg
import sqlalchemy as sa

from dms_orchestration.db.connect import metadata_engine
from dms_orchestration.defs.alerts import (
    AlertNotSent,
    alert_payload,
    failure_error,
    post_alert,
    run_maprefs,
    webhook_host,
    webhook_url,
)
from dms_orchestration.defs.assets import TAG
from dms_orchestration.defs.dagster_internals import UnresolvedAssetJobDefinition
from dms_orchestration.defs.resources import (
    RESOURCE_KEYS,
    DmsLogWriter,
    MetadataDatabase,
    dms_services,
)
from dms_orchestration.defs.translator import dagster_name
from dms_orchestration.metadata.models import Catalog
from dms_orchestration.metadata.requests import (
    RUN_TYPES,
    Request,
    cancel_queued,
    claim,
    count_retry,
    history_range_error,
    queue_settings,
    requests_in,
    update_request,
)
from dms_orchestration.settings import Settings
from dms_orchestration.vocabulary import RequestStatus, RequestType, Status

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
    enabled: bool = True,
) -> dg.RunStatusSensorDefinition:
    """Runs the child after the parent succeeds; stopped by default when its DMS_JOBSCH
    row is disabled (ENABLEFLG 'N', `dms schedule disable CHILD`), as a clock is."""

    @dg.run_status_sensor(
        name=name or f"{child.name}_after_{parent.name}",
        run_status=dg.DagsterRunStatus.SUCCESS,
        monitored_jobs=[parent],
        request_job=child,
        default_status=RUNNING if enabled else dg.DefaultSensorStatus.STOPPED,
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

# runs that were never handed to a run worker: a launcher cannot terminate them
UNLAUNCHED = (dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED)


def _runs(instance: dg.DagsterInstance, request_id: int) -> list[dg.DagsterRun]:
    return list(instance.get_runs(filters=dg.RunsFilter(tags={f"{TAG}prcreqid": str(request_id)})))


def _never_started(instance: dg.DagsterInstance, run: dg.DagsterRun) -> bool:
    stats = instance.get_run_stats(run.run_id)
    return stats.start_time is None


def _run_request(
    request: Request, mapref: str, attempt: int, day=None, job: str | None = None
) -> dg.RunRequest:
    """The run of a request: its mapping's job (or `job`: a report's), the request's
    params as tags."""
    tags = {f"{TAG}prcreqid": str(request.id), f"{TAG}mapref": mapref}
    params = dict(request.params)
    if day is not None:
        params["PARAM1"] = day.isoformat()  # HISTORY: the day is the load's PARAM1
        tags[f"{TAG}histday"] = day.isoformat()
    for name, value in params.items():
        tags[f"{TAG}{name.lower()}"] = value
    key = f"prcreq-{request.id}-{day.isoformat() if day else 'now'}-{attempt}"
    return dg.RunRequest(run_key=key, job_name=job or job_name(mapref), tags=tags)


class QueueTick:
    """One evaluation of the queue: follows CLAIMED requests, serves NEW ones, and collects
    the runs to launch (the daemon launches them after the tick)."""

    def __init__(
        self,
        context,
        catalog: Catalog,
        job_names: set[str],
        settings: Settings,
        report_jobs: Mapping[str, str] | None = None,
    ) -> None:
        self.engine = metadata_engine(settings)
        self.instance: dg.DagsterInstance = context.instance
        self.catalog, self.job_names = catalog, job_names
        self.report_jobs = dict(report_jobs or {})  # RPRTREF -> its job's name
        self.settings = queue_settings(catalog)
        self.run_requests: list[dg.RunRequest] = []
        self.served: list[str] = []  # what this tick did, for the tick's log

    def evaluate(self) -> list[dg.RunRequest]:
        for request in requests_in(self.engine, RequestStatus.CLAIMED):
            self.follow(request)
        for request in requests_in(self.engine, RequestStatus.NEW):
            if claim(self.engine, request.id):  # else another daemon took it
                self.serve(request, attempt=0)
        return self.run_requests

    def fail(self, request: Request, message: str, status: str = RequestStatus.FAILED) -> None:
        update_request(self.engine, request.id, reqsts=status, errmsg=message)
        self.served.append(f"DMS_PRCREQ {request.id} {status}: {message}")

    def mapref_of(self, request: Request) -> str | None:
        if request.mapref:
            return request.mapref
        return next((j.mapref for j in self.catalog.jobs if j.id == request.job_id), None)

    def launch_report(self, request: Request, attempt: int) -> None:
        rprtref = (request.mapref or "").strip()
        if rprtref not in self.report_jobs:
            self.fail(request, f"REPORT names no current report: MAPREF={request.mapref}")
            return
        job = self.report_jobs[rprtref]
        self.run_requests.append(_run_request(request, rprtref, attempt, job=job))

    def launch(self, request: Request, attempt: int, day=None) -> None:
        if request.kind == RequestType.REPORT:
            self.launch_report(request, attempt)
            return
        mapref = self.mapref_of(request)
        if not mapref or job_name(mapref) not in self.job_names:
            self.fail(request, f"no active job for JOBID={request.job_id} MAPREF={request.mapref}")
            return
        self.run_requests.append(_run_request(request, mapref, attempt, day))

    def serve(self, request: Request, attempt: int) -> None:
        """A request just claimed (attempt 0), or claimed again after its claim went stale."""
        kind = request.kind
        if kind == RequestType.STOP:
            self.stop(request)
        elif kind not in (*RUN_TYPES, RequestType.REPORT):
            self.fail(request, f"request type {request.type!r} is not served here")
        elif kind == RequestType.HISTORY:
            span = request.history_range
            error = (
                history_range_error(*span, self.settings.history_max_days)
                if span
                else "HISTORY needs HSTFRMDT and HSTTODT"
            )
            if error:
                self.fail(request, error)
            else:
                self.launch(request, attempt, span[0])
        else:
            self.launch(request, attempt)

    def follow(self, request: Request) -> None:
        """A CLAIMED request: record its run, retry a launch that failed, close it when done;
        serve it again when its claim went stale with no run (the daemon died in between)."""
        # get_runs is newest first: oldest first, then by day (stable), so the last is the latest
        runs = sorted(
            reversed(_runs(self.instance, request.id)),
            key=lambda r: r.tags.get(f"{TAG}histday", ""),
        )
        if not runs:
            if request.claim_is_stale(self.settings.claim_timeout):
                self.retry(request, "was claimed but no run was launched", day=None)
            return
        last = runs[-1]
        if request.run_id != last.run_id:
            update_request(self.engine, request.id, runid=last.run_id)
        if last.status in ACTIVE:
            return
        if last.status == dg.DagsterRunStatus.FAILURE and _never_started(self.instance, last):
            day = last.tags.get(f"{TAG}histday")
            self.retry(request, f"run {last.run_id} could not be launched", day)
            return
        if last.status != dg.DagsterRunStatus.SUCCESS:
            self.fail(request, f"run {last.run_id} ended {last.status.value}")
            return
        if request.kind == RequestType.HISTORY:
            done = {
                r.tags.get(f"{TAG}histday") for r in runs if r.status == dg.DagsterRunStatus.SUCCESS
            }
            day = next((d for d in request.history_days() if d.isoformat() not in done), None)
            if day is not None:
                self.launch(request, 0, day)  # oldest first, one at a time
                return
        update_request(self.engine, request.id, reqsts=RequestStatus.DONE)
        self.served.append(f"DMS_PRCREQ {request.id} DONE: run {last.run_id} succeeded")

    def retry(self, request: Request, what: str, day: str | None) -> None:
        """Serve again a request whose launch failed (`day` of a HISTORY) or whose claim went
        stale (no run at all): counted in RETRYCNT, DEAD after RETRY_MAX."""
        attempt = request.retry_count or 0
        if attempt + 1 > self.settings.retry_max:
            self.fail(request, f"{what}; gave up after {attempt} retries", status="DEAD")
        elif not count_retry(self.engine, request):
            return  # another daemon counted it and serves it
        elif day is None:
            self.serve(request, attempt + 1)
        else:
            self.launch(request, attempt + 1, date.fromisoformat(day))

    def stop(self, request: Request) -> None:
        """Stop a mapping's (or one request's) work: cancel its IMMEDIATE / HISTORY requests
        queued before the STOP, with their runs, and end its running runs."""
        mapref = self.mapref_of(request)
        job_ids = [j.id for j in self.catalog.jobs if j.mapref == mapref]
        canceled = {str(i) for i in cancel_queued(self.engine, request, mapref, job_ids)}
        # a run this tick was about to ask for must not start either
        self.run_requests = [
            r for r in self.run_requests if r.tags.get(f"{TAG}prcreqid") not in canceled
        ]
        # the runs of the canceled requests are among these: the target's, or the job's
        if request.target_request_id:
            runs = _runs(self.instance, request.target_request_id)
        elif mapref:
            active = dg.RunsFilter(job_name=job_name(mapref), statuses=list(ACTIVE))
            runs = list(self.instance.get_runs(filters=active))
        else:
            runs = []
        ended = [self.end_run(run, request) for run in runs if run.status in ACTIVE]
        nothing = "no running run or queued request matched the STOP request"
        update_request(
            self.engine,
            request.id,
            reqsts=RequestStatus.DONE,
            runid=ended[0] if ended else None,
            errmsg=None if ended or canceled else nothing,
        )
        self.served.append(
            f"DMS_PRCREQ {request.id} STOP: {len(ended)} run(s) ended, "
            f"{len(canceled)} queued request(s) canceled"
        )

    def end_run(self, run: dg.DagsterRun, stop: Request) -> str:
        """Terminate a running run; cancel one still waiting to be launched, as Dagster's
        queued run coordinator does."""
        if run.status in UNLAUNCHED:
            message = f"canceled by DMS_PRCREQ STOP request {stop.id}"
            self.instance.report_run_canceling(run, message=message)
            self.instance.report_run_canceled(run, message=message)
        else:
            self.instance.run_launcher.terminate(run.run_id)
        return run.run_id


def _launch_line(request: dg.RunRequest) -> str:
    day = request.tags.get(f"{TAG}histday")
    what = f"run of {request.job_name}" + (f" for {day}" if day else "")
    return f"DMS_PRCREQ {request.tags[f'{TAG}prcreqid']}: {what}"


def queue_sensor(
    jobs: Sequence[UnresolvedAssetJobDefinition],
    catalog: Catalog,
    report_jobs: Mapping[str, UnresolvedAssetJobDefinition] | None = None,
) -> dg.SensorDefinition:
    """`report_jobs`: the reports' jobs by RPRTREF (REPORT requests run them)."""
    report_jobs = dict(report_jobs or {})
    job_names = {j.name for j in jobs}
    report_names = {ref: job.name for ref, job in report_jobs.items()}

    @dg.sensor(
        name="dms_request_queue",
        jobs=[*jobs, *report_jobs.values()],
        # Dagster's sensor daemon looks every 5 s; a minimum of exactly 5 s skipped every
        # other look (4.99 s after the last tick is too early): a tick every 10 s
        minimum_interval_seconds=QUEUE_INTERVAL_S - 1,
        default_status=RUNNING,
        required_resource_keys=RESOURCE_KEYS,
        description="Serves DMS_PRCREQ: IMMEDIATE, HISTORY, STOP and REPORT requests",
    )
    def dms_request_queue(context: dg.SensorEvaluationContext):
        # an idle tick logs nothing and adds no reason of ours (every 5 s); Dagster still
        # records it as skipped ("Sensor function returned an empty result")
        with dms_services(context.resources) as settings:
            tick = QueueTick(context, catalog, job_names, settings, report_names)
            requests = tick.evaluate()
        for line in [*tick.served, *map(_launch_line, requests)]:
            context.log.info(line)
        return requests

    return dms_request_queue


# ------------------------------------------------------------------ log rows of ended runs


@dg.run_failure_sensor(
    name="dms_close_failed_runs",
    default_status=RUNNING,
    description="DMS_PRCLOG FL for a run that failed outside a load step",
)
def close_failed_runs(
    context: dg.RunFailureSensorContext, dms_metadata: MetadataDatabase, dms_log: DmsLogWriter
):
    dms_log.writer(dms_metadata.engine()).close_run(
        context.dagster_run.run_id, Status.FL, context.failure_event.message or "run failed"
    )


@dg.run_failure_sensor(
    name="dms_alert_failed_runs",
    default_status=RUNNING,
    description="POST a failed run (mapping, run id, error, link) to DMS_ALERT_WEBHOOK, if set",
)
def alert_failed_runs(context: dg.RunFailureSensorContext, dms_metadata: MetadataDatabase):
    url = webhook_url()
    if url is None:
        return  # alerts are off
    run = context.dagster_run
    try:
        maprefs = run_maprefs(dms_metadata.engine(), run)
    except sa.exc.SQLAlchemyError as exc:  # the alert matters more than its mapping name
        context.log.warning(f"the mappings of run {run.run_id} not read: {exc}")
        maprefs = []
    try:
        post_alert(url, alert_payload(run, maprefs, failure_error(context)))
    except AlertNotSent as exc:
        context.log.error(f"run {run.run_id}: {exc}")
    else:
        context.log.info(f"run {run.run_id}: alert sent to {webhook_host(url)}")


@dg.run_status_sensor(
    name="dms_close_stopped_runs",
    run_status=dg.DagsterRunStatus.CANCELED,
    default_status=RUNNING,
    description="DMS_PRCLOG ST for a stopped run",
)
def close_stopped_runs(
    context: dg.RunStatusSensorContext, dms_metadata: MetadataDatabase, dms_log: DmsLogWriter
):
    dms_log.writer(dms_metadata.engine()).close_run(
        context.dagster_run.run_id, Status.ST, "run stopped"
    )
