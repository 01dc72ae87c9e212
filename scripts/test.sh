#!/usr/bin/env bash
# The README's test command: install what is needed, lint, type-check the core, then run every test tier
# (the import contracts run inside pytest: tests/unit/test_architecture.py).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh test
.venv/bin/ruff check .
.venv/bin/mypy  # strict on rules/ and fhir_mapping/ ([tool.mypy] in pyproject.toml)
exec .venv/bin/python -m pytest "$@"
