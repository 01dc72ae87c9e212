"""Records as real EHRs and people write them, that must not read as billable time (round 6 audit).

Each story starts from the golden `ready-99490` month (25 staff minutes by rn-1 on 2026-10-05, 14:00-14:25
UTC, billed 99490) and changes one thing. The ready base is checked first, so a story that fails to block
shows the change, not a broken base.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from fhir_mapping.reach import Reach
from fhir_mapping.reader import read_facts
from fhir_mapping.write_note import time_note
from fhir_mapping.write_time import TimeEntryDraft
from rules.evaluate import evaluate
from rules.month import Month
from rules.verdict import Verdict
from smart_app.readiness.use_case import with_notes

SCENARIO = Path(__file__).resolve().parents[1] / "data" / "scenarios" / "ready-99490.json"
MONTH = "2026-10"
MRN = "http://hospital.example/mrn"
Resource = dict[str, Any]


def base() -> list[Resource]:
    resources = [e["resource"] for e in json.loads(SCENARIO.read_text())["entry"]]
    for r in resources:
        if r["resourceType"] == "Patient":
            r["identifier"] = [{"system": MRN, "value": "MRN-1001"}]
    return resources


def verdict(resources: list[Resource], month: str = MONTH) -> Verdict:
    """As every face computes it: the app's notes read back, the month's reach, one patient."""
    facts = read_facts(with_notes(resources), None, "UTC", Reach.of(Month.parse(month)))
    return evaluate(facts, month, tz="UTC")


def changed(change: Callable[[Resource], None], *types: str) -> list[Resource]:
    resources = base()
    for r in resources:
        if r["resourceType"] in types:
            change(r)
    return resources


def the(resources: list[Resource], rid: str) -> Resource:
    return next(r for r in resources if r.get("id") == rid)


def test_the_base_month_is_ready() -> None:
    v = verdict(base())
    assert v.status == "ready" and [(c.code, c.units) for c in v.codes] == [("99490", 1)]
    assert v.minutes.clinical_staff == 25


# ------------------------------------------------------------------ every resource bound to the patient

FIELD = {"Condition": "subject", "Encounter": "subject", "CarePlan": "subject", "Consent": "patient",
         "Task": "for", "Communication": "subject"}


def _subject(value: Any) -> Callable[[Resource], None]:
    def change(r: Resource) -> None:
        r[FIELD[r["resourceType"]]] = copy.deepcopy(value)
    return change


@pytest.mark.parametrize(
    "subject",
    [
        {"identifier": {"system": MRN, "value": "MRN-2002"}},  # another patient's MRN
        {"reference": "urn:uuid:6f1c2e0a-0000-4000-8000-000000000002"},  # resolves to nothing here
        {"reference": "Patient?identifier=http://hospital.example/mrn|MRN-2002"},
        {"reference": "Group/g1"},
        {"reference": "patient/p2"},  # not a reference at all
    ],
    ids=["other-mrn", "dangling-urn", "conditional-other", "group", "malformed"],
)
def test_a_resource_that_does_not_name_the_patient_is_not_read(subject: Any) -> None:
    """A time entry (and its Task) about someone the reader cannot bind to this patient never counts; it is
    listed under `skipped` with a reason that names no data."""
    resources = base()
    for rid in ("te-1", "task-te-1"):
        _subject(subject)(the(resources, rid))
    v = verdict(resources)
    assert v.status == "not-yet" and v.minutes.clinical_staff == 0
    reasons = {s.resource: s.reason for s in v.skipped}
    assert reasons["Encounter/te-1"] == "Encounter.subject does not name this patient"
    assert "MRN-2002" not in json.dumps(reasons) and "g1" not in json.dumps(reasons)


def test_a_urn_uuid_naming_the_patients_id_is_the_patients_without_a_patient_resource() -> None:
    """As the stream keys it (`--patient`, the worklist): `urn:uuid:p1` is Patient/p1, Synthea style."""
    resources = [r for r in base() if r["resourceType"] != "Patient"]
    for r in resources:
        if r["resourceType"] in FIELD:
            _subject({"reference": "urn:uuid:p1"})(r)
    facts = read_facts(resources, "Patient/p1", "UTC", Reach.of(Month.parse(MONTH)))
    assert facts.skipped == () and len(facts.time_entries) == 1 and len(facts.conditions) == 3


def test_everything_about_another_mrn_leaves_nothing_to_bill() -> None:
    v = verdict(changed(_subject({"identifier": {"system": MRN, "value": "MRN-2002"}}), *FIELD))
    assert v.status == "not-eligible" and v.minutes.clinical_staff == 0


@pytest.mark.parametrize(
    "subject",
    [
        {"identifier": {"system": MRN, "value": "MRN-1001"}},
        {"identifier": {"value": "MRN-1001"}},  # no system: the value alone
        {"reference": "Patient?identifier=http://hospital.example/mrn|MRN-1001"},
        {"reference": "#pt"},  # a contained copy of the patient carrying the MRN
        None,  # no subject at all: one patient's file, read as the patient's (lenient)
    ],
    ids=["mrn", "mrn-no-system", "conditional", "contained", "none"],
)
def test_a_resource_naming_the_patient_by_identifier_is_read(subject: Any) -> None:
    resources = base()
    for rid in ("te-1", "task-te-1"):
        r = the(resources, rid)
        if subject is None:
            del r[FIELD[r["resourceType"]]]
            continue
        _subject(subject)(r)
        if subject.get("reference") == "#pt":
            r["contained"] = [{"resourceType": "Patient", "id": "pt", "identifier": [{"system": MRN,
                                                                                       "value": "MRN-1001"}]}]
    v = verdict(resources)
    assert v.status == "ready" and v.minutes.clinical_staff == 25 and v.skipped == ()


# ------------------------------------------------------------------ the app's notes: versions and subjects

NOTE_TEXT = "Called about the glucose log for diabetes; adjusted metformin timing; recheck Friday."


def _note(entry_id: str, hour: int, minutes: int, **doc: Any) -> Resource:
    start = datetime(2026, 10, 12, hour, 0, tzinfo=UTC)
    draft = TimeEntryDraft(
        entry_id, "p1", "Practitioner/rn-1", start, minutes, "ccm", "patient-call", NOTE_TEXT
    )
    return {**time_note(draft, start), "id": f"doc-{entry_id}-{hour}", **doc}


def _with_notes(*notes: Resource) -> list[Resource]:
    resources = [r for r in base() if r.get("id") not in ("te-1", "task-te-1")]  # time only in notes
    return [*resources, *notes]


def test_a_note_counts_when_current() -> None:
    assert verdict(_with_notes(_note("n1", 9, 25))).minutes.clinical_staff == 25


@pytest.mark.parametrize("order", ["superseded-first", "current-first"])
def test_of_two_versions_of_one_note_the_current_one_counts_whatever_the_order(order: str) -> None:
    old = _note("n1", 9, 25, status="superseded", date="2026-10-12T09:30:00Z")
    new = _note("n1", 15, 10, date="2026-10-13T08:00:00Z")
    notes = (old, new) if order == "superseded-first" else (new, old)
    v = verdict(_with_notes(*notes))
    assert v.minutes.clinical_staff == 10 and v.status == "not-yet"


@pytest.mark.parametrize("doc", [{"status": "superseded"}, {"status": "entered-in-error"},
                                 {"docStatus": "entered-in-error"}])
def test_a_withdrawn_note_does_not_count(doc: dict[str, str]) -> None:
    v = verdict(_with_notes(_note("n1", 9, 25, **doc), _note("n2", 15, 10)))
    assert v.minutes.clinical_staff == 10 and v.status == "not-yet"


def test_a_note_filed_on_another_patient_is_read_for_neither() -> None:
    """The note's content names p1 but the EHR filed it on p2: which chart is right cannot be known."""
    v = verdict(_with_notes(_note("n1", 9, 25, subject={"reference": "Patient/p2"})))
    assert v.minutes.clinical_staff == 0


