"""CDS Hooks 2.0 service: discovery, real request bodies, one card per status, 412, JWT checks, CORS."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet

from smart_app.cds.auth import ReplayCache
from tests.support import app as support_app
from tests.support.ccm_scenarios import hook_request, prefetch, scenario

ISS = "https://ehr.example.org"
SERVICE_URL = "http://localhost/cds-services/ccm-readiness"
NOW = datetime(2026, 11, 10, 15, 0, tzinfo=UTC)
KEY = ECKey.generate_key("P-384", parameters={"kid": "ehr-1", "alg": "ES384"}, private=True)
OTHER_KEY = ECKey.generate_key("P-384", parameters={"kid": "ehr-1", "alg": "ES384"}, private=True)


def jwks() -> dict[str, Any]:
    return KeySet([KEY]).as_dict(private=False)


def token(key: ECKey = KEY, **claims: Any) -> str:
    now = int(time.time())
    body = {
        "iss": ISS,
        "sub": "ehr-client",
        "aud": SERVICE_URL,
        "iat": now,
        "exp": now + 300,
        "jti": str(uuid.uuid4()),
        **claims,
    }
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode({"alg": "ES384", "kid": "ehr-1", "typ": "JWT"}, body, key, algorithms=["ES384"])


def _app(**config: Any) -> Flask:
    settings = {
        "TESTING": True,
        "TIMEZONE": "UTC",
        "CDS_CLIENTS": {ISS: {"jwks": jwks()}},
        "CDS_CLOCK": lambda: NOW,
        "CDS_SERVICE_URL": "http://localhost/cds-services",
    }
    settings.update(config)
    return support_app.make_app(**settings)


@pytest.fixture()
def client(tmp_path: Any) -> FlaskClient:
    return _app(DATA_DIR=str(tmp_path)).test_client()


def call(client: FlaskClient, body: Any, tok: str | None = "auto") -> Any:
    headers = {}
    if tok == "auto":
        tok = token()
    if tok:
        headers["Authorization"] = f"Bearer {tok}"
    return client.post("/cds-services/ccm-readiness", json=body, headers=headers)


def with_prefetch(kind: str) -> dict[str, Any]:
    pid = f"cds-{kind}"
    return hook_request(pid, prefetch=prefetch(scenario(kind, "2026-11", pid), pid))


# ------------------------------------------------------------------ discovery


def test_discovery_lists_the_patient_view_service(client: FlaskClient) -> None:
    resp = client.get("/cds-services")
    assert resp.status_code == 200
    (service,) = resp.get_json()["services"]
    assert service["hook"] == "patient-view" and service["id"] == "ccm-readiness"
    assert service["title"] and service["description"]
    assert service["prefetch"]["patient"] == "Patient/{{context.patientId}}"
    for template in service["prefetch"].values():
        assert "{{context.patientId}}" in template
    assert resp.headers["Access-Control-Allow-Origin"] == "*"


# ------------------------------------------------------------------ cards per status


def test_ready_card_from_prefetch(client: FlaskClient) -> None:
    resp = call(client, with_prefetch("ready"))
    assert resp.status_code == 200, resp.get_json()
    (card,) = resp.get_json()["cards"]
    assert card["indicator"] == "info"
    assert card["summary"].startswith("CCM 2026-11: ready to bill 99490")
    assert len(card["summary"]) < 140
    assert card["source"]["label"] == "CCM Ready"
    link = card["links"][0]
    assert link["type"] == "smart" and link["url"] == "http://127.0.0.1:5000/launch"
    assert link["appContext"] == '{"month":"2026-11"}'
    assert "99490" in card["detail"]


def test_card_uses_the_pack_in_effect_when_the_configured_one_does_not_cover_the_month(tmp_path: Any) -> None:
    """POLICY=cms-pfs-2025 must not be applied to November 2026 (the panel would not either)."""
    client = _app(DATA_DIR=str(tmp_path), POLICY="cms-pfs-2025").test_client()
    (card,) = call(client, with_prefetch("ready")).get_json()["cards"]
    assert "Policy: cms-pfs-2026" in card["detail"] and "cms-pfs-2025" not in card["detail"]


def test_not_yet_card(client: FlaskClient) -> None:
    (card,) = call(client, with_prefetch("not-yet")).get_json()["cards"]
    assert card["indicator"] == "info"
    # care-plan.not-shared is a warning since issue 7: the card names it after the minutes.
    assert card["summary"] == "CCM 2026-11: 14 of 20 min; log 6 more for 99490; care plan not shared"


def test_blocked_card_says_what_is_missing(client: FlaskClient) -> None:
    (card,) = call(client, with_prefetch("blocked")).get_json()["cards"]
    assert card["indicator"] == "warning"
    assert "consent missing" in card["summary"] and len(card["summary"]) < 140
    assert "`consent.missing`" in card["detail"]


def test_not_eligible_patient_gets_no_card(client: FlaskClient) -> None:
    resp = call(client, with_prefetch("not-eligible"))
    assert resp.status_code == 200
    assert resp.get_json() == {"cards": []}


# ------------------------------------------------------------------ request validation and 412


def test_412_without_prefetch_or_fhir_server(client: FlaskClient) -> None:
    resp = call(client, hook_request("cds-ready"))
    assert resp.status_code == 412
    assert "prefetch" in resp.get_json()["error"]


def test_incomplete_or_truncated_prefetch_is_not_used(client: FlaskClient) -> None:
    body = with_prefetch("ready")
    del body["prefetch"]["consents"]
    assert call(client, body).status_code == 412
    body = with_prefetch("ready")
    body["prefetch"]["encounters"]["link"] = [{"relation": "next", "url": "http://ehr.example/fhir?page=2"}]
    assert call(client, body).status_code == 412
    body = with_prefetch("ready")
    body["prefetch"]["patient"]["id"] = "someone-else"
    assert call(client, body).status_code == 412


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("not json", "JSON object"),
        ({"hook": "order-select", "hookInstance": "x", "context": {"patientId": "p"}}, "hook"),
        ({"hook": "patient-view", "context": {"patientId": "p"}}, "hookInstance"),
        ({"hook": "patient-view", "hookInstance": "x", "context": {}}, "patientId"),
        ({"hook": "patient-view", "hookInstance": "x", "context": {"patientId": "Patient/p"}}, "patientId"),
        (
            {
                "hook": "patient-view",
                "hookInstance": "x",
                "context": {"patientId": "p"},
                "fhirAuthorization": {"access_token": "t"},
            },
            "fhirServer",
        ),
        (
            {
                "hook": "patient-view",
                "hookInstance": "x",
                "context": {"patientId": "p"},
                "fhirServer": "file:///etc/passwd",
            },
            "fhirServer",
        ),
    ],
)
def test_bad_bodies_get_400_with_a_clear_message(client: FlaskClient, body: Any, message: str) -> None:
    resp = call(client, body)
    assert resp.status_code == 400
    assert message in resp.get_json()["error"]


def test_unknown_service_is_404(client: FlaskClient) -> None:
    resp = client.post(
        "/cds-services/nope", json=hook_request("p"), headers={"Authorization": f"Bearer {token()}"}
    )
    assert resp.status_code == 404


# ------------------------------------------------------------------ JWT


def test_missing_token_is_401(client: FlaskClient) -> None:
    resp = call(client, with_prefetch("ready"), tok=None)
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: token(OTHER_KEY), "signature"),
        (lambda: token(aud="https://someone-else.example/cds-services/ccm-readiness"), "audience"),
        (lambda: token(iat=int(time.time()) - 900, exp=int(time.time()) - 600), "expired"),
        (lambda: token(iss="https://unknown.example.org"), "issuer"),
        (lambda: token(jti=None), "jti"),
        (lambda: token(iat=int(time.time()), exp=int(time.time()) + 86400), "lifetime"),
        (lambda: "not-a-jwt", "malformed"),
    ],
)
def test_bad_tokens_are_rejected(client: FlaskClient, make: Any, reason: str) -> None:
    resp = call(client, with_prefetch("ready"), tok=make())
    assert resp.status_code == 401
    assert reason in resp.get_json()["error"]


def test_replayed_jti_is_rejected(client: FlaskClient) -> None:
    tok = token()
    assert call(client, with_prefetch("ready"), tok=tok).status_code == 200
    again = call(client, with_prefetch("ready"), tok=tok)
    assert again.status_code == 401 and "replayed" in again.get_json()["error"]


def test_discovery_base_is_an_accepted_audience(client: FlaskClient) -> None:
    resp = call(client, with_prefetch("ready"), tok=token(aud=["http://localhost/cds-services"]))
    assert resp.status_code == 200


def test_configured_service_url_is_the_audience(tmp_path: Any) -> None:
    c = _app(DATA_DIR=str(tmp_path), CDS_SERVICE_URL="https://cds.example.org/cds-services").test_client()
    assert call(c, with_prefetch("ready")).status_code == 401  # aud is the request URL, not the public one
    tok = token(aud="https://cds.example.org/cds-services/ccm-readiness")
    assert call(c, with_prefetch("ready"), tok=tok).status_code == 200


def test_unauthenticated_only_when_explicitly_allowed(tmp_path: Any) -> None:
    strict = _app(DATA_DIR=str(tmp_path)).test_client()
    assert call(strict, with_prefetch("ready"), tok=None).status_code == 401
    truthy = _app(DATA_DIR=str(tmp_path), CDS_ALLOW_UNAUTHENTICATED="yes").test_client()
    assert call(truthy, with_prefetch("ready"), tok=None).status_code == 401  # must be exactly True
    open_ = _app(DATA_DIR=str(tmp_path), CDS_ALLOW_UNAUTHENTICATED=True).test_client()
    assert call(open_, with_prefetch("ready"), tok=None).status_code == 200


def test_replay_cache_is_thread_safe() -> None:
    cache = ReplayCache()
    results: list[bool] = []
    lock = threading.Lock()
    barrier = threading.Barrier(16)

    def attempt() -> None:
        barrier.wait()
        ok = cache.check_and_remember(ISS, "same-jti", time.time() + 300, time.time())
        with lock:
            results.append(ok)

    threads = [threading.Thread(target=attempt) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 1


def test_neither_token_nor_prefetch_is_logged(client: FlaskClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    tok = token()
    call(client, with_prefetch("ready"), tok=tok)
    call(client, with_prefetch("ready"), tok=tok)  # the replay is logged as refused
    text = caplog.text
    assert tok not in text and tok.split(".")[1] not in text
    assert "Testpatient" not in text and "glucose" not in text


# ------------------------------------------------------------------ CORS


def test_cors_preflight_on_cds_routes_only(client: FlaskClient) -> None:
    pre = client.options(
        "/cds-services/ccm-readiness",
        headers={
            "Origin": "https://ehr.example.org",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert pre.status_code in (200, 204)
    assert pre.headers["Access-Control-Allow-Origin"] == "*"
    allowed = pre.headers["Access-Control-Allow-Headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed
    assert "POST" in pre.headers["Access-Control-Allow-Methods"]
    assert client.options("/cds-services").headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Origin" not in client.get("/").headers


# ------------------------------------------------------------ verify() directly: JWKS by URL, algorithms


class FakeJwksServer:
    """A client's JWKS endpoint: serves `keys`; after `rotate()` a refetch sees the new key."""

    def __init__(self, *keys: ECKey) -> None:
        self.keys = list(keys)
        self.next_keys: list[ECKey] | None = None
        self.fetches: list[bool] = []

    def rotate(self, *keys: ECKey) -> None:
        self.next_keys = list(keys)

    def __call__(self, url: str, *, refresh: bool = False) -> dict[str, Any]:
        self.fetches.append(refresh)
        if refresh and self.next_keys is not None:
            self.keys = self.next_keys
        return KeySet(self.keys).as_dict(private=False)


