"""Bulk $export client: kick-off, polling with Retry-After, streaming download, resume, and the fallback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import responses

from smart_app.fhir.bulk_export import (
    STATE_FILE,
    BulkExporter,
    BulkExportError,
    ExportNotSupported,
    ExportRequest,
    export_population,
)
from smart_app.fhir.client import FhirClient

BASE = "https://fhir.example.org/r4"
STATUS = f"{BASE}/bulk-status/42"
FILES = {
    "Patient": b'{"resourceType":"Patient","id":"1"}\n',
    "Condition": b'{"resourceType":"Condition","id":"c"}\n',
}
MANIFEST = {
    "transactionTime": "2026-10-01T00:00:00Z",
    "request": f"{BASE}/Patient/$export",
    "requiresAccessToken": True,
    "output": [{"type": t, "url": f"{BASE}/files/{t}.ndjson", "count": 1} for t in FILES],
    "error": [],
}


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def _exporter(sleeps: Sleeps, token: str | None = "tok") -> BulkExporter:
    return BulkExporter(
        BASE, token_provider=(lambda: token) if token else None, sleep=sleeps, clock=lambda: 0.0
    )


def _kickoff(rsps: responses.RequestsMock) -> None:
    rsps.get(f"{BASE}/Patient/$export", status=202, headers={"Content-Location": STATUS})


def _files(rsps: responses.RequestsMock) -> None:
    for t, body in FILES.items():
        rsps.get(f"{BASE}/files/{t}.ndjson", body=body, content_type="application/fhir+ndjson")


@responses.activate
def test_kickoff_poll_with_retry_after_and_download(tmp_path: Path) -> None:
    _kickoff(responses)
    responses.get(STATUS, status=202, headers={"Retry-After": "7", "X-Progress": "collecting"})
    responses.get(STATUS, status=202)  # no Retry-After: the default interval
    responses.get(STATUS, status=503, headers={"Retry-After": "2"})  # busy: wait as asked, then again
    responses.get(STATUS, json=MANIFEST)
    _files(responses)
    sleeps = Sleeps()
    stages: list[str] = []
    result = _exporter(sleeps).run(ExportRequest(types=("Patient", "Condition")), tmp_path, stages.append)
    assert sleeps == [7.0, 0.5, 2.0]  # Retry-After as given; without one, promptly
    assert [t for t, _p in result.files] == ["Patient", "Condition"]
    assert result.files[0][1].read_bytes() == FILES["Patient"] and result.method == "bulk"
    assert result.count("Patient") == 1
    kick = responses.calls[0].request
    assert kick.headers["Prefer"] == "respond-async" and kick.headers["Authorization"] == "Bearer tok"
    assert "_type=Patient%2CCondition" in kick.url and "_outputFormat" in kick.url
    assert any("collecting" in s for s in stages)
    assert all(c.request.headers.get("Authorization") == "Bearer tok" for c in responses.calls)


@responses.activate
def test_resume_skips_kickoff_polling_and_complete_files(tmp_path: Path) -> None:
    req = ExportRequest(types=("Patient", "Condition"))
    # First run: the second file fails mid-way.
    _kickoff(responses)
    responses.get(STATUS, json=MANIFEST)
    responses.get(f"{BASE}/files/Patient.ndjson", body=FILES["Patient"])
    responses.get(f"{BASE}/files/Condition.ndjson", status=500)
    with pytest.raises(BulkExportError):
        _exporter(Sleeps()).run(req, tmp_path)
    state = json.loads((tmp_path / STATE_FILE).read_text())
    assert state["status_url"] == STATUS and state["manifest"] and len(state["complete"]) == 1
    # Second run: no kick-off, no polling, only the missing file.
    responses.reset()
    responses.get(f"{BASE}/files/Condition.ndjson", body=FILES["Condition"])
    result = _exporter(Sleeps()).run(req, tmp_path)
    assert result.resumed and [c.request.url for c in responses.calls] == [f"{BASE}/files/Condition.ndjson"]
    assert result.files[1][1].read_bytes() == FILES["Condition"]


@responses.activate
def test_resume_after_the_export_expired_starts_again(tmp_path: Path) -> None:
    req = ExportRequest()
    _kickoff(responses)
    responses.get(STATUS, status=202, headers={"Retry-After": "1"})
    with pytest.raises(BulkExportError):
        BulkExporter(BASE, sleep=Sleeps(), clock=iter([0.0, 0.0, 10_000.0]).__next__, max_wait=5).run(
            req, tmp_path
        )
    responses.reset()
    responses.get(STATUS, status=404)
    _kickoff(responses)
    responses.add(responses.GET, STATUS, json=MANIFEST)
    _files(responses)
    result = _exporter(Sleeps(), token=None).run(req, tmp_path)
    assert [t for t, _p in result.files] == ["Patient", "Condition"]
    assert "Authorization" not in responses.calls[-1].request.headers


@responses.activate
def test_no_export_falls_back_to_paged_searches(tmp_path: Path) -> None:
    responses.get(f"{BASE}/Patient/$export", status=404)
    page2 = f"{BASE}/Patient?page=2"
    responses.get(
        f"{BASE}/Patient",
        match=[responses.matchers.query_param_matcher({"_count": "1000"})],
        json={
            "resourceType": "Bundle",
            "type": "searchset",
            "link": [{"relation": "next", "url": page2}],
            "entry": [{"resource": {"resourceType": "Patient", "id": "1"}, "search": {"mode": "match"}}],
        },
    )
    responses.get(
        page2,
        json={
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [
                {"resource": {"resourceType": "Patient", "id": "2"}},
                {"resource": {"resourceType": "OperationOutcome"}, "search": {"mode": "outcome"}},
            ],
        },
    )
    responses.get(f"{BASE}/Condition", json={"resourceType": "Bundle", "type": "searchset", "entry": []})
    result = export_population(
        BASE,
        ExportRequest(types=("Patient", "Condition")),
        tmp_path,
        client=FhirClient(BASE),
        exporter=_exporter(Sleeps(), None),
    )
    assert result.method == "search" and result.count("Patient") == 2
    lines = result.files[0][1].read_bytes().splitlines()
    assert [json.loads(x)["id"] for x in lines] == ["1", "2"]


@responses.activate
def test_errors_are_readable() -> None:
    responses.get(
        f"{BASE}/Group/g1/$export",
        status=400,
        json={
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": "invalid", "diagnostics": "Bad _since"}],
        },
    )
    with pytest.raises(BulkExportError, match="Bad _since"):
        _exporter(Sleeps()).kickoff(ExportRequest(level="group", group="Group/g1"))
    responses.get(f"{BASE}/$export", status=405)
    with pytest.raises(ExportNotSupported):
        _exporter(Sleeps()).kickoff(ExportRequest(level="system"))
    responses.get(
        f"{BASE}/Patient/$export", status=202, headers={"Content-Location": "https://evil.example/s"}
    )
    with pytest.raises(BulkExportError, match="another origin"):
        _exporter(Sleeps()).kickoff(ExportRequest())
    with pytest.raises(ValueError):
        ExportRequest(level="group")


@responses.activate
def test_backend_services_token(tmp_path: Path) -> None:
    from joserfc import jwt
    from joserfc.jwk import RSAKey

    from smart_app.auth.backend_services import ASSERTION_TYPE, BackendServicesAuth, load_key

    key = RSAKey.generate_key(2048, private=True)
    key_file = tmp_path / "key.json"
    key_file.write_text(json.dumps({**key.as_dict(private=True), "kid": "k1"}))
    token_url = "https://auth.example.org/token"
    responses.get(f"{BASE}/.well-known/smart-configuration", json={"token_endpoint": token_url})
    responses.post(token_url, json={"access_token": "abc", "expires_in": 300, "token_type": "bearer"})
    auth = BackendServicesAuth(BASE, "ccm-client", load_key(key_file))
    assert auth() == "abc" and auth() == "abc"  # cached
    posts = [c for c in responses.calls if c.request.method == "POST"]
    assert len(posts) == 1
    from urllib.parse import parse_qs

    form = {k: v[0] for k, v in parse_qs(posts[0].request.body).items()}
    assert form["grant_type"] == "client_credentials" and form["client_assertion_type"] == ASSERTION_TYPE
    token = jwt.decode(form["client_assertion"], key, algorithms=["RS384"])
    assert token.header["alg"] == "RS384" and token.header["kid"] == "k1"
    claims = token.claims
    assert claims["iss"] == claims["sub"] == "ccm-client" and claims["aud"] == token_url
    assert claims["exp"] - claims["iat"] <= 300 and claims["jti"]
