"""What a load's materialization shows: Dagster's row count of the target, the load's
counts and timings (numbers, which the UI plots over time) and its ids as text (an id
plotted as a metric means nothing)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dagster as dg

from dms_orchestration.defs.dagster_internals import TableMetadataSet
from dms_orchestration.engine.checks import TableRows, target_rows
from dms_orchestration.engine.errors import describe
from dms_orchestration.engine.load import LoadResult
from dms_orchestration.metadata.models import Mapping
from dms_orchestration.settings import Settings

FULL_EXTRACT = "dms/full extract"  # the load read the whole source extract
CURRENT_ROWS = "current rows"  # the target's current rows after the load


def row_count(mapping: Mapping, settings: Settings, log: dg.DagsterLogManager) -> TableRows | None:
    """The target's rows after the load (`dagster/row_count`: the table's rows, history
    versions included) and its current rows, in one scan; None, with a warning, when
    counting fails: the load is committed by then, so a failed count must not fail its
    step."""
    try:
        return target_rows(mapping, settings)
    except Exception as exc:  # the count is a report: the load itself succeeded
        log.warning(f"{mapping.ref}: the target's rows could not be counted: {describe(exc)}")
        return None


def materialization_metadata(done: LoadResult, rows: TableRows | None) -> dict[str, Any]:
    c = done.counts
    seconds = max(done.seconds, 1e-6)
    return {
        **TableMetadataSet(row_count=rows.rows if rows else None),
        **({CURRENT_ROWS: rows.current} if rows else {}),
        "dms/prcid": dg.MetadataValue.text(str(done.prcid)),
        "source rows": c.srcrows,
        "inserted": c.insrows,
        "updated": c.updrows,
        "expired": c.exprows,
        "deleted": c.delrows,
        "unchanged": c.unchrows,
        "chunks": done.chunk_count,
        "seconds": round(done.seconds, 3),
        "rows per second": round(c.srcrows / seconds, 1),
        "estimated rows": done.estimated_rows,
        "checkpoint": dg.MetadataValue.text(done.checkpoint or ""),
        FULL_EXTRACT: dg.MetadataValue.bool(done.full_extract),
    }


@dataclass(frozen=True)
class Loaded:
    """What the load of the same step found, for its checks: the source keys when it read
    the whole extract (each key once: a duplicate or NULL key fails a load), and the
    target's current rows after its commit; None where it does not tell (no load)."""

    source_keys: int | None = None
    current_rows: int | None = None


def loaded(done: LoadResult, rows: TableRows | None) -> Loaded:
    """What the load `done` tells its checks (`rows`: the target's rows after it)."""
    return Loaded(
        done.counts.srcrows if done.full_extract else None,
        rows.current if rows else None,
    )
