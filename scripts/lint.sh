#!/usr/bin/env bash
# Lint and type-check (CI runs this before the tests): ruff's rules and format, and mypy,
# strict on engine/ and db/ (pyproject.toml [tool.mypy]).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