def test_jwks_url_is_refetched_once_after_key_rotation() -> None:
    from smart_app.cds.auth import verify

    old = ECKey.generate_key("P-384", parameters={"kid": "ehr-0", "alg": "ES384"}, private=True)
    server = FakeJwksServer(old)  # what a cache still holds: the EHR's old key (another kid)
    server.rotate(KEY)
    clients = {ISS: {"jwks_url": "https://ehr.example.org/.well-known/jwks.json"}}
    claims = verify(
        token(), clients=clients, audiences=[SERVICE_URL], replay=ReplayCache(), fetch_jwks=server
    )
    assert claims["iss"] == ISS
    assert server.fetches == [False, True]


def test_symmetric_and_unsigned_tokens_are_refused() -> None:
    from joserfc.jwk import OctKey

    from smart_app.cds.auth import CdsAuthError, verify

    secret = OctKey.generate_key(256)
    now = int(time.time())
    claims = {"iss": ISS, "aud": SERVICE_URL, "iat": now, "exp": now + 60, "jti": "j1"}
    hs = jwt.encode({"alg": "HS256"}, claims, secret)
    clients = {ISS: {"jwks": {"keys": [secret.as_dict(private=True)]}}}
    with pytest.raises(CdsAuthError, match="signature"):
        verify(
            hs, clients=clients, audiences=[SERVICE_URL], replay=ReplayCache(), fetch_jwks=FakeJwksServer()
        )
    unsigned = hs.rsplit(".", 1)[0].replace(hs.split(".")[0], "eyJhbGciOiJub25lIn0") + "."
    with pytest.raises(CdsAuthError):
        verify(
            unsigned,
            clients={ISS: {"jwks": jwks()}},
            audiences=[SERVICE_URL],
            replay=ReplayCache(),
            fetch_jwks=FakeJwksServer(),
        )


