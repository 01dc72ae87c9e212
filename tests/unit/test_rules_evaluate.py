"""evaluate(): arguments, status precedence, verdict shape."""

from __future__ import annotations

import pytest

from rules.month import BadMonth, BadTimezone, Month
from rules.packs import UnknownPolicy, load_pack
from rules.records import PatientFacts, PatientRecord, Skipped
from rules.verdict import CATEGORIES, to_json
from tests.support.facts import FakeClassifier, condition, ev, ready_facts


@pytest.mark.parametrize("month", ["2026-3", "March", "2026-13", "", None, 202603])
def test_bad_month(month: object) -> None:
    with pytest.raises(BadMonth):
        ev(ready_facts(), month)  # type: ignore[arg-type]


def test_bad_timezone() -> None:
    with pytest.raises(BadTimezone):
        ev(ready_facts(), tz="Mars/Olympus")


def test_unknown_policy() -> None:
    with pytest.raises(UnknownPolicy):
        ev(ready_facts(), pack="cms-pfs-1999")
    with pytest.raises(UnknownPolicy):
        ev(ready_facts(), "2024-06")


def test_pack_by_id_object_or_month() -> None:
    assert ev(ready_facts()).policy == "cms-pfs-2026"
    v = ev(ready_facts(), Month(2026, 3), pack=load_pack("cms-pfs-2025"))
    assert (v.policy, v.policy_version) == ("cms-pfs-2025", "2025.10-RVU25-Oct")
    assert v.codes[0].payment_each == load_pack("cms-pfs-2025").code("99490").payment


def test_status_precedence() -> None:
    assert ev(ready_facts()).status == "ready"
    assert ev(ready_facts(time_entries=())).status == "not-yet"
    assert ev(ready_facts(time_entries=(), care_plans=())).status == "blocked"
    one = (condition("dm", "E11.9"),)
    assert ev(ready_facts(time_entries=(), care_plans=(), conditions=one)).status == "not-eligible"


def test_codes_are_empty_unless_ready() -> None:
    v = ev(ready_facts(care_plans=()))
    assert v.status == "blocked" and v.codes == () and v.minutes.clinical_staff == 25
    assert v.next_threshold is not None and v.next_threshold.code == "99439"


def test_findings_are_ordered_by_category_then_severity() -> None:
    v = ev(ready_facts(consents=(), care_plans=(), visits=(), attestations=()))
    keys = [
        (CATEGORIES.index(f.category), {"blocker": 0, "warning": 1, "info": 2}[f.severity])
        for f in v.findings
    ]
    assert keys == sorted(keys)
    assert all(f.citation and "cms-rules.md §" in f.citation for f in v.findings)


def test_empty_facts_do_not_raise() -> None:
    v = ev(PatientFacts(patient=PatientRecord("Patient/x")))
    assert v.status == "not-eligible" and v.minutes.clinical_staff == 0
    assert v.chronic_conditions == () and v.conditions_reviewed == ()


def test_skipped_resources_pass_through_and_json_contract() -> None:
    facts = ready_facts(skipped=(Skipped("Observation/1", "not used"),))
    data = to_json(ev(facts, tz="America/New_York"))
    assert data["skipped"] == [{"resource": "Observation/1", "reason": "not used"}]
    assert data["status"] == "ready" and data["codes"] == [{"code": "99490", "units": 1}]
    assert data["payment"]["national_non_facility"] == "66.13"
    assert data["track"] == "clinical-staff" and data["billing_practitioner"] == "Practitioner/doc"


def test_naive_datetimes_are_read_in_the_practice_zone() -> None:
    from dataclasses import replace
    from datetime import datetime

    facts = ready_facts()
    naive = replace(facts.time_entries[0], start=datetime(2026, 3, 31, 23, 50))
    v = ev(replace(facts, time_entries=(naive,)), tz="America/Chicago")
    assert v.minutes.clinical_staff == 10


def test_default_classifier_is_rules_chronic() -> None:
    chronic = pytest.importorskip("rules.chronic")
    from rules.evaluate import default_classifier

    assert default_classifier() is chronic.classify
    FakeClassifier()  # the fake stays usable alongside
