"""Care plans against a real sekmet-fhir: create, revise, conflicting revision, share, read back.

Every resource written is checked with fhirclient's R4 models (strict) and read back through
fhir_mapping.reader.read_facts + rules.evaluate, the same path the panel uses.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from flask.testing import FlaskClient

from fhir_mapping.reader import read_facts
from fhir_mapping.write_careplan import care_plan_transaction, share_communication, share_transaction
from rules.careplan_validation import ActivityDraft, CarePlanDraft, GoalDraft
from rules.evaluate import evaluate
from smart_app.fhir.client import FhirClient, FhirError, FhirUnavailable
from tests.support import app as support_app
from tests.support.sekmet import SekmetServer

pytestmark = pytest.mark.integration
TODAY = datetime.now(UTC).date()
MONTH = f"{TODAY:%Y-%m}"
SECTIONS = {
    "prognosis": "Stable with treatment.",
    "symptoms": "Call if glucose is above 300.",
    "medications": "Metformin 500 mg twice daily. Allergies: none.",
    "functional": "Independent in ADLs.",
    "caregiver": "Daughter helps weekly.",
    "environment": "Lives alone, no stairs.",
    "community": "Endocrinology; diabetes education class.",
    "review": "Every 6 months and after a hospital stay.",
}


def rules_for(base: str, patient: str) -> set[str]:
    client = FhirClient(base)
    resources: list[dict[str, Any]] = [client.read("Patient", patient)]
    for rtype in ("Condition", "CarePlan", "Communication", "Consent", "Encounter"):
        resources += client.search(rtype, {"patient": patient})
    facts = read_facts(resources, patient)
    return {f.rule for f in evaluate(facts, MONTH).findings}


def seed_patient(base: str) -> dict[str, str]:
    """A patient with diabetes, a medicine and a billing practitioner, no care plan (blocked by it)."""
    client = FhirClient(base)
    doc = client.create({"resourceType": "Practitioner", "name": [{"family": "Okafor", "given": ["Ada"]}]})
    pat = client.create(
        {
            "resourceType": "Patient",
            "name": [{"family": "Testperson", "given": ["Care"]}],
            "generalPractitioner": [{"reference": f"Practitioner/{doc['id']}"}],
        }
    )
    cond = client.create(
        {
            "resourceType": "Condition",
            "subject": {"reference": f"Patient/{pat['id']}"},
            "clinicalStatus": {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}
                ]
            },
            "code": {
                "coding": [
                    {
                        "system": "http://hl7.org/fhir/sid/icd-10-cm",
                        "code": "E11.9",
                        "display": "Type 2 diabetes mellitus without complications",
                    }
                ]
            },
        }
    )
    client.create(
        {
            "resourceType": "MedicationRequest",
            "status": "active",
            "intent": "order",
            "subject": {"reference": f"Patient/{pat['id']}"},
            "medicationCodeableConcept": {"text": "Metformin 500 mg tablet"},
            "dosageInstruction": [{"text": "1 tablet twice daily"}],
        }
    )
    nurse = client.create({"resourceType": "Practitioner", "name": [{"family": "Rivera", "given": ["Sam"]}]})
    team_member = {"role": [{"text": "Care manager"}], "member": {"reference": f"Practitioner/{nurse['id']}"}}
    client.create(
        {
            "resourceType": "CareTeam",
            "status": "active",
            "subject": {"reference": f"Patient/{pat['id']}"},
            "participant": [team_member],
        }
    )
    client.create(
        {
            "resourceType": "AllergyIntolerance",
            "patient": {"reference": f"Patient/{pat['id']}"},
            "code": {"text": "Penicillin"},
        }
    )
    return {
        "patient": pat["id"],
        "doctor": f"Practitioner/{doc['id']}",
        "condition": f"Condition/{cond['id']}",
    }


@pytest.fixture
def chart(sekmet: SekmetServer) -> dict[str, str]:
    return seed_patient(sekmet.base)


def strict_r4(resource: dict[str, Any]) -> None:
    """fhirclient's R4 model accepts the resource in strict mode (raises otherwise)."""
    import importlib

    rtype = resource["resourceType"]
    module = importlib.import_module(f"fhirclient.models.{rtype.lower()}")
    getattr(module, rtype)(resource, strict=True)


