"""HTTP edge cases of FhirClient (responses library; no network)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import requests
import responses
from responses import matchers
from responses.registries import OrderedRegistry

from smart_app.fhir.client import (
    FhirClient,
    FhirError,
    FhirForbidden,
    FhirNotFound,
    FhirUnauthorized,
    FhirUnavailable,
    outcome_text,
)

BASE = "https://fhir.example.org/r4"


class Sleeps:
    """Records the delays the client asks for instead of sleeping."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def make(sleeps: Sleeps | None = None, **kw: Any) -> FhirClient:
    kw.setdefault("backoff", 0.001)
    return FhirClient(BASE, sleep=sleeps or Sleeps(), **kw)


def outcome(diagnostics: str, expression: list[str] | None = None, severity: str = "error") -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": severity, "code": "processing", "diagnostics": diagnostics}
    if expression:
        issue["expression"] = expression
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def searchset(ids: list[str], next_url: str | None = None, rtype: str = "Encounter") -> dict[str, Any]:
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": {"resourceType": rtype, "id": i}, "search": {"mode": "match"}} for i in ids],
        "link": [{"relation": "self", "url": f"{BASE}/{rtype}"}],
    }
    if next_url:
        bundle["link"].append({"relation": "next", "url": next_url})
    return bundle


PATIENT = {"resourceType": "Patient", "id": "p1"}


@responses.activate(registry=OrderedRegistry)
def test_timeouts_then_success_is_retried_with_backoff() -> None:
    responses.get(f"{BASE}/Patient/p1", body=requests.ConnectTimeout("slow"))
    responses.get(f"{BASE}/Patient/p1", body=requests.ReadTimeout("slow"))
    responses.get(f"{BASE}/Patient/p1", json=PATIENT)
    sleeps = Sleeps()
    client = make(sleeps, backoff=0.5)
    assert client.read("Patient", "p1") == PATIENT
    assert client.round_trips == 3
    assert sleeps.delays == [0.5, 1.0]


@responses.activate
def test_connection_failures_exhausted_raise_unavailable() -> None:
    responses.get(f"{BASE}/Patient/p1", body=requests.ConnectionError("refused"))
    client = make(max_retries=2)
    with pytest.raises(FhirUnavailable, match="could not connect after 3 attempts") as info:
        client.read("Patient", "p1")
    assert info.value.status is None
    assert client.round_trips == 3


@responses.activate(registry=OrderedRegistry)
def test_5xx_retried_then_success() -> None:
    responses.get(f"{BASE}/Condition", status=502)
    responses.get(f"{BASE}/Condition", status=500, json=outcome("HAPI-2223: Timer already cancelled"))
    responses.get(f"{BASE}/Condition", json=searchset(["c1"], rtype="Condition"))
    client = make()
    assert [r["id"] for r in client.search("Condition", {"patient": "p1"})] == ["c1"]
    assert client.round_trips == 3


@responses.activate
def test_5xx_exhausted_raises_with_the_outcome_text() -> None:
    responses.get(f"{BASE}/Condition", status=503, json=outcome("Server is restarting"))
    client = make(max_retries=3)
    with pytest.raises(FhirUnavailable) as info:
        client.search("Condition", {"patient": "p1"})
    assert info.value.status == 503
    assert info.value.message == "HTTP 503 from FHIR server: Server is restarting"
    assert client.round_trips == 4


@responses.activate(registry=OrderedRegistry)
def test_429_honours_retry_after() -> None:
    responses.get(f"{BASE}/Patient/p1", status=429, headers={"Retry-After": "2"})
    responses.get(f"{BASE}/Patient/p1", json=PATIENT)
    sleeps = Sleeps()
    assert make(sleeps).read("Patient", "p1")["id"] == "p1"
    assert sleeps.delays == [2.0]


@responses.activate(registry=OrderedRegistry)
def test_retry_after_as_an_http_date() -> None:
    responses.get(f"{BASE}/Patient/p1", status=503, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})
    responses.get(f"{BASE}/Patient/p1", json=PATIENT)
    sleeps = Sleeps()
    assert make(sleeps, backoff=0.25).read("Patient", "p1") == PATIENT
    assert sleeps.delays == [0.25]  # a date in the past: just the backoff


