"""SMART launch flow through Flask with a hand-written authorization server behind `responses` (no network).

`FakeAuthServer` and `make_app()` are re-used by tests/unit/test_security.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

import pytest
import responses
from flask import Flask
from flask.testing import FlaskClient
from joserfc import jwt
from joserfc.jwk import RSAKey

from smart_app.auth import smart as smart_auth
from smart_app.config import load_registration
from smart_app.context import LaunchContext, Token
from smart_app.fhir.patient_scope import PatientScopeError
from smart_app.web import sessions
from tests.support import app as support_app
from tests.support.fake_fhir import FakeFhir

ISS = "https://ehr.example.org/fhir"
AUTH = "https://auth.example.org"
PATIENT = "pat-1"
OTHER = "pat-2"
USER = "Practitioner/dr-7"
_SIGNING_KEY = RSAKey.generate_key(2048, parameters={"kid": "as-key-1", "alg": "RS256"}, private=True)


def smart_configuration(**extra: Any) -> dict[str, Any]:
    conf = {
        "issuer": AUTH,
        "authorization_endpoint": f"{AUTH}/authorize",
        "token_endpoint": f"{AUTH}/token",
        "jwks_uri": f"{AUTH}/jwks",
        "code_challenge_methods_supported": ["S256"],
        "capabilities": ["launch-ehr", "launch-standalone", "client-public", "sso-openid-connect",
                         "permission-v2", "permission-offline"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
    }
    conf.update(extra)
    return conf


class FakeAuthServer:
    """Just enough of a SMART authorization server: PKCE-checked codes (single use), refresh, id_token."""

    def __init__(self, rsps: responses.RequestsMock, client_id: str = "ccm-ready") -> None:
        self.client_id = client_id
        self.codes: dict[str, dict[str, str]] = {}
        self.refresh_tokens: set[str] = set()
        self.token_requests: list[dict[str, str]] = []
        self.token_headers: list[dict[str, str]] = []
        self.issued: list[dict[str, Any]] = []
        self.context: dict[str, Any] = {"patient": PATIENT, "encounter": "enc-1",
                                        "need_patient_banner": False,
                                        "smart_style_url": f"{AUTH}/style.json"}
        self.fhir_user = USER
        self.expires_in = 3600
        rsps.add(responses.GET, f"{AUTH}/jwks", json={"keys": [_SIGNING_KEY.as_dict(private=False)]})
        rsps.add_callback(responses.POST, f"{AUTH}/token", callback=self._token)

    def approve(self, authorize_url: str) -> dict[str, str]:
        """What the user's browser brings back to /callback after approving."""
        q = dict(parse_qsl(urlsplit(authorize_url).query))
        code = secrets.token_urlsafe(16)
        self.codes[code] = q
        return {"code": code, "state": q["state"]}

    def _id_token(self, nonce: str | None) -> str:
        now = int(time.time())
        claims = {"iss": AUTH, "sub": "dr-7", "aud": self.client_id, "iat": now, "exp": now + 300,
                  "fhirUser": f"{ISS}/{self.fhir_user}"}
        if nonce:
            claims["nonce"] = nonce
        return jwt.encode({"alg": "RS256", "kid": "as-key-1"}, claims, _SIGNING_KEY)

    def _token(self, request: Any) -> tuple[int, dict[str, str], str]:
        form = dict(parse_qsl(request.body if isinstance(request.body, str) else request.body.decode()))
        self.token_requests.append(form)
        self.token_headers.append(dict(request.headers))
        nonce = None
        if form.get("grant_type") == "authorization_code":
            q = self.codes.pop(form.get("code", ""), None)
            if q is None:
                return 400, {}, json.dumps({"error": "invalid_grant"})
            digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
            if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != q.get("code_challenge"):
                return 400, {}, json.dumps({"error": "invalid_grant", "error_description": "PKCE"})
            if form.get("redirect_uri") != q.get("redirect_uri"):
                return 400, {}, json.dumps({"error": "invalid_grant"})
            nonce = q.get("nonce")
            scope = q.get("scope", "")
        elif form.get("grant_type") == "refresh_token":
            if form.get("refresh_token") not in self.refresh_tokens:
                return 400, {}, json.dumps({"error": "invalid_grant"})
            self.refresh_tokens.discard(form["refresh_token"])
            scope = "patient/*.rs offline_access"
        else:
            return 400, {}, json.dumps({"error": "unsupported_grant_type"})
        body = {
            "access_token": "AT-" + secrets.token_urlsafe(12),
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "scope": scope,
            "refresh_token": "RT-" + secrets.token_urlsafe(12),
            **self.context,
        }
        if nonce:
            body["id_token"] = self._id_token(nonce)
        self.refresh_tokens.add(body["refresh_token"])
        self.issued.append(body)
        return 200, {"Content-Type": "application/json"}, json.dumps(body)


