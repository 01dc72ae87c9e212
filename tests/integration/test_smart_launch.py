"""Full SMART launches against the REAL oauth2-mock-server (with our SMART hook) and the REAL sekmet-fhir.

The browser is played by Flask's test client (the app) plus `requests` (the authorization server's
/authorize, which redirects straight back with a code).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from smart_app.app import create_app
from smart_app.config import load_registration
from smart_app.context import Token
from tests.support.oauth import OAuthServer
from tests.support.oauth import oauth_server as oauth_server  # re-exported fixture
from tests.support.sekmet import SekmetServer

pytestmark = [pytest.mark.integration, pytest.mark.oauth]

USER = "Practitioner/dr-launch"


@pytest.fixture
def patient_id(sekmet: SekmetServer) -> str:
    resp = requests.post(
        f"{sekmet.base}/Patient",
        json={"resourceType": "Patient", "name": [{"family": "Launchtest", "given": ["Ada"]}],
              "birthDate": "1950-04-01"},
        headers={"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"},
        timeout=10,
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def make_app(tmp: Path, sekmet: SekmetServer, oauth: OAuthServer, *, client_id: str = "ccm-ready",
             method: str = "none", **config: Any) -> Flask:
    registration = dict(load_registration())
    registration.update({
        "client_id": client_id,
        "token_endpoint_auth_method": method,
        "allowed_issuers": [sekmet.base],
        "redirect_uris": ["http://localhost/callback"],
    })
    return create_app({
        "TESTING": True,
        "SECRET_KEY": "integration",
        "DATA_DIR": str(tmp),
        "REGISTRATION": registration,
        "SMART_DISCOVERY_OVERRIDES": {sekmet.base: oauth.smart_configuration()},
        **config,
    })


def authorize(location: str) -> dict[str, str]:
    """The browser visits the mock's /authorize; it answers 302 straight back to /callback."""
    resp = requests.get(location, allow_redirects=False, timeout=10)
    assert resp.status_code == 302, resp.text
    back = urlsplit(resp.headers["Location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == "http://localhost/callback"
    return {k: v[0] for k, v in parse_qs(back.query).items()}


def ehr_launch(client: FlaskClient, iss: str) -> tuple[dict[str, list[str]], dict[str, str]]:
    resp = client.get("/launch", query_string={"iss": iss, "launch": "xyz"})
    assert resp.status_code == 302, resp.get_data(as_text=True)[:500]
    location = resp.headers["Location"]
    return parse_qs(urlsplit(location).query), authorize(location)


def session_row(app: Flask, client: FlaskClient) -> tuple[Any, dict[str, Any]]:
    cookie = client.get_cookie(app.config["SESSION_COOKIE_NAME"])
    assert cookie is not None
    loaded = app.extensions["ccm_ready_sessions"].load_context(cookie.value)
    assert loaded is not None
    return loaded


def token_calls(oauth: OAuthServer) -> list[dict[str, Any]]:
    return [r for r in oauth.requests_seen() if r["endpoint"] == "token"]


@pytest.fixture
def oauth(oauth_server: OAuthServer, patient_id: str) -> OAuthServer:
    oauth_server.reset()
    oauth_server.set_context(patient=patient_id, encounter="enc-1", need_patient_banner=True,
                             smart_style_url="http://127.0.0.1/style.json", fhirUser=USER)
    return oauth_server


def test_ehr_launch_end_to_end_with_refresh(
    tmp_path: Path, sekmet: SekmetServer, oauth: OAuthServer, patient_id: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    app = make_app(tmp_path, sekmet, oauth)
    client = app.test_client()
    query, back = ehr_launch(client, sekmet.base)
    assert query["code_challenge_method"] == ["S256"] and query["code_challenge"]
    assert query["aud"] == [sekmet.base] and query["launch"] == ["xyz"]
    assert len(query["state"][0]) >= 43 and back["state"] == query["state"][0]
    seen = [r for r in oauth.requests_seen() if r["endpoint"] == "authorize"][-1]
    assert (seen["aud"], seen["launch"], seen["code_challenge_method"]) == (sekmet.base, "xyz", "S256")

    resp = client.get("/callback", query_string=back)
    assert resp.status_code == 302 and resp.headers["Location"] == "/panel"
    ctx, oauth_meta = session_row(app, client)
    assert ctx.patient_id == patient_id and ctx.mode == "ehr"
    assert ctx.user == USER  # from the mock's RS256 id_token, verified against its /jwks
    assert ctx.encounter_id == "enc-1" and ctx.smart_style_url == "http://127.0.0.1/style.json"
    assert ctx.token is not None and ctx.token.refresh_token
    assert "patient/Condition.rs" in ctx.granted_scopes
    first = token_calls(oauth)
    assert [(c["grant_type"], c["auth"], c["has_code_verifier"]) for c in first] == [
        ("authorization_code", "none", True)]

    summary = client.get("/session")
    assert summary.status_code == 200, summary.get_data(as_text=True)[:500]
    assert summary.json["patient_found"] is True and summary.json["user"] == USER

    panel = client.get("/panel")
    assert panel.status_code == 200, panel.get_data(as_text=True)[:500]

    # Force expiry: the next FHIR request refreshes first (refresh_token grant, rotated token).
    store = app.extensions["ccm_ready_sessions"]
    cookie = client.get_cookie(app.config["SESSION_COOKIE_NAME"])
    assert cookie is not None
    old = ctx.token
    store.set_context(cookie.value, ctx.with_token(Token(old.access_token, time.time() - 1, old.refresh_token,
                                                         old.scope, old.id_token)), oauth_meta)
    summary = client.get("/session")
    assert summary.status_code == 200 and summary.json["token_expires_in"] > 60
    calls = token_calls(oauth)
    assert [c["grant_type"] for c in calls] == ["authorization_code", "refresh_token"]
    assert "error" not in calls[-1]
    refreshed, _ = session_row(app, client)
    assert refreshed.token.expires_at > time.time() + 60  # (the mock's JWTs can repeat within a second)
    assert refreshed.token.refresh_token != old.refresh_token
    assert refreshed.patient_id == patient_id

    # The same code (and state) again: refused by the app before the token endpoint is called.
    assert client.get("/callback", query_string=back).status_code == 400
    assert len(token_calls(oauth)) == 2
    for secret in (old.access_token, old.refresh_token, refreshed.token.refresh_token, back["code"],
                   back["state"], patient_id):
        assert secret not in caplog.text


def test_standalone_launch(tmp_path: Path, sekmet: SekmetServer, oauth: OAuthServer, patient_id: str) -> None:
    app = make_app(tmp_path, sekmet, oauth)
    client = app.test_client()
    client.get("/standalone")
    with client.session_transaction() as sess:
        csrf = sess["csrf"]
    resp = client.post("/standalone", data={"iss": sekmet.base, "csrf_token": csrf})
    assert resp.status_code == 302
    query = parse_qs(urlsplit(resp.headers["Location"]).query)
    assert "launch" not in query and "launch/patient" in query["scope"][0].split()
    back = authorize(resp.headers["Location"])
    assert client.get("/callback", query_string=back).status_code == 302
    ctx, _ = session_row(app, client)
    assert ctx.mode == "standalone" and ctx.patient_id == patient_id
    assert client.get("/session").json["patient_found"] is True


def test_client_secret_basic(tmp_path: Path, sekmet: SekmetServer, oauth: OAuthServer) -> None:
    oauth.register_client("ccm-basic", secret="s3cret-value")
    app = make_app(tmp_path, sekmet, oauth, client_id="ccm-basic", method="client_secret_basic",
                   SMART_CLIENT_SECRET="s3cret-value")
    client = app.test_client()
    _, back = ehr_launch(client, sekmet.base)
    assert client.get("/callback", query_string=back).status_code == 302
    call = token_calls(oauth)[-1]
    assert (call["auth"], call["client_id"], call.get("error")) == ("client_secret_basic", "ccm-basic", None)
    ctx, _ = session_row(app, client)
    assert ctx.user == USER


def test_client_secret_basic_wrong_secret(tmp_path: Path, sekmet: SekmetServer, oauth: OAuthServer) -> None:
    oauth.register_client("ccm-basic-2", secret="right")
    app = make_app(tmp_path, sekmet, oauth, client_id="ccm-basic-2", method="client_secret_basic",
                   SMART_CLIENT_SECRET="wrong")
    client = app.test_client()
    _, back = ehr_launch(client, sekmet.base)
    resp = client.get("/callback", query_string=back)
    assert resp.status_code == 502 and b"refused the sign-in" in resp.data
    assert token_calls(oauth)[-1]["error"] == "wrong client secret"


def test_private_key_jwt(tmp_path: Path, sekmet: SekmetServer, oauth: OAuthServer) -> None:
    app = make_app(tmp_path, sekmet, oauth, client_id="ccm-jwt", method="private_key_jwt")
    client = app.test_client()
    oauth.register_client("ccm-jwt", jwks=client.get("/.well-known/jwks.json").json)
    _, back = ehr_launch(client, sekmet.base)
    assert client.get("/callback", query_string=back).status_code == 302
    ctx, meta = session_row(app, client)
    assert ctx.user == USER and meta["auth_method"] == "private_key_jwt"
    # The refresh grant authenticates the same way (a new assertion: jti is never reused).
    store = app.extensions["ccm_ready_sessions"]
    cookie = client.get_cookie(app.config["SESSION_COOKIE_NAME"])
    assert cookie is not None and ctx.token is not None
    store.set_context(cookie.value, ctx.with_token(Token(ctx.token.access_token, 0.0, ctx.token.refresh_token,
                                                         ctx.token.scope)), meta)
    assert client.get("/session").status_code == 200
    calls = token_calls(oauth)
    assert [(c["grant_type"], c["auth"], c.get("error")) for c in calls] == [
        ("authorization_code", "private_key_jwt", None), ("refresh_token", "private_key_jwt", None)]


def test_private_key_jwt_with_an_unregistered_key(
    tmp_path: Path, sekmet: SekmetServer, oauth: OAuthServer
) -> None:
    other = make_app(tmp_path / "other", sekmet, oauth)
    oauth.register_client("ccm-jwt-2", jwks=other.test_client().get("/.well-known/jwks.json").json)
    app = make_app(tmp_path / "app", sekmet, oauth, client_id="ccm-jwt-2", method="private_key_jwt")
    client = app.test_client()
    _, back = ehr_launch(client, sekmet.base)
    assert client.get("/callback", query_string=back).status_code == 502
    assert token_calls(oauth)[-1]["error"] == "unknown kid"


def test_issuer_not_allowed_never_reaches_the_servers(
    tmp_path: Path, sekmet: SekmetServer, oauth: OAuthServer
) -> None:
    app = make_app(tmp_path, sekmet, oauth)
    resp = app.test_client().get("/launch", query_string={"iss": "http://127.0.0.1:9/fhir", "launch": "x"})
    assert resp.status_code == 403
    assert oauth.requests_seen() == []


def test_open_mode_against_sekmet(tmp_path: Path, sekmet: SekmetServer, oauth: OAuthServer,
                                  patient_id: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    app = make_app(tmp_path, sekmet, oauth, OPEN_SERVERS=[sekmet.base])
    client = app.test_client()
    picker = client.get("/open", query_string={"iss": sekmet.base, "name": "Launchtest"})
    assert picker.status_code == 200 and f"patient={patient_id}".encode() in picker.data
    resp = client.get("/open", query_string={"iss": sekmet.base, "patient": patient_id})
    assert resp.status_code == 302
    assert client.get("/session").json["mode"] == "open"
    assert client.get("/panel").status_code == 200
    # urllib3 logs every request line at DEBUG; the name searched and the patient id must not show.
    assert any("urllib3" in r.name for r in caplog.records)
    assert "Launchtest" not in caplog.text and patient_id not in caplog.text
