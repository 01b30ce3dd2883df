"""`dms demo`: the retail demo on the embedded default — a source database, the DMS
schema and the demo mappings, loaded from metadata_sql/demo/."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from rich.console import Console
from rich.table import Table

from dms_orchestration.db.connect import metadata_engine
from dms_orchestration.db.ddl import init_schema
from dms_orchestration.metadata.authoring import import_mapping_file
from dms_orchestration.metadata.mapping_file import read_mapping_file
from dms_orchestration.settings import Settings

DEMO_DIR = Path(__file__).resolve().parents[1] / "metadata_sql" / "demo"
SOURCE_DB = "retail.db"  # the RETAIL_SRC connection's DBNM, relative to DMS_HOME
WAREHOUSE_DB = "warehouse.db"  # RETAIL_DW: the target database, empty until the first load


def create_demo_databases(dms_home: Path) -> Path:
    """(Re)create the retail source database from retail_source.sql, and make sure the
    (empty) warehouse database exists. Returns the source's path."""
    path = dms_home / SOURCE_DB
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as conn:
        conn.executescript((DEMO_DIR / "retail_source.sql").read_text())
    sqlite3.connect(dms_home / WAREHOUSE_DB).close()
    return path


def run_demo(settings: Settings, console: Console) -> None:
    console.print(f"DMS_HOME: {settings.dms_home}", highlight=False)
    console.print(f"metadata database: {settings.safe_url}", highlight=False)
    engine = metadata_engine(settings)
    report = init_schema(engine)
    console.print(f"schema: created {len(report.created)} object(s)")
    source = create_demo_databases(settings.dms_home)
    console.print(f"retail source: {source}", highlight=False)
    imported = import_mapping_file(engine, read_mapping_file(DEMO_DIR / "mappings.yaml"))
    table = Table("table", "new", "changed", "unchanged", "retired", title="demo metadata")
    for row in imported.summary():
        table.add_row(*(str(v) for v in row))
    console.print(table)
