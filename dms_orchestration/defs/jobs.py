"""A job per mapping with an active DMS_JOB: it materializes the mapping's asset and runs
its checks, in one process (the run worker).

Dagster resolves an asset job (define_asset_job) against the whole code location's asset
graph, and that step walks every AssetsDefinition of the location once per job: with a
job per mapping, loading thousands of mappings grew with the square of their number.
A MappingJob resolves against the part of the graph it can touch instead: its asset, the
checks of that asset and the assets the asset reads (shown in the job as unexecutable
upstream assets, as Dagster does). The job it builds is the same, built in constant time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import dagster as dg

from dms_orchestration.defs.dagster_internals import AssetGraph, UnresolvedAssetJobDefinition

# every parameter of UnresolvedAssetJobDefinition's constructor, each of which MappingJob.of
# copies (test_dagster_internals fails when Dagster's differ)
JOB_FIELDS = (
    "name",
    "selection",
    "config",
    "description",
    "tags",
    "run_tags",
    "metadata",
    "partitions_def",
    "executor_def",
    "hooks",
    "op_retry_policy",
    "owners",
    "automation_condition",
)


class MappingJob(UnresolvedAssetJobDefinition):
    """An asset job (as define_asset_job makes) resolved against the neighbourhood of its
    selected assets in the code location's asset graph, not against the whole graph."""

    @classmethod
    def of(cls, job: UnresolvedAssetJobDefinition, **changes: Any) -> MappingJob:
        """`job` as a MappingJob: every field of it (JOB_FIELDS) copied, those named in
        `changes` replaced."""
        return cls(**{**{name: getattr(job, name) for name in JOB_FIELDS}, **changes})

    def resolve(
        self,
        asset_graph: AssetGraph,
        default_executor_def: dg.ExecutorDefinition | None = None,
        resource_defs: Mapping[str, dg.ResourceDefinition] | None = None,
    ) -> dg.JobDefinition:
        return super().resolve(
            asset_graph=neighbourhood(asset_graph, self.selection.resolve(asset_graph)),
            default_executor_def=default_executor_def,
            resource_defs=resource_defs,
        )


def neighbourhood(asset_graph: AssetGraph, keys: set[dg.AssetKey]) -> AssetGraph:
    """The assets definitions of `keys`, of their checks, and of every asset those read or
    write (what Dagster's job resolution keeps of the whole graph)."""
    defs: dict[int, dg.AssetsDefinition] = {}
    for key in keys:
        node = asset_graph.get(key)
        for entity in (key, *node.check_keys):
            ad = asset_graph.assets_def_for_key(entity)
            defs[id(ad)] = ad
    for ad in list(defs.values()):
        near = {*ad.node_keys_by_input_name.values(), *ad.node_keys_by_output_name.values()}
        for key in near:
            if asset_graph.has(key):
                other = asset_graph.assets_def_for_key(key)
                defs.setdefault(id(other), other)
    return AssetGraph.from_assets(list(defs.values()))


EXECUTOR_VARIABLE = "DMS_EXECUTOR"
EXECUTORS = ("in_process", "multiprocess", "k8s")


def run_executor(env: Mapping[str, str] | None = None) -> dg.ExecutorDefinition:
    """Where a run's steps execute (DMS_EXECUTOR): `in_process` (default: one run worker,
    each load's chunks side by side inside its step), `multiprocess` (a process per
    step), or `k8s` (dagster-k8s' k8s_job_executor: a Kubernetes pod per step, each load's
    chunks side by side in its pod; configure it under `execution:` in the run config,
    deploy/k8s/run-config.yaml)."""
    name = ((os.environ if env is None else env).get(EXECUTOR_VARIABLE) or "in_process").strip()
    if name == "in_process":
        return dg.in_process_executor
    if name == "multiprocess":
        return dg.multiprocess_executor
    if name == "k8s":
        try:
            from dagster_k8s import k8s_job_executor
        except ImportError:
            raise ValueError(
                f"{EXECUTOR_VARIABLE}=k8s needs dagster-k8s: pip install 'dms-orchestration[k8s]'"
            ) from None
        return k8s_job_executor
    raise ValueError(f"{EXECUTOR_VARIABLE}={name!r} is not one of {', '.join(EXECUTORS)}")


def mapping_job(
    name: str, key: dg.AssetKey, description: str, tags: Mapping[str, str]
) -> UnresolvedAssetJobDefinition:
    """define_asset_job(name, selection=AssetSelection.assets(key), ...), resolved cheaply,
    run by run_executor(): by default in its run worker, where its step (the load, whose
    chunks run side by side inside it, then the checks) would pay a process and a
    definitions load otherwise."""
    job = dg.define_asset_job(
        name, selection=dg.AssetSelection.assets(key), description=description, tags=tags
    )
    return MappingJob.of(job, executor_def=run_executor())
