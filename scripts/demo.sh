#!/usr/bin/env bash
# The README's demo command: install, start a seeded local FHIR server and the app, print the URL.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh app
exec .venv/bin/ccm-ready demo "$@"
