"""CSRF, cookie flags, security headers, inert FHIR text, and logs free of tokens and PHI."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import responses
from flask import Flask

from smart_app.web.security import frame_ancestors, redact
from tests.unit.test_launch import ISS, PATIENT, FakeAuthServer, FakeFhir, launch, make_app

SCRIPT_NAME = "<script>alert('x')</script>"


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    return make_app(tmp_path)


def _csrf(client: Any) -> str:
    client.get("/standalone")
    with client.session_transaction() as sess:
        return str(sess["csrf"])


# ------------------------------------------------------------------------------------ CSRF


def test_post_without_csrf_token_is_400(app: Flask) -> None:
    client = app.test_client()
    resp = client.post("/standalone", data={"iss": ISS})
    assert resp.status_code == 400
    assert b"security token is missing" in resp.data


def test_post_with_forged_csrf_token_is_400(app: Flask) -> None:
    client = app.test_client()
    real = _csrf(client)
    resp = client.post("/standalone", data={"iss": ISS, "csrf_token": real[:-2] + "xx"})
    assert resp.status_code == 400 and b"does not match" in resp.data


def test_csrf_token_of_another_session_is_rejected(app: Flask) -> None:
    theirs = _csrf(app.test_client())
    mine = app.test_client()
    _csrf(mine)
    assert mine.post("/logout", data={"csrf_token": theirs}).status_code == 400


def test_csrf_header_for_fetch_calls(app: Flask) -> None:
    client = app.test_client()
    token = _csrf(client)
    bad = client.post("/logout", headers={"X-CSRF-Token": "nope"})
    assert bad.status_code == 400 and bad.is_json and bad.json["error"] == "csrf"
    assert client.post("/logout", headers={"X-CSRF-Token": token}).status_code == 200


def test_every_unsafe_method_is_checked(app: Flask) -> None:
    @app.route("/_test/thing", methods=["PUT", "PATCH", "DELETE"])
    def thing() -> str:
        return "changed"

    client = app.test_client()
    token = _csrf(client)
    for method in ("put", "patch", "delete"):
        assert getattr(client, method)("/_test/thing").status_code == 400
        assert getattr(client, method)("/_test/thing", headers={"X-CSRF-Token": token}).status_code == 200


def test_forms_carry_the_token(app: Flask) -> None:
    client = app.test_client()
    page = client.get("/standalone").get_data(as_text=True)
    token = _csrf(client)
    assert f'name="csrf_token" value="{token}"' in page


# ------------------------------------------------------------------------------------ cookies and headers


def test_cookie_flags_over_https(app: Flask) -> None:
    resp = app.test_client().get("/standalone", base_url="https://ccm.example.org")
    cookie = resp.headers["Set-Cookie"]
    for flag in ("HttpOnly", "Secure", "SameSite=None", "Partitioned"):
        assert flag in cookie, cookie


def test_cookie_flags_over_plain_http(app: Flask) -> None:
    cookie = app.test_client().get("/standalone").headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie and "Partitioned" not in cookie


def test_security_headers(tmp_path: Path) -> None:
    app = make_app(tmp_path, FRAME_ANCESTORS="https://ehr.example.org https://*.epic.example")
    resp = app.test_client().get("/open")
    csp = resp.headers["Content-Security-Policy"]
    assert csp == ("default-src 'self'; frame-ancestors https://ehr.example.org https://*.epic.example; "
                   "object-src 'none'; base-uri 'none'; form-action 'self'")
    assert "unsafe-inline" not in csp
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    assert "X-Frame-Options" not in resp.headers  # would stop the EHR from framing the app


def test_frame_ancestors_refuses_wildcards_and_junk() -> None:
    assert frame_ancestors("*") == "'self'"
    assert frame_ancestors("https://ok.example ; script-src *") == "https://ok.example"
    assert frame_ancestors("https://ok.example;script-src") == "'self'"
    assert frame_ancestors(["'self'", "https://ehr.example"]) == "'self' https://ehr.example"


def test_templates_have_no_inline_script(app: Flask) -> None:
    for path in ("/open", "/standalone", "/logout", "/session"):
        body = app.test_client().get(path).get_data(as_text=True)
        assert "<script" not in body.replace("<script src=", "")


# ------------------------------------------------------------------------------------ inert FHIR text


class PickerFhir(FakeFhir):
    def search(self, resource_type: str, params: Any = None, **_: Any) -> list[dict[str, Any]]:
        self.calls.append(("search", (resource_type, params)))
        return [
            {"resourceType": "Patient", "id": "p1", "birthDate": "1950-01-01",
             "name": [{"family": SCRIPT_NAME, "given": ["<img src=x onerror=alert(1)>"]}]},
            {"resourceType": "Patient", "id": "bad id\"><script>", "name": [{"text": "Skipped"}]},
        ]


def test_script_in_patient_name_is_inert_in_the_picker(tmp_path: Path) -> None:
    fake = PickerFhir()
    app = make_app(tmp_path, FHIR_CLIENT_FACTORY=lambda ctx: fake, OPEN_SERVERS=[ISS])
    resp = app.test_client().get("/open", query_string={"iss": ISS, "name": "x<script>"})
    body = resp.get_data(as_text=True)
    assert resp.status_code == 200
    assert "<script>alert" not in body and "<img src=x" not in body
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in body
    assert "Skipped" not in body  # an id that is not a FHIR id is not offered
    assert fake.calls == [("search", ("Patient", {"name": "x<script>", "_count": "20"}))]


# ------------------------------------------------------------------------------------ logs


def test_redact() -> None:
    line = ('GET /callback?code=abc123&state=s3cr3t HTTP/1.1 Authorization: Bearer eyJabcdefg.eyJhijklmn.sig '
            '{"refresh_token": "RT-1", "id_token":"x.y.z"} http://h/fhir/Patient?name=Smith')
    out = redact(line)
    for secret in ("abc123", "s3cr3t", "eyJabcdefg", "RT-1", "x.y.z", "Smith"):
        assert secret not in out


def test_no_token_or_phi_in_logs_across_a_whole_launch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    app = make_app(tmp_path)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        auth = FakeAuthServer(rsps)
        rsps.add(responses.GET, f"{ISS}/Patient/{PATIENT}",
                 json={"resourceType": "Patient", "id": PATIENT, "name": [{"family": "Zebediah-Quux"}],
                       "birthDate": "1931-02-03"})
        client = app.test_client()
        back = launch(client, auth)
        assert client.get("/callback", query_string=back).status_code == 302
        assert client.get("/session").status_code == 200
        client.get("/callback", query_string=back)  # a replay, logged as a warning
        logging.getLogger("probe").info("Authorization: Bearer %s", auth.issued[0]["access_token"])
    issued = auth.issued[0]
    secrets_ = [issued["access_token"], issued["refresh_token"], issued["id_token"], back["code"],
                back["state"], "Zebediah-Quux", "1931-02-03", "xyz"]
    text = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    assert caplog.records  # the launch did log something
    for secret in secrets_:
        assert secret not in text, secret


def test_read_owned_refuses_another_patients_resource() -> None:
    """Resources read by id (Goal: no patient search everywhere) must belong to the launch patient."""
    from smart_app.fhir.patient_scope import PatientScopedClient, PatientScopeError

    class Directory:
        def read(self, resource_type: str, resource_id: str) -> dict[str, object]:
            owner = "p1" if resource_id == "mine" else "p2"
            subject = {"reference": f"Patient/{owner}"}
            return {"resourceType": resource_type, "id": resource_id, "subject": subject}

    scoped = PatientScopedClient(Directory(), "p1")
    assert scoped.read_owned("Goal", "mine")["id"] == "mine"
    with pytest.raises(PatientScopeError):
        scoped.read_owned("Goal", "theirs")
    assert scoped.read_owned("Patient", "p1")["id"] == "p1"
    with pytest.raises(PatientScopeError):  # another Patient by id is never "owned"
        scoped.read_owned("Patient", "p2")
