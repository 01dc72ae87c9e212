"""fhir_mapping.reader: FHIR dicts -> PatientFacts, leniently."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fhir_mapping.codes import CARE_ACTIVITY, CARE_PROGRAM, CPT, HCPCS, ICD10CM, SNOMED
from fhir_mapping.reader import group_by_patient, patient_ids, read_facts
from fhir_mapping.sources import resources_from_json
from rules.records import Coding

P = {"reference": "Patient/p1"}


def cc(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def time_entry(eid: str = "e1", **over: Any) -> dict[str, Any]:
    res = {
        "resourceType": "Encounter",
        "id": eid,
        "status": "finished",
        "type": [cc("http://ccm-ready.org/fhir/CodeSystem/care-program/", "ccm")],
        "subject": P,
        "participant": [{"individual": {"reference": "Practitioner/rn"}}],
        "period": {"start": "2026-10-05T10:00:00Z", "end": "2026-10-05T10:20:00Z"},
    }
    res.update(over)
    return res


def facts_of(*resources: Any, tz: str = "UTC", patient: str | None = None):
    return read_facts([{"resourceType": "Patient", "id": "p1"}, *resources], patient, tz=tz)


def reasons(facts) -> dict[str, str]:
    return {s.resource: s.reason for s in facts.skipped}


# ---- patients -------------------------------------------------------------------------------------


def test_patient_record() -> None:
    patient = {
        "resourceType": "Patient",
        "id": "p1",
        "name": [{"given": ["Ann"], "family": "Lee"}],
        "birthDate": "1950-04",
        "deceasedDateTime": "2026-10-14",
        "generalPractitioner": [{"reference": "https://ehr.example/fhir/Practitioner/dr/_history/2"}],
    }
    p = read_facts([patient]).patient
    assert p.id == "Patient/p1"
    assert p.name == "Ann Lee"
    assert p.birth_date.isoformat() == "1950-04-01"
    assert p.deceased and p.deceased_at == datetime(2026, 10, 14, tzinfo=UTC)
    assert p.general_practitioners == ("Practitioner/dr",)
    assert read_facts([{**patient, "deceasedDateTime": None, "deceasedBoolean": True}]).patient.deceased


def test_patient_choice_and_other_patients_resources_are_ignored() -> None:
    other = {
        "resourceType": "Condition",
        "id": "c2",
        "subject": {"reference": "Patient/p2"},
        "code": {"text": "x"},
    }
    mine = {"resourceType": "Condition", "id": "c1", "subject": P, "code": {"text": "y"}}
    resources = [
        {"resourceType": "Patient", "id": "p2"},
        {"resourceType": "Patient", "id": "p1"},
        other,
        mine,
    ]
    assert patient_ids(resources) == ["Patient/p2", "Patient/p1"]
    facts = read_facts(resources, "Patient/p1")
    assert facts.patient.id == "Patient/p1"
    assert [c.id for c in facts.conditions] == ["Condition/c1"]
    assert facts.skipped == ()
    assert read_facts(resources, "p2").conditions[0].id == "Condition/c2"
    groups = group_by_patient(resources)
    assert {k: len(v) for k, v in groups.items()} == {"Patient/p2": 2, "Patient/p1": 2}


def test_patient_inferred_from_subjects_when_no_patient_resource() -> None:
    facts = read_facts([{"resourceType": "Condition", "id": "c1", "subject": P, "code": {"text": "y"}}])
    assert facts.patient.id == "Patient/p1"
    assert read_facts([]).patient.id == "Patient/unknown"


# ---- conditions and codes --------------------------------------------------------------------------


def test_condition_codes_are_canonical_and_dotted() -> None:
    cond = {
        "resourceType": "Condition",
        "id": "c1",
        "subject": P,
        "clinicalStatus": cc("http://terminology.hl7.org/CodeSystem/condition-clinical", "active"),
        "verificationStatus": {"text": "Confirmed"},
        "code": {
            "coding": [
                {"system": "urn:oid:2.16.840.1.113883.6.90", "code": "E119", "display": "T2DM"},
                {"system": "https://snomed.info/sct/", "code": "44054006"},
                {"system": "http://snomed.info/sct"},
            ]
        },
        "onsetDateTime": "2019",
        "abatementPeriod": {"start": "2025-02"},
    }
    c = facts_of(cond).conditions[0]
    assert c.codings == (Coding(ICD10CM, "E11.9", "T2DM"), Coding(SNOMED, "44054006"))
    assert c.text == "T2DM"
    assert c.clinical_status == "active" and c.verification_status == "confirmed"
    assert c.onset == datetime(2019, 1, 1, tzinfo=UTC)
    assert c.abatement == datetime(2025, 2, 1, tzinfo=UTC)


def test_condition_with_text_only_is_kept() -> None:
    c = facts_of(
        {"resourceType": "Condition", "id": "c1", "subject": P, "code": {"text": "Diabetes"}}
    ).conditions[0]
    assert c.codings == () and c.text == "Diabetes"


# ---- malformed resources ----------------------------------------------------------------------------


def test_malformed_resources_are_skipped_with_reasons() -> None:
    facts = facts_of(
        "not a resource",
        {"no": "resourceType"},
        {"resourceType": "Condition", "id": "no-code", "subject": P},
        {"resourceType": "Condition", "id": "str-code", "subject": P, "code": "E11.9"},
        {
            "resourceType": "Condition",
            "id": "bad-onset",
            "subject": P,
            "code": {"text": "x"},
            "onsetDateTime": "soon",
        },
        time_entry("no-period", period=None),
        time_entry("garbage", period={"start": "2026-13-45T99:00:00Z", "end": "x"}),
        time_entry("date-only", period={"start": "2026-10-05", "end": "2026-10-05"}),
        time_entry("backwards", period={"start": "2026-10-05T10:00:00Z", "end": "2026-10-05T09:00:00Z"}),
        time_entry("bad-length", length={"value": "ten", "unit": "min"}),
        time_entry("weird-unit", length={"value": 3, "code": "kg"}),
        time_entry("no-status", status=None),
        time_entry("list-type", type="ccm"),
        time_entry("participants-wrong", participant="Practitioner/rn"),
        {"resourceType": "Consent", "id": "k1", "category": [cc(CARE_PROGRAM, "ccm")], "patient": P},
        {"resourceType": "ChargeItem", "id": "ch1", "status": "billed", "code": cc("http://loinc.org", "1")},
        {"resourceType": "CarePlan", "id": "cp1", "status": "active", "period": "2026"},
        {"resourceType": "Encounter", "id": "visit", "status": "finished", "type": [cc(CPT, "99214")]},
        {
            "resourceType": "OperationOutcome",
            "id": "oo",
            "issue": [{"severity": "error", "diagnostics": "boom"}],
        },
    )
    r = reasons(facts)
    assert r["#1"] == "entry is not a JSON object"
    assert "no resourceType" in r["#2"]
    assert r["Condition/no-code"] == "Condition has no code"
    assert "unexpected JSON shape" in r["Condition/str-code"] or "CodeableConcept" in r["Condition/str-code"]
    assert "onsetDateTime" in r["Condition/bad-onset"]
    assert "no period.start" in r["Encounter/no-period"]
    assert "not a valid FHIR date" in r["Encounter/garbage"]
    assert "without times" in r["Encounter/date-only"]
    assert "ends before it starts" in r["Encounter/backwards"]
    assert "not a number" in r["Encounter/bad-length"]
    assert "not a time unit" in r["Encounter/weird-unit"]
    assert "no status" in r["Encounter/no-status"]
    assert "Encounter/list-type" in r
    assert "Encounter/participants-wrong" in r
    assert "no status" in r["Consent/k1"]
    assert "CPT or HCPCS" in r["ChargeItem/ch1"]
    assert "Period" in r["CarePlan/cp1"]
    assert "no period.start" in r["Encounter/visit"]
    assert r["OperationOutcome/oo"] == "server reported: error: boom"
    assert facts.time_entries == ()
    # reasons never quote the data
    assert not any("soon" in reason or "2026-13" in reason for reason in r.values())


def test_resource_without_id_is_reported_by_index() -> None:
    facts = facts_of({"resourceType": "Condition", "subject": P})
    assert reasons(facts) == {"#1": "Condition has no code"}


# ---- time entries, tasks, attestations ---------------------------------------------------------------


def test_time_entry_minutes_from_length_or_period() -> None:
    facts = facts_of(
        time_entry("a"),
        time_entry("b", length={"value": 0.5, "code": "h"}, period={"start": "2026-10-06T10:00:00+02:00"}),
        time_entry(
            "c",
            status="entered-in-error",
            type=[cc("https://ccm-ready.org/fhir/CodeSystem/care-program", "rpm")],
        ),
    )
    a, c, b = facts.time_entries  # in the order logged: b started first (10:00+02:00)
    assert (a.id, a.program, a.minutes, a.performer, a.status) == (
        "Encounter/a",
        "ccm",
        20.0,
        "Practitioner/rn",
        "finished",
    )
    assert b.minutes == 30.0 and b.end - b.start == timedelta(minutes=30)
    assert b.start.utcoffset() == timedelta(hours=2)
    assert c.program == "rpm" and c.status == "entered-in-error"


def test_time_entries_are_listed_in_the_order_logged_however_the_source_orders_them() -> None:
    """One history, one verdict: the evidence a verdict lists does not depend on the server's order."""
    entries = [
        time_entry(eid, period={"start": f"2026-10-{day}T10:00:00Z", "end": f"2026-10-{day}T10:20:00Z"})
        for eid, day in (("x", "09"), ("y", "03"), ("w", "03"), ("z", "21"))
    ]
    for order in (entries, entries[::-1], entries[1:] + entries[:1]):
        assert [e.id for e in facts_of(*order).time_entries] == [
            "Encounter/w", "Encounter/y", "Encounter/x", "Encounter/z"
        ]