# ------------------------------------------------------------------ real minutes

def _length(minutes: float) -> Callable[[Resource], None]:
    def change(r: Resource) -> None:
        if r.get("id") == "te-1":
            r["length"] = {"value": minutes, "system": "http://unitsofmeasure.org", "code": "min"}
    return change


@pytest.mark.parametrize("minutes", [250, 1500, 100_000])
def test_a_length_longer_than_its_period_is_cut_to_the_period(minutes: float) -> None:
    """FHIR: `length` is the time within the period (less time absent), never more."""
    v = verdict(changed(_length(minutes), "Encounter"))
    assert v.minutes.clinical_staff == 25 and [c.code for c in v.codes] == ["99490"]


def test_a_shorter_length_within_its_period_is_what_counts() -> None:
    assert verdict(changed(_length(15), "Encounter")).minutes.clinical_staff == 15


@pytest.mark.parametrize(("end", "length"), [("2026-10-07T14:00:00Z", None), (None, 300)])
def test_an_entry_over_four_hours_is_not_counted(end: str | None, length: int | None) -> None:
    """A CCM entry spanning days (an episode, a container) or a 5-hour sitting is not minutes of work."""
    resources = base()
    te = the(resources, "te-1")
    te.pop("length", None)
    te["period"] = {"start": "2026-10-05T14:00:00Z", **({"end": end} if end else {})}
    if length:
        te["length"] = {"value": length, "unit": "min"}
    v = verdict(resources)
    assert v.status == "not-yet" and v.minutes.clinical_staff == 0
    warning = next(f for f in v.findings if f.rule == "time.implausible-entry")
    assert warning.severity == "warning" and warning.evidence == ("Encounter/te-1",)


