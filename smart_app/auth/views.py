"""Launch blueprint: EHR launch, standalone launch, OAuth callback, open-server mode, logout, JWKS."""

from __future__ import annotations

import logging
import re
import time
from typing import Any
from urllib.parse import urlencode, urlsplit

from flask import Blueprint, current_app, jsonify, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response

from fhir_mapping.read_clinical import human_name
from smart_app.auth import smart as smart_auth
from smart_app.auth.smart import PendingAuthorization, SmartAuthError
from smart_app.context import LaunchContext, LaunchMode
from smart_app.fhir.capabilities import profiles_for
from smart_app.fhir.client import FhirClient, FhirError, FhirNotFound, searchset_resources
from smart_app.web import sessions

log = logging.getLogger(__name__)

bp = Blueprint("launch", __name__)

PENDING_KEY = "smart_pending"
PENDING_MAX = 5  # launches in flight per browser (tabs)
PENDING_TTL = 600.0  # seconds between /launch and /callback
PICKER_LIMIT = 20
_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_MONTH = re.compile(r"\d{4}-(0[1-9]|1[0-2])")


def _after_launch_url(month: str | None = None) -> str:
    """Where a launch lands; with `month` (YYYY-MM, e.g. from a worklist row) the panel opens on it."""
    target = str(current_app.config.get("POST_LAUNCH_URL") or "/panel")
    if month and _MONTH.fullmatch(month) and "?" not in target:
        return f"{target}?{urlencode({'month': month})}"
    return target


@bp.errorhandler(SmartAuthError)
def _auth_error(exc: SmartAuthError) -> tuple[str, int]:
    page = render_template("launch/error.html", title="The app could not start", message=exc.message)
    return page, exc.status


def _redirect_uri() -> str:
    """The registered redirect URI on this request's origin (else the first registered, or config)."""
    configured = current_app.config.get("REDIRECT_URI")
    if configured:
        return str(configured)
    registered = [str(u) for u in (current_app.config.get("REGISTRATION") or {}).get("redirect_uris") or []]
    here = url_for("launch.callback", _external=True)
    origin = urlsplit(here)[:2]
    for uri in registered:
        if urlsplit(uri)[:2] == origin:
            return uri
    if registered:
        return registered[0]
    return here


def _remember(pending: PendingAuthorization) -> None:
    now = time.time()
    current = {
        state: data
        for state, data in (session.get(PENDING_KEY) or {}).items()
        if isinstance(data, dict) and now - float(data.get("created", 0)) < PENDING_TTL
    }
    current[pending.state] = pending.to_json()
    while len(current) > PENDING_MAX:
        current.pop(min(current, key=lambda s: current[s]["created"]))
    session[PENDING_KEY] = current


def _start(iss: str, mode: LaunchMode, launch: str | None) -> Response:
    url, pending = smart_auth.begin(
        iss, mode=mode, launch=launch, redirect_uri=_redirect_uri(), config=current_app.config
    )
    _remember(pending)
    log.info("%s launch: redirecting to the authorization server", mode)
    return redirect(url, code=302)


@bp.get("/launch")
def ehr_launch() -> Response:
    """EHR launch: `?iss=<FHIR base>&launch=<opaque>`; iss is checked against the allow-list first."""
    iss = smart_auth.check_issuer(request.args.get("iss"), current_app.config)
    launch = request.args.get("launch")
    if not launch:
        raise SmartAuthError("The EHR launch has no launch parameter; start the app from the EHR.")
    return _start(iss, "ehr", launch)


@bp.route("/standalone", methods=["GET", "POST"])
def standalone() -> Response | str:
    """Standalone launch: a form asking for the FHIR base URL, then the same OAuth flow."""
    if request.method == "GET" and not request.args.get("iss"):
        issuers = sorted(smart_auth.allowed_issuers(current_app.config))
        return render_template("launch/standalone.html", issuers=issuers)
    raw = request.form.get("iss") if request.method == "POST" else request.args.get("iss")
    iss = smart_auth.check_issuer(raw, current_app.config)
    return _start(iss, "standalone", None)


@bp.get("/callback")
def callback() -> Response | tuple[str, int]:
    """OAuth redirect: state must match a launch begun in THIS browser session (single use)."""
    if request.args.get("error"):
        pending_all = dict(session.get(PENDING_KEY) or {})
        if pending_all.pop(request.args.get("state") or "", None) is not None:
            session[PENDING_KEY] = pending_all
        error = re.sub(r"[^A-Za-z0-9_\-]", "", request.args["error"])[:60]
        # The server's own words help the user (e.g. "user cancelled"); shown as text (the page escapes it).
        described = " ".join(str(request.args.get("error_description") or "").split())[:300]
        detail = f" The server said: \u201c{described}\u201d" if described else ""
        raise SmartAuthError(f"The authorization server did not grant access ({error}).{detail}", 403)
    state = request.args.get("state")
    code = request.args.get("code")
    if not state:
        raise SmartAuthError("The sign-in answer has no state; launch the app again.", 400)
    pending_all = dict(session.get(PENDING_KEY) or {})
    data = pending_all.pop(state, None)
    session[PENDING_KEY] = pending_all  # consumed even on failure: a code is used once
    if not isinstance(data, dict):
        log.warning("callback with an unknown or already used state")
        raise SmartAuthError("This sign-in answer does not belong to a launch in this browser, or it was "
                             "already used. Launch the app again.", 400)
    pending = PendingAuthorization.from_json(data)
    if time.time() - pending.created > PENDING_TTL:
        raise SmartAuthError("The sign-in took too long; launch the app again.", 400)
    pending.check_response_issuer(request.args.get("iss"), current_app.config)  # RFC 9207 (mix-up)
    if not code:
        raise SmartAuthError("The sign-in answer has no code; launch the app again.", 400)
    ctx, oauth = smart_auth.complete(pending, code, current_app.config)
    sessions.start_session(ctx, oauth)
    log.info("%s launch complete", ctx.mode)
    return redirect(_after_launch_url(), code=302)