def test_naive_and_partial_dates_use_the_practice_zone() -> None:
    chicago = ZoneInfo("America/Chicago")
    facts = facts_of(
        time_entry("a", period={"start": "2026-10-31T23:30:00", "end": "2026-10-31T23:50:00"}),
        {
            "resourceType": "CarePlan",
            "id": "cp",
            "status": "active",
            "subject": P,
            "period": {"start": "2026-10", "end": "2026-10-31"},
        },
        tz="America/Chicago",
    )
    entry = facts.time_entries[0]
    assert entry.start == datetime(2026, 10, 31, 23, 30, tzinfo=chicago)
    assert entry.start.astimezone(UTC).month == 11
    plan = facts.care_plans[0]
    assert plan.period_start == datetime(2026, 10, 1, tzinfo=chicago)
    assert plan.period_end == datetime(2026, 11, 1, tzinfo=chicago)  # a date end means the end of that day


def test_tasks_attach_notes_and_activities_to_their_time_entry() -> None:
    task = {
        "resourceType": "Task",
        "id": "t1",
        "status": "completed",
        "intent": "order",
        "for": P,
        "encounter": {"reference": "Encounter/e1"},
        "code": cc(CARE_ACTIVITY, "medication-management"),
        "note": [{"text": " Reconciled meds. "}, {"text": ""}],
    }
    draft = {**task, "id": "t2", "status": "in-progress", "note": [{"text": "draft"}]}
    elsewhere = {**task, "id": "t3", "encounter": {"reference": "Encounter/unknown"}}
    entry = facts_of(time_entry("e1"), task, draft, elsewhere).time_entries[0]
    assert entry.notes == ("Reconciled meds.",)
    assert entry.activities == (Coding(CARE_ACTIVITY, "medication-management"),)
    assert entry.task_ids == ("Task/t1",)


