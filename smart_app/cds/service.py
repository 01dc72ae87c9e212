"""CDS Hooks 2.0 service `ccm-readiness` (patient-view) and the audit-packet route.

Prefetch first; when it is incomplete, fetch with the client's `fhirServer` + `fhirAuthorization`;
412 when neither is possible. Every call must carry the EHR's signed JWT (see cds_auth), unless
CDS_ALLOW_UNAUTHENTICATED is explicitly set for local testing. Never logs the prefetch or a token.

Config: CDS_CLIENTS {iss: {"jwks": {...}} | {"jwks_url": url}, "fhir_servers": [bases]} (the servers the
service may fetch from for that client; none listed = never fetch), CDS_SERVICE_URL (the public
".../cds-services" base: the JWT audience; REQUIRED, the service refuses calls without it),
CDS_ALLOW_UNAUTHENTICATED with CDS_UNAUTHENTICATED_FHIR_SERVERS (local testing only),
CDS_CLOCK (callable -> aware datetime; tests), TIMEZONE, POLICY, REGISTRATION["launch_url"].
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
from flask import Blueprint, Flask, Response, current_app, jsonify, request

from fhir_mapping.sources import resources_from_json
from smart_app.cds.auth import CdsAuthError, JwksFetcher, ReplayCache, bearer_token, verify
from smart_app.cds.card import build_card, card_names
from smart_app.cds.replay_store import StoredReplayCache
from smart_app.errors import AppError
from smart_app.fhir.client import FhirClient, FhirError, FhirNotFound
from smart_app.readiness.captured import CapturedSource, ledger_of
from smart_app.readiness.fetch import fetch_patient_resources
from smart_app.readiness.options import EvaluationOptions, options_from, system_clock
from smart_app.readiness.use_case import ResourceSource, Source, verdict_for
from smart_app.storage import database_for
from smart_app.web.security import DEFAULT_MAX_JSON_DEPTH

log = logging.getLogger(__name__)

bp = Blueprint("cds_hooks", __name__)

SERVICES: dict[str, Any] = json.loads((Path(__file__).with_name("services.json")).read_text("utf-8"))
SERVICE_ID = "ccm-readiness"
SERVICE: dict[str, Any] = next(s for s in SERVICES["services"] if s["id"] == SERVICE_ID)
CDS_PREFIX = "/cds-services"
_EXT = "ccm_ready_cds"
_ext_lock = threading.Lock()


class CdsError(Exception):
    """A request the service answers with `status` and a clear JSON message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# ------------------------------------------------------------------ app state, CORS


def init_app(app: Flask) -> None:
    """Set up the CDS service (its settings come from smart_app.config, like every other key)."""
    if app.config.get("CDS_ALLOW_UNAUTHENTICATED") is True:
        log.warning("CDS Hooks calls without a JWT are accepted (CDS_ALLOW_UNAUTHENTICATED): testing only")


def _state(app: Flask) -> dict[str, Any]:
    with _ext_lock:
        state = app.extensions.get(_EXT)
        if state is None:
            state = app.extensions[_EXT] = {"replay": _replay_cache(app), "jwks": JwksFetcher()}
        return state


def _replay_cache(app: Flask) -> Any:
    """The jti memory shared by every process and instance (the app's database); in memory if told so."""
    if app.config.get("CDS_REPLAY_IN_MEMORY"):
        return ReplayCache()

    return StoredReplayCache(database_for(app.config, "cds_replay"))


@bp.after_app_request
def _cors(response: Response) -> Response:
    """CORS for the CDS routes only (browser-based CDS clients); never for session pages."""
    if request.path == CDS_PREFIX or request.path.startswith(CDS_PREFIX + "/"):
        response.headers["Access-Control-Allow-Origin"] = "*"
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
        response.headers["Access-Control-Max-Age"] = "600"
    return response


def _preflight() -> Response:
    return Response(status=204)


def _error(status: int, message: str) -> tuple[Response, int]:
    return jsonify({"error": message}), status


# ------------------------------------------------------------------ routes


@bp.route(CDS_PREFIX, methods=["GET", "OPTIONS"], provide_automatic_options=False)
def discovery() -> Any:
    """The discovery document (no PHI, no authentication needed)."""
    if request.method == "OPTIONS":
        return _preflight()
    return jsonify({"services": [_definition()]})


def _definition() -> dict[str, Any]:
    """The service as configured: a billing practitioner named by NPI adds a prefetch template for that
    practitioner, so people named by NPI resolve from the prefetch as they do from the server."""
    who = str(current_app.config.get("BILLING_PRACTITIONER") or "")
    if not who.startswith("Practitioner?identifier="):
        return SERVICE
    return {**SERVICE, "prefetch": {**SERVICE["prefetch"], BILLING_PREFETCH: who}}


