"""Formatted business ids `PREFIX-AAA0001`, one sequence per prefix, kept in DMS_IDMGR
(LASTID = the last id handed out); ids are handed out under a row lock, never twice."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from dms_orchestration.db.connect import write_transaction
from dms_orchestration.db.schema import dms_idmgr

log = logging.getLogger(__name__)

HEALTH_CHECK_PREFIX = "_HEALTH_CHECK_"
FIRST_SUFFIX = "AAA0001"
MAX_PREFIX_LEN = 20
NUMBER_MAX = 9999
MIN_LETTERS = 3

_PREFIX_RE = re.compile(rf"[A-Za-z0-9_]{{1,{MAX_PREFIX_LEN}}}")
_SUFFIX_RE = re.compile(rf"([A-Z]{{{MIN_LETTERS},}})([0-9]{{4}})")
_ALPHABET = 26

# a row can vanish between our insert and our lock only if someone deletes it meanwhile
# (the health check does, for its own prefix); a few rounds settle that
_MAX_ROUNDS = 5


class FormattedIdError(ValueError):
    """A prefix or formatted id that breaks the rules, or a request that cannot be met."""


def _now() -> datetime:
    # the TS columns are naive: they hold UTC
    return datetime.now(UTC).replace(tzinfo=None)


def _check_prefix_syntax(prefix: object) -> str:
    if not isinstance(prefix, str) or not _PREFIX_RE.fullmatch(prefix):
        raise FormattedIdError(
            f"invalid id prefix {prefix!r}: a prefix is 1 to {MAX_PREFIX_LEN} characters "
            "of A-Z, a-z, 0-9 and _ (no '-', which separates prefix and number)"
        )
    return prefix


def validate_prefix(prefix: str) -> str:
    """Return `prefix` unchanged if it may be used for ids, else raise FormattedIdError."""
    _check_prefix_syntax(prefix)
    if prefix == HEALTH_CHECK_PREFIX:
        raise FormattedIdError(
            f"id prefix {prefix!r} is reserved for the id manager's health check"
        )
    return prefix


def _parse_suffix(suffix: object) -> tuple[str, int] | None:
    """(letters, number) of a suffix like 'ABC0123', or None if it is not one."""
    if not isinstance(suffix, str):
        return None
    m = _SUFFIX_RE.fullmatch(suffix)
    if not m or int(m.group(2)) == 0:
        return None
    return m.group(1), int(m.group(2))


def _require_suffix(suffix: str, what: str) -> tuple[str, int]:
    parsed = _parse_suffix(suffix)
    if parsed is None:
        raise FormattedIdError(
            f"invalid {what} {suffix!r}: expected {MIN_LETTERS} or more upper-case letters "
            "followed by a 4-digit number from 0001 to 9999, e.g. 'ABC0123'"
        )
    return parsed


def _next_letters(letters: str) -> str:
    chars = list(letters)
    for i in range(len(chars) - 1, -1, -1):
        if chars[i] != "Z":
            chars[i] = chr(ord(chars[i]) + 1)
            return "".join(chars)
        chars[i] = "A"
    # every letter was Z: the sequence grows by one letter and starts over at all A
    return "A" * (len(letters) + 1)


def successor(suffix: str) -> str:
    """The suffix after `suffix`: AAA0001 -> AAA0002, AAA9999 -> AAB0001, ZZZ9999 -> AAAA0001."""
    letters, number = _require_suffix(suffix, "id suffix")
    if number < NUMBER_MAX:
        return f"{letters}{number + 1:04d}"
    return f"{_next_letters(letters)}0001"


def _ordinal(letters: str, number: int) -> int:
    """Position of an id in its prefix's sequence: AAA0001 = 1, AAB0001 = 10000."""
    value = 0
    for ch in letters:
        value = value * _ALPHABET + (ord(ch) - ord("A"))
    # the shorter letter runs all come first: 26**3 of 3 letters, then 26**4 of 4, ...
    shorter = sum(_ALPHABET**k for k in range(MIN_LETTERS, len(letters)))
    return (shorter + value) * NUMBER_MAX + number


def _stored_suffix(prefix: str, last_id: str | None) -> tuple[str, int] | None:
    if not isinstance(last_id, str) or not last_id.startswith(f"{prefix}-"):
        return None
    return _parse_suffix(last_id[len(prefix) + 1 :])


def _insert_row(engine: sa.Engine, prefix: str) -> None:
    """Create the prefix's row (LASTID NULL: nothing handed out yet) unless it exists."""
    now = _now()
    try:
        # its own short transaction: when two processes create the same new prefix, one
        # loses on the primary key, and on PostgreSQL that error would spoil a longer one
        with write_transaction(engine) as conn:
            conn.execute(
                sa.insert(dms_idmgr).values(prefix=prefix, lastid=None, reccrdt=now, recupdt=now)
            )
    except sa.exc.IntegrityError:
        pass


def _locked_last_id(conn: sa.Connection, prefix: str) -> tuple[bool, str | None]:
    """(row exists, LASTID) with the row locked until the transaction ends."""
    row = conn.execute(
        sa.select(dms_idmgr.c.lastid).where(dms_idmgr.c.prefix == prefix).with_for_update()
    ).one_or_none()
    return (False, None) if row is None else (True, row.lastid)