def test_attestation_tasks() -> None:
    def attest(tid: str, kind: str, **over: Any) -> dict[str, Any]:
        return {
            "resourceType": "Task",
            "id": tid,
            "status": "completed",
            "for": P,
            "code": cc(CARE_ACTIVITY, kind),
            "owner": {"reference": "Practitioner/dr"},
            **over,
        }

    facts = facts_of(
        attest("a1", "risk-attestation", executionPeriod={"start": "2026-10-02T09:00:00Z"}),
        attest("a2", "mdm-high", authoredOn="2026-10-03"),
        attest("a3", "mdm-moderate", status="cancelled"),
        attest("a4", "care-coordination"),
    )
    kinds = {(a.id, a.kind, a.practitioner) for a in facts.attestations}
    assert kinds == {
        ("Task/a1", "risk-attestation", "Practitioner/dr"),
        ("Task/a2", "mdm-high", "Practitioner/dr"),
    }
    assert {a.at for a in facts.attestations} == {
        datetime(2026, 10, 2, 9, tzinfo=UTC),
        datetime(2026, 10, 3, tzinfo=UTC),
    }


# ---- encounters: visits, stays -------------------------------------------------------------------------


def test_visits_and_inpatient_stays() -> None:
    facts = facts_of(
        {
            "resourceType": "Encounter",
            "id": "v1",
            "status": "finished",
            "subject": P,
            "class": {"code": "AMB"},
            "type": [cc("urn:oid:2.16.840.1.113883.6.12", "99214")],
            "participant": [{"individual": {"reference": "Practitioner/dr"}}],
            "period": {"start": "2026-06-10T14:00:00Z"},
        },
        {
            "resourceType": "Encounter",
            "id": "v2",
            "status": "finished",
            "subject": P,
            "type": [cc("http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets", "g0439")],
            "period": {"start": "2026-06-11"},
        },
        {
            "resourceType": "Encounter",
            "id": "s1",
            "status": "in-progress",
            "subject": P,
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
            "period": {"start": "2026-10-10T08:00:00Z"},
        },
        {
            "resourceType": "Encounter",
            "id": "s2",
            "status": "cancelled",
            "subject": P,
            "class": {"code": "ACUTE"},
        },
        {
            "resourceType": "Encounter",
            "id": "amb",
            "status": "finished",
            "subject": P,
            "class": {"code": "AMB"},
            "type": [cc(SNOMED, "185349003")],
            "period": {"start": "2026-10-01"},
        },
    )
    by_id = {v.id: v for v in facts.visits}
    assert sorted(by_id) == ["Encounter/amb", "Encounter/v1", "Encounter/v2"]
    v1, v2, amb = by_id["Encounter/v1"], by_id["Encounter/v2"], by_id["Encounter/amb"]
    assert v1.codings == (Coding(CPT, "99214"),) and v1.participants == ("Practitioner/dr",)
    assert v2.codings == (Coding(HCPCS, "G0439"),)
    # A finished ambulatory visit without CPT/HCPCS is a visit too (never an initiating one: see the rules).
    assert amb.id == "Encounter/amb" and amb.codings == (Coding(SNOMED, "185349003"),) and amb.end is None
    assert [(s.id, s.end) for s in facts.stays] == [("Encounter/s1", None)]
    assert facts.skipped == ()