def make_app(tmp: Path, **config: Any) -> Flask:
    registration = dict(load_registration())
    registration["allowed_issuers"] = [ISS]
    registration["redirect_uris"] = ["http://localhost/callback"]
    base: dict[str, Any] = {
        "SECRET_KEY": "test-secret",
        "REGISTRATION": registration,
        "SMART_DISCOVERY_OVERRIDES": {ISS: smart_configuration()},
        "OPEN_SERVERS": [],
    }
    base.update(config)
    return support_app.make_app(tmp, **base)


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def auth(rsps: responses.RequestsMock) -> FakeAuthServer:
    return FakeAuthServer(rsps)


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    return make_app(tmp_path)


def launch(client: FlaskClient, auth: FakeAuthServer) -> dict[str, str]:
    resp = client.get("/launch", query_string={"iss": ISS, "launch": "xyz"})
    assert resp.status_code == 302, resp.get_data(as_text=True)
    return auth.approve(resp.headers["Location"])


def stored_context(app: Flask, client: FlaskClient) -> LaunchContext | None:
    cookie = client.get_cookie(app.config["SESSION_COOKIE_NAME"])
    assert cookie is not None
    loaded = app.extensions["ccm_ready_sessions"].load_context(cookie.value)
    return loaded[0] if loaded else None


# ------------------------------------------------------------------------------------ the happy path


def test_ehr_launch_authorize_url(app: Flask, auth: FakeAuthServer) -> None:
    client = app.test_client()
    resp = client.get("/launch", query_string={"iss": ISS, "launch": "xyz"})
    assert resp.status_code == 302
    url = urlsplit(resp.headers["Location"])
    q = parse_qs(url.query)
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{AUTH}/authorize"
    assert q["response_type"] == ["code"]
    assert q["client_id"] == ["ccm-ready"]
    assert q["aud"] == [ISS]
    assert q["launch"] == ["xyz"]
    assert q["code_challenge_method"] == ["S256"]
    assert len(q["code_challenge"][0]) == 43
    assert len(q["state"][0]) >= 43  # 32 random bytes, base64url: 256 bits
    assert q["redirect_uri"] == ["http://localhost/callback"]
    scopes = q["scope"][0].split()
    assert "launch" in scopes and "patient/Condition.rs" in scopes and "openid" in scopes


def test_callback_starts_a_session_with_the_launch_context(app: Flask, auth: FakeAuthServer) -> None:
    client = app.test_client()
    back = launch(client, auth)
    resp = client.get("/callback", query_string=back)
    assert resp.status_code == 302 and resp.headers["Location"] == "/panel"
    ctx = stored_context(app, client)
    assert ctx is not None and ctx.mode == "ehr"
    assert ctx.patient_id == PATIENT and ctx.encounter_id == "enc-1"
    assert ctx.user == USER  # from the verified id_token's fhirUser
    assert ctx.need_patient_banner is False
    assert ctx.smart_style_url == f"{AUTH}/style.json"
    assert ctx.token is not None and ctx.token.access_token == auth.issued[0]["access_token"]
    assert "patient/Condition.rs" in ctx.granted_scopes
    form = auth.token_requests[0]
    assert form["grant_type"] == "authorization_code" and form["client_id"] == "ccm-ready"
    assert "Authorization" not in auth.token_headers[0]  # public client


def test_no_token_in_the_browser_cookie(app: Flask, auth: FakeAuthServer) -> None:
    client = app.test_client()
    resp = client.get("/callback", query_string=launch(client, auth))
    cookie_header = " ".join(resp.headers.getlist("Set-Cookie"))
    issued = auth.issued[0]
    for secret in (issued["access_token"], issued["refresh_token"], issued["id_token"], PATIENT):
        assert secret not in cookie_header
    cookie = client.get_cookie(app.config["SESSION_COOKIE_NAME"])
    assert cookie is not None and len(cookie.value) == 43  # the random key only


