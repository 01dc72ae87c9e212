"""Every configuration key, declared once with its default and its environment variable.

`defaults()` reads the environment (`CCM_READY_*`) at app creation; `create_app(test_config)` overrides any
key. No module reads `os.environ` for app settings: it reads `current_app.config[KEY]`, whose default is here.
(Two process-level settings are environment-only because they are read outside any app: `CCM_READY_CHROMIUM`
in web/printing.py and `CCM_READY_SEKMET` in demo/local_fhir.py; both are listed in `ENVIRONMENT_ONLY`.)
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
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
        data: dict[str, Any] = json.load(fh)
    return data


def _words(text: str) -> list[str]:
    return [s for s in text.split() if s]


def _flag(text: str) -> bool:
    return text.strip().lower() in ("1", "true", "yes", "on")


def _json_or_file(text: str) -> Any:
    """Inline JSON, or the path of a JSON file."""
    text = text.strip()
    return json.loads(text if text[:1] in "{[" else Path(text).read_text("utf-8"))


@dataclass(frozen=True)
class Setting:
    key: str
    default: Callable[[], Any]  # called at app creation (so a fresh secret per process, a fresh {} each time)
    env: str | None = None  # CCM_READY_* variable that sets it
    parse: Callable[[str], Any] = str
    doc: str = ""


SETTINGS: tuple[Setting, ...] = (
    # the app
    Setting("SECRET_KEY", lambda: os.urandom(32).hex(), "CCM_READY_SECRET_KEY",
            doc="Flask secret key; set it when more than one process serves the app"),
    Setting("REGISTRATION", load_registration, doc="launch.json (CCM_READY_LAUNCH_JSON names another file)"),
    Setting("DATA_DIR", lambda: str(PROJECT_ROOT / ".ccm-ready"), "CCM_READY_DATA_DIR",
            doc="local state: sessions, outbox, drafts, keys"),
    Setting("TIMEZONE", lambda: "UTC", "CCM_READY_TIMEZONE", doc="the practice's time zone (month edges)"),
    Setting("POLICY", lambda: None, "CCM_READY_POLICY",
            doc="policy pack id; none = the pack in effect for the month evaluated"),
    Setting("BILLING_PRACTITIONER", lambda: None, "CCM_READY_BILLING_PRACTITIONER",
            doc="Practitioner/ID who bills CCM; none = from the consent on file"),
    Setting("FHIR_TIMEOUT", lambda: 10.0, "CCM_READY_FHIR_TIMEOUT", float, "seconds per FHIR request"),
    # SMART launch
    Setting("SMART_ALLOWED_ISSUERS", list, "CCM_READY_ALLOWED_ISSUERS", _words,
            "more issuers on top of launch.json allowed_issuers"),
    Setting("OPEN_SERVERS", list, "CCM_READY_OPEN_SERVERS", _words,
            "more open-mode FHIR bases on top of launch.json open_servers ('*' = any: developer machines)"),
    Setting("SMART_CLIENT_SECRET", lambda: None, "CCM_READY_CLIENT_SECRET",
            doc="secret for client_secret_basic"),
    Setting("SMART_DISCOVERY_OVERRIDES", dict, doc="{iss: smart-configuration} instead of discovery (tests)"),
    Setting("REDIRECT_URI", lambda: None, doc="override the registered callback URL"),
    Setting("POST_LAUNCH_URL", lambda: None, doc="page shown after a launch (default /panel)"),
    # web
    Setting("FRAME_ANCESTORS", lambda: "'self'", "CCM_READY_FRAME_ANCESTORS",
            doc="origins that may frame the app (CSP frame-ancestors); '*' is refused"),
    Setting("SESSION_COOKIE_NAME", lambda: "ccm_ready_sid"),
    Setting("SESSION_COOKIE_SECURE", lambda: None, doc="Secure cookies behind a TLS proxy (None = auto)"),
    Setting("SESSION_DB", lambda: None, doc="sessions database file (default DATA_DIR/sessions.sqlite3)"),
    Setting("SESSION_IDLE_SECONDS", lambda: 8 * 3600, "CCM_READY_SESSION_IDLE_SECONDS", int,
            "idle session lifetime"),
    Setting("CSRF_EXEMPT_BLUEPRINTS", lambda: ("cds_hooks",), doc="blueprints authenticated otherwise (JWT)"),
    Setting("DEMO_MANIFEST", lambda: None, "CCM_READY_DEMO_MANIFEST", doc="the demo's patient list"),
    Setting("FHIR_CLIENT_FACTORY", lambda: None, doc="tests: build FHIR clients (a hand-written fake)"),
    # production: shared state, the server, operations (see README "Run it for a practice")
    Setting("DATABASE_URL", lambda: None, "CCM_READY_DATABASE_URL",
            doc="postgresql://user:pass@host/db: all state in PostgreSQL (needed for more than one instance);"
                " none = SQLite files in DATA_DIR"),
    Setting("DATABASE_POOL_SIZE", lambda: 10, "CCM_READY_DATABASE_POOL_SIZE", int,
            "PostgreSQL connections per process (at least THREADS + 2)"),
    Setting("WORKERS", lambda: 2, "CCM_READY_WORKERS", int, "gunicorn worker processes (ccm-ready serve)"),
    Setting("THREADS", lambda: 8, "CCM_READY_THREADS", int, "threads per gunicorn worker process"),
    Setting("GRACEFUL_TIMEOUT", lambda: 30, "CCM_READY_GRACEFUL_TIMEOUT", int,
            "seconds a stopping worker gets to finish requests and outbox sends in flight"),
    Setting("PROXIES", lambda: 0, "CCM_READY_PROXIES", int,
            "reverse proxies in front: X-Forwarded-* trusted from exactly that many hops (0 = none)"),
    Setting("LOG_FORMAT", lambda: "", "CCM_READY_LOG_FORMAT",
            doc="json | text; empty = json under gunicorn, text with --dev"),
    Setting("LOG_LEVEL", lambda: "INFO", "CCM_READY_LOG_LEVEL", doc="log level"),
    Setting("MAX_CONTENT_LENGTH", lambda: 256 * 1024, "CCM_READY_MAX_CONTENT_LENGTH", int,
            "largest request body, bytes (routes in ROUTE_MAX_CONTENT_LENGTH may differ)"),
    Setting("ROUTE_MAX_CONTENT_LENGTH",
            lambda: {"cds_hooks.call_service": 8 * 1024 * 1024, "payer.remit_upload": 32 * 1024 * 1024},
            doc="{endpoint: bytes}: routes that take larger bodies (a CDS prefetch)"),
    Setting("MAX_JSON_DEPTH", lambda: 64, doc="deepest JSON body accepted (arrays/objects)"),
    Setting("SMART_REQUIRE_ISS_PARAMETER", lambda: False, "CCM_READY_REQUIRE_ISS_PARAMETER", _flag,
            "RFC 9207: require iss on every authorization response, even from servers not advertising it"),
    # capture
    Setting("OUTBOX_DB", lambda: None, doc="outbox database file (default DATA_DIR/outbox.sqlite3)"),
    Setting("OUTBOX_LEASE_SECONDS", lambda: 120.0, "CCM_READY_OUTBOX_LEASE_SECONDS", float,
            "how long a sender holds an item; after it another instance takes the item over"),
    Setting("OUTBOX_WORKER_LOCK", lambda: None, "CCM_READY_OUTBOX_WORKER_LOCK",
            doc="set by ccm-ready serve: lock file electing one outbox worker per instance"),
    Setting("OUTBOX_BACKOFF", lambda: 2.0, "CCM_READY_OUTBOX_BACKOFF", float, "first retry delay, seconds"),
    Setting("OUTBOX_INTERVAL", lambda: 5.0, "CCM_READY_OUTBOX_INTERVAL", float, "worker wake-up, seconds"),
    Setting("OUTBOX_KEEP_SAVED_DAYS", lambda: 7.0, "CCM_READY_OUTBOX_KEEP_SAVED_DAYS", float,
            "how long saved outbox items are kept"),
    Setting("OUTBOX_WORKER", lambda: True, "CCM_READY_OUTBOX_WORKER", _flag, "run the background sender"),
    Setting("LEDGER_DB", lambda: None, "CCM_READY_LEDGER_DB",
            doc="the ledger of captured entries (default DATABASE_URL, else DATA_DIR/ledger.sqlite3)"),
    # program
    Setting("PROGRAM_FHIR_BASE", lambda: None, "CCM_READY_PROGRAM_FHIR_BASE", doc="the practice's FHIR base"),
    Setting("PROGRAM_BULK", lambda: True, "CCM_READY_PROGRAM_BULK", _flag, "prefer bulk $export"),
    Setting("PROGRAM_CLIENT_FACTORY", lambda: None, doc="tests: build the worklist's FHIR client"),
    Setting("PROGRAM_LEADS", list, "CCM_READY_PROGRAM_LEADS", _words,
            "fhirUser references (Practitioner/ID) allowed on the practice page (when not an open server)"),
    Setting("PROGRAM_JOBS_PER_USER", lambda: 1, "CCM_READY_PROGRAM_JOBS_PER_USER", int,
            "worklist jobs one user may have running"),
    Setting("PROGRAM_MAX_RUNNING_JOBS", lambda: 2, "CCM_READY_PROGRAM_MAX_RUNNING_JOBS", int,
            "worklist jobs running at once, all users"),
    Setting("PROGRAM_CLIENT_ID", lambda: None, "CCM_READY_PROGRAM_CLIENT_ID",
            doc="backend-services client id for the practice's population (server side)"),
    Setting("PROGRAM_PRIVATE_KEY", lambda: None, "CCM_READY_PROGRAM_PRIVATE_KEY",
            doc="backend-services private key file (JWK or PEM)"),
    # payer: claim hand-off, remittances, revenue what-if
    Setting("CLAIMS_PLACE_OF_SERVICE", lambda: "11", "CCM_READY_CLAIMS_POS",
            doc="CMS place-of-service code on handed-off claims (the billing location; 11 = office)"),
    Setting("CLAIMS_BILLING_NPI", lambda: "", "CCM_READY_CLAIMS_BILLING_NPI",
            doc="billing (group) NPI on claims; empty = the rendering practitioner bills"),
    Setting("CLAIMS_BILLING_NAME", lambda: "", "CCM_READY_CLAIMS_BILLING_NAME", doc="billing provider name"),
    Setting("CLAIMS_CHARGES", dict, "CCM_READY_CLAIMS_CHARGES", _json_or_file,
            "{code: charge} on claims; default the pack's national amount"),
    Setting("GPCI_LOCALITY", lambda: None, "CCM_READY_GPCI_LOCALITY", _json_or_file,
            '{"locality", "work", "pe", "mp"}: locality-adjusted payments; none = national amounts'),
    Setting("DENIAL_TARGET_RATE", lambda: "5", "CCM_READY_DENIAL_TARGET_RATE",
            doc="target denial rate (percent) for the revenue what-if"),
    # CDS Hooks
    Setting("CDS_CLIENTS", dict, "CCM_READY_CDS_CLIENTS", _json_or_file,
            "{iss: {jwks | jwks_url, fhir_servers}} (inline JSON or a file)"),
    Setting("CDS_SERVICE_URL", lambda: None, "CCM_READY_CDS_SERVICE_URL",
            doc="the public .../cds-services base, the JWT audience; REQUIRED (no calls answered without)"),
    Setting("CDS_UNAUTHENTICATED_FHIR_SERVERS", list,
            doc="FHIR servers an unauthenticated CDS call may fetch from (local testing only)"),
    Setting("CDS_ALLOW_UNAUTHENTICATED", lambda: False, "CCM_READY_CDS_ALLOW_UNAUTHENTICATED", _flag,
            "accept CDS calls without a JWT (local testing only)"),
    Setting("CDS_CLOCK", lambda: None, doc="tests: the CDS service's clock"),
    Setting("CDS_REPLAY_IN_MEMORY", lambda: False,
            doc="keep the jti replay cache in memory (one process only)"),
)
ENVIRONMENT_ONLY: dict[str, str] = {
    "CCM_READY_LAUNCH_JSON": "another launch.json",
    "CCM_READY_CHROMIUM": "the chromium used to print PDFs",
    "CCM_READY_SEKMET": "the sekmet executable the demo starts",
}


def defaults(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Every key with its default, overridden by its CCM_READY_* variable when set."""
    env = os.environ if environ is None else environ
    out: dict[str, Any] = {}
    for s in SETTINGS:
        raw = env.get(s.env) if s.env else None
        out[s.key] = s.parse(raw) if raw not in (None, "") else s.default()
    return out