@responses.activate
def test_429_with_a_long_retry_after_gives_up_at_once() -> None:
    responses.get(f"{BASE}/Patient/p1", status=429, headers={"Retry-After": "3600"})
    client = make()
    with pytest.raises(FhirUnavailable, match="retry after 3600 s"):
        client.read("Patient", "p1")
    assert client.round_trips == 1


@responses.activate
def test_post_create_is_never_retried_on_5xx_or_connection_errors() -> None:
    responses.post(f"{BASE}/Task", status=503)
    client = make()
    with pytest.raises(FhirUnavailable):
        client.create({"resourceType": "Task", "status": "completed"})
    assert client.round_trips == 1
    responses.post(BASE, body=requests.ConnectionError("reset"))
    with pytest.raises(FhirUnavailable):
        client.transaction({"resourceType": "Bundle", "type": "transaction", "entry": []})
    assert client.round_trips == 2


@responses.activate
def test_paging_across_three_pages() -> None:
    responses.get(
        f"{BASE}/Encounter",
        match=[matchers.query_param_matcher({"patient": "p1"})],
        json=searchset(["e1", "e2"], f"{BASE}/Encounter?patient=p1&_offset=2"),
    )
    responses.get(
        f"{BASE}/Encounter",
        match=[matchers.query_param_matcher({"patient": "p1", "_offset": "2"})],
        json=searchset(["e3", "e4"], f"{BASE}?_getpages=abc&_getpagesoffset=4"),
    )
    responses.get(
        BASE,
        match=[matchers.query_param_matcher({"_getpages": "abc", "_getpagesoffset": "4"})],
        json=searchset(["e5"]),
    )
    client = make()
    assert [e["id"] for e in client.search("Encounter", {"patient": "p1"})] == ["e1", "e2", "e3", "e4", "e5"]
    assert client.round_trips == 3


@responses.activate
def test_relative_next_link_is_resolved_against_the_base() -> None:
    responses.get(
        f"{BASE}/Encounter",
        match=[matchers.query_param_matcher({"patient": "p1"})],
        json=searchset(["e1"], "Encounter?patient=p1&_offset=1"),
    )
    responses.get(
        f"{BASE}/Encounter",
        match=[matchers.query_param_matcher({"patient": "p1", "_offset": "1"})],
        json=searchset(["e2"]),
    )
    assert len(make().search("Encounter", {"patient": "p1"})) == 2


@pytest.mark.parametrize(
    "evil",
    [
        "https://attacker.example/r4/Encounter?page=2",
        "http://fhir.example.org/r4/Encounter?page=2",  # scheme downgrade
        "https://fhir.example.org:8443/r4/Encounter?page=2",
        "https://fhir.example.org/other/Encounter?page=2",  # outside the FHIR base path
    ],
)
@responses.activate
def test_foreign_next_link_is_refused(evil: str) -> None:
    responses.get(f"{BASE}/Encounter", json=searchset(["e1"], evil))
    client = make()
    with pytest.raises(FhirError, match="refusing to follow"):
        client.search("Encounter", {"patient": "p1"})
    assert client.round_trips == 1
    assert len(responses.calls) == 1


@responses.activate
def test_page_count_is_bounded() -> None:
    for n in range(5):
        responses.get(
            f"{BASE}/Encounter",
            match=[matchers.query_param_matcher({"page": str(n)})],
            json=searchset([f"e{n}"], f"{BASE}/Encounter?page={n + 1}"),
        )
    client = make(max_pages=3)
    with pytest.raises(FhirError, match="more than 3 pages"):
        client.search("Encounter", {"page": "0"})
    assert client.round_trips == 3


@responses.activate
def test_a_next_link_pointing_at_itself_stops() -> None:
    responses.get(
        f"{BASE}/Encounter",
        match=[matchers.query_param_matcher({"page": "1"})],
        json=searchset(["e1"], f"{BASE}/Encounter?page=2"),
    )
    responses.get(
        f"{BASE}/Encounter",
        match=[matchers.query_param_matcher({"page": "2"})],
        json=searchset(["e2"], f"{BASE}/Encounter?page=2"),
    )
    assert [e["id"] for e in make().search("Encounter", {"page": "1"})] == ["e1", "e2"]