# --------------------------------------------------------------------------- open-server mode


def _open_client(base: str) -> Any:
    """A FHIR client for an open server: never a token provider, so no Authorization header."""
    return sessions.server_client(LaunchContext(mode="open", fhir_base=base, patient_id=""))


def _search_patients(client: Any, name: str) -> list[dict[str, str]]:
    params = {"name": name, "_count": str(PICKER_LIMIT)}
    if isinstance(client, FhirClient):
        found = searchset_resources(next(iter(client.search_bundles("Patient", params))))
    else:
        found = client.search("Patient", params)
    out = []
    for res in found[:PICKER_LIMIT]:
        if not isinstance(res, dict) or res.get("resourceType") != "Patient":
            continue
        pid = res.get("id")
        if not isinstance(pid, str) or not _FHIR_ID.match(pid):
            continue
        out.append({
            "id": pid,
            "name": human_name(res.get("name")) or "(no name)",
            "birth_date": str(res.get("birthDate") or ""),
            "gender": str(res.get("gender") or ""),
        })
    return out


@bp.route("/open", methods=["GET", "POST"])
def open_mode() -> Response | tuple[str, int] | str:
    """Open-server mode (no OAuth): `?iss=<base>&patient=<id>` starts; otherwise a form and a picker.

    A GET never replaces a signed-in SMART session (a cross-site link could otherwise switch it): it asks,
    and only the confirming POST (with the CSRF token) ends the session and opens the patient.
    """
    config = current_app.config
    servers = smart_auth.open_servers(config)
    raw_iss = (request.values.get("iss") or "").strip()
    patient = (request.values.get("patient") or "").strip()
    month = (request.values.get("month") or "").strip()  # the worklist's month: the panel opens on it
    name = (request.args.get("name") or "").strip()[:100]
    page: dict[str, Any] = {"servers": [s for s in servers if s != "*"], "iss": raw_iss, "name": name,
                            "results": None, "error": None}
    if not raw_iss:
        return render_template("launch/open.html", **page)
    try:
        base = smart_auth.check_open_server(raw_iss, config)
    except SmartAuthError as exc:
        page["error"] = exc.message
        return render_template("launch/open.html", **page), exc.status

    client = _open_client(base)
    if patient:
        if not _FHIR_ID.match(patient):
            page["error"] = "That is not a valid FHIR patient id."
            return render_template("launch/open.html", **page), 400
        try:
            found = client.read("Patient", patient)
        except FhirNotFound:
            page["error"] = "No patient with that id on this server."
            return render_template("launch/open.html", **page), 404
        except FhirError as exc:
            page["error"] = f"The FHIR server could not be read: {exc.message}"
            return render_template("launch/open.html", **page), 502
        if not isinstance(found, dict) or found.get("resourceType") != "Patient":
            page["error"] = "The FHIR server did not return a Patient."
            return render_template("launch/open.html", **page), 502
        current = sessions.current_context()
        if request.method == "GET" and current is not None and current.mode != "open":
            page = render_template("launch/open_confirm.html", iss=base, patient=patient,
                                   after=_after_launch_url(), month=month if _MONTH.fullmatch(month) else "")
            return page, 409
        sessions.start_session(LaunchContext(mode="open", fhir_base=base, patient_id=patient))
        log.info("open-mode session started")
        return redirect(_after_launch_url(month), code=302)
    if name:
        try:
            page["results"] = _search_patients(client, name)
        except FhirError as exc:
            page["error"] = f"The patient search failed: {exc.message}"
            return render_template("launch/open.html", **page), 502
        for row in page["results"]:
            row["href"] = url_for("launch.open_mode") + "?" + urlencode({"iss": base, "patient": row["id"]})
    return render_template("launch/open.html", **page)


# --------------------------------------------------------------------------- logout, JWKS, session summary


@bp.route("/logout", methods=["GET", "POST"])
def logout() -> Response | str:
    """GET shows a confirmation form; POST (with CSRF token) ends the session."""
    if request.method == "GET":
        return render_template("launch/logout.html", done=False)
    sessions.end_session()
    return render_template("launch/logout.html", done=True)  # type: ignore[return-value]


@bp.get("/.well-known/jwks.json")
def jwks() -> Response:
    """The public key for private_key_jwt client authentication."""
    response = jsonify(smart_auth.public_jwks(current_app.config["DATA_DIR"]))
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response


@bp.get("/session")
def session_summary() -> Response:
    """What this session may do (no tokens), after reading its patient through sessions.fhir_client()."""
    ctx = sessions.require_context()
    client = sessions.fhir_client()
    patient = client.read("Patient", ctx.patient_id)
    profiles = profiles_for(current_app.extensions, ctx, client)
    token = ctx.token
    fresh = sessions.current_context_fresh()
    return jsonify({
        "mode": ctx.mode,
        "fhir_base": ctx.fhir_base,
        "patient": ctx.patient_id,
        "patient_found": isinstance(patient, dict) and patient.get("id") == ctx.patient_id,
        "user": ctx.user,
        "encounter": ctx.encounter_id,
        "need_patient_banner": ctx.need_patient_banner,
        "scopes": sorted(ctx.granted_scopes),
        "write_profiles": profiles.to_json(),
        "token_expires_in": None if token is None or fresh is None or fresh.token is None
        else int(fresh.token.expires_at - time.time()),
    })
