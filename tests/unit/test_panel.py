"""The readiness panel end to end through Flask, with a hand-written in-memory FHIR server.

`FakeFhir` and `scenario()` are re-used by the browser tests (tests/browser/conftest.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from rules.verdict import to_json
from smart_app.context import LaunchContext
from smart_app.fhir.client import FhirError
from tests.support import app as support_app
from tests.support.fake_fhir import FakeFhir

BASE = "http://fhir.test/fhir"
MONTH = "2026-11"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
PROGRAM = "https://ccm-ready.org/fhir/CodeSystem/care-program"
ACTIVITY = "https://ccm-ready.org/fhir/CodeSystem/care-activity"
DISCLOSURE_EXT = "https://ccm-ready.org/fhir/StructureDefinition/ccm-disclosure"
DISCLOSURE_CS = "https://ccm-ready.org/fhir/CodeSystem/ccm-disclosure"
DR = "Practitioner/dr1"
NURSE = "Practitioner/rn1"
TERMS = "http://terminology.hl7.org/CodeSystem"
METHOD_EXT = "https://ccm-ready.org/fhir/StructureDefinition/consent-method"
SCRIPT = "<script>alert('x')</script>"

# ------------------------------------------------------------------------------------ fake FHIR server


# ------------------------------------------------------------------------------------ scenarios


def _ref(ref: str) -> dict[str, str]:
    return {"reference": ref}


def scenario(kind: str, pid: str | None = None, *, name: str = "Ada Lovelace",
             condition_display: str = "Type 2 diabetes mellitus") -> list[dict[str, Any]]:
    """Resources for a patient whose November 2026 is `kind`: ready | not-yet | blocked | not-eligible."""
    pid = pid or f"p-{kind}"
    subject = _ref(f"Patient/{pid}")
    res: list[dict[str, Any]] = [{
        "resourceType": "Patient", "id": pid, "name": [{"use": "official", "text": name}],
        "birthDate": "1948-05-06", "gender": "female", "generalPractitioner": [_ref(DR)],
    }]

    def condition(cid: str, code: str, display: str) -> dict[str, Any]:
        return {
            "resourceType": "Condition", "id": cid, "subject": subject,
            "clinicalStatus": {"coding": [{"system": f"{TERMS}/condition-clinical", "code": "active"}]},
            "verificationStatus": {"coding": [
                {"system": f"{TERMS}/condition-ver-status", "code": "confirmed"}]},
            "code": {"coding": [{"system": ICD10, "code": code, "display": display}], "text": display},
            "onsetDateTime": "2019-03-01",
        }

    res.append(condition(f"{pid}-c1", "E11.9", condition_display))
    if kind != "not-eligible":
        res.append(condition(f"{pid}-c2", "I10", "Essential hypertension"))
    res.append(condition(f"{pid}-c3", "J06.9", "Acute upper respiratory infection"))
    if kind != "blocked":
        res.append({
            "resourceType": "Consent", "id": f"{pid}-consent", "status": "active", "patient": subject,
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                                  "code": "treatment"}]},
            "category": [{"coding": [{"system": PROGRAM, "code": "ccm"}]}],
            "dateTime": "2026-01-15T10:00:00Z",
            "performer": [_ref(NURSE)],
            "extension": [
                {"url": DISCLOSURE_EXT, "valueCoding": {"system": DISCLOSURE_CS, "code": code}}
                for code in ("ccm-available", "cost-sharing", "one-practitioner", "right-to-stop")
            ] + [{"url": METHOD_EXT, "valueCode": "verbal"}],
            "provision": {"type": "permit", "actor": [{"role": {"coding": [{
                "system": f"{TERMS}/v3-ParticipationType", "code": "PPRF"}]},
                "reference": _ref(DR)}]},
        })
    res.append({
        "resourceType": "CarePlan", "id": f"{pid}-plan", "status": "active", "intent": "plan",
        "subject": subject,
        "category": [{"coding": [{"system": PROGRAM, "code": "ccm"}]}],
        "period": {"start": "2026-01-15"}, "author": _ref(DR),
    })
    res.append({
        "resourceType": "Encounter", "id": f"{pid}-visit", "status": "finished", "subject": subject,
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "type": [{"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "99214"}]}],
        "participant": [{"individual": _ref(DR)}],
        "period": {"start": "2025-12-10T09:00:00Z", "end": "2025-12-10T09:30:00Z"},
    })
    res.append({
        "resourceType": "Task", "id": f"{pid}-risk", "status": "completed", "intent": "order", "for": subject,
        "code": {"coding": [{"system": ACTIVITY, "code": "risk-attestation"}]}, "owner": _ref(DR),
        "executionPeriod": {"start": "2026-01-15T10:00:00Z"}, "authoredOn": "2026-01-15T10:00:00Z",
    })
    minutes = {"ready": (25,), "not-yet": (14,), "blocked": (25,), "not-eligible": (25,)}[kind]
    for i, length in enumerate(minutes, start=1):
        eid, day = f"{pid}-time{i}", f"2026-11-{i + 2:02d}"
        res.append({
            "resourceType": "Encounter", "id": eid, "status": "finished", "subject": subject,
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "VR"},
            "type": [{"coding": [{"system": PROGRAM, "code": "ccm"}]}],
            "participant": [{"individual": _ref(NURSE)}],
            "period": {"start": f"{day}T15:00:00Z", "end": f"{day}T15:{length:02d}:00Z"},
            "length": {"value": length, "unit": "min", "system": "http://unitsofmeasure.org", "code": "min"},
        })
        res.append({
            "resourceType": "Task", "id": f"{eid}-task", "status": "completed", "intent": "order",
            "for": subject,
            "encounter": _ref(f"Encounter/{eid}"), "owner": _ref(NURSE),
            "code": {"coding": [{"system": ACTIVITY, "code": "care-coordination"}]},
            "note": [{"text": "Called the patient about medication refills and reviewed glucose log."}],
            "executionPeriod": {"start": f"{day}T15:00:00Z", "end": f"{day}T15:{length:02d}:00Z"},
        })
    return res


def busy_scenario(pid: str = "p-busy") -> list[dict[str, Any]]:
    """A ready patient with 45 CCM minutes, RPM minutes (not counted) and one unreadable time entry."""
    res = scenario("ready", pid)
    subject = _ref(f"Patient/{pid}")
    extra = [("time-b", "ccm", "2026-11-10", 20), ("rpm-a", "rpm", "2026-11-11", 30)]
    for eid, program, day, length in extra:
        res.append({
            "resourceType": "Encounter", "id": f"{pid}-{eid}", "status": "finished", "subject": subject,
            "class": {"system": f"{TERMS}/v3-ActCode", "code": "VR"},
            "type": [{"coding": [{"system": PROGRAM, "code": program}]}],
            "participant": [{"individual": _ref(NURSE)}],
            "period": {"start": f"{day}T16:00:00Z", "end": f"{day}T16:{length:02d}:00Z"},
            "length": {"value": length, "unit": "min", "system": "http://unitsofmeasure.org", "code": "min"},
        })
    res.append({  # a time entry with neither length nor an end: the reader skips it and says why
        "resourceType": "Encounter", "id": f"{pid}-broken", "status": "finished", "subject": subject,
        "type": [{"coding": [{"system": PROGRAM, "code": "ccm"}]}], "period": {"start": "2026-11-12"},
    })
    return res


# ------------------------------------------------------------------------------------ app + session


def make_app(tmp: Path, resources: list[dict[str, Any]], *, error: Exception | None = None,
             write_error: Exception | None = None, **config: Any) -> Flask:
    """The real app with the fake FHIR server behind FHIR_CLIENT_FACTORY."""
    fake = FakeFhir(resources, base=BASE, filtering=False, error=error, write_error=write_error)
    settings = {"SECRET_KEY": "test-secret", "TIMEZONE": "UTC", "OPEN_SERVERS": [BASE], **config}
    app = support_app.make_app(tmp, fhir=fake, **settings)
    app.extensions["fake_fhir"] = fake
    return app


def open_session(client: FlaskClient, pid: str) -> None:
    """Start an open-mode session for `pid` the way a tester does: GET /open?iss=...&patient=..."""
    resp = client.get("/open", query_string={"iss": BASE, "patient": pid})
    assert resp.status_code == 302, resp.get_data(as_text=True)[:500]


def start_with_context(app: Flask, client: FlaskClient, ctx: LaunchContext) -> None:
    """Bind an arbitrary launch context (e.g. need_patient_banner False) to the test client's session."""
    support_app.start_session(client, ctx)