@responses.activate
def test_operation_outcome_becomes_a_readable_message() -> None:
    responses.get(
        f"{BASE}/Encounter", status=400, json=outcome("Unknown search parameter 'foo'", ["Encounter.foo"])
    )
    with pytest.raises(FhirError) as info:
        make().search("Encounter", {"foo": "bar"})
    assert type(info.value) is FhirError
    assert info.value.status == 400
    assert str(info.value) == "HTTP 400 from FHIR server: Unknown search parameter 'foo' (Encounter.foo)"
    assert info.value.outcome and info.value.outcome["resourceType"] == "OperationOutcome"


def test_outcome_text_uses_details_and_severity() -> None:
    oo = {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": "invalid",
                "details": {"text": "Missing status"},
                "expression": ["Task.status"],
            },
            {
                "severity": "warning",
                "code": "informational",
                "details": {"coding": [{"display": "Odd code"}]},
            },
            {"severity": "error", "code": "not-found"},
            "junk",
        ],
    }
    assert outcome_text(oo) == "Missing status (Task.status); warning: Odd code; not-found"
    assert outcome_text({"resourceType": "Patient"}) == ""
    assert outcome_text(None) == ""


@responses.activate
def test_error_without_a_body_still_reads_well() -> None:
    responses.get(f"{BASE}/Patient/p1", status=405, body="<html>nope</html>")
    with pytest.raises(FhirError, match=r"^HTTP 405 from FHIR server: method not allowed$"):
        make().read("Patient", "p1")


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (401, FhirUnauthorized),
        (403, FhirForbidden),
        (404, FhirNotFound),
        (410, FhirNotFound),
    ],
)
@responses.activate
def test_status_mapping(status: int, kind: type[FhirError]) -> None:
    responses.get(f"{BASE}/Patient/p1", status=status, json=outcome("nope"))
    client = make()
    with pytest.raises(kind) as info:
        client.read("Patient", "p1")
    assert info.value.status == status
    assert client.round_trips == 1  # never retried


@responses.activate
def test_no_authorization_header_without_a_token_provider() -> None:
    responses.get(f"{BASE}/Patient/p1", json=PATIENT)
    make().read("Patient", "p1")
    sent = responses.calls[0].request.headers
    assert "Authorization" not in sent
    assert sent["Accept"] == "application/fhir+json"
    assert sent["Prefer"] == "handling=strict"


@responses.activate
def test_no_authorization_header_when_the_provider_has_no_token() -> None:
    responses.get(f"{BASE}/Patient/p1", json=PATIENT)
    make(token_provider=lambda: None).read("Patient", "p1")
    assert "Authorization" not in responses.calls[0].request.headers


@responses.activate
def test_bearer_header_from_the_provider_on_every_request() -> None:
    tokens = iter(["t1", "t2"])
    responses.get(f"{BASE}/Patient/p1", json=PATIENT)
    client = make(token_provider=lambda: next(tokens))
    client.read("Patient", "p1")
    client.read("Patient", "p1")
    assert [c.request.headers["Authorization"] for c in responses.calls] == ["Bearer t1", "Bearer t2"]


@responses.activate
def test_batch_results_with_a_404_entry_and_paging_inside() -> None:
    responses.post(
        BASE,
        json={
            "resourceType": "Bundle",
            "type": "batch-response",
            "entry": [
                {"resource": PATIENT, "response": {"status": "200 OK"}},
                {"response": {"status": "404 Not Found", "outcome": outcome("Patient/zz not found")}},
                {
                    "resource": searchset(["t1"], f"{BASE}/Task?patient=p1&_offset=1", "Task"),
                    "response": {"status": "200 OK"},
                },
                {
                    "resource": outcome("Unknown search parameter 'bogus'"),
                    "response": {"status": "400 Bad Request"},
                },
            ],
        },
    )
    responses.get(f"{BASE}/Task", json=searchset(["t2"], rtype="Task"))
    client = make()
    results = client.batch(["Patient/p1", "Patient/zz", "Task?patient=p1", "Task?bogus=1"])
    assert [r.status for r in results] == [200, 404, 200, 400]
    assert results[0].resources == [PATIENT]
    assert results[1].resources == [] and not results[1].ok
    assert results[1].message == "HTTP 404 from FHIR server: Patient/zz not found"
    assert isinstance(results[1].error(), FhirNotFound)
    assert [t["id"] for t in results[2].resources] == ["t1", "t2"]
    assert results[3].message == "HTTP 400 from FHIR server: Unknown search parameter 'bogus'"
    assert client.round_trips == 2
    body = responses.calls[0].request.body
    assert b'"type": "batch"' in body or b'"type":"batch"' in body
    assert responses.calls[0].request.headers["Content-Type"] == "application/fhir+json"