@bp.route(f"{CDS_PREFIX}/<service_id>", methods=["POST", "OPTIONS"], provide_automatic_options=False)
def call_service(service_id: str) -> Any:
    """One hook call -> {"cards": [...]} with at most one card."""
    if request.method == "OPTIONS":
        return _preflight()
    if service_id != SERVICE_ID:
        return _error(404, f"no CDS service {service_id!r}; see GET {CDS_PREFIX}")
    try:
        claims = _authenticate()
        body = _validated_body(_json_body())
        resources, source = _resources(body, claims)
        card = _card_for(body["context"]["patientId"], resources, body.get("fhirServer"))
    except CdsError as exc:
        return _error(exc.status, exc.message)
    except CdsAuthError as exc:
        log.info("CDS call refused: %s", exc)
        response, status = _error(401, f"unauthorized: {exc}")
        response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
        return response, status
    log.info("CDS %s answered from %s with %d card(s)", SERVICE_ID, source, 1 if card else 0)
    return jsonify({"cards": [card] if card else []})


# ------------------------------------------------------------------ steps


def _audiences() -> list[str]:
    """The configured service URL (never the request's Host header, which the caller controls)."""
    configured = current_app.config.get("CDS_SERVICE_URL")
    if not isinstance(configured, str) or urlsplit(configured).scheme not in ("http", "https"):
        log.warning("CDS call refused: CDS_SERVICE_URL is not configured")
        raise CdsError(503, "this CDS service is not configured (CDS_SERVICE_URL); it answers no calls")
    base = configured.rstrip("/")
    if base.endswith("/" + SERVICE_ID):
        base = base[: -len(SERVICE_ID) - 1]
    return [base, f"{base}/{SERVICE_ID}"]


def _authenticate() -> dict[str, Any] | None:
    """The verified JWT claims, or None when unauthenticated calls are explicitly allowed."""
    audiences = _audiences()
    header = request.headers.get("Authorization")
    if not header and current_app.config.get("CDS_ALLOW_UNAUTHENTICATED") is True:
        return None
    state = _state(current_app._get_current_object())  # type: ignore[attr-defined]
    return verify(
        bearer_token(header),
        clients=current_app.config.get("CDS_CLIENTS") or {},
        audiences=audiences,
        replay=state["replay"],
        fetch_jwks=state["jwks"],
    )


def _json_body() -> Any:
    """The request's JSON body, or None (not JSON, unreadable, or nested deeper than MAX_JSON_DEPTH).

    Parsed with orjson (a prefetch is tens of kB: several times faster than the stdlib parser; its own
    recursion limit means no RecursionError), then held to the app's depth limit as every JSON body is."""
    if not request.is_json:
        return None
    try:
        value = orjson.loads(request.get_data(cache=True))
    except orjson.JSONDecodeError:
        return None
    limit = int(current_app.config.get("MAX_JSON_DEPTH") or DEFAULT_MAX_JSON_DEPTH)
    return value if _depth_within(value, limit) else None


def _depth_within(value: Any, limit: int) -> bool:
    """True when `value` nests at most `limit` arrays/objects deep (the limit bounds the recursion)."""
    if limit <= 0:
        return not isinstance(value, dict | list)
    children = value.values() if type(value) is dict else value if type(value) is list else None
    if children is None:
        return True
    return all(
        _depth_within(child, limit - 1) for child in children if type(child) is dict or type(child) is list
    )


def _validated_body(body: Any) -> dict[str, Any]:
    """The request body, checked against CDS Hooks 2.0 (400 with a clear message otherwise)."""
    if not isinstance(body, dict):
        raise CdsError(400, "the request body must be a JSON object (Content-Type: application/json)")
    if body.get("hook") != SERVICE["hook"]:
        raise CdsError(400, f"'hook' must be {SERVICE['hook']!r} for this service")
    if not isinstance(body.get("hookInstance"), str) or not body["hookInstance"].strip():
        raise CdsError(400, "'hookInstance' (a UUID string) is required")
    context = body.get("context")
    if not isinstance(context, dict):
        raise CdsError(400, "'context' (an object with patientId) is required")
    pid = context.get("patientId")
    if not isinstance(pid, str) or not pid.strip() or "/" in pid or len(pid) > 255:
        raise CdsError(400, "'context.patientId' must be a bare FHIR id")
    server = body.get("fhirServer")
    if server is not None and (
        not isinstance(server, str) or urlsplit(server).scheme not in ("http", "https")
    ):
        raise CdsError(400, "'fhirServer' must be an http(s) URL")
    auth = body.get("fhirAuthorization")
    if auth is not None:
        if server is None:
            raise CdsError(400, "'fhirAuthorization' requires 'fhirServer'")
        if not isinstance(auth, dict) or not isinstance(auth.get("access_token"), str):
            raise CdsError(400, "'fhirAuthorization.access_token' must be a string")
    if body.get("prefetch") is not None and not isinstance(body["prefetch"], dict):
        raise CdsError(400, "'prefetch' must be an object")
    return body