def test_session_key_rotates_at_login(app: Flask, auth: FakeAuthServer) -> None:
    client = app.test_client()
    back = launch(client, auth)
    before = client.get_cookie(app.config["SESSION_COOKIE_NAME"])
    client.get("/callback", query_string=back)
    after = client.get_cookie(app.config["SESSION_COOKIE_NAME"])
    assert before is not None and after is not None and before.value != after.value
    assert app.extensions["ccm_ready_sessions"].load_data(before.value) is None


def test_standalone_launch_uses_launch_patient_scope(app: Flask, auth: FakeAuthServer) -> None:
    client = app.test_client()
    page = client.get("/standalone")
    assert page.status_code == 200 and b'name="csrf_token"' in page.data
    with client.session_transaction() as sess:
        token = sess["csrf"]
    resp = client.post("/standalone", data={"iss": ISS, "csrf_token": token})
    assert resp.status_code == 302
    q = parse_qs(urlsplit(resp.headers["Location"]).query)
    scopes = q["scope"][0].split()
    assert "launch/patient" in scopes and "launch" not in scopes and "launch" not in q
    back = auth.approve(resp.headers["Location"])
    assert client.get("/callback", query_string=back).status_code == 302
    ctx = stored_context(app, client)
    assert ctx is not None and ctx.mode == "standalone" and ctx.patient_id == PATIENT


def test_v1_scopes_when_the_server_only_speaks_v1(tmp_path: Path, auth: FakeAuthServer) -> None:
    conf = smart_configuration(capabilities=["launch-ehr", "permission-v1"])
    app = make_app(tmp_path, SMART_DISCOVERY_OVERRIDES={ISS: conf})
    resp = app.test_client().get("/launch", query_string={"iss": ISS, "launch": "xyz"})
    scope = parse_qs(urlsplit(resp.headers["Location"]).query)["scope"][0]
    assert "patient/*.read" in scope and ".rs" not in scope


# ------------------------------------------------------------------------------------ refusals


def test_iss_not_on_allow_list_is_refused_before_any_network_call(
    app: Flask, rsps: responses.RequestsMock
) -> None:
    client = app.test_client()
    bad = ("https://evil.example.org/fhir", "https://ehr.example.org/fhir/../other", "javascript:alert(1)")
    for iss in bad:
        resp = client.get("/launch", query_string={"iss": iss, "launch": "xyz"})
        assert resp.status_code in (400, 403), iss
    resp = client.get("/launch", query_string={"iss": "https://evil.example.org/fhir", "launch": "xyz"})
    assert resp.status_code == 403 and b"allowed issuers" in resp.data
    assert len(rsps.calls) == 0


def test_discovery_without_s256_is_refused(tmp_path: Path, auth: FakeAuthServer) -> None:
    conf = smart_configuration(code_challenge_methods_supported=["plain"])
    app = make_app(tmp_path, SMART_DISCOVERY_OVERRIDES={ISS: conf})
    resp = app.test_client().get("/launch", query_string={"iss": ISS, "launch": "xyz"})
    assert resp.status_code == 502 and b"S256" in resp.data


def test_discovery_reads_well_known_then_capability_statement(rsps: responses.RequestsMock) -> None:
    config = {"SMART_DISCOVERY_OVERRIDES": {}}
    rsps.add(responses.GET, f"{ISS}/.well-known/smart-configuration", json=smart_configuration())
    assert smart_auth.discover(ISS, config).token_endpoint == f"{AUTH}/token"
    rsps.replace(responses.GET, f"{ISS}/.well-known/smart-configuration", status=404)
    rsps.add(responses.GET, f"{ISS}/metadata", json={"resourceType": "CapabilityStatement", "rest": [{
        "security": {"extension": [{"url": smart_auth.OAUTH_URIS, "extension": [
            {"url": "authorize", "valueUri": f"{AUTH}/auth2"},
            {"url": "token", "valueUri": f"{AUTH}/tok2"}]}]}}]})
    conf = smart_auth.discover(ISS, config)
    assert (conf.authorization_endpoint, conf.token_endpoint, conf.source) == (
        f"{AUTH}/auth2", f"{AUTH}/tok2", "capability-statement")


def test_plain_http_endpoints_are_refused_unless_loopback() -> None:
    with pytest.raises(smart_auth.SmartAuthError):
        smart_auth.SmartConfiguration.from_json(
            smart_configuration(token_endpoint="http://auth.example.org/token"), "override")
    conf = smart_auth.SmartConfiguration.from_json(
        smart_configuration(token_endpoint="http://127.0.0.1:9/token"), "override")
    assert conf.token_endpoint == "http://127.0.0.1:9/token"


