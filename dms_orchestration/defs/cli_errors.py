"""One line, not a traceback, when a Dagster CLI that loaded this code location (`dg launch
--assets`, `dagster asset materialize --select`) is given an asset selection it cannot use.

Those commands load the definitions in their own process and let Dagster's selection error
escape their click command, so Python's default hook prints the whole stack. This hook
prints the error alone; the process still exits 1. Every other exception goes to the hook
that was there before.
"""

from __future__ import annotations

import re
import sys
from types import TracebackType

import dagster as dg

from dms_orchestration.defs.dagster_internals import DagsterInvalidAssetSelectionError

SELECTION_ERRORS = (dg.DagsterInvalidSubsetError, DagsterInvalidAssetSelectionError)

# Dagster's wording for keys that no asset has: "AssetKey(s) ['a/b', 'c'] were selected, ..."
_UNKNOWN_KEYS = re.compile(r"AssetKey\(s\) \[(?P<keys>.*?)\] were selected")


def selection_error_line(error: BaseException) -> str:
    """The one line shown for a selection Dagster refused."""
    text = " ".join(str(error).split())
    unknown = _UNKNOWN_KEYS.search(text)
    if unknown:
        keys = ", ".join(k.strip(" '\"") for k in unknown.group("keys").split(","))
        return f"error: no asset {keys} in this code location (`dg list defs` lists the assets)"
    return f"error: {text}"


def install_selection_error_hook() -> None:
    """Print selection errors that end the process as one line (idempotent)."""
    previous = sys.excepthook
    if getattr(previous, "prints_selection_errors", False):
        return

    def hook(kind: type[BaseException], error: BaseException, tb: TracebackType | None) -> None:
        if isinstance(error, SELECTION_ERRORS):
            print(selection_error_line(error), file=sys.stderr)
        else:
            previous(kind, error, tb)

    hook.prints_selection_errors = True  # type: ignore[attr-defined]
    sys.excepthook = hook