@responses.activate(registry=OrderedRegistry)
def test_batch_of_gets_is_retried_on_503() -> None:
    responses.post(BASE, status=503)
    responses.post(
        BASE,
        json={
            "resourceType": "Bundle",
            "type": "batch-response",
            "entry": [{"resource": PATIENT, "response": {"status": "200 OK"}}],
        },
    )
    client = make()
    assert client.batch(["Patient/p1"])[0].resources == [PATIENT]
    assert client.round_trips == 2


@responses.activate
def test_batch_answer_of_the_wrong_shape_is_an_error() -> None:
    responses.post(BASE, json={"resourceType": "Bundle", "type": "batch-response", "entry": []})
    with pytest.raises(FhirError, match="batch-response Bundle of 1 entries"):
        make().batch(["Patient/p1"])


def test_batch_refuses_absolute_urls() -> None:
    with pytest.raises(ValueError, match="relative GET URLs"):
        make().batch(["https://elsewhere.example/Patient/1"])


@responses.activate
def test_create_returns_the_stored_resource_and_sends_if_none_exist() -> None:
    responses.post(
        f"{BASE}/Task",
        status=201,
        json={"resourceType": "Task", "id": "t9"},
        match=[matchers.header_matcher({"If-None-Exist": "identifier=a|b"})],
    )
    assert make().create({"resourceType": "Task"}, if_none_exist="identifier=a|b")["id"] == "t9"


@responses.activate
def test_create_with_an_empty_answer_reads_the_location() -> None:
    responses.post(f"{BASE}/Task", status=201, body="", headers={"Location": f"{BASE}/Task/t7/_history/1"})
    responses.get(f"{BASE}/Task/t7", json={"resourceType": "Task", "id": "t7"})
    assert make().create({"resourceType": "Task"})["id"] == "t7"


@responses.activate
def test_capabilities_are_cached() -> None:
    responses.get(f"{BASE}/metadata", json={"resourceType": "CapabilityStatement"})
    client = make()
    client.capabilities()
    client.capabilities()
    assert client.round_trips == 1


@responses.activate
def test_ids_are_escaped_in_the_path() -> None:
    responses.get(f"{BASE}/Patient/a%2Fb", json=PATIENT)
    make().read("Patient", "a/b")
    assert responses.calls[0].request.url == f"{BASE}/Patient/a%2Fb"


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="http"):
        FhirClient("ftp://x")
    with pytest.raises(ValueError, match="resource type"):
        make().read("../Patient", "1")


@responses.activate
def test_logs_carry_no_ids_or_query_values(caplog: pytest.LogCaptureFixture) -> None:
    responses.get(f"{BASE}/Patient/secret-id-42", status=404, json=outcome("gone"))
    responses.get(f"{BASE}/Condition", json=searchset([], rtype="Condition"))
    client = make()
    with caplog.at_level(logging.DEBUG, logger="smart_app.fhir.client"), pytest.raises(FhirNotFound):
        client.read("Patient", "secret-id-42")
    with caplog.at_level(logging.DEBUG, logger="smart_app.fhir.client"):
        client.search("Condition", {"patient": "secret-id-42", "code": "E11.9"})
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "GET Patient -> 404" in text and "GET Condition -> 200" in text
    assert "secret-id-42" not in text and "E11.9" not in text


def test_pooled_sessions_read_the_proxy_environment_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from smart_app.fhir.client import pooled_session

    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "direct.example")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/practice-ca.pem")
    proxied = pooled_session("https://ehr-proxied.example/fhir")
    direct = pooled_session("https://direct.example/fhir")
    assert proxied.proxies.get("https") == "http://proxy.example:3128" and not direct.proxies
    assert proxied.verify == "/etc/ssl/practice-ca.pem" and not proxied.trust_env  # no per-request re-read