def test_wrong_state_is_rejected(app: Flask, auth: FakeAuthServer) -> None:
    client = app.test_client()
    back = launch(client, auth)
    resp = client.get("/callback", query_string={"code": back["code"], "state": "forged" + back["state"]})
    assert resp.status_code == 400
    assert client.get("/callback", query_string={"code": back["code"]}).status_code == 400
    assert not auth.token_requests  # nothing was exchanged
    assert stored_context(app, client) is None


def test_state_is_bound_to_the_browser_that_started(app: Flask, auth: FakeAuthServer) -> None:
    back = launch(app.test_client(), auth)
    other_browser = app.test_client()
    assert other_browser.get("/callback", query_string=back).status_code == 400
    assert not auth.token_requests


def test_replayed_code_is_rejected(app: Flask, auth: FakeAuthServer) -> None:
    client = app.test_client()
    back = launch(client, auth)
    assert client.get("/callback", query_string=back).status_code == 302
    again = client.get("/callback", query_string=back)
    assert again.status_code == 400
    assert len(auth.token_requests) == 1


def test_authorization_error_is_shown(app: Flask, auth: FakeAuthServer) -> None:
    client = app.test_client()
    back = launch(client, auth)
    resp = client.get("/callback", query_string={"error": "access_denied<script>", "state": back["state"]})
    assert resp.status_code == 403 and b"access_denied" in resp.data and b"<script>" not in resp.data


def test_bad_id_token_fails_the_launch(app: Flask, auth: FakeAuthServer) -> None:
    client = app.test_client()
    back = launch(client, auth)
    auth.client_id = "someone-else"  # id_token aud no longer matches our client_id
    resp = client.get("/callback", query_string=back)
    assert resp.status_code == 502 and b"id_token" in resp.data
    assert stored_context(app, client) is None


def test_token_without_patient_fails_the_launch(app: Flask, auth: FakeAuthServer) -> None:
    client = app.test_client()
    auth.context = {}
    resp = client.get("/callback", query_string=launch(client, auth))
    assert resp.status_code == 502 and b"patient" in resp.data


# ------------------------------------------------------------------------------------ tokens in use


def test_refresh_before_expiry_and_bearer_sent(
    app: Flask, auth: FakeAuthServer, rsps: responses.RequestsMock
) -> None:
    client = app.test_client()
    client.get("/callback", query_string=launch(client, auth))
    rsps.add(responses.GET, f"{ISS}/Patient/{PATIENT}", json={"resourceType": "Patient", "id": PATIENT})
    summary = client.get("/session")
    assert summary.status_code == 200 and summary.json["patient_found"] is True
    assert summary.json["user"] == USER
    fhir_calls = [c for c in rsps.calls if c.request.url.startswith(ISS)]
    assert fhir_calls[-1].request.headers["Authorization"] == f"Bearer {auth.issued[0]['access_token']}"

    # Force expiry: the next FHIR call must refresh first.
    cookie = client.get_cookie(app.config["SESSION_COOKIE_NAME"])
    assert cookie is not None
    store = app.extensions["ccm_ready_sessions"]
    ctx, oauth = store.load_context(cookie.value)
    assert ctx.token is not None
    store.set_context(cookie.value, ctx.with_token(Token(ctx.token.access_token, time.time() - 5,
                                                         ctx.token.refresh_token, ctx.token.scope)), oauth)
    assert client.get("/session").status_code == 200
    assert auth.token_requests[-1]["grant_type"] == "refresh_token"
    assert auth.token_requests[-1]["refresh_token"] == auth.issued[0]["refresh_token"]
    fhir_calls = [c for c in rsps.calls if c.request.url.startswith(ISS)]
    assert fhir_calls[-1].request.headers["Authorization"] == f"Bearer {auth.issued[1]['access_token']}"
    refreshed = stored_context(app, client)
    assert refreshed is not None and refreshed.token is not None
    assert refreshed.token.refresh_token == auth.issued[1]["refresh_token"]  # rotated
    assert refreshed.patient_id == PATIENT  # context kept


def test_failed_refresh_gives_the_friendly_401(
    app: Flask, auth: FakeAuthServer, rsps: responses.RequestsMock
) -> None:
    client = app.test_client()
    client.get("/callback", query_string=launch(client, auth))
    cookie = client.get_cookie(app.config["SESSION_COOKIE_NAME"])
    assert cookie is not None
    store = app.extensions["ccm_ready_sessions"]
    ctx, oauth = store.load_context(cookie.value)
    store.set_context(cookie.value, ctx.with_token(Token("old", 0.0, "revoked-refresh-token")), oauth)
    resp = client.get("/session")
    assert resp.status_code == 401 and b'href="/open"' in resp.data
    assert auth.token_requests[-1]["grant_type"] == "refresh_token"
    assert not [c for c in rsps.calls if c.request.url.startswith(ISS)]  # no FHIR call with a dead token


