#!/usr/bin/env bash
# The README's test command: install what is needed, lint, then run every test tier.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh test
.venv/bin/ruff check .
exec .venv/bin/python -m pytest "$@"