def draft_for(chart: dict[str, str], **kw: Any) -> CarePlanDraft:
    base = dict(
        patient_id=chart["patient"],
        conditions=(chart["condition"],),
        sections=dict(SECTIONS),
        goals=(
            GoalDraft(
                "Blood sugar in range",
                "HbA1c",
                "< 7 %",
                TODAY + timedelta(days=180),
                measure_code="http://loinc.org|4548-4",
                source="Template: ADA 2025 s6",
            ),
        ),
        activities=(ActivityDraft("Monthly call to review glucose log", chart["doctor"]),),
        author=chart["doctor"],
        period_start=TODAY,
    )
    base.update(kw)
    return CarePlanDraft(**base)  # type: ignore[arg-type]


def write(base: str, draft: CarePlanDraft, key: str, **kw: Any) -> dict[str, Any]:
    bundle = care_plan_transaction(
        draft,
        plan_key=key,
        user=draft.author,
        recorded=datetime.now(UTC).replace(microsecond=0),
        pack_id="cms-pfs-2026",
        pack_version="1",
        **kw,
    )
    return FhirClient(base).transaction(bundle)


def test_create_revise_conflict_share_read_back(sekmet: SekmetServer, chart: dict[str, str]) -> None:
    base, pid = sekmet.base, chart["patient"]
    client = FhirClient(base)
    assert "care-plan.missing" in rules_for(base, pid)

    write(base, draft_for(chart), "plan-int-1")
    (plan,) = client.search("CarePlan", {"patient": pid})
    assert plan["meta"]["versionId"] == "1"
    goals = [client.read("Goal", g["reference"].split("/")[1]) for g in plan["goal"]]
    provs = client.search("Provenance", {"target": f"CarePlan/{plan['id']}"})
    for res in (plan, *goals, *provs):
        strict_r4(res)
    assert goals[0]["target"][0]["detailQuantity"] == {
        "value": 7,
        "comparator": "<",
        "unit": "%",
        "system": "http://unitsofmeasure.org",
        "code": "%",
    }
    assert plan["author"]["reference"] == chart["doctor"]
    assert plan["addresses"] == [{"reference": chart["condition"]}]
    rules = rules_for(base, pid)
    assert "care-plan.missing" not in rules and "care-plan.not-shared" in rules

    # Revision from version 1: a second goal; the same CarePlan becomes version 2.
    two_goals = (
        *draft_for(chart).goals[:0],
        GoalDraft(
            goals[0]["description"]["text"], "HbA1c", "< 7.5 %", TODAY + timedelta(days=90), goals[0]["id"]
        ),
        GoalDraft("Walk more", "Steps per day", "6000 steps", TODAY + timedelta(days=60)),
    )
    revision = draft_for(chart, plan_id=plan["id"], version="1", goals=two_goals)
    write(base, revision, "plan-int-1", existing=plan, stored_goals=goals)
    (plan2,) = client.search("CarePlan", {"patient": pid})
    assert plan2["id"] == plan["id"] and plan2["meta"]["versionId"] == "2" and len(plan2["goal"]) == 2
    strict_r4(plan2)

    # A second editor who also started from version 1: refused with 412, nothing overwritten.
    stale = draft_for(chart, plan_id=plan["id"], version="1", sections={**SECTIONS, "review": "Yearly."})
    with pytest.raises(FhirError) as caught:
        write(base, stale, "plan-int-1", existing=plan, stored_goals=goals)
    assert caught.value.status == 412 and "conflict" in caught.value.message.lower()
    current = client.read("CarePlan", plan["id"])
    assert current["meta"]["versionId"] == "2"
    assert "Every 6 months" in str(current["extension"])
    history = client._json("GET", f"{base}/CarePlan/{plan['id']}/_history")
    assert history.get("total") == 2 or len(history.get("entry", [])) == 2

    # Share a copy with the patient.
    comm = share_communication(
        patient_id=pid,
        plan_id=plan["id"],
        plan_version="2",
        method="paper",
        recipient="patient",
        sender=chart["doctor"],
        sent=datetime.now(UTC),
        share_key="share-int-1",
    )
    client.transaction(
        share_transaction(
            comm, user=chart["doctor"], recorded=datetime.now(UTC), pack_id="cms-pfs-2026", pack_version="1"
        )
    )
    (stored_comm,) = client.search("Communication", {"patient": pid})
    strict_r4(stored_comm)
    (share_prov,) = client.search("Provenance", {"target": f"Communication/{stored_comm['id']}"})
    strict_r4(share_prov)
    rules = rules_for(base, pid)
    assert "care-plan.not-shared" not in rules and "care-plan.missing" not in rules
    assert "care-plan.review-overdue" not in rules