def test_concurrent_requests_refresh_once(
    app: Flask, auth: FakeAuthServer, rsps: responses.RequestsMock
) -> None:
    import threading

    client = app.test_client()
    client.get("/callback", query_string=launch(client, auth))
    rsps.add(responses.GET, f"{ISS}/Patient/{PATIENT}", json={"resourceType": "Patient", "id": PATIENT})
    cookie = client.get_cookie(app.config["SESSION_COOKIE_NAME"])
    assert cookie is not None
    store = app.extensions["ccm_ready_sessions"]
    ctx, oauth = store.load_context(cookie.value)
    assert ctx.token is not None
    store.set_context(cookie.value, ctx.with_token(Token("old", 0.0, ctx.token.refresh_token)), oauth)
    statuses: list[int] = []

    def one() -> None:
        c = app.test_client()
        c.set_cookie(app.config["SESSION_COOKIE_NAME"], cookie.value)
        statuses.append(c.get("/session").status_code)

    threads = [threading.Thread(target=one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 6
    assert [r["grant_type"] for r in auth.token_requests] == ["authorization_code", "refresh_token"]


def test_refresh_once_on_401(app: Flask, auth: FakeAuthServer, rsps: responses.RequestsMock) -> None:
    client = app.test_client()
    client.get("/callback", query_string=launch(client, auth))
    url = f"{ISS}/Patient/{PATIENT}"
    rsps.add(responses.GET, url, status=401, json={"resourceType": "OperationOutcome"})
    rsps.add(responses.GET, url, json={"resourceType": "Patient", "id": PATIENT})
    assert client.get("/session").status_code == 200
    grants = [r["grant_type"] for r in auth.token_requests]
    assert grants == ["authorization_code", "refresh_token"]


# ------------------------------------------------------------------------------------ patient scope


def _app_with_probe(tmp_path: Path, fake: FakeFhir) -> Flask:
    app = make_app(tmp_path, FHIR_CLIENT_FACTORY=lambda ctx: fake, OPEN_SERVERS=[ISS])

    @app.get("/_probe/<kind>")
    def probe(kind: str) -> dict[str, Any]:
        c = sessions.fhir_client()
        if kind == "own-search":
            c.search("Condition", {"patient": PATIENT, "clinical-status": "active"})
        elif kind == "other-search":
            c.search("Condition", {"patient": OTHER})
        elif kind == "unconstrained":
            c.search("Condition", {"code": "E11.9"})
        elif kind == "mixed":
            c.search("Condition", [("patient", PATIENT), ("subject", f"Patient/{OTHER}")])
        elif kind == "other-read":
            c.read("Patient", OTHER)
        elif kind == "other-batch":
            c.batch([f"Condition?patient={PATIENT}", f"Patient/{OTHER}"])
        elif kind in ("other-write", "own-write"):
            who = OTHER if kind == "other-write" else PATIENT
            c.create({"resourceType": "Encounter", "status": "finished",
                      "subject": {"reference": f"Patient/{who}"}})
        return {"ok": True}

    return app


@pytest.mark.parametrize(
    ("kind", "status"),
    [("own-search", 200), ("own-write", 200), ("other-search", 403), ("unconstrained", 403), ("mixed", 403),
     ("other-read", 403), ("other-batch", 403), ("other-write", 403)],
)
def test_session_can_only_touch_its_launch_patient(tmp_path: Path, kind: str, status: int) -> None:
    fake = FakeFhir(base=ISS, filtering=False, any_id=True)
    app = _app_with_probe(tmp_path, fake)
    client = app.test_client()
    assert client.get("/open", query_string={"iss": ISS, "patient": PATIENT}).status_code == 302
    before = len(fake.calls)
    resp = client.get(f"/_probe/{kind}")
    assert resp.status_code == status, resp.get_data(as_text=True)[:300]
    if status == 403:
        assert len(fake.calls) == before  # refused before anything was sent


def test_patient_scope_rules() -> None:
    from smart_app.fhir.patient_scope import check_resource, check_search, check_transaction

    check_search("Encounter", [("patient", "Patient/p1"), ("date", "ge2026-01-01")], "p1")
    check_search("Patient", {"_id": "p1"}, "p1")
    check_search("Task", "patient=p1&_revinclude=Provenance:target", "p1")
    with pytest.raises(PatientScopeError):
        check_search("Patient", {"name": "smith"}, "p1")
    with pytest.raises(PatientScopeError):
        check_search("Encounter", {"patient": "p1,p2"}, "p1")
    with pytest.raises(PatientScopeError):
        check_search("Encounter", {"patient.name": "p1"}, "p1")
    check_resource({"resourceType": "Task", "for": {"reference": "Patient/p1"}}, "p1")
    with pytest.raises(PatientScopeError):
        check_resource({"resourceType": "Task"}, "p1")
    check_transaction({"entry": [
        {"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Task", "for": {"reference": "Patient/p1"}},
         "request": {"method": "POST", "url": "Task"}},
        {"resource": {"resourceType": "Provenance", "target": [{"reference": "urn:uuid:1"}]},
         "request": {"method": "POST", "url": "Provenance"}},
    ]}, "p1")
    with pytest.raises(PatientScopeError):
        check_transaction({"entry": [{"request": {"method": "DELETE", "url": "Task/1"}}]}, "p1")


# ------------------------------------------------------------------------------------ open mode


def test_open_mode_sends_no_authorization(tmp_path: Path, rsps: responses.RequestsMock) -> None:
    hapi = "https://hapi.fhir.org/baseR4"
    app = make_app(tmp_path)  # launch.json lists the public HAPI server
    rsps.add(responses.GET, f"{hapi}/Patient/{PATIENT}", json={"resourceType": "Patient", "id": PATIENT})
    client = app.test_client()
    resp = client.get("/open", query_string={"iss": hapi, "patient": PATIENT})
    assert resp.status_code == 302 and resp.headers["Location"] == "/panel"
    ctx = stored_context(app, client)
    assert ctx is not None and ctx.mode == "open" and ctx.token is None and ctx.fhir_base == hapi
    assert client.get("/session").status_code == 200
    assert rsps.calls and all("Authorization" not in c.request.headers for c in rsps.calls)


def test_open_mode_refuses_servers_not_on_the_list(tmp_path: Path, rsps: responses.RequestsMock) -> None:
    app = make_app(tmp_path)
    query = {"iss": "https://fhir.elsewhere.org/r4", "patient": "x"}
    resp = app.test_client().get("/open", query_string=query)
    assert resp.status_code == 403 and b"open-server list" in resp.data
    assert len(rsps.calls) == 0


def test_open_mode_unknown_patient(tmp_path: Path, rsps: responses.RequestsMock) -> None:
    hapi = "https://hapi.fhir.org/baseR4"
    rsps.add(responses.GET, f"{hapi}/Patient/nope", status=404, json={"resourceType": "OperationOutcome"})
    app = make_app(tmp_path)
    resp = app.test_client().get("/open", query_string={"iss": hapi, "patient": "nope"})
    assert resp.status_code == 404 and b"No patient with that id" in resp.data


def test_protected_page_without_session_is_a_friendly_401(app: Flask) -> None:
    resp = app.test_client().get("/session")
    assert resp.status_code == 401 and b'href="/open"' in resp.data


def test_logout_ends_the_session(tmp_path: Path) -> None:
    fake = FakeFhir(base=ISS, filtering=False, any_id=True)
    app = _app_with_probe(tmp_path, fake)
    client = app.test_client()
    client.get("/open", query_string={"iss": ISS, "patient": PATIENT})
    assert client.get("/_probe/own-search").status_code == 200
    client.get("/logout")  # the confirmation form
    with client.session_transaction() as sess:
        token = sess["csrf"]
    resp = client.post("/logout", data={"csrf_token": token})
    assert resp.status_code == 200 and b"Signed out" in resp.data
    assert client.get("/_probe/own-search").status_code == 401


def test_jwks_publishes_only_the_public_key(app: Flask, tmp_path: Path) -> None:
    resp = app.test_client().get("/.well-known/jwks.json")
    key = resp.json["keys"][0]
    assert key["kty"] == "RSA" and key["alg"] == "RS384" and key["kid"]
    assert "d" not in key and "p" not in key
    path = smart_auth.key_path(tmp_path)
    assert path.is_file() and (path.stat().st_mode & 0o077) == 0
    assert app.test_client().get("/.well-known/jwks.json").json["keys"][0]["kid"] == key["kid"]  # stable
