"""CDS Hooks attacks (issue 12: items 8, 9, 10 and the spec details), with local HTTP servers standing in
for the EHR's JWKS endpoint and for a FHIR server the service must not call."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet

from smart_app.cds.auth import CdsAuthError, JwksFetcher, ReplayCache, verify
from tests.security.support import json_answer, local_server
from tests.support import app as support_app
from tests.support.ccm_scenarios import hook_request, prefetch, scenario

ISS = "https://ehr.example.org"
SERVICE = "https://cds.example.org/cds-services"
KEY = ECKey.generate_key("P-384", parameters={"kid": "ehr-1", "alg": "ES384"}, private=True)
FORGER = ECKey.generate_key("P-384", parameters={"kid": "ehr-1", "alg": "ES384"}, private=True)


def token(key: ECKey = KEY, kid: str | None = "ehr-1", **claims: Any) -> str:
    now = int(time.time())
    body = {
        "iss": ISS,
        "sub": "ehr",
        "aud": f"{SERVICE}/ccm-readiness",
        "iat": now,
        "exp": now + 300,
        "jti": str(uuid.uuid4()),
        **claims,
    }
    header = {"alg": "ES384", "typ": "JWT", **({"kid": kid} if kid else {})}
    return jwt.encode(header, body, key, algorithms=["ES384"])


def app_with(tmp: Path, **config: Any) -> Any:
    settings = {"CDS_CLIENTS": {ISS: {"jwks": KeySet([KEY]).as_dict()}}, "CDS_SERVICE_URL": SERVICE, **config}
    return support_app.make_app(tmp, **settings)


def call(client: Any, body: Any, tok: str | None, host: str = "localhost") -> Any:
    headers = {"Authorization": f"Bearer {tok}"} if tok else {}
    return client.post("/cds-services/ccm-readiness", json=body, headers=headers, base_url=f"http://{host}")


def full_prefetch(pid: str) -> dict[str, Any]:
    return prefetch(scenario("ready", "2026-11", pid), pid)


# ------------------------------------------------------------------ 8. the audience is configuration


def test_no_service_url_means_no_service_and_the_host_header_is_never_the_audience(tmp_path: Path) -> None:
    app = app_with(tmp_path, CDS_SERVICE_URL=None)
    forged_aud = token(aud="http://evil.example/cds-services/ccm-readiness")  # minted for another service
    body = hook_request("p1", prefetch=full_prefetch("p1"))
    resp = call(app.test_client(), body, forged_aud, host="evil.example")
    assert resp.status_code == 503 and "CDS_SERVICE_URL" in resp.get_json()["error"]


def test_a_token_for_another_service_is_refused(tmp_path: Path) -> None:
    client = app_with(tmp_path).test_client()
    body = hook_request("p1", prefetch=full_prefetch("p1"))
    other = token(aud="https://other.example.org/cds-services/ccm-readiness")
    assert call(client, body, other, host="other.example.org").status_code == 401
    assert call(client, body, token()).status_code == 200


# ------------------------------------------------------------------ 9. fhirServer SSRF


def _fhir_recorder() -> Any:
    return local_server(
        lambda seen: json_answer({"resourceType": "Bundle", "type": "searchset", "entry": []})
    )


def test_fhir_server_off_the_allow_list_is_never_fetched(tmp_path: Path) -> None:
    with _fhir_recorder() as target:
        client = app_with(tmp_path).test_client()  # a client configured without fhir_servers
        body = hook_request(
            "p1",
            fhirServer=target.url,
            fhirAuthorization={"access_token": "ehr-secret", "token_type": "Bearer"},
        )
        resp = call(client, body, token())
        assert resp.status_code == 412, resp.get_json()
        assert target.seen == []  # no request, so the EHR's token went nowhere
        listed = app_with(
            tmp_path,
            CDS_CLIENTS={
                ISS: {"jwks": KeySet([KEY]).as_dict(), "fhir_servers": ["https://fhir.example.org"]}
            },
        )
        assert call(listed.test_client(), body, token()).status_code == 412
        assert target.seen == []


def test_fhir_server_on_the_allow_list_is_fetched_and_a_failed_fetch_is_412(tmp_path: Path) -> None:
    with local_server(lambda seen: (500, {}, b"boom")) as broken:
        app = app_with(
            tmp_path,
            CDS_CLIENTS={ISS: {"jwks": KeySet([KEY]).as_dict(), "fhir_servers": [broken.url]}},
            FHIR_TIMEOUT=2.0,
        )
        body = hook_request(
            "p1",
            fhirServer=broken.url,
            fhirAuthorization={"access_token": "ehr-secret", "token_type": "Bearer"},
        )
        resp = call(app.test_client(), body, token())
        assert resp.status_code == 412, resp.get_json()
        assert broken.seen and broken.seen[0].headers.get("Authorization") == "Bearer ehr-secret"


def test_null_prefetch_key_means_no_data(tmp_path: Path) -> None:
    client = app_with(tmp_path).test_client()
    data = full_prefetch("p1")
    nulls = {k: (v if k == "patient" else None) for k, v in data.items()}
    resp = call(client, hook_request("p1", prefetch=nulls), token())
    assert resp.status_code == 200, resp.get_json()  # evaluated on the patient alone, no fetch needed


# ------------------------------------------------------------------ 10. JWKS fetches: per kid, rate limited


def _jwks_server(keys: list[ECKey]) -> Any:
    return local_server(lambda seen: json_answer(KeySet(keys).as_dict(private=False)))


def test_forged_tokens_do_not_refetch_the_jwks(tmp_path: Path) -> None:
    with _jwks_server([KEY]) as ehr:
        fetcher = JwksFetcher()
        clients = {ISS: {"jwks_url": f"{ehr.url}/jwks"}}
        aud = [f"{SERVICE}/ccm-readiness"]
        for _ in range(50):
            with pytest.raises(CdsAuthError):  # same kid, wrong key
                verify(
                    token(FORGER), clients=clients, audiences=aud, replay=ReplayCache(), fetch_jwks=fetcher
                )
        for i in range(50):
            with pytest.raises(CdsAuthError):  # unknown kids: one re-fetch at most per minute
                verify(
                    token(FORGER, kid=f"rotated-{i}"),
                    clients=clients,
                    audiences=aud,
                    replay=ReplayCache(),
                    fetch_jwks=fetcher,
                )
        assert len(ehr.seen) <= 2, len(ehr.seen)
        claims = verify(token(), clients=clients, audiences=aud, replay=ReplayCache(), fetch_jwks=fetcher)
        assert claims["iss"] == ISS and len(ehr.seen) <= 2


def test_kid_is_required_when_the_jwks_holds_several_keys() -> None:
    second = ECKey.generate_key("P-384", parameters={"kid": "ehr-2", "alg": "ES384"}, private=True)
    clients = {ISS: {"jwks": KeySet([KEY, second]).as_dict(private=False)}}
    aud = [f"{SERVICE}/ccm-readiness"]
    with pytest.raises(CdsAuthError, match="kid"):
        verify(
            token(kid=None), clients=clients, audiences=aud, replay=ReplayCache(), fetch_jwks=JwksFetcher()
        )
    single = {ISS: {"jwks": KeySet([KEY]).as_dict(private=False)}}
    assert (
        verify(
            token(kid=None), clients=single, audiences=aud, replay=ReplayCache(), fetch_jwks=JwksFetcher()
        )["iss"]
        == ISS
    )


def test_imported_keys_are_reused_and_a_rotated_jwks_is_imported_afresh() -> None:
    from smart_app.cds import auth

    keys = auth.ImportedKeys(size=2)
    first = KeySet([KEY]).as_dict(private=False)
    assert keys(first) is keys(dict(first)) and keys.imports == 1  # same content: imported once
    rotated = ECKey.generate_key("P-384", parameters={"kid": "ehr-2", "alg": "ES384"}, private=True)
    second = KeySet([KEY, rotated]).as_dict(private=False)
    assert {k.kid for k in keys(second).keys} == {"ehr-1", "ehr-2"} and keys.imports == 2
    keys(KeySet([rotated]).as_dict(private=False))
    keys(first)  # evicted (LRU of 2): imported again
    assert keys.imports == 4
    with pytest.raises(CdsAuthError):
        keys({"keys": [{"kty": "EC", "crv": "P-384", "x": "bad"}]})
    # A token signed by a key the cached set does not hold still fails; the rotated key verifies.
    clients = {ISS: {"jwks": second}}
    aud = [f"{SERVICE}/ccm-readiness"]
    assert verify(
        token(rotated, kid="ehr-2"), clients=clients, audiences=aud, replay=ReplayCache(),
        fetch_jwks=JwksFetcher(),
    )["iss"] == ISS
    with pytest.raises(CdsAuthError):
        verify(token(FORGER, kid="ehr-2"), clients=clients, audiences=aud, replay=ReplayCache(),
               fetch_jwks=JwksFetcher())


def test_the_cds_body_depth_limit_matches_every_other_json_body() -> None:
    from smart_app.cds.service import _depth_within
    from smart_app.web.security import json_depth_ok

    def nested(depth: int) -> Any:
        value: Any = 1
        for i in range(depth):
            value = [value] if i % 2 else {"a": value, "b": [1, 2]}
        return value

    for depth in range(0, 70):
        for limit in (1, 2, 63, 64, 65):
            assert _depth_within(nested(depth), limit) == json_depth_ok(nested(depth), limit), (depth, limit)
