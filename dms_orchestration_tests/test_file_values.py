"""The rules of a file's values (engine/file_values.py): `value_check`, prepared once per
column for the Python path's millions of values, answers exactly as `value_problem`."""

from __future__ import annotations

import pytest

from dms_orchestration.engine.file_values import value_check, value_problem
from dms_orchestration.metadata.datatypes import parse_data_type
from dms_orchestration_tests.test_file_copy import LAXER, TAKEN
from dms_orchestration_tests.test_file_loads import VALUES

MORE = {
    "INTEGER": ["0012", "-5", "+5", "999999999", "1234567890", "١٢", "²", " 7", "7 ", "1_000"],
    "BIGINT": ["123456789012345678", "1234567890123456789", "00000000000000000001"],
    "SMALLINT": ["9999", "09999", "32768"],
    "NUMBER(6,2)": ["5.", ".5", "-0.00", "+1.5", "1234.5", "12345.6", "1.2.3", "1e1", "-", ""],
    "NUMBER(2,2)": ["0.5", ".5", "0", "1"],
    "NUMBER(5)": ["12345", "123456", "1.0", "1.5"],
    "NUMBER": ["123456789012345678901234567890.5", "+.5", "١"],
    "FLOAT": ["1", "-1.", "1e-3", " 2 "],
    "DATE": ["2024-02-30", " 2024-01-01", "2024-01-01 ", "20240101", "2024-W01-1"],
    "TIMESTAMP": ["2024-01-02T03:04:05", "2024-01-02 03:04:05.123456+01:00", " 2024-01-02"],
    "BOOLEAN": ["YES", " no", "No", "2", "on"],
    "VARCHAR(3)": ["", "ab", "abcd "],
    "TEXT": ["anything at all"],
}


def _cases():
    for table in (VALUES, LAXER, MORE, {t: [v] for t, v in TAKEN.items()}):
        for type_text, values in table.items():
            for value in values:
                yield type_text, value


@pytest.mark.parametrize("type_text", sorted({t for t, _ in _cases()}))
def test_value_check_answers_as_value_problem_value_for_value(type_text):
    dtype = parse_data_type(type_text)
    check = value_check(dtype)
    for value in (v for t, v in _cases() if t == type_text):
        expected = value_problem(value, dtype)
        assert (check(value) if check else None) == expected, (type_text, value)
    if check is None:  # nothing to check: value_problem takes every value of the type
        assert all(value_problem(v, dtype) is None for t, v in _cases() if t == type_text)
