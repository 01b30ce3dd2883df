#!/usr/bin/env bash
# Run the whole test suite: SQLite and a real PostgreSQL server that the tests start.
# With no arguments: every test but the e2e ones side by side (pytest-xdist, a worker
# per core), then the e2e tests (real Dagster processes) one at a time. Arguments go to
# one pytest run as they are (e.g. -m "not slow and not e2e": the fast part).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "PostgreSQL server binaries missing: installing Debian's postgresql" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
fi
if [ $# -gt 0 ]; then
  exec .venv/bin/python -m pytest "$@"
fi
.venv/bin/python -m pytest -n auto -m "not e2e"
exec .venv/bin/python -m pytest -m e2e
