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


# a landed file of the SALES_TARGETS file load (quoted fields, a BOM, as spreadsheets
# export them)
SALES_TARGETS_CSV = (
    "City;Target;Owner\n"
    'Paris;2500.00;"  Marie Curie "\n'
    'New York;30000;"Hopper; Grace"\n'
    "Rotterdam;1800.50;edsger\n"
    "Manchester;1200;alan\n"
)


def create_demo_databases(dms_home: Path) -> Path:
    """(Re)create the retail source database from retail_source.sql, make sure the
    (empty) warehouse database exists, and land the sales targets file. Returns the
    source's path."""
    path = dms_home / SOURCE_DB
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as conn:
        conn.executescript((DEMO_DIR / "retail_source.sql").read_text())
    sqlite3.connect(dms_home / WAREHOUSE_DB).close()
    landing = dms_home / "landing"
    landing.mkdir(exist_ok=True)
    (landing / "sales_targets_2026.csv").write_text(SALES_TARGETS_CSV, encoding="utf-8-sig")
    return path


def load_demo_metadata(settings: Settings, console: Console) -> None:
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


# what changes in the source between the two loads, so that SCD2 versions appear
SOURCE_CHANGES = """
UPDATE CUSTOMERS SET CITY = 'Paris', UPDATED_AT = '2026-11-10 09:00:00' WHERE CUST_ID = 1;
UPDATE CUSTOMERS SET SEGMENT = 'CORPORATE', UPDATED_AT = '2026-11-10 09:00:00' WHERE CUST_ID = 4;
UPDATE CUSTOMERS SET EMAIL = 'alan.turing@example.com', UPDATED_AT = '2026-11-10 09:00:00'
 WHERE CUST_ID = 2;
DELETE FROM SALES WHERE CUST_ID = 8;
DELETE FROM CUSTOMERS WHERE CUST_ID = 8;
INSERT INTO CUSTOMERS VALUES (9, 'Linus Torvalds', 'linus@example.com', 'Portland', 'RETAIL',
 7000.00, '1969-12-28', 'A', '2026-11-10 09:00:00');
UPDATE PRODUCTS SET UNIT_PRICE = 44.90, UPDATED_AT = '2026-11-10 09:00:00' WHERE PROD_ID = 10;
INSERT INTO SALES VALUES (1016, '2026-11-10 10:00:00', 9, 13, 1, 1199.00);
INSERT INTO SALES VALUES (1017, '2026-11-10 11:30:00', 1, 10, 2, 89.80);
"""


def change_source(dms_home: Path) -> None:
    with sqlite3.connect(dms_home / SOURCE_DB) as conn:
        conn.executescript(SOURCE_CHANGES)
