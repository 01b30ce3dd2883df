"""Whether a Dagster run is still alive, for the load lock: the load of a run that ended
(failed, canceled, its worker gone and marked so) no longer holds its mapping."""

from __future__ import annotations

import os

import dagster as dg


def run_alive(instance: dg.DagsterInstance, runid: str) -> bool | None:
    """True while the run is not finished, False once it is, None: not in this instance."""
    run = instance.get_run_by_id(runid)
    if run is None:
        return None
    return not run.is_finished


def run_alive_here(runid: str) -> bool | None:
    """The same, from outside Dagster (`dms run`): asks the instance of DAGSTER_HOME, if
    one is set; None (cannot tell) otherwise."""
    if not os.environ.get("DAGSTER_HOME"):
        return None
    with dg.DagsterInstance.get() as instance:
        return run_alive(instance, runid)