def _issue(engine: sa.Engine, prefix: str, n: int, *, discard: bool = False) -> list[str]:
    """Hand out n consecutive ids for `prefix`; `discard` drops the row afterwards."""
    for _ in range(_MAX_ROUNDS):
        # write_transaction: on SQLite the lock is taken at BEGIN, before the read
        with write_transaction(engine) as conn:
            exists, last_id = _locked_last_id(conn, prefix)
            if exists:
                suffix = _start_after(prefix, last_id)
                ids = []
                for _i in range(n):
                    suffix = FIRST_SUFFIX if suffix is None else successor(suffix)
                    ids.append(f"{prefix}-{suffix}")
                where = dms_idmgr.c.prefix == prefix
                if discard:
                    conn.execute(sa.delete(dms_idmgr).where(where))
                else:
                    conn.execute(
                        sa.update(dms_idmgr).where(where).values(lastid=ids[-1], recupdt=_now())
                    )
                return ids
        _insert_row(engine, prefix)
    raise FormattedIdError(
        f"could not hand out ids for prefix {prefix!r}: its DMS_IDMGR row kept disappearing"
    )


def _start_after(prefix: str, last_id: str | None) -> str | None:
    """The suffix to continue from, None to start at AAA0001."""
    if last_id is None:
        return None
    parsed = _stored_suffix(prefix, last_id)
    if parsed is None:
        # a bad value must not stop id generation, but restarting can repeat ids handed
        # out before the value was spoiled: someone has to look, hence the warning
        log.warning(
            "DMS_IDMGR prefix %r has a malformed LASTID %r; restarting its ids at %s-%s",
            prefix,
            last_id,
            prefix,
            FIRST_SUFFIX,
        )
        return None
    return last_id[len(prefix) + 1 :]


def generate_ids(engine: sa.Engine, prefix: str, n: int = 1) -> list[str]:
    """Atomically hand out the next n ids of `prefix`, in order."""
    validate_prefix(prefix)
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise FormattedIdError(f"cannot generate {n!r} ids for prefix {prefix!r}: n must be >= 1")
    return _issue(engine, prefix, n)


def next_formatted_id(engine: sa.Engine, prefix: str) -> str:
    """The next id of `prefix`, e.g. 'CUS-AAA0001'."""
    return generate_ids(engine, prefix, 1)[0]


def reset_prefix(engine: sa.Engine, prefix: str, last_id: str) -> str:
    """Make `last_id` ('PREFIX-ABC0123' or 'ABC0123') the last id handed out for `prefix`,
    so that the next one is its successor. Returns the stored LASTID."""
    validate_prefix(prefix)
    if not isinstance(last_id, str):
        raise FormattedIdError(f"invalid id {last_id!r} for prefix {prefix!r}: not a string")
    suffix = last_id
    if "-" in last_id:
        head, suffix = last_id.split("-", 1)
        if head != prefix:
            raise FormattedIdError(f"id {last_id!r} belongs to prefix {head!r}, not to {prefix!r}")
    if _parse_suffix(suffix) is None:
        raise FormattedIdError(
            f"invalid id {last_id!r} for prefix {prefix!r}: expected 'PREFIX-ABC0123' or "
            f"'ABC0123' ({MIN_LETTERS}+ upper-case letters, then 0001 to 9999)"
        )
    stored = f"{prefix}-{suffix}"
    for _ in range(_MAX_ROUNDS):
        with write_transaction(engine) as conn:
            exists, _old = _locked_last_id(conn, prefix)
            if exists:
                conn.execute(
                    sa.update(dms_idmgr)
                    .where(dms_idmgr.c.prefix == prefix)
                    .values(lastid=stored, recupdt=_now())
                )
                return stored
        _insert_row(engine, prefix)
    raise FormattedIdError(
        f"could not reset prefix {prefix!r}: its DMS_IDMGR row kept disappearing"
    )


def _iso(ts: datetime | None) -> str | None:
    return ts.isoformat() if ts is not None else None


def prefix_statistics(engine: sa.Engine) -> list[dict[str, Any]]:
    """One dict per prefix, sorted by prefix: prefix, last_id, issued, created, updated.

    `issued` is the position of LASTID in the sequence (0 before the first id, None when
    LASTID is malformed)."""
    query = (
        sa.select(dms_idmgr)
        .where(dms_idmgr.c.prefix != HEALTH_CHECK_PREFIX)
        .order_by(dms_idmgr.c.prefix)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    stats = []
    for row in rows:
        if row.lastid is None:
            issued: int | None = 0
        else:
            parsed = _stored_suffix(row.prefix, row.lastid)
            issued = _ordinal(*parsed) if parsed else None
        stats.append(
            {
                "prefix": row.prefix,
                "last_id": row.lastid,
                "issued": issued,
                "created": _iso(row.reccrdt),
                "updated": _iso(row.recupdt),
            }
        )
    return stats


def health_check(engine: sa.Engine) -> dict[str, Any]:
    """Count the prefixes and hand out one id under the reserved prefix (then drop its row).

    Never raises: a database failure comes back as status 'unhealthy' with its message."""
    timestamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    try:
        with engine.connect() as conn:
            prefix_count = conn.execute(
                sa.select(sa.func.count())
                .select_from(dms_idmgr)
                .where(dms_idmgr.c.prefix != HEALTH_CHECK_PREFIX)
            ).scalar_one()
        # the row is deleted in the same transaction that hands out the id, so every
        # check starts afresh and the test id is always the first one
        test_id = _issue(engine, HEALTH_CHECK_PREFIX, 1, discard=True)[0]
    except Exception as exc:  # a health check reports failures, it does not raise them
        log.warning("ID manager health check failed: %s", exc)
        return {
            "status": "unhealthy",
            "message": f"ID manager health check failed: {exc}",
            "prefix_count": None,
            "test_id_generated": None,
            "timestamp": timestamp,
        }
    return {
        "status": "healthy",
        "message": "ID manager is operational",
        "prefix_count": prefix_count,
        "test_id_generated": test_id,
        "timestamp": timestamp,
    }