# ---- consent, care plan, billing ------------------------------------------------------------------------


def test_consent_record() -> None:
    consent = {
        "resourceType": "Consent",
        "id": "k1",
        "status": "inactive",
        "patient": P,
        "category": [cc("http://loinc.org", "59284-0"), cc(CARE_PROGRAM, "ccm")],
        "dateTime": "2026-06-10T15:00:00-05:00",
        "performer": [{"reference": "Practitioner/rn"}],
        "provision": {
            "period": {"start": "2026-06-10", "end": "2026-10-12"},
            "actor": [
                {
                    "role": cc("http://terminology.hl7.org/CodeSystem/v3-RoleClass", "PROV"),
                    "reference": {"reference": "Practitioner/other"},
                },
                {
                    "role": cc("http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "PPRF"),
                    "reference": {"reference": "Practitioner/dr"},
                },
            ],
        },
        "extension": [
            {"url": "https://ccm-ready.org/fhir/StructureDefinition/consent-method", "valueCode": "Written"},
            *(
                {
                    "url": "https://ccm-ready.org/fhir/StructureDefinition/ccm-disclosure",
                    "valueCoding": {
                        "system": "http://ccm-ready.org/fhir/CodeSystem/ccm-disclosure",
                        "code": c,
                    },
                }
                for c in ("cost-sharing", "right-to-stop")
            ),
        ],
    }
    unrelated = {
        "resourceType": "Consent",
        "id": "privacy",
        "status": "active",
        "patient": P,
        "category": [cc("http://loinc.org", "59284-0")],
    }
    facts = facts_of(consent, unrelated)
    (k,) = facts.consents
    assert k.id == "Consent/k1" and k.status == "inactive" and k.programs == ("ccm",)
    assert k.obtained_at == datetime(2026, 6, 10, 15, tzinfo=timezone(timedelta(hours=-5)))
    assert k.billing_practitioner == "Practitioner/dr" and k.obtained_by == "Practitioner/rn"
    assert k.stop_date == datetime(2026, 10, 12, tzinfo=UTC)
    assert k.method == "written"
    assert k.disclosures == frozenset({"cost-sharing", "right-to-stop"})


def test_care_plan_and_sharing() -> None:
    plan = {
        "resourceType": "CarePlan",
        "id": "cp",
        "status": "active",
        "subject": P,
        "category": [cc(CARE_PROGRAM, "ccm")],
        "period": {"start": "2026-06-10"},
        "author": {"reference": "Practitioner/dr"},
        "meta": {"lastUpdated": "2026-10-02T08:00:00Z"},
    }
    shared = {
        "resourceType": "Communication",
        "id": "m1",
        "status": "completed",
        "subject": P,
        "about": [{"reference": "CarePlan/cp"}],
        "sent": "2026-06-11T10:00:00Z",
    }
    p = facts_of(plan, shared).care_plans[0]
    assert p.programs == ("ccm",) and p.author == "Practitioner/dr"
    assert p.last_reviewed == datetime(2026, 10, 2, 8, tzinfo=UTC)
    assert p.shared_with_patient_at == datetime(2026, 6, 11, 10, tzinfo=UTC)


def test_charge_items() -> None:
    facts = facts_of(
        {
            "resourceType": "ChargeItem",
            "id": "ch1",
            "status": "billed",
            "subject": P,
            "code": cc("http://www.ama-assn.org/go/cpt/", "99490"),
            "occurrenceDateTime": "2026-10-20",
            "performer": [{"actor": {"reference": "Practitioner/dr"}}],
            "quantity": {"value": 2},
        },
        {
            "resourceType": "ChargeItem",
            "id": "ch2",
            "status": "billable",
            "subject": P,
            "code": cc("urn:oid:2.16.840.1.113883.6.285", "g0181"),
            "occurrencePeriod": {"start": "2026-10"},
        },
    )
    a, b = facts.billed
    assert (a.code, a.units, a.performer, a.start, a.end) == (
        "99490",
        2,
        "Practitioner/dr",
        datetime(2026, 10, 20, tzinfo=UTC),
        datetime(2026, 10, 21, tzinfo=UTC),
    )
    assert (b.code, b.status, b.units, b.end) == ("G0181", "billable", 1, None)


# ---- references, bundles --------------------------------------------------------------------------------


def test_urn_uuid_references_like_synthea() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:pat-1", "resource": {"resourceType": "Patient", "id": "pat-1"}},
            {"fullUrl": "urn:uuid:dr-1", "resource": {"resourceType": "Practitioner"}},
            {
                "fullUrl": "urn:uuid:enc-1",
                "resource": time_entry(
                    "enc-1",
                    subject={"reference": "urn:uuid:pat-1"},
                    participant=[{"individual": {"reference": "urn:uuid:dr-1"}}],
                ),
            },
            {
                "fullUrl": "urn:uuid:t-1",
                "resource": {
                    "resourceType": "Task",
                    "status": "completed",
                    "for": {"reference": "urn:uuid:pat-1"},
                    "encounter": {"reference": "urn:uuid:enc-1"},
                    "note": [{"text": "Called patient."}],
                },
            },
            {
                "fullUrl": "urn:uuid:other",
                "resource": time_entry("x", subject={"reference": "urn:uuid:nobody"}),
            },
        ],
    }
    facts = read_facts(resources_from_json(bundle))
    assert facts.patient.id == "Patient/pat-1"
    entries = {e.id: e for e in facts.time_entries}
    assert entries["Encounter/enc-1"].performer == "Practitioner/dr-1"
    assert entries["Encounter/enc-1"].notes == ("Called patient.",)
    assert entries["Encounter/enc-1"].task_ids == ("Task/t-1",)


