"""Report outputs written as rows arrive, a batch at a time: CSV (UTF-8, a header row),
XLSX (a write-only workbook; rows past a sheet's 1,048,576 continue on a new sheet, the
header repeated) and Parquet (one row group per batch). Each writer takes the column
names and an iterator of row batches and returns the number of rows written."""

from __future__ import annotations

import csv
import datetime as dt
import decimal
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from dms_orchestration.vocabulary import ReportFormat

Batches = Iterable[Sequence[Sequence[Any]]]
SHEET_ROWS = 1_048_576  # an Excel sheet's rows, its header row included


class OutputError(ValueError):
    """A value the output format cannot hold, named by column."""


def write_csv(path: Path, columns: Sequence[str], batches: Batches) -> int:
    rows = 0
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(columns)
        for batch in batches:
            out.writerows([_csv_value(v) for v in row] for row in batch)
            rows += len(batch)
    return rows


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat(sep=" ") if isinstance(value, dt.datetime) else value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return value


def write_xlsx(path: Path, columns: Sequence[str], batches: Batches) -> int:
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    sheet, in_sheet, rows = None, SHEET_ROWS, 0
    for batch in batches:
        for row in batch:
            if in_sheet == SHEET_ROWS:  # a new sheet, its header first
                sheet = book.create_sheet(f"Sheet{len(book.worksheets) + 1}")
                sheet.append(list(columns))
                in_sheet = 1
            sheet.append([_xlsx_value(v) for v in row])
            in_sheet += 1
            rows += 1
    if sheet is None:  # no rows: the header alone
        book.create_sheet("Sheet1").append(list(columns))
    book.save(path)
    return rows


def _xlsx_value(value: Any) -> Any:
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    if isinstance(value, str):
        return ILLEGAL_CHARACTERS_RE.sub("", value)  # control characters XML cannot hold
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC).replace(tzinfo=None)  # Excel has no time zones
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return value


def write_parquet(path: Path, columns: Sequence[str], batches: Batches) -> int:
    """The first batch decides each column's type (a column of NULLs only: text; a
    number with a fraction: decimal(38, its largest scale, at least 9)); a later value
    that does not fit that type is an OutputError naming the column."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer, schema, rows = None, None, 0
    try:
        for batch in batches:
            data = list(zip(*batch, strict=True)) if batch else [()] * len(columns)
            if schema is None:
                schema = pa.schema([_field(n, col) for n, col in zip(columns, data, strict=True)])
                writer = pq.ParquetWriter(path, schema)
            arrays = [_array(f, col) for f, col in zip(schema, data, strict=True)]
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
            rows += len(batch)
        if writer is None:  # no rows: the columns alone, as text
            schema = pa.schema([pa.field(name, pa.string()) for name in columns])
            writer = pq.ParquetWriter(path, schema)
            writer.write_table(schema.empty_table())
    finally:
        if writer is not None:
            writer.close()
    return rows


def _field(name: str, values: Sequence[Any]):
    import pyarrow as pa

    scales = [
        -v.as_tuple().exponent
        for v in values
        if isinstance(v, decimal.Decimal) and v.is_finite() and v.as_tuple().exponent < 0
    ]
    if any(isinstance(v, decimal.Decimal) for v in values):
        return pa.field(name, pa.decimal128(38, max([9, *scales])))
    kind = pa.array(values).type
    return pa.field(name, pa.string() if pa.types.is_null(kind) else kind)


def _array(field, values: Sequence[Any]):
    import pyarrow as pa

    try:
        return pa.array(values, type=field.type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
        raise OutputError(
            f"column {field.name}: a value does not fit the column's Parquet type "
            f"{field.type} (taken from its first rows): {exc}"
        ) from None


WRITERS: dict[str, Callable[[Path, Sequence[str], Batches], int]] = {
    ReportFormat.CSV: write_csv,
    ReportFormat.XLSX: write_xlsx,
    ReportFormat.PARQUET: write_parquet,
}
EXTENSIONS: dict[str, str] = {
    ReportFormat.CSV: ".csv",
    ReportFormat.XLSX: ".xlsx",
    ReportFormat.PARQUET: ".parquet",
}
