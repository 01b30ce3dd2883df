"""The catalog a code server read, kept for its run workers in a file named by its content
(<DMS_HOME>/catalogs/<sha256>.json): the reconstruction metadata, which travels with
every run and which Dagster stores with each run's execution plan, then holds only that
name instead of every mapping (1.3 MB at 2,000 mappings, serialized several times per
run). A run worker that cannot read the file (another machine, pruned, damaged) reads the
metadata database instead; a code server that cannot write it leaves the catalog inline.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from pathlib import Path

FOLDER = "catalogs"
KEEP_SECONDS = 7 * 24 * 3600  # a file no code server wrote for a week goes


def _name(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def write_catalog(home: Path, metadata: dict[str, str]) -> str | None:
    """The name of the file that holds `metadata` (written unless it exists); None when
    it cannot be written."""
    text = json.dumps(metadata, sort_keys=True)
    name = _name(text)
    folder = home / FOLDER
    path = folder / f"{name}.json"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if path.exists():
            os.utime(path)  # in use: not pruned
        else:
            partial = folder / f"{name}.{os.getpid()}.part"
            partial.write_text(text)
            os.replace(partial, path)  # whole or not at all, whoever reads it
        _prune(folder, path)
    except OSError:
        return None
    return name


def _prune(folder: Path, kept: Path) -> None:
    old = time.time() - KEEP_SECONDS
    for path in folder.glob("*.json"):
        try:
            if path != kept and path.stat().st_mtime < old:
                path.unlink()
        except OSError:  # another code server pruned it first
            pass


@functools.lru_cache(maxsize=2)
def read_catalog(home: Path, name: str) -> dict[str, str] | None:
    """The metadata the file `name` holds; None when it is missing or not what its name
    says."""
    try:
        text = (home / FOLDER / f"{name}.json").read_text()
    except OSError:
        return None
    return json.loads(text) if _name(text) == name else None