# ------------------------------------------------------------------ consent dated by the day only

@pytest.mark.parametrize(
    ("field", "value", "counted"),
    [
        ("dateTime", "2026-10-05", 0),  # the call is that day: maybe before the consent
        ("dateTime", "2026-10-04", 25),  # the day before the call: in force
        ("dateTime", "2026-10", 0),  # some day in October
        ("period.start", "2026-10-05", 0),
    ],
)
def test_a_consent_dated_by_day_counts_from_the_end_of_that_day(field: str, value: str, counted: int) -> None:
    """§5.3: the consent must be dated before the first counted minute; a date alone does not say when."""
    resources = base()
    consent = the(resources, "consent-1")
    consent["dateTime"] = value if field == "dateTime" else "2026-06-10"
    provision = consent.setdefault("provision", {})
    if field == "period.start":
        provision["period"] = {"start": value}
    else:
        provision.pop("period", None)
    assert verdict(resources).minutes.clinical_staff == counted


def test_a_placeholder_consent_date_is_read_without_error() -> None:
    resources = base()
    the(resources, "consent-1")["dateTime"] = "0001-01-01"
    v = verdict(resources)
    assert v.status == "blocked"  # no initiating visit within the year before it


@pytest.mark.parametrize("end", ["9999-12-31", "9999-12", "9999"])
def test_an_open_end_spelled_9999_is_read_as_far_future(end: str) -> None:
    """EHRs write "no end" as 9999-12-31: the consent and the plan stay in force (before: unreadable)."""
    resources = base()
    the(resources, "plan-1").setdefault("period", {})["end"] = end
    the(resources, "consent-1").setdefault("provision", {})["period"] = {"start": "2026-06-10", "end": end}
    v = verdict(resources)
    assert v.status == "ready" and v.skipped == ()


# ------------------------------------------------------------------ visits, stays, people, diagnoses

def _visit(**fields: Any) -> Resource:
    return {"resourceType": "Encounter", "id": "office-1", "status": "finished", "subject": {"reference":
            "Patient/p1"}, "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "code": "AMB"}, "period": {"start": "2026-10-05T13:55:00Z", "end": "2026-10-05T14:30:00Z"},
            **fields}


SNOMED = "http://snomed.info/sct"


