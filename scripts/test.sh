#!/usr/bin/env bash
# The whole test suite: lint, types, then pytest (unit, integration, e2e).
# Extra arguments go to pytest, e.g. `scripts/test.sh -k health`.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"

echo "== ruff"
ruff check .
ruff format --check .
echo "== mypy"
mypy
echo "== pytest"
pytest "$@"
