"""The load engine: plan -> chunks -> commit, set-based SQL in the databases.
No Dagster here; defs/ wires it into Dagster."""

from dms_orchestration.engine.chunk import ChunkResult, run_chunk
from dms_orchestration.engine.load import LoadResult, commit, load
from dms_orchestration.engine.plan import LoadPlan, plan

__all__ = ["ChunkResult", "LoadPlan", "LoadResult", "commit", "load", "plan", "run_chunk"]