@pytest.mark.parametrize(
    "visit",
    [
        _visit(type=[{"coding": [{"system": SNOMED, "code": "185349003"}]}]),  # office visit, SNOMED only
        _visit(),  # untyped
        _visit(type=[{"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "99213"}]}],
               period={"start": "2026-10-05T13:55:00Z"}, length={"value": 35, "unit": "min"}),
    ],
    ids=["snomed", "untyped", "cpt-start-and-length"],
)
def test_time_inside_an_in_person_visit_is_the_visits_own(visit: Resource) -> None:
    v = verdict([*base(), visit])
    assert v.minutes.clinical_staff == 0 and "time.during-visit" in {f.rule for f in v.findings}


@pytest.mark.parametrize(
    "visit",
    [
        _visit(type=[{"coding": [{"system": SNOMED, "code": "185317003"}]}]),  # a telephone encounter
        _visit(**{"class": {"code": "VR"}}),  # virtual: may be the CCM call itself
        _visit(status="cancelled"),
    ],
    ids=["telephone", "virtual", "cancelled"],
)
def test_a_contact_that_is_not_an_in_person_visit_takes_no_time(visit: Resource) -> None:
    assert verdict([*base(), visit]).minutes.clinical_staff == 25


def test_an_snomed_visit_is_never_an_initiating_visit() -> None:
    resources = [r for r in base() if r.get("id") != "visit-1"]
    office = _visit(id="office-0", type=[{"coding": [{"system": SNOMED, "code": "185349003"}]}],
                    period={"start": "2026-06-10T14:00:00Z", "end": "2026-06-10T14:30:00Z"},
                    participant=[{"individual": {"reference": "Practitioner/dr-a"}}])
    v = verdict([*resources, office])
    assert "initiating-visit.missing" in {f.rule for f in v.blockers}


def test_a_stay_with_the_v2_inpatient_class_takes_its_time() -> None:
    stay = {"resourceType": "Encounter", "id": "stay-1", "status": "finished",
            "subject": {"reference": "Patient/p1"},
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v2-0004", "code": "I"},
            "period": {"start": "2026-10-04T08:00:00Z", "end": "2026-10-07T12:00:00Z"}}
    v = verdict([*base(), stay])
    assert v.minutes.clinical_staff == 0 and "time.inpatient" in {f.rule for f in v.findings}


def test_time_by_a_non_clinical_role_does_not_count() -> None:
    """§3.6: non-clinical staff time never counts; a role coded ict (front desk, IT) is not clinical."""
    role = {"resourceType": "PractitionerRole", "id": "desk",
            "practitioner": {"reference": "Practitioner/rn-1"},
            "code": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/practitioner-role",
                                  "code": "ict"}], "text": "Front desk"}]}
    resources = [*base(), role]
    for p in the(resources, "te-1")["participant"]:
        p["individual"] = {"reference": "PractitionerRole/desk"}
    v = verdict(resources)
    assert v.minutes.clinical_staff == 0 and "time.not-staff" in {f.rule for f in v.findings}
    role["code"][0]["coding"][0]["code"] = "nurse"
    assert verdict(resources).minutes.clinical_staff == 25


@pytest.mark.parametrize(("recorded", "status"), [("2026-11-15", "not-eligible"), ("2026-09-01", "ready")])
def test_a_diagnosis_without_onset_counts_from_when_it_was_recorded(recorded: str, status: str) -> None:
    resources = base()
    for cid in ("c-hf", "c-copd"):
        condition = the(resources, cid)
        for key in [k for k in condition if k.startswith("onset")]:
            del condition[key]
        condition["recordedDate"] = recorded
    assert verdict(resources).status == status


# ------------------------------------------------------------------ services CPT says not to report with CCM

@pytest.mark.parametrize("code", ["99091", "99358", "99374", "99605", "98960"])
def test_a_service_cpt_excludes_with_ccm_blocks_the_same_practitioners_month(code: str) -> None:
    """§2: care plan oversight, prolonged non-face-to-face service, 99091, MTM, education: the same
    practitioner may not report them with CCM in the month; another practitioner may."""
    def charge(who: str) -> Resource:
        cpt = {"system": "http://www.ama-assn.org/go/cpt", "code": code}
        return {"resourceType": "ChargeItem", "id": "ch-1", "status": "billed",
                "subject": {"reference": "Patient/p1"}, "code": {"coding": [cpt]},
                "occurrenceDateTime": "2026-10-20", "performer": [{"actor": {"reference": who}}]}

    same = verdict([*base(), charge("Practitioner/dr-a")])
    assert same.status == "blocked" and "conflict.cpt-not-with-ccm" in {f.rule for f in same.blockers}
    other = verdict([*base(), charge("Practitioner/dr-elsewhere")])
    assert other.status == "ready" and "conflict.cpt-not-with-ccm" in {f.rule for f in other.findings}