ALL = ["ready", "not-yet", "blocked", "not-eligible"]


@pytest.fixture
def app_for(tmp_path: Path) -> Callable[..., tuple[Flask, FlaskClient]]:
    def build(*kinds: str, **kw: Any) -> tuple[Flask, FlaskClient]:
        resources = [r for k in (kinds or ALL) for r in scenario(k)]
        app = make_app(tmp_path, resources, **kw)
        return app, app.test_client()
    return build


@pytest.fixture
def client(app_for: Callable[..., tuple[Flask, FlaskClient]]) -> Iterator[FlaskClient]:
    _, c = app_for()
    yield c


def page(client: FlaskClient, pid: str, month: str = MONTH) -> str:
    open_session(client, pid)
    resp = client.get("/panel", query_string={"month": month})
    assert resp.status_code == 200, resp.get_data(as_text=True)[:2000]
    return resp.get_data(as_text=True)


def text_of(html: str) -> str:
    """The page's visible text, whitespace collapsed (good enough for assertions)."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


# ------------------------------------------------------------------------------------ tests


@pytest.mark.parametrize(
    ("pid", "title"),
    [("p-ready", "Ready to bill"), ("p-not-yet", "Not yet"), ("p-blocked", "Blocked"),
     ("p-not-eligible", "Not eligible")],
)
def test_each_status_renders_its_headline(client: FlaskClient, pid: str, title: str) -> None:
    html = page(client, pid)
    heading = re.search(r'<h1 id="status-heading">(.*?)</h1>', html, re.S)
    assert heading and title in heading.group(1)
    assert f'class="status status-{pid[2:]}"' in html


def test_ready_patient_shows_codes_payment_and_bars(client: FlaskClient) -> None:
    text = text_of(page(client, "p-ready"))
    assert "99490" in text and "CCM, clinical staff, first 20 min in the month" in text
    assert "$66.13" in text  # CY2026 national non-facility amount from the pack
    assert "Bill 99490." in text
    assert "25 of 60 min" in text


def test_not_yet_patient_shows_minutes_to_go_and_days_left(client: FlaskClient) -> None:
    html = page(client, "p-not-yet")
    text = text_of(html)
    assert "6 clinical-staff minutes more for 99490" in text or "short of 99490" in text
    assert "the month is over" in text or "days left" in text or "day left" in text
    assert 'aria-valuenow="14"' in html and 'aria-valuemax="60"' in html
    assert "Nothing is billable for November 2026 yet." in text


def test_findings_show_rule_ids_and_citations(client: FlaskClient) -> None:
    open_session(client, "p-blocked")
    verdict_json = client.get("/panel.json", query_string={"month": MONTH}).get_json()
    blockers = [f for f in verdict_json["findings"] if f["severity"] == "blocker"]
    assert blockers, verdict_json["findings"]
    html = client.get("/panel", query_string={"month": MONTH}).get_data(as_text=True)
    for f in verdict_json["findings"]:
        assert f"<code>{f['rule']}</code>" in html
        assert f"<cite>{escape_html(f['citation'])}</cite>" in html
    prereq = html.split('id="prereq-heading"')[1].split("</section>")[0]
    assert "check-missing" in text_of(prereq) or "check-missing" in prereq


def escape_html(s: str) -> str:
    from markupsafe import escape

    return str(escape(s))


def test_eligibility_lists_every_condition_with_its_source(client: FlaskClient) -> None:
    html = page(client, "p-not-eligible")
    section = text_of(html.split('id="elig-heading"')[1].split("</section>")[0])
    assert "1 distinct chronic condition" in section
    assert "Type 2 diabetes mellitus" in section and "Acute upper respiratory infection" in section
    assert "Not counted" in section and "Chronic" in section


def test_banner_shown_by_default_and_hidden_when_the_ehr_draws_its_own(
        app_for: Callable[..., tuple[Flask, FlaskClient]]) -> None:
    _, c = app_for("ready")
    assert 'class="patient-banner"' in page(c, "p-ready")
    assert "Ada Lovelace" in page(c, "p-ready")
    app2, c2 = app_for("ready")
    start_with_context(app2, c2, LaunchContext(mode="open", fhir_base=BASE, patient_id="p-ready",
                                               need_patient_banner=False))
    html = c2.get("/panel", query_string={"month": MONTH}).get_data(as_text=True)
    assert "Ready to bill" in html
    assert 'class="patient-banner"' not in html and "Ada Lovelace" not in html


def test_fhir_text_is_escaped(tmp_path: Path) -> None:
    resources = scenario("ready", "p-x", name=f"{SCRIPT} Smith", condition_display=SCRIPT)
    c = make_app(tmp_path, resources).test_client()
    html = page(c, "p-x")
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; Smith" in html
    assert html.count("<script") == html.count('<script src="/static/')  # our own files only


def test_bad_month_is_a_clear_400(client: FlaskClient) -> None:
    open_session(client, "p-ready")
    resp = client.get("/panel", query_string={"month": "2026-13"})
    assert resp.status_code == 400
    body = resp.get_data(as_text=True)
    assert "Month not understood" in body and "YYYY-MM" in body and "Traceback" not in body
    assert client.get("/panel.json", query_string={"month": "nope"}).status_code == 400


def test_month_switcher_links(client: FlaskClient) -> None:
    html = page(client, "p-ready")
    assert 'href="/panel?month=2026-10"' in html and 'href="/panel?month=2026-12"' in html
    assert '<input type="month" id="month-input" name="month" value="2026-11"' in html
    assert '<label for="month-input">' in html
    january = page(client, "p-ready", "2026-01")
    assert 'href="/panel?month=2025-12"' in january and 'href="/panel?month=2026-02"' in january


def test_default_month_is_this_month_or_the_launch_app_context(
        app_for: Callable[..., tuple[Flask, FlaskClient]]) -> None:
    from smart_app.panel import view_model as panel_view

    _, c = app_for("ready")
    open_session(c, "p-ready")
    this = panel_view.practice_today("UTC")
    assert f'value="{this:%Y-%m}"' in c.get("/panel").get_data(as_text=True)
    app2, c2 = app_for("ready")
    start_with_context(app2, c2, LaunchContext(mode="open", fhir_base=BASE, patient_id="p-ready",
                                               app_context='{"month": "2026-11"}'))
    html = c2.get("/panel").get_data(as_text=True)
    assert 'value="2026-11"' in html and "Ready to bill" in html


def test_panel_json_equals_to_json(app_for: Callable[..., tuple[Flask, FlaskClient]]) -> None:
    from smart_app.readiness import use_case as readiness

    app, c = app_for("ready")
    open_session(c, "p-ready")
    got = c.get("/panel.json", query_string={"month": MONTH}).get_json()
    with app.app_context():
        fake = FakeFhir(scenario("ready"), base=BASE, filtering=False)
        expected = to_json(readiness.patient_month(fake, "p-ready", MONTH, tz="UTC",
                                                   policy=app.config["POLICY"]))
    assert got == expected
    assert got["status"] == "ready" and got["codes"] == [{"code": "99490", "units": 1}]


def test_fhir_error_is_a_readable_panel(app_for: Callable[..., tuple[Flask, FlaskClient]]) -> None:
    app, c = app_for("ready")
    open_session(c, "p-ready")
    app.extensions["fake_fhir"].error = FhirError(500, "Server exploded: database offline")
    resp = c.get("/panel", query_string={"month": MONTH})
    body = resp.get_data(as_text=True)
    assert resp.status_code == 502
    assert "The FHIR server did not answer as expected" in body and "database offline" in body
    assert "Traceback" not in body
    assert c.get("/panel.json", query_string={"month": MONTH}).status_code == 502


def test_other_programs_and_skipped_resources_are_shown(tmp_path: Path) -> None:
    c = make_app(tmp_path, busy_scenario()).test_client()
    html = page(c, "p-busy")
    text = text_of(html)
    assert "45 of 60 min" in text and "99439" in text
    assert "RPM: 30 min" in text
    assert "Skipped resources (1)" in text and "Encounter/p-busy-broken" in text


def test_expired_session_is_a_readable_401(app_for: Callable[..., tuple[Flask, FlaskClient]]) -> None:
    app, c = app_for("ready")
    open_session(c, "p-ready")
    app.extensions["fake_fhir"].error = PermissionError("the session has ended; launch the app again")
    resp = c.get("/panel", query_string={"month": MONTH})
    assert resp.status_code == 401 and "Your session has ended" in resp.get_data(as_text=True)


def test_no_session_is_refused(client: FlaskClient) -> None:
    assert client.get("/panel").status_code == 401


def test_each_month_is_judged_by_the_pack_in_effect(client: FlaskClient) -> None:
    open_session(client, "p-ready")
    assert client.get("/panel.json", query_string={"month": "2025-06"}).get_json()["policy"] == "cms-pfs-2025"
    assert client.get("/panel.json", query_string={"month": MONTH}).get_json()["policy"] == "cms-pfs-2026"
    resp = client.get("/panel", query_string={"month": "1999-01"})
    assert resp.status_code == 400
    assert "No billing rules for January 1999" in resp.get_data(as_text=True)


@pytest.mark.parametrize(
    ("text", "month"),
    [('{"month": "2026-03"}', "2026-03"), ("month=2025-12", "2025-12"), ("2026-07", "2026-07"),
     ("ccm-eligibility", None), (None, None), ('{"month": 7}', None)],
)
def test_month_from_app_context(text: str | None, month: str | None) -> None:
    from smart_app.readiness.options import month_from_app_context

    assert month_from_app_context(text) == month


def test_panel_links_the_audit_packet_for_the_month(client: FlaskClient) -> None:
    html = page(client, "p-ready", "2026-11")
    for fmt in ("", "&amp;format=pdf", "&amp;format=json"):
        assert f'href="/packet?month=2026-11{fmt}"' in html


def test_a_panel_page_is_one_fhir_request_with_the_patient_from_the_batch(
        app_for: Callable[..., tuple[Flask, FlaskClient]]) -> None:
    """One batch for the data (the banner's Patient in it); the first view adds ONE batch for the names of
    people the session does not know yet (served without JavaScript); later views are one batch."""
    app, c = app_for("ready")
    fake = app.extensions["fake_fhir"]
    open_session(c, "p-ready")
    before = fake.round_trips
    html = c.get("/panel", query_string={"month": MONTH}).get_data(as_text=True)
    assert fake.round_trips - before == 2 and len(fake.batches) == 2
    assert fake.batches[-1] == ["Practitioner/dr1"]  # names only: the GP / billing practitioner
    assert "Ada Lovelace" in html  # the banner's Patient came in the same batch
    before = fake.round_trips
    c.get("/panel", query_string={"month": MONTH})
    assert fake.round_trips - before == 1
