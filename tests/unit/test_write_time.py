"""Strict writers: time entry (Encounter + Task + Provenance), corrections, consent; read back."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from fhirclient.models.bundle import Bundle as FcBundle
from fhirclient.models.consent import Consent as FcConsent
from fhirclient.models.encounter import Encounter as FcEncounter
from fhirclient.models.provenance import Provenance as FcProvenance
from fhirclient.models.task import Task as FcTask

from fhir_mapping.reader import read_facts
from fhir_mapping.write_consent import ConsentDraft, consent, consent_transaction
from fhir_mapping.write_provenance import WriteError, checked, provenance
from fhir_mapping.write_time import (
    TIME_ENTRY_ID,
    TimeEntryDraft,
    correction_transaction,
    draft_from_json,
    draft_to_json,
    encounter,
    entry_transaction,
    task,
    valid_entry_id,
)

START = datetime(2026, 11, 3, 14, 0, tzinfo=UTC)
RECORDED = datetime(2026, 11, 3, 15, 0, tzinfo=UTC)
NOTE = "Reviewed glucose log (diabetes); moved metformin to evening; recheck fasting values Friday."
ID = "0f8fad5b-d9cb-469f-a165-70867728950e"


def draft(**kw: Any) -> TimeEntryDraft:
    base: dict[str, Any] = {
        "entry_id": ID,
        "patient_id": "p1",
        "performer": "Practitioner/rn1",
        "start": START,
        "minutes": 25,
        "program": "ccm",
        "activity": "patient-call",
        "note": NOTE,
    }
    base.update(kw)
    return TimeEntryDraft(**base)


def test_encounter_has_identifier_program_period_end_and_length_in_ucum_minutes() -> None:
    enc = encounter(draft(conditions=("Condition/c1",)))
    assert enc["identifier"] == [{"system": TIME_ENTRY_ID, "value": ID}]
    assert enc["status"] == "finished"
    assert enc["type"][0]["coding"][0] == {
        "system": "https://ccm-ready.org/fhir/CodeSystem/care-program",
        "code": "ccm",
    }
    assert enc["period"] == {"start": "2026-11-03T14:00:00+00:00", "end": "2026-11-03T14:25:00+00:00"}
    assert enc["length"] == {"value": 25, "unit": "min", "system": "http://unitsofmeasure.org", "code": "min"}
    assert enc["participant"] == [{"individual": {"reference": "Practitioner/rn1"}}]
    assert enc["reasonReference"] == [{"reference": "Condition/c1"}]
    FcEncounter(enc, strict=True)


def test_explicit_end_is_kept_and_late_entries_are_tagged() -> None:
    enc = encounter(draft(end=START + timedelta(minutes=40), late=True))
    assert enc["period"]["end"] == "2026-11-03T14:40:00+00:00"
    assert enc["meta"]["tag"][0]["code"] == "late"


def test_task_carries_activity_note_and_points_at_the_entry() -> None:
    t = task(draft(), "Encounter/e1", RECORDED)
    assert t["status"] == "completed" and t["intent"] == "order"
    assert t["code"]["coding"][0]["code"] == "patient-call"
    assert t["encounter"] == {"reference": "Encounter/e1"}
    assert t["note"][0]["text"] == NOTE
    assert t["executionPeriod"] == {"start": "2026-11-03T14:00:00+00:00", "end": "2026-11-03T14:25:00+00:00"}
    FcTask(t, strict=True)


def test_transaction_is_conditional_on_our_identifiers_and_valid_r4() -> None:
    bundle = entry_transaction(
        draft(), user="Practitioner/rn1", recorded=RECORDED, pack_id="cms-pfs-2026", pack_version="2026.07"
    )
    FcBundle(bundle, strict=True)
    requests = [e["request"] for e in bundle["entry"]]
    assert [r["url"] for r in requests] == ["Encounter", "Task", "Provenance"]
    assert requests[0]["ifNoneExist"] == (
        f"identifier=https://ccm-ready.org/fhir/identifier/time-entry%7C{ID}&patient=Patient/p1"
    )
    assert requests[2]["ifNoneExist"].startswith("target:Encounter.identifier=")
    enc_url = bundle["entry"][0]["fullUrl"]
    assert bundle["entry"][1]["resource"]["encounter"] == {"reference": enc_url}
    prov = bundle["entry"][2]["resource"]
    assert [t["reference"] for t in prov["target"]] == [enc_url, bundle["entry"][1]["fullUrl"]]
    assert prov["agent"][0]["who"] == {"reference": "Practitioner/rn1"}
    assert prov["agent"][0]["type"]["coding"][0]["code"] == "author"
    assert prov["agent"][0]["onBehalfOf"]
    assert prov["agent"][2]["who"]["identifier"]["value"] == "ccm-ready"
    assert prov["policy"] == ["https://ccm-ready.org/fhir/policy/cms-pfs-2026/2026.07"]
    FcProvenance(prov, strict=True)
    again = entry_transaction(
        draft(), user="Practitioner/rn1", recorded=RECORDED, pack_id="cms-pfs-2026", pack_version="2026.07"
    )
    assert again == bundle  # the same entry always makes the same transaction


def test_written_entry_reads_back_through_the_reader() -> None:
    bundle = entry_transaction(
        draft(), user="Practitioner/rn1", recorded=RECORDED, pack_id="p", pack_version="v"
    )
    enc = {**bundle["entry"][0]["resource"], "id": "e1"}
    t = {**bundle["entry"][1]["resource"], "id": "t1", "encounter": {"reference": "Encounter/e1"}}
    facts = read_facts([enc, t], "p1")
    assert not facts.skipped
    (entry,) = facts.time_entries
    assert (entry.status, entry.program, entry.minutes, entry.performer) == (
        "finished",
        "ccm",
        25,
        "Practitioner/rn1",
    )
    assert entry.notes == (NOTE,)
    assert entry.end - entry.start == timedelta(minutes=25)


def test_writers_refuse_invalid_resources() -> None:
    with pytest.raises(WriteError, match="class"):
        checked({"resourceType": "Encounter", "status": "finished"})
    with pytest.raises(WriteError, match="time zone"):
        encounter(draft(start=datetime(2026, 11, 3, 14, 0)))
    with pytest.raises(WriteError):
        checked({"resourceType": "NoSuchType"})
    with pytest.raises(WriteError):
        provenance([], user="Practitioner/a", recorded=RECORDED, pack_id="p", pack_version="v")


def test_draft_json_round_trip_and_ids() -> None:
    d = draft(end=START + timedelta(minutes=30), conditions=("Condition/c",), late=True)
    assert draft_from_json(draft_to_json(d)) == d
    assert valid_entry_id(ID) and not valid_entry_id("abc") and not valid_entry_id(ID.upper())


def stored(resource: dict[str, Any], rid: str, version: str = "1") -> dict[str, Any]:
    return {**resource, "id": rid, "meta": {"versionId": version}}


def test_correction_marks_entered_in_error_with_if_match_and_reason() -> None:
    enc = stored(encounter(draft()), "e1", "3")
    t = stored(task(draft(), "Encounter/e1", RECORDED), "t1")
    replacement = draft(entry_id="7c9e6679-7425-40de-944b-e07fc1f90ae7", minutes=15)
    bundle = correction_transaction(
        "http://fhir.test/fhir/",
        enc,
        [t],
        "wrong minutes",
        user="Practitioner/rn1",
        recorded=RECORDED,
        pack_id="p",
        pack_version="v",
        replacement=replacement,
    )
    FcBundle(bundle, strict=True)
    put_enc, put_task, prov, *new = bundle["entry"]
    assert put_enc["request"] == {"method": "PUT", "url": "Encounter/e1", "ifMatch": 'W/"3"'}
    assert put_enc["fullUrl"] == "http://fhir.test/fhir/Encounter/e1"
    assert put_enc["resource"]["status"] == "entered-in-error"
    assert put_enc["resource"]["length"] == enc["length"]  # nothing else changes
    assert put_enc["resource"]["statusHistory"] == [{"status": "finished", "period": enc["period"]}]
    assert put_task["resource"]["status"] == "entered-in-error"
    assert put_task["resource"]["statusReason"] == {"text": "wrong minutes"}
    assert prov["resource"]["reason"] == [{"text": "wrong minutes"}]
    assert prov["resource"]["activity"]["coding"][0]["code"] == "UPDATE"
    assert [t["reference"] for t in prov["resource"]["target"]] == [put_enc["fullUrl"], put_task["fullUrl"]]
    assert [e["request"]["url"] for e in new] == ["Encounter", "Task", "Provenance"]
    assert new[2]["resource"]["entity"] == [{"role": "revision", "what": {"reference": "Encounter/e1"}}]


def test_correction_of_an_already_marked_entry_writes_only_the_replacement_or_nothing() -> None:
    enc = {**stored(encounter(draft()), "e1"), "status": "entered-in-error"}
    with pytest.raises(WriteError, match="already marked"):
        correction_transaction(
            "http://x/fhir",
            enc,
            [],
            "again",
            user="Practitioner/a",
            recorded=RECORDED,
            pack_id="p",
            pack_version="v",
        )
    with pytest.raises(WriteError, match="reason"):
        correction_transaction(
            "http://x/fhir",
            stored(encounter(draft()), "e1"),
            [],
            " ",
            user="Practitioner/a",
            recorded=RECORDED,
            pack_id="p",
            pack_version="v",
        )


ALL = ("ccm-available", "cost-sharing", "one-practitioner", "right-to-stop")


def consent_draft(**kw: Any) -> ConsentDraft:
    base: dict[str, Any] = {
        "consent_id": ID,
        "patient_id": "p1",
        "decision": "given",
        "obtained_at": START,
        "obtained_by": "Practitioner/rn1",
        "billing_practitioner": "Practitioner/dr",
        "method": "verbal",
        "disclosures": ALL,
    }
    base.update(kw)
    return ConsentDraft(**base)


def test_consent_matches_the_conventions_and_reads_back() -> None:
    c = consent(consent_draft())
    FcConsent(c, strict=True)
    assert c["status"] == "active"
    assert c["scope"]["coding"][0] == {
        "system": "http://terminology.hl7.org/CodeSystem/consentscope",
        "code": "treatment",
    }
    assert {cc["coding"][0]["code"] for cc in c["category"]} == {"59284-0", "ccm"}
    assert c["extension"][0] == {
        "url": "https://ccm-ready.org/fhir/StructureDefinition/consent-method",
        "valueCode": "verbal",
    }
    assert [e["valueCoding"]["code"] for e in c["extension"][1:]] == list(ALL)
    actor = c["provision"]["actor"][0]
    assert actor["role"]["coding"][0]["code"] == "PPRF" and actor["reference"] == {
        "reference": "Practitioner/dr"
    }
    assert c["performer"] == [{"reference": "Practitioner/rn1"}]
    assert c["policyRule"]["coding"][0]["code"] == "ccm-consent"
    (record,) = read_facts([{**c, "id": "c1"}], "p1").consents
    assert record.status == "active" and record.disclosures == frozenset(ALL)
    assert (record.billing_practitioner, record.obtained_by, record.method) == (
        "Practitioner/dr",
        "Practitioner/rn1",
        "verbal",
    )


def test_declined_and_stopped_consents() -> None:
    declined = consent(consent_draft(decision="declined", disclosures=()))
    assert declined["status"] == "rejected" and declined["provision"]["type"] == "deny"
    stopped = consent(consent_draft(decision="stopped", stop_date=date(2026, 11, 20)))
    assert stopped["status"] == "inactive" and stopped["provision"]["period"] == {"end": "2026-11-20"}
    with pytest.raises(WriteError, match="stop date"):
        consent(consent_draft(decision="stopped"))
    with pytest.raises(WriteError):
        consent(consent_draft(method="email"))


def test_consent_transaction_is_idempotent_on_our_identifier() -> None:
    bundle = consent_transaction(
        consent_draft(), user="Practitioner/rn1", recorded=RECORDED, pack_id="p", pack_version="v"
    )
    FcBundle(bundle, strict=True)
    assert bundle["entry"][0]["request"]["ifNoneExist"].startswith(
        "identifier=https://ccm-ready.org/fhir/identifier/consent%7C"
    )
    assert bundle["entry"][1]["request"]["ifNoneExist"].startswith("target:Consent.identifier=")


def test_stopping_keeps_the_consent_whole_and_adds_the_stop_date() -> None:
    from fhir_mapping.write_consent import is_ccm_consent, stop_transaction, stopped

    current = {**consent(consent_draft()), "id": "c1", "meta": {"versionId": "2"}}
    assert is_ccm_consent(current) and not is_ccm_consent({"resourceType": "Consent", "category": []})
    after = stopped(current, date(2026, 11, 20))
    assert after["status"] == "inactive" and after["provision"]["period"] == {"end": "2026-11-20"}
    assert after["dateTime"] == current["dateTime"] and after["extension"] == current["extension"]
    assert current["status"] == "active"  # the input is not modified
    bundle = stop_transaction(
        "http://fhir.test/fhir",
        current,
        date(2026, 11, 20),
        user="Practitioner/rn1",
        recorded=RECORDED,
        pack_id="p",
        pack_version="v",
    )
    FcBundle(bundle, strict=True)
    put, prov = bundle["entry"]
    assert put["request"] == {"method": "PUT", "url": "Consent/c1", "ifMatch": 'W/"2"'}
    assert prov["resource"]["target"] == [{"reference": "http://fhir.test/fhir/Consent/c1"}]
    assert "stopped" in prov["resource"]["reason"][0]["text"]
    (record,) = read_facts([{**after, "id": "c1"}], "p1").consents
    assert record.status == "inactive" and record.stop_date is not None


def test_corrections_and_consent_stops_say_how_the_performer_was_established() -> None:
    """Issue 12: every Provenance the app writes says how the performer was established."""
    from datetime import date

    from fhir_mapping.write_consent import stop_transaction
    from fhir_mapping.write_provenance import EXT_PERFORMER_VERIFICATION

    enc = stored(encounter(draft()), "e1", "3")
    replacement = draft(entry_id="7c9e6679-7425-40de-944b-e07fc1f90ae7", minutes=15)
    bundle = correction_transaction(
        "http://fhir.test/fhir/", enc, [], "wrong minutes", user="Practitioner/rn1", recorded=RECORDED,
        pack_id="p", pack_version="v", replacement=replacement, verification="care-team",
    )
    consent = {"resourceType": "Consent", "id": "c1", "status": "active", "meta": {"versionId": "2"},
               "patient": {"reference": "Patient/p1"}, "scope": {"text": "treatment"},
               "category": [{"text": "CCM"}], "provision": {"type": "permit"}}
    stop = stop_transaction("http://fhir.test/fhir", consent, date(2026, 11, 30), user="Practitioner/rn1",
                            recorded=RECORDED, pack_id="p", pack_version="v", verification="id-token")
    entries = [e["resource"] for b in (bundle, stop) for e in b["entry"]]
    provenances = [r for r in entries if r["resourceType"] == "Provenance"]
    assert len(provenances) == 3  # the correction's, the replacement's and the stop's
    for prov in provenances:
        assert {"url": EXT_PERFORMER_VERIFICATION, "valueCode": prov["extension"][0]["valueCode"]} in prov[
            "extension"
        ]
    assert [p["extension"][0]["valueCode"] for p in provenances] == ["care-team", "care-team", "id-token"]
