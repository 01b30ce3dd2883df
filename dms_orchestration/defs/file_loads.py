"""Each current DMS_FLUPLD row as a Dagster asset (files/<flupldref>) partitioned by
landed file: a DynamicPartitionsDefinition with one partition per file content,
`<file name>@<the first 12 hex digits of its SHA-256>`, which the file load's sensor
(RUNNING by default) adds when FLPATH (a glob) shows a new file, or a changed one, and
runs. A file whose content a load already committed (through Dagster or `dms files
load`) gets no partition: it is not loaded again. Materializing a partition loads that
file (engine/file_load.py); its rows, bad rows and where the file went are the
materialization's metadata, and a file that fails fails the run with the reason."""

from __future__ import annotations

import json
import time
from pathlib import Path

import dagster as dg
from pydantic import BaseModel

from dms_orchestration.db.connect import metadata_engine
from dms_orchestration.defs.assets import findings_text
from dms_orchestration.defs.dagster_internals import UnresolvedAssetJobDefinition
from dms_orchestration.defs.jobs import mapping_job
from dms_orchestration.defs.resources import RESOURCE_KEYS, dms_services
from dms_orchestration.defs.run_config import check_run_tags
from dms_orchestration.defs.translator import dagster_name
from dms_orchestration.engine.file_load import (
    content_hash,
    file_load_findings,
    landed_files,
    load_file,
    loaded_digests,
    max_bad_rows,
    target_dialect,
)
from dms_orchestration.metadata.models import Catalog, FileLoad, Finding
from dms_orchestration.vocabulary import Severity, Status

GROUP = "files"
WATCH_EVERY_S = 30
SETTLE_S = 5  # a file changed this recently may still be being written: next tick
_NOT_IN_KEYS = ("...", "\a", "\b", "\f", "\n", "\r", "\t", "\v", "\0")  # (Dagster's rule)


class FileLoadEntry(BaseModel):
    """What the code location calls a file load."""

    key: list[str]
    job: str
    sensor: str
    partitions: str


def file_load_entries(
    catalog: Catalog, keys_taken: set[tuple[str, ...]], names_taken: set[str]
) -> dict[str, FileLoadEntry]:
    """files/<flupldref>, <flupldref>_files (the job) and dms_files_<flupldref> (the
    sensor and the partitions), with _<FLUPLDID> where a name is taken."""
    entries = {}
    for ref, fl in sorted(catalog.file_loads.items()):
        base = dagster_name(ref, "blank")
        key, job = [GROUP, base], f"{base}_files"
        if tuple(key) in keys_taken or job in names_taken:
            base = f"{base}_{fl.id}"
            key, job = [GROUP, base], f"{base}_files"
        keys_taken.add(tuple(key))
        names_taken.add(job)
        entries[ref] = FileLoadEntry(
            key=key, job=job, sensor=f"dms_files_{base}", partitions=f"dms_files_{base}"
        )
    return entries


def _key_name(path: Path) -> str:
    name = path.name
    for text in _NOT_IN_KEYS:
        name = name.replace(text, "_")
    return name


def partition_key(path: Path, digest: str) -> str:
    return f"{_key_name(path)}@{digest[:12]}"


def _landed(fl: FileLoad, key: str, home: Path) -> tuple[Path, str] | None:
    """The landed file of a partition, and its SHA-256 (None: gone, or changed)."""
    name = key.rsplit("@", 1)[0]
    for path in landed_files(fl, home):
        if _key_name(path) == name and partition_key(path, digest := content_hash(path)) == key:
            return path, digest
    return None


def file_load_definitions(
    fl: FileLoad, entry: FileLoadEntry, metadata_backend: str
) -> tuple[dg.AssetsDefinition, UnresolvedAssetJobDefinition, dg.SensorDefinition]:
    """`metadata_backend`: the metadata database's (SQLAlchemy) dialect name."""
    partitions = dg.DynamicPartitionsDefinition(name=entry.partitions)
    asset = file_asset(fl, entry, partitions, metadata_backend)
    job = mapping_job(
        entry.job,
        dg.AssetKey(entry.key),
        description=fl.description or f"Load the landed files of {fl.ref}",
        tags={"dms/flupldref": fl.ref},
    )
    return asset, job, file_sensor(fl, entry, partitions, job)


