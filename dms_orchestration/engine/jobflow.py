"""DMS_JOBFLW.DWLOGIC: the SQL a mapping's loads run, kept as text for review and audit.
It is written when it changes and never executed from the table."""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa

from dms_orchestration.db.connect import write_transaction
from dms_orchestration.db.dialects import Dialect
from dms_orchestration.db.schema import dms_jobflw
from dms_orchestration.engine import sqlgen
from dms_orchestration.engine.spec import LoadSpec
from dms_orchestration.engine.strategy import LoadStrategy, Staging
from dms_orchestration.ids.provider import next_id
from dms_orchestration.settings import dms_now

if TYPE_CHECKING:
    from dms_orchestration.engine.plan import LoadPlan


def load_sql_text(
    spec: LoadSpec,
    sd: Dialect,
    td: Dialect,
    windowed: bool,
    strategy: LoadStrategy,
    skey_mode: str,
) -> str:
    """The statements of one chunk (a middle one: both key bounds), in order."""
    bounds = sqlgen.ChunkBounds(lower=True, upper=True)
    transform = sqlgen.transform_query(spec, sd, bounds, windowed)
    work = sqlgen.work_table(td, spec, "a", 0, 0)
    staged = sqlgen.work_table(td, spec, "s", 0, 0)
    create = ("target: staging table", sqlgen.create_staging(td, spec, staged))
    if strategy.staging is Staging.IN_PLACE:
        staged, parts = f"({transform})", []
    elif strategy.staging is Staging.STAGED:
        parts = [
            create,
            ("target: stage the transform query", sqlgen.stage(td, spec, staged, transform)),
        ]
    else:
        parts = [("source: transform query, streamed into the staging table", transform), create]
    parts.append(
        (
            "target: classify the keys (work table)",
            sqlgen.classify(td, spec, [(staged, bounds)], work, strategy.full_extract),
        )
    )
    skey = (
        td.next_sequence_value(td.qualified(spec.schema, f"{spec.table}_SEQ"))
        if skey_mode == "SEQUENCE"
        else sqlgen.pool_skey(td, spec)
    )
    parts += [
        (f"target: apply ({name})", stmt)
        for name, stmt in sqlgen.apply_statements(td, spec, work, skey)
    ]
    return "\n\n".join(f"-- {title}\n{stmt};" for title, stmt in parts) + "\n"


def store_load_sql(
    meta: sa.Engine, plan: LoadPlan, spec: LoadSpec, sd: Dialect, td: Dialect
) -> bool:
    """Version DMS_JOBFLW when the load's SQL changed; True when a row was written."""
    text = load_sql_text(
        spec,
        sd,
        td,
        plan.windowed,
        plan.strategy,
        plan.skey_mode,
    )
    f = dms_jobflw
    current = (f.c.mapref == spec.mapref) & (f.c.curflg == "Y")
    with meta.connect() as conn:
        if conn.execute(sa.select(f.c.dwlogic).where(current)).scalar() == text:
            return False
    new_id = next_id(meta, "DMS_JOBFLW")
    with write_transaction(meta) as conn:
        conn.execute(sa.update(f).where(current).values(curflg="N"))
        conn.execute(
            sa.insert(f).values(
                jobflwid=new_id,
                jobid=plan.jobid,
                mapref=spec.mapref,
                dwlogic=text,
                curflg="Y",
                reccrdt=dms_now(),
            )
        )
    return True
