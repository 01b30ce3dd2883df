"""Checkpoints: which source rows a load reads, and what it records when it commits.

KEY (and AUTO with CHKPNTCLNM) reads rows whose CHKPNTCLNM is past the last committed
checkpoint, up to the maximum seen at plan time, and records that maximum. PYTHON asks a
registered function for the window. Functions are registered by name, in code or in the
`dms_orchestration.checkpoints` entry point group of an installed package; nothing is
ever executed from a table.

A checkpoint function: `fn(last: str | None, params: dict[str, str | None]) -> (start, end)`,
the window over CHKPNTCLNM (start exclusive, None = from the beginning; end inclusive).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from importlib.metadata import entry_points

import sqlalchemy as sa

from dms_orchestration.db.schema import dms_joblog
from dms_orchestration.vocabulary import Status

ENTRY_POINT_GROUP = "dms_orchestration.checkpoints"

CheckpointFunction = Callable[[str | None, dict[str, str | None]], tuple[object, object]]
_registry: dict[str, CheckpointFunction] = {}


class CheckpointError(ValueError):
    pass


def register_checkpoint_function(name: str) -> Callable[[CheckpointFunction], CheckpointFunction]:
    def decorate(fn: CheckpointFunction) -> CheckpointFunction:
        _registry[name] = fn
        return fn

    return decorate


def checkpoint_function(name: str) -> CheckpointFunction:
    if name in _registry:
        return _registry[name]
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            fn: CheckpointFunction = ep.load()
            return fn
    raise CheckpointError(
        f"no checkpoint function named {name!r}: register it with "
        f"@register_checkpoint_function({name!r}) or in the {ENTRY_POINT_GROUP!r} entry points"
    )


def as_text(value: object) -> str | None:
    """How a checkpoint value is stored (DMS_JOBLOG.CHKPNTVAL) and bound again later."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date | Decimal):
        return str(value)
    return str(value)


def last_checkpoint(meta: sa.Engine, mapref: str) -> str | None:
    """The checkpoint of the mapping's last committed load."""
    j = dms_joblog
    query = (
        sa.select(j.c.chkpntval)
        .where(
            j.c.mapref == mapref,
            j.c.chunkno.is_(None),
            j.c.jobsts == Status.PC,
            j.c.chkpntval.is_not(None),
        )
        .order_by(j.c.joblogid.desc())
        .limit(1)
    )
    with meta.connect() as conn:
        return conn.execute(query).scalar()


@dataclass(frozen=True)
class Window:
    """The slice of the source a load reads: (start, end] over CHKPNTCLNM."""

    start: str | None
    end: str | None
    windowed: bool  # False: no checkpoint, read everything
    bounded: bool = False  # True: `end` limits even a window without a start (PYTHON)

    @property
    def reads_everything(self) -> bool:
        if not self.windowed:
            return True
        return self.start is None and (not self.bounded or self.end is None)

    @property
    def record(self) -> str | None:
        """What the whole-load row records on commit."""
        return self.end if self.end is not None else self.start