def test_the_environment_configures_clients_and_the_test_switch(tmp_path: Any) -> None:
    """CDS settings come from smart_app.config like every key (no module reads the environment itself)."""
    from smart_app.config import defaults

    path = tmp_path / "clients.json"
    path.write_text('{"https://ehr.example.org": {"jwks_url": "https://ehr.example.org/jwks"}}')
    got = defaults({"CCM_READY_CDS_CLIENTS": str(path), "CCM_READY_CDS_ALLOW_UNAUTHENTICATED": "1"})
    assert got["CDS_CLIENTS"] == {"https://ehr.example.org": {"jwks_url": "https://ehr.example.org/jwks"}}
    assert got["CDS_ALLOW_UNAUTHENTICATED"] is True
    assert defaults({})["CDS_ALLOW_UNAUTHENTICATED"] is False


def test_card_counts_what_the_app_captured_in_its_ledger_for_that_server(tmp_path: Any) -> None:
    """Issue 15: minutes kept only in the app's ledger (an EHR that refused the write) count on the card too,
    as on the panel, when the request names the fhirServer they belong to."""
    from datetime import timedelta

    from fhir_mapping.write_time import TimeEntryDraft
    from smart_app.capture.import_csv import record_imported
    from smart_app.readiness.captured import ledger_of
    from tests.support.ccm_scenarios import STAFF

    app = _app(DATA_DIR=str(tmp_path))
    web = app.test_client()
    body = with_prefetch("not-yet")
    pid = body["context"]["patientId"]
    before = call(web, body).get_json()["cards"][0]["detail"]
    server = "https://ehr.example.org/fhir"
    draft = TimeEntryDraft("5e3c6b3a-1d2f-4c6e-9a51-0b7d2c4e8f10", pid, STAFF, NOW - timedelta(days=3), 30,
                           "ccm", "care-coordination", "Called the pharmacy; refill of metformin arranged.")
    record_imported(ledger_of(app), server, draft)  # type: ignore[arg-type]
    named = call(web, {**body, "fhirServer": server}).get_json()["cards"][0]["detail"]
    unnamed = call(web, body).get_json()["cards"][0]["detail"]

    def staff(detail: str) -> int:
        return int(detail.split("Clinical staff minutes counted: ", 1)[1].split("\n", 1)[0])

    assert staff(named) == staff(before) + 30
    assert staff(unnamed) == staff(before)  # another (or no) server: its ledger entries are not this one's


def test_the_card_names_people_from_the_prefetch_never_their_ids(client: FlaskClient) -> None:
    """Issue 13: the live card (not only build_card) shows the billing practitioner by name."""
    for kind in ("ready", "blocked"):
        pid = f"cds-{kind}"
        resources = scenario(kind, "2026-11", pid)
        for r in resources:
            if r["resourceType"] == "Practitioner":
                r["name"] = [{"family": f"Zorawar-{r['id']}", "given": ["Dana"]}]
        resp = call(client, hook_request(pid, prefetch=prefetch(resources, pid)))
        (card,) = resp.get_json()["cards"]
        text = json.dumps(card)
        assert "Practitioner/" not in text, text
        assert "Zorawar-pr-ccm-1" in card["detail"], card["detail"]