# --------------------------------------------------------------------------- through the web app


class FlakyClient:
    """A real FhirClient whose first `fail` transactions fail as if the server were unreachable."""

    def __init__(self, base: str, fail: int) -> None:
        self.inner = FhirClient(base)
        self.fail = fail
        self.base = base

    def transaction(self, bundle: dict[str, Any]) -> dict[str, Any]:
        if self.fail > 0:
            self.fail -= 1
            raise FhirUnavailable(None, "FHIR server could not connect (test)")
        return self.inner.transaction(bundle)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def web(sekmet: SekmetServer, tmp: Path, **config: Any) -> Any:
    settings: dict[str, Any] = {"SECRET_KEY": "t", "TIMEZONE": "UTC", "OPEN_SERVERS": [sekmet.base], **config}
    return support_app.make_app(tmp, **settings)


def opened(app: Any, base: str, pid: str) -> FlaskClient:
    client = app.test_client()
    assert client.get("/open?" + urlencode({"iss": base, "patient": pid})).status_code == 302
    return client


def csrf(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, "no CSRF token on the page"
    return m.group(1)


def form_of(html: str, chart: dict[str, str], **over: str) -> dict[str, Any]:
    def hidden(name: str) -> str:
        m = re.search(rf'name="{name}" value="([^"]*)"', html)
        return m.group(1) if m else ""

    data: dict[str, Any] = {
        "csrf_token": csrf(html),
        "plan_key": hidden("plan_key"),
        "plan_id": hidden("plan_id"),
        "version": hidden("version"),
        "problem_labels": "{}",
        "author": chart["doctor"],
        "period_start": TODAY.isoformat(),
        "problems": [chart["condition"]],
        "action": "save",
        "goal_count": "1",
        "goal-1-description": "Blood sugar in range",
        "goal-1-measure": "HbA1c",
        "goal-1-target": "< 7 %",
        "goal-1-due": (TODAY + timedelta(days=120)).isoformat(),
        "activity_count": "1",
        "activity-1-description": "Monthly glucose review",
        "activity-1-performer": chart["doctor"],
        **{f"sec-{k}": v for k, v in SECTIONS.items()},
    }
    for name in ("current_version", "current_plan_id"):
        if hidden(name):
            data[name] = hidden(name)
    data.update(over)
    return data


def test_editor_validates_saves_and_shares(
    sekmet: SekmetServer, chart: dict[str, str], tmp_path: Path
) -> None:
    app = web(sekmet, tmp_path)
    c = opened(app, sekmet.base, chart["patient"])
    page = c.get("/care-plan")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "Build the CCM care plan" in html
    assert "Type 2 diabetes" in html and "Metformin 500 mg tablet (1 tablet twice daily)" in html
    assert "ADA Standards of Care" in html  # the diabetes template, with its source
    assert "Allergies: Penicillin." in html  # AllergyIntolerance
    assert "Sam Rivera (Care manager)" in html and "Ada Okafor (billing practitioner)" in html  # CareTeam
    assert "Some of the chart could not be read" not in html

    bad = form_of(html, chart, **{"goal-1-measure": "", "goal-1-due": "2020-01-01", "sec-caregiver": "  "})
    resp = c.post("/care-plan", data=bad)
    text = resp.get_data(as_text=True)
    assert resp.status_code == 422
    assert "a goal needs a measure" in text and "2020-01-01 is in the past" in text
    assert "Caregiver assessment: this section is empty" in text
    assert "Blood sugar in range" in text and "Daughter helps weekly" not in text  # typed text kept as typed
    assert "Every 6 months and after a hospital stay." in text

    resp = c.post("/care-plan", data=form_of(html, chart))
    assert resp.status_code == 302, resp.get_data(as_text=True)[:2000]
    assert "care-plan.missing" not in {
        f["rule"] for f in c.get(f"/panel.json?month={MONTH}").get_json()["findings"]
    }

    saved = c.get(resp.headers["Location"]).get_data(as_text=True)
    assert "Saved: the care plan is in the chart (version 1)" in saved and "Review care plan" in saved
    share = c.post(
        "/care-plan/share",
        data={
            "csrf_token": csrf(saved),
            "method": "portal",
            "recipient": "patient",
            "sent": TODAY.isoformat(),
        },
    )
    assert share.status_code == 302
    rules = {f["rule"] for f in c.get(f"/panel.json?month={MONTH}").get_json()["findings"]}
    assert "care-plan.not-shared" not in rules
    printed = c.get("/care-plan/print")
    assert printed.status_code == 200 and "Your care plan" in printed.get_data(as_text=True)
    assert "Blood sugar in range" in printed.get_data(as_text=True)
    assert '"DejaVu Sans"' in printed.get_data(as_text=True)  # the stylesheet is not HTML-escaped
    assert "style-src 'sha256-" in printed.headers["Content-Security-Policy"]
    assert "frame-ancestors 'self'" in printed.headers["Content-Security-Policy"]  # not framable elsewhere
    future = c.post(
        "/care-plan/share",
        data={
            "csrf_token": csrf(saved),
            "method": "fax",
            "recipient": "patient",
            "sent": (TODAY + timedelta(days=3)).isoformat(),
        },
    )
    assert future.status_code == 422
    assert "paper, patient portal or e-mail" in future.get_data(as_text=True)


def test_two_editors_conflict_and_nothing_is_lost(
    sekmet: SekmetServer, chart: dict[str, str], tmp_path: Path
) -> None:
    app = web(sekmet, tmp_path)
    first = opened(app, sekmet.base, chart["patient"])
    html = first.get("/care-plan").get_data(as_text=True)
    assert first.post("/care-plan", data=form_of(html, chart)).status_code == 302

    a, b = opened(app, sekmet.base, chart["patient"]), opened(app, sekmet.base, chart["patient"])
    page_a, page_b = (x.get("/care-plan").get_data(as_text=True) for x in (a, b))
    assert 'name="version" value="1"' in page_a and 'name="version" value="1"' in page_b
    assert (
        a.post("/care-plan", data=form_of(page_a, chart, **{"sec-review": "Every 3 months (A)."})).status_code
        == 302
    )
    resp = b.post("/care-plan", data=form_of(page_b, chart, **{"sec-review": "Monthly (B)."}))
    text = resp.get_data(as_text=True)
    assert resp.status_code == 409
    assert "Someone else saved this care plan while you were editing" in text
    assert "Monthly (B)." in text and "Every 3 months (A)." in text  # both versions on the page
    assert "Save mine over version 2" in text
    # B's draft survives a reload.
    again = b.get("/care-plan").get_data(as_text=True)
    assert "Monthly (B)." in again and "Draft kept" in again
    over = b.post(
        "/care-plan",
        data=form_of(text, chart, action="overwrite", current_version="2", **{"sec-review": "Monthly (B)."}),
    )
    assert over.status_code == 302
    plan = FhirClient(sekmet.base).search("CarePlan", {"patient": chart["patient"]})[0]
    assert plan["meta"]["versionId"] == "3" and "Monthly (B)." in str(plan["extension"])


def test_unreachable_server_keeps_the_draft_and_retries(
    sekmet: SekmetServer, chart: dict[str, str], tmp_path: Path
) -> None:
    flaky = FlakyClient(sekmet.base, fail=1)
    app = web(sekmet, tmp_path, FHIR_CLIENT_FACTORY=lambda ctx: flaky)
    c = opened(app, sekmet.base, chart["patient"])
    html = c.get("/care-plan").get_data(as_text=True)
    resp = c.post("/care-plan", data=form_of(html, chart, **{"sec-prognosis": "Typed while offline."}))
    text = resp.get_data(as_text=True)
    assert resp.status_code == 503 and "Your draft is kept" in text and "Typed while offline." in text
    assert FhirClient(sekmet.base).search("CarePlan", {"patient": chart["patient"]}) == []
    retried = c.get("/care-plan").get_data(as_text=True)
    assert "Your kept draft has now been saved" in retried
    (plan,) = FhirClient(sekmet.base).search("CarePlan", {"patient": chart["patient"]})
    assert "Typed while offline." in str(plan["extension"])


def test_goal_date_today_is_accepted_by_the_writer() -> None:
    """Sanity: the integration module's own draft helper builds a valid bundle offline."""
    chart = {"patient": "p", "doctor": "Practitioner/d", "condition": "Condition/c"}
    bundle = care_plan_transaction(
        draft_for(chart, goals=(GoalDraft("g", "m", "5", date.today()),)),
        plan_key="k",
        user="Practitioner/d",
        recorded=datetime.now(UTC),
        pack_id="cms-pfs-2026",
        pack_version="1",
    )
    assert [e["request"]["method"] for e in bundle["entry"]] == ["PUT", "POST", "POST"]


def test_two_editors_creating_at_once_make_one_plan(
    sekmet: SekmetServer, chart: dict[str, str], tmp_path: Path
) -> None:
    app = web(sekmet, tmp_path)
    a, b = opened(app, sekmet.base, chart["patient"]), opened(app, sekmet.base, chart["patient"])
    page_a, page_b = (x.get("/care-plan").get_data(as_text=True) for x in (a, b))
    assert a.post("/care-plan", data=form_of(page_a, chart)).status_code == 302
    resp = b.post("/care-plan", data=form_of(page_b, chart, **{"sec-review": "Quarterly (B)."}))
    text = resp.get_data(as_text=True)
    assert resp.status_code == 409 and "Someone else created this patient" in text
    assert "Quarterly (B)." in text
    over = b.post(
        "/care-plan", data=form_of(text, chart, action="overwrite", **{"sec-review": "Quarterly (B)."})
    )
    assert over.status_code == 302, over.get_data(as_text=True)[:1500]
    (plan,) = FhirClient(sekmet.base).search("CarePlan", {"patient": chart["patient"]})
    assert plan["meta"]["versionId"] == "2" and "Quarterly (B)." in str(plan["extension"])


def test_open_editor_retries_a_pending_draft_in_the_background(
    sekmet: SekmetServer, chart: dict[str, str], tmp_path: Path
) -> None:
    """What static/careplan.js does while the editor stays open: POST /care-plan/retry until saved."""
    flaky = FlakyClient(sekmet.base, fail=2)
    app = web(sekmet, tmp_path, FHIR_CLIENT_FACTORY=lambda ctx: flaky)
    c = opened(app, sekmet.base, chart["patient"])
    html = c.get("/care-plan").get_data(as_text=True)
    assert 'data-pending="0"' in html
    failed = c.post("/care-plan", data=form_of(html, chart)).get_data(as_text=True)
    assert 'data-pending="1"' in failed
    headers = {"X-CSRF-Token": csrf(failed)}
    assert c.post("/care-plan/retry").status_code in (400, 403)  # no CSRF header: refused
    assert c.post("/care-plan/retry", headers=headers).get_json()["state"] == "pending"
    assert c.post("/care-plan/retry", headers=headers).get_json() == {"state": "saved"}
    assert c.post("/care-plan/retry", headers=headers).get_json() == {"state": "none"}
    page = c.get("/care-plan?saved=retried").get_data(as_text=True)
    assert "Saved: the care plan is in the chart (version 1)." in page