@pytest.mark.parametrize(
    "reference",
    [
        "Patient/p1",
        "https://ehr.example/fhir/Patient/p1",
        "http://x/fhir/Patient/p1/_history/4",
        "Patient/p1/_history/1",
    ],
)
def test_reference_spellings(reference: str) -> None:
    facts = facts_of(time_entry(subject={"reference": reference}))
    assert len(facts.time_entries) == 1


def test_every_bundle_type_reads_the_same(tmp_path) -> None:
    resources = [{"resourceType": "Patient", "id": "p1"}, time_entry()]
    for kind in ("collection", "searchset", "transaction", "batch", "transaction-response", "batch-response"):
        bundle = {"resourceType": "Bundle", "type": kind, "entry": [{"resource": r} for r in resources]}
        facts = read_facts(resources_from_json(bundle))
        assert facts.patient.id == "Patient/p1" and len(facts.time_entries) == 1, kind


# ---- never raises ---------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
    | st.sampled_from(["2026-10-05T10:00:00Z", "2026", "2026-10", "Patient/p1", "urn:uuid:x", "min", "ccm"]),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = [
    "id",
    "status",
    "code",
    "type",
    "class",
    "period",
    "length",
    "subject",
    "patient",
    "for",
    "encounter",
    "note",
    "category",
    "provision",
    "extension",
    "dateTime",
    "occurrenceDateTime",
    "occurrencePeriod",
    "performer",
    "participant",
    "about",
    "sent",
    "executionPeriod",
    "owner",
    "deceasedDateTime",
    "deceasedBoolean",
    "generalPractitioner",
    "birthDate",
    "onsetDateTime",
    "quantity",
    "issue",
]
resource_types = st.sampled_from(
    [
        "Patient",
        "Condition",
        "Encounter",
        "Task",
        "Consent",
        "CarePlan",
        "ChargeItem",
        "Communication",
        "OperationOutcome",
        "Bundle",
        "Observation",
    ]
)
resources = st.builds(
    lambda rtype, fields: {"resourceType": rtype, **fields},
    resource_types,
    st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=6),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(resources | json_values, max_size=8), st.sampled_from(["UTC", "America/Chicago"]))
def test_read_facts_never_raises(items: list[Any], tz: str) -> None:
    facts = read_facts(items, tz=tz)
    assert facts.patient.id.startswith("Patient/")
    assert all(s.resource and s.reason for s in facts.skipped)


def test_human_name_prefers_official_and_skips_junk() -> None:
    """One name reader for the reader, the panel banner, the open-mode picker and the printed care plan."""
    from fhir_mapping.read_clinical import human_name

    names = [
        {"use": "nickname", "given": ["Bud"]},
        {"use": "official", "given": [7, None], "family": 3},  # unusable: no text, no string parts
        {"given": ["Ada", 1], "family": "Lovelace"},
    ]
    assert human_name(names) == "Ada Lovelace"
    assert human_name([{"use": "official", "text": " A. L. "}, {"text": "Other"}]) == "A. L."
    assert human_name("Ada") == ""
    assert human_name([{"given": "Ada"}]) == "Ada"  # a bare string, read leniently
    assert human_name([{"use": ["official"], "family": "Odd"}]) == "Odd"  # an unhashable `use` is no crash