def file_asset(
    fl: FileLoad,
    entry: FileLoadEntry,
    partitions: dg.DynamicPartitionsDefinition,
    metadata_backend: str,
) -> dg.AssetsDefinition:
    findings = [
        Finding(mapref=fl.ref, severity=Severity.ERROR, message=m)
        for m in file_load_findings(fl, target_dialect(fl, metadata_backend))
    ]
    kind = (fl.file_type or "").strip().lower()

    @dg.asset(
        key=dg.AssetKey(entry.key),
        group_name=GROUP,
        partitions_def=partitions,
        description=fl.description or f"DMS file load {fl.ref}",
        kinds={kind} if kind in ("csv", "xlsx", "json") else None,
        metadata={
            "dms/flupldref": fl.ref,
            "dms/files": fl.path or "",
            "dms/target": ".".join(filter(None, [fl.target_schema, fl.target_table])),
            "dms/load type": fl.load_type or "",
            "dms/findings": dg.MetadataValue.md(findings_text(findings)),
        },
        tags={"dms/flupldref": dagster_name(fl.ref, "blank")},
        required_resource_keys=RESOURCE_KEYS,
    )
    def load_landed_file(context) -> dg.MaterializeResult:  # (no annotation: Dagster reads it)
        check_run_tags(context.run.tags)
        key = context.partition_key
        with dms_services(context.resources) as settings:
            found = _landed(fl, key, settings.dms_home)
            if found is None:
                raise dg.Failure(
                    f"{fl.ref}: no landed file matches partition {key} in {fl.path} "
                    "(moved away, or changed since it landed: a changed file is a new partition)"
                )
            path, digest = found
            meta = metadata_engine(settings)
            done = load_file(
                fl,
                path,
                settings=settings,
                max_bad_rows=max_bad_rows(meta),
                runid=context.run.run_id,
                digest=digest,
            )
        if done.status != Status.PC:
            raise dg.Failure(f"{fl.ref} {path.name}: {done.message}")
        context.log.info(done.line())
        metadata = {
            "dagster/row_count": done.rows,
            "bad rows": done.bad,
            "file": dg.MetadataValue.path(str(path)),
            "sha256": digest,
            "seconds": round(done.seconds, 3),
            "dms/prcid": str(done.prcid),
        }
        if done.archived:
            metadata["archived"] = dg.MetadataValue.path(str(done.archived))
        if done.rejects:
            metadata["rejects"] = dg.MetadataValue.path(str(done.rejects))
        return dg.MaterializeResult(metadata=metadata)

    return load_landed_file


def file_sensor(
    fl: FileLoad,
    entry: FileLoadEntry,
    partitions: dg.DynamicPartitionsDefinition,
    job: UnresolvedAssetJobDefinition,
) -> dg.SensorDefinition:
    @dg.sensor(
        name=entry.sensor,
        job=job,
        minimum_interval_seconds=WATCH_EVERY_S,
        default_status=dg.DefaultSensorStatus.RUNNING,
        required_resource_keys=RESOURCE_KEYS,
        description=f"Watches {fl.path} for {fl.ref}: a partition and a run per new file",
    )
    def watch_landing(context):
        # the cursor keeps each file's size, time and hash: a file is hashed once
        known = json.loads(context.cursor) if context.cursor else {}
        with dms_services(context.resources) as settings:
            loaded = loaded_digests(metadata_engine(settings), fl.ref)
            seen, keys = {}, []
            for path in landed_files(fl, settings.dms_home):
                stat = path.stat()
                if time.time() - stat.st_mtime < SETTLE_S:
                    continue
                was = known.get(str(path))
                same = was is not None and was[:2] == [stat.st_size, stat.st_mtime]
                digest = was[2] if same else content_hash(path)
                seen[str(path)] = [stat.st_size, stat.st_mtime, digest]
                if digest not in loaded:
                    keys.append(partition_key(path, digest))
        existing = set(context.instance.get_dynamic_partitions(partitions.name))
        new = sorted(set(keys) - existing)
        for key in new:
            context.log.info(f"{fl.ref}: landed {key}")
        return dg.SensorResult(
            run_requests=[dg.RunRequest(partition_key=key, run_key=key) for key in new],
            dynamic_partitions_requests=[partitions.build_add_request(new)] if new else [],
            cursor=json.dumps(seen),
        )

    return watch_landing
