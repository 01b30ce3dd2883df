#!/usr/bin/env bash
# Run the demo on the embedded default (SQLite files under DMS_HOME, default ./.dms).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/dms demo "$@"