BILLING_PREFETCH = "billingPractitioner"  # optional: a client that does not send it still gets a card


def prefetch_resources(prefetch: Mapping[str, Any] | None, patient_id: str) -> list[dict[str, Any]] | None:
    """The resources of a complete prefetch, or None when any template was not (fully) answered."""
    if not prefetch:
        return None
    out: list[dict[str, Any]] = []
    for key in [*SERVICE["prefetch"], BILLING_PREFETCH]:
        if key != "patient" and key in prefetch and prefetch[key] is None:
            continue  # CDS Hooks: a null prefetch key means the client has no data for it
        if key == BILLING_PREFETCH and key not in prefetch:
            continue
        value = prefetch.get(key)
        if not isinstance(value, dict) or value.get("resourceType") in (None, "OperationOutcome"):
            return None
        if value["resourceType"] == "Bundle" and any(
            isinstance(link, dict) and link.get("relation") == "next" for link in value.get("link") or ()
        ):
            return None  # a truncated page: fetching is better than evaluating on part of the data
        out.extend(r for r in resources_from_json(value) if isinstance(r, dict))
    patient = prefetch.get("patient")
    if (
        not isinstance(patient, dict)
        or patient.get("resourceType") != "Patient"
        or patient.get("id") != patient_id
    ):
        return None
    return out


def _resources(body: dict[str, Any], claims: dict[str, Any] | None) -> tuple[list[dict[str, Any]], str]:
    pid = body["context"]["patientId"]
    got = prefetch_resources(body.get("prefetch"), pid)
    if got is not None:
        return got, "prefetch"
    server = body.get("fhirServer")
    if not server:
        raise CdsError(
            412,
            "prefetch incomplete and no fhirServer to fetch from: send the prefetch "
            "templates of GET /cds-services, or fhirServer with fhirAuthorization",
        )
    if claims:
        allowed = ((current_app.config.get("CDS_CLIENTS") or {}).get(claims["iss"]) or {}).get("fhir_servers")
    else:
        allowed = current_app.config.get("CDS_UNAUTHENTICATED_FHIR_SERVERS")
    listed = {str(s).rstrip("/") for s in allowed or () if isinstance(s, str)}
    if server.rstrip("/") not in listed:  # an empty list means: never fetch (and never send the token)
        raise CdsError(
            412,
            "prefetch incomplete and fhirServer is not one this CDS client is configured to use "
            "(CDS_CLIENTS fhir_servers); send the prefetch templates of GET /cds-services",
        )
    return _fetch(server, (body.get("fhirAuthorization") or {}).get("access_token"), pid), "fhir"


def _fetch(server: str, token: str | None, patient_id: str) -> list[dict[str, Any]]:
    provider: Callable[[], str | None] | None = (lambda: token) if token else None
    client = FhirClient(
        server, token_provider=provider, timeout=float(current_app.config.get("FHIR_TIMEOUT", 10))
    )
    options = _options()
    try:
        return fetch_patient_resources(
            client, patient_id, options.month, options.tz, options.billing_practitioner
        )
    except FhirNotFound as exc:
        raise CdsError(412, "the patient in context was not found on fhirServer") from exc
    except FhirError as exc:
        log.warning("CDS fetch from the FHIR server failed (HTTP %s)", exc.status)
        raise CdsError(412, "could not read the patient's data from fhirServer; send the prefetch") from exc


def _options() -> EvaluationOptions:
    """The panel's options for this month (configuration + the CDS clock): the same verdict as the panel."""
    clock = current_app.config.get("CDS_CLOCK")
    try:
        return options_from(current_app.config, clock=clock if callable(clock) else system_clock)
    except AppError as exc:
        raise CdsError(500, exc.message) from exc


def _card_for(
    patient_id: str, resources: list[dict[str, Any]], fhir_server: Any = None
) -> dict[str, Any] | None:
    """The card; with `fhirServer` named, what the app captured for this patient there (its notes on the
    EHR, its ledger) counts as on the panel, whatever write profile that EHR allows."""
    options = _options()
    source: Source = ResourceSource(resources)
    if isinstance(fhir_server, str) and fhir_server:
        source = CapturedSource(source, ledger_of(current_app), fhir_server)
    result = verdict_for(source, patient_id, options)
    verdict = result.verdict
    launch_url = current_app.config["REGISTRATION"]["launch_url"]
    origin = urlsplit(launch_url)
    assert options.today is not None
    return build_card(
        verdict,
        launch_url=launch_url,
        today=options.today,
        source_url=f"{origin.scheme}://{origin.netloc}/",
        names=card_names(verdict, result.resources),  # names the prefetch or batch carries: no extra request
    )
