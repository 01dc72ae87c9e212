"""App configuration: defaults, the launch.json registration, environment overrides."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

PACKAGE_ROOT = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE_ROOT.parent
TEMPLATES = PACKAGE_ROOT / "templates"
DEFAULT_LAUNCH_JSON = PROJECT_ROOT / "launch.json"


def load_registration(path: Path | str | None = None) -> dict[str, Any]:
    """Read launch.json (the SMART client registration)."""
    p = Path(path or os.environ.get("CCM_READY_LAUNCH_JSON") or DEFAULT_LAUNCH_JSON)
    with p.open(encoding="utf-8") as fh:
        return json.load(fh)


def defaults() -> dict[str, Any]:
    """Configuration defaults; every key can be overridden by create_app(test_config) or CCM_READY_* env."""
    return {
        "SECRET_KEY": os.environ.get("CCM_READY_SECRET_KEY") or os.urandom(32).hex(),
        "REGISTRATION": load_registration(),
        "TIMEZONE": os.environ.get("CCM_READY_TIMEZONE", "UTC"),
        # None = the pack in effect for the month evaluated (cms-pfs-2025 for 2025, cms-pfs-2026 after).
        "POLICY": os.environ.get("CCM_READY_POLICY") or None,
        "DATA_DIR": os.environ.get("CCM_READY_DATA_DIR", str(PROJECT_ROOT / ".ccm-ready")),
        # Where an EHR may frame us (CSP frame-ancestors); "*" is not allowed, list origins.
        "FRAME_ANCESTORS": os.environ.get("CCM_READY_FRAME_ANCESTORS", "'self'"),
        # Open-server mode (no OAuth): FHIR bases testers may pick, added to launch.json "open_servers";
        # "*" allows any http(s) base.
        "OPEN_SERVERS": [s for s in os.environ.get("CCM_READY_OPEN_SERVERS", "").split() if s],
        "FHIR_TIMEOUT": float(os.environ.get("CCM_READY_FHIR_TIMEOUT", "10")),
        # Tests may point SMART discovery at a local OAuth server: {iss: {authorization_endpoint, ...}}.
        "SMART_DISCOVERY_OVERRIDES": {},
        "SESSION_COOKIE_NAME": "ccm_ready_sid",
    }
