"""Landed files read as records, streamed: CSV (its delimiter, a header row or not,
quoted fields with embedded delimiters and newlines, a UTF-8 BOM), XLSX (the first
sheet, or the one named; Excel dates become dates) and JSON (an array of records, or
JSON Lines). Each record comes with the line (CSV, JSON Lines), row (XLSX) or record
number (a JSON array) it starts on, its values as text (None: empty), by column name
(positions 1, 2, ... for a CSV without a header)."""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from dms_orchestration.vocabulary import FileType, codes

FORMATS = codes(FileType)
CHUNK_CHARS = 1 << 20  # JSON read this many characters at a time


class FileFormatError(ValueError):
    """The file is not what its definition says (a CSV line with too many fields, JSON
    that does not parse), naming the line."""


@dataclass(frozen=True)
class Record:
    line: int
    values: dict[str, str | None]
    problem: str | None = None  # a record that is not one (too many fields, not an object)


def read_records(
    path: Path, file_type: str | None, delimiter: str | None = None, header: bool = True
) -> tuple[list[str], Iterator[Record]]:
    """The file's column names and its records (read as they are iterated). `delimiter`
    (DELIM): a CSV's field delimiter (default ","), an XLSX's sheet (default: the first)."""
    kind = (file_type or "").strip().upper()
    if kind == FileType.CSV:
        return _csv(path, delimiter or ",", header)
    if kind == FileType.XLSX:
        return _xlsx(path, (delimiter or "").strip() or None, header)
    if kind == FileType.JSON:
        return _json(path)
    raise FileFormatError(f"FLTYP {file_type!r} is not one of {', '.join(FORMATS)}")


def as_text(value: Any) -> str | None:
    """A value as the staging table holds it: text, None for empty; dates as ISO dates,
    times of day kept, numbers without exponent."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat(" ")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, float):
        return format(Decimal(repr(value)), "f") if value == value else None  # NaN: empty
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


# ------------------------------------------------------------------ CSV


def csv_delimiter(text: str | None) -> str:
    """DELIM as a CSV delimiter: one character (`\\t` or TAB: a tab); default `,`."""
    delimiter = text or ","
    delimiter = "\t" if delimiter.upper() in ("\\T", "TAB") else delimiter
    if len(delimiter) != 1:
        raise FileFormatError(f"DELIM {text!r} is not one character")
    return delimiter


def _csv(path: Path, delimiter: str, header: bool) -> tuple[list[str], Iterator[Record]]:
    delimiter = csv_delimiter(delimiter)
    f = path.open(newline="", encoding="utf-8-sig")  # (the BOM, if any, is not data)
    reader = csv.reader(f, delimiter=delimiter, strict=True)
    try:
        first = next(reader, None)
    except csv.Error as exc:
        f.close()
        raise FileFormatError(f"line 1: {exc}") from None
    if first is None:
        f.close()
        return [], iter(())
    names = [n.strip() for n in first] if header else [str(i + 1) for i in range(len(first))]
    if header and len(set(names)) != len(names):
        f.close()
        raise FileFormatError(f"line 1: the header names a column twice: {first}")
    return names, _csv_records(f, reader, names, None if header else first)


def _csv_records(f, reader, names: list[str], first: list[str] | None) -> Iterator[Record]:
    with f:
        if first is not None:
            yield _csv_record(1, first, names)
        start = reader.line_num + 1
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise FileFormatError(f"line {start}: {exc}") from None
            if row:  # (a blank line is no record)
                yield _csv_record(start, row, names)
            start = reader.line_num + 1


def _csv_record(line: int, row: list[str], names: list[str]) -> Record:
    if len(row) != len(names):
        return Record(line, {}, f"{len(row)} fields where the header has {len(names)}")
    return Record(line, {n: (v if v != "" else None) for n, v in zip(names, row, strict=True)})


# ------------------------------------------------------------------ XLSX


def _xlsx(path: Path, sheet: str | None, header: bool) -> tuple[list[str], Iterator[Record]]:
    from openpyxl import load_workbook

    book = load_workbook(path, read_only=True, data_only=True)
    if sheet and sheet not in book.sheetnames:
        book.close()
        raise FileFormatError(f"no sheet {sheet!r} (it has {', '.join(book.sheetnames)})")
    rows = (
        book[sheet].iter_rows(values_only=True)
        if sheet
        else book.worksheets[0].iter_rows(values_only=True)
    )
    first = next(rows, None)
    if first is None:
        book.close()
        return [], iter(())
    width = max((i + 1 for i, v in enumerate(first) if v not in (None, "")), default=0)
    names = (
        [as_text(v) or f"column {i + 1}" for i, v in enumerate(first[:width])]
        if header
        else [str(i + 1) for i in range(len(first))]
    )
    return names, _xlsx_records(book, rows, names, None if header else first)


def _xlsx_records(book, rows, names: list[str], first) -> Iterator[Record]:
    try:
        number = 1
        if first is not None:
            yield Record(1, _cells(first, names))
        for number, row in enumerate(rows, start=2):
            if any(v not in (None, "") for v in row):
                yield Record(number, _cells(row, names))
    finally:
        book.close()


def _cells(row, names: list[str]) -> dict[str, str | None]:
    cells = list(row[: len(names)]) + [None] * (len(names) - len(row))
    return {n: as_text(v) for n, v in zip(names, cells, strict=True)}


# ------------------------------------------------------------------ JSON


def _json(path: Path) -> tuple[list[str], Iterator[Record]]:
    """A JSON array of objects, or JSON Lines (an object per line). Column names are
    those of the first record (later records' other keys are ignored, missing ones
    empty)."""
    records = _json_objects(path)
    first = next(records, None)
    if first is None:
        return [], iter(())
    names = list(first.values)

    def all_records() -> Iterator[Record]:
        yield first
        yield from records

    return names, all_records()


def _json_objects(path: Path) -> Iterator[Record]:
    with path.open(encoding="utf-8-sig") as f:
        text, pos = f.read(CHUNK_CHARS), 0
        pos = _skip_space(text, pos)
        if text[pos : pos + 1] == "[":
            yield from _json_array(f, text, pos + 1)
        else:
            f.seek(0)
            yield from _json_lines(f)


def _json_lines(f) -> Iterator[Record]:
    for number, line in enumerate(f, start=1):
        if line.strip():
            yield _json_record(number, _parse(line, number))


def _json_array(f, text: str, pos: int) -> Iterator[Record]:
    decoder, number = json.JSONDecoder(), 0
    while True:
        pos = _skip_space(text, pos)
        while pos >= len(text) - 1 and (more := f.read(CHUNK_CHARS)):
            text, pos = text[pos:] + more, 0
            pos = _skip_space(text, pos)
        if pos >= len(text) or text[pos] == "]":
            return
        if text[pos] == ",":
            pos += 1
            continue
        number += 1
        while True:
            try:
                value, end = decoder.raw_decode(text, pos)
                break
            except json.JSONDecodeError as exc:
                more = f.read(CHUNK_CHARS)
                if not more:
                    raise FileFormatError(f"record {number}: {exc.msg}") from None
                text, pos = text[pos:] + more, 0
        yield _json_record(number, value)
        text, pos = text[end:], 0


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _parse(line: str, number: int):
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise FileFormatError(f"line {number}: {exc.msg}") from None


def _json_record(number: int, value) -> Record:
    if not isinstance(value, dict):
        return Record(number, {}, f"a JSON {type(value).__name__}, not an object")
    return Record(number, {str(k): as_text(v) for k, v in value.items()})
