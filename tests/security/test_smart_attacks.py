"""SMART launch attacks against the real oauth2-mock-server and sekmet-fhir (issue 12: items 4-7, 13, and the
authorization server's error_description)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
import requests

from tests.security.support import (
    Seen,
    browser_follow,
    json_answer,
    launch,
    local_server,
    oauth_ready,
    session_context,
    smart_app,
)
from tests.support.oauth import OAuthServer
from tests.support.oauth import oauth_server as oauth_server  # re-exported fixture
from tests.support.sekmet import SekmetServer

pytestmark = [pytest.mark.integration, pytest.mark.oauth]
USER = "Practitioner/dr-security"


@pytest.fixture
def patient_id(sekmet: SekmetServer) -> str:
    resp = requests.post(f"{sekmet.base}/Patient", json={"resourceType": "Patient"},
                         headers={"Content-Type": "application/fhir+json"}, timeout=10)
    assert resp.status_code == 201
    return str(resp.json()["id"])


@pytest.fixture
def oauth(oauth_server: OAuthServer, patient_id: str) -> OAuthServer:
    return oauth_ready(oauth_server, patient=patient_id, fhirUser=USER)


def _hostile(honest: OAuthServer) -> Any:
    """A hostile authorization server: /authorize bounces the browser to the honest one (same query);
    /token records what it receives (the honest code and our PKCE verifier, if the app sends them)."""

    def answer(seen: Seen) -> tuple[int, dict[str, str], bytes]:
        if seen.path == "/authorize":
            query = urlencode({k: v[0] for k, v in seen.query.items()})
            return 302, {"Location": f"{honest.authorization_endpoint}?{query}"}, b""
        return json_answer({"error": "invalid_grant"}, 400)

    return local_server(answer)


# ------------------------------------------------------------------ 4. authorization-server mix-up


def test_mix_up_code_from_the_honest_server_is_never_sent_to_the_hostile_one(
    tmp_path: Path, sekmet: SekmetServer, oauth: OAuthServer
) -> None:
    with _hostile(oauth) as evil:
        evil_iss = f"{evil.url}/fhir"
        evil_conf = {"issuer": evil.url, "authorization_endpoint": f"{evil.url}/authorize",
                     "token_endpoint": f"{evil.url}/token", "code_challenge_methods_supported": ["S256"],
                     "capabilities": ["launch-ehr", "permission-v2"]}
        app = smart_app(tmp_path, {sekmet.base: oauth.smart_configuration(), evil_iss: evil_conf})
        client = app.test_client()
        start = client.get("/launch", query_string={"iss": evil_iss, "launch": "xyz"})
        assert start.status_code == 302
        back = browser_follow(start.headers["Location"])  # hostile -> honest -> our /callback
        assert back["iss"] == oauth.url  # RFC 9207: the honest server says who answered
        resp = client.get("/callback", query_string=back)
        assert "/token" not in evil.paths()  # neither the code nor the PKCE verifier reached it
        assert resp.status_code == 400, resp.get_data(as_text=True)[:300]
        assert "different authorization server" in resp.get_data(as_text=True)
        assert session_context(app, client) is None


def test_mix_up_token_endpoint_of_another_server_is_refused_before_the_browser_leaves(
    tmp_path: Path, sekmet: SekmetServer, oauth: OAuthServer
) -> None:
    with _hostile(oauth) as evil:
        evil_iss = f"{evil.url}/fhir"
        # Claims the honest issuer and authorization endpoint, with its own token endpoint.
        evil_conf = {**oauth.smart_configuration(), "token_endpoint": f"{evil.url}/token"}
        app = smart_app(tmp_path, {sekmet.base: oauth.smart_configuration(), evil_iss: evil_conf})
        client = app.test_client()
        start = client.get("/launch", query_string={"iss": evil_iss, "launch": "xyz"})
        assert start.status_code == 502, start.headers.get("Location")
        assert "token endpoint" in start.get_data(as_text=True)
        assert evil.seen == []


def test_honest_launch_with_iss_still_works(tmp_path: Path, sekmet: SekmetServer, oauth: OAuthServer,
                                            patient_id: str) -> None:
    app = smart_app(tmp_path, {sekmet.base: oauth.smart_configuration()})
    client = app.test_client()
    assert launch(client, sekmet.base).status_code == 302
    ctx = session_context(app, client)
    assert ctx.patient_id == patient_id and ctx.user == USER


def test_iss_missing_when_the_server_promises_it_is_refused(
    tmp_path: Path, sekmet: SekmetServer, oauth: OAuthServer
) -> None:
    app = smart_app(tmp_path, {sekmet.base: oauth.smart_configuration()})
    client = app.test_client()
    start = client.get("/launch", query_string={"iss": sekmet.base, "launch": "xyz"})
    back = browser_follow(start.headers["Location"])
    back.pop("iss")
    assert client.get("/callback", query_string=back).status_code == 400
    assert session_context(app, client) is None


# ---------------------------------------------------------- 5. GET /open never replaces a SMART session


def test_cross_site_get_open_does_not_replace_a_smart_session(
    tmp_path: Path, sekmet: SekmetServer, oauth: OAuthServer, patient_id: str
) -> None:
    other = requests.post(f"{sekmet.base}/Patient", json={"resourceType": "Patient"},
                          headers={"Content-Type": "application/fhir+json"}, timeout=10).json()["id"]
    app = smart_app(tmp_path, {sekmet.base: oauth.smart_configuration()}, OPEN_SERVERS=[sekmet.base])
    client = app.test_client()
    assert launch(client, sekmet.base).status_code == 302
    resp = client.get("/open", query_string={"iss": sekmet.base, "patient": other})
    assert resp.status_code == 409 and "Leave your signed-in session?" in resp.get_data(as_text=True)
    ctx = session_context(app, client)
    assert ctx.mode == "ehr" and ctx.patient_id == patient_id
    # Only the confirming POST with this session's CSRF token switches.
    forged = client.post("/open", data={"iss": sekmet.base, "patient": other})
    assert forged.status_code == 400 and session_context(app, client).patient_id == patient_id
    page = resp.get_data(as_text=True)
    token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    ok = client.post("/open", data={"iss": sekmet.base, "patient": other, "csrf_token": token})
    assert ok.status_code == 302 and session_context(app, client).patient_id == other


# ------------------------------------------------------------------ 6. the CSRF token rotates at sign-in


def test_csrf_token_rotates_at_sign_in_and_relaunch(
    tmp_path: Path, sekmet: SekmetServer, oauth: OAuthServer
) -> None:
    app = smart_app(tmp_path, {sekmet.base: oauth.smart_configuration()})
    client = app.test_client()
    client.get("/standalone")
    with client.session_transaction() as sess:
        before = sess["csrf"]
    assert launch(client, sekmet.base).status_code == 302
    client.get("/logout")  # a page with a form: a token for the new session
    with client.session_transaction() as sess:
        after = sess["csrf"]
    assert after != before
    assert client.post("/logout", data={"csrf_token": before}).status_code == 400
    assert launch(client, sekmet.base).status_code == 302  # a re-launch (e.g. another patient)
    client.get("/logout")
    with client.session_transaction() as sess:
        assert sess["csrf"] not in (before, after)


# ------------------------------------------------------------------ 7. no bearer token over plain http


def test_non_loopback_http_issuer_is_refused_even_when_allow_listed(
    tmp_path: Path, oauth: OAuthServer
) -> None:
    plain = "http://fhir.example.org/fhir"
    app = smart_app(tmp_path, {plain: oauth.smart_configuration()})
    resp = app.test_client().get("/launch", query_string={"iss": plain, "launch": "xyz"})
    assert resp.status_code == 403 and "https" in resp.get_data(as_text=True)
    assert not [r for r in oauth.requests_seen() if r["endpoint"] == "authorize"]


def test_a_stored_http_session_never_sends_its_token(tmp_path: Path) -> None:
    from smart_app.context import LaunchContext, Token
    from smart_app.web import sessions

    app = smart_app(tmp_path, {})
    ctx = LaunchContext(mode="ehr", fhir_base="http://fhir.example.org/fhir", patient_id="p1",
                        token=Token("secret-token", 9e9))
    with app.test_request_context("/panel"):
        sessions.start_session(ctx)
        with pytest.raises(sessions.SessionExpired):
            sessions.fhir_client()


# ------------------------------------------------------------------ 13. patient id from the token response


@pytest.mark.parametrize("patient", ["../Patient/x", "a/b", "x" * 65, "p 1"])
def test_patient_context_that_is_not_a_fhir_id_is_refused(
    tmp_path: Path, sekmet: SekmetServer, oauth_server: OAuthServer, patient: str
) -> None:
    oauth_ready(oauth_server, patient=patient, fhirUser=USER)
    app = smart_app(tmp_path, {sekmet.base: oauth_server.smart_configuration()})
    client = app.test_client()
    resp = launch(client, sekmet.base)
    assert resp.status_code == 502 and "not a valid FHIR id" in resp.get_data(as_text=True)
    assert session_context(app, client) is None
    assert client.get("/panel").status_code == 401


# ------------------------------------------------------------------ error_description, escaped


def test_error_description_is_shown_escaped(
    tmp_path: Path, sekmet: SekmetServer, oauth: OAuthServer
) -> None:
    app = smart_app(tmp_path, {sekmet.base: oauth.smart_configuration()})
    client = app.test_client()
    start = client.get("/launch", query_string={"iss": sekmet.base, "launch": "xyz"})
    state = dict(p.split("=", 1) for p in urlsplit(start.headers["Location"]).query.split("&"))["state"]
    resp = client.get("/callback", query_string={
        "error": "access_denied", "state": state,
        "error_description": "User <script>alert(1)</script> cancelled the sign-in",
    })
    text = resp.get_data(as_text=True)
    assert resp.status_code == 403
    assert "User &lt;script&gt;alert(1)&lt;/script&gt; cancelled the sign-in" in text
    assert "<script>alert(1)" not in text
