"""Consent as a timeline (issue 11 item 2; cms-rules.md §3.3): every CCM Consent becomes dated events."""

from __future__ import annotations

from dataclasses import replace

from rules.records import Coding, TimeEntry
from tests.support.facts import (
    DOC,
    NURSE,
    OTHER_DOC,
    at,
    consent,
    entry,
    ev,
    finding,
    ready_facts,
    rules_of,
)


def test_later_consent_for_another_practitioner_supersedes() -> None:
    """§3.3: re-consent when the billing practitioner changes; only one practitioner bills a month."""
    consents = (
        consent("a", "2026-01-05T10:00:00"),
        consent("b", "2026-03-15T10:00:00", practitioner=OTHER_DOC),
    )
    march = ev(ready_facts(consents=consents), billing_practitioner=DOC)
    assert march.status == "blocked" and "consent.other-practitioner" in rules_of(march, "blocker")
    assert march.consent_state == "missing"
    feb = ev(
        ready_facts(consents=consents, time_entries=(entry("f", "2026-02-03T14:00:00", 25),)),
        "2026-02",
        billing_practitioner=DOC,
    )
    assert feb.status == "ready"


def test_late_recorded_stop_takes_effect_from_the_date_it_states() -> None:
    stop = replace(
        consent("s", "2026-03-20T10:00:00", status="inactive", stop="2026-02-14T00:00:00"),
        period_start=at("2026-01-05T10:00:00"),
    )
    v = ev(ready_facts(consents=(consent(), stop)))
    assert v.status == "blocked" and "2026-02" in finding(v, "consent.stopped").message
    assert v.consent_state == "stopped"


def test_decline_after_consent_ends_coverage_at_once() -> None:
    consents = (consent("a", "2026-01-05T10:00:00"), consent("d", "2026-03-10T12:00:00", status="rejected"))
    facts = ready_facts(
        consents=consents,
        time_entries=(entry("a", "2026-03-03T14:00:00", 15), entry("b", "2026-03-12T14:00:00", 15)),
    )
    v = ev(facts)
    assert v.minutes.clinical_staff == 15 and v.status == "not-yet"
    assert "time.after-stop" in rules_of(v) and finding(v, "consent.stop-effective").severity == "info"
    assert ev(facts, "2026-04").consent_state == "declined"


def test_deny_provision_is_a_decline() -> None:
    v = ev(ready_facts(consents=(replace(consent(), provision_type="deny"),)))
    assert v.status == "blocked" and v.consent_state == "declined"


def test_draft_proposed_and_entered_in_error_are_not_in_force() -> None:
    for status in ("draft", "proposed", "entered-in-error"):
        v = ev(ready_facts(consents=(consent(status=status),)))
        assert v.status == "blocked" and v.consent_state == "missing", status


def test_consent_with_only_a_period_is_dated_by_it() -> None:
    c = replace(consent(obtained=""), period_start=at("2026-01-05T00:00:00"))
    assert ev(ready_facts(consents=(c,))).status == "ready"


def test_given_from_is_the_later_of_date_and_period_start() -> None:
    """§3.3: consent precedes CCM; a backdated period cannot make earlier minutes count."""
    c = replace(consent(obtained="2026-03-10T00:00:00"), period_start=at("2026-01-01T00:00:00"))
    v = ev(ready_facts(consents=(c,)))
    assert v.minutes.clinical_staff == 0 and "time.before-consent" in rules_of(v)


def test_active_consent_period_end_is_inclusive_and_ends_coverage() -> None:
    c = replace(consent(), period_end=at("2026-03-06T00:00:00"))  # provision.period.end "2026-03-05"
    facts = ready_facts(
        consents=(c,),
        time_entries=(entry("a", "2026-03-05T20:00:00", 20), entry("b", "2026-03-06T10:00:00", 20)),
    )
    v = ev(facts)
    assert v.minutes.clinical_staff == 20 and v.status == "ready"


def test_new_consent_after_a_stop_restarts_ccm() -> None:
    consents = (
        consent("a", "2025-06-01T10:00:00", status="inactive", stop="2025-09-10T00:00:00"),
        consent("b", "2026-01-05T10:00:00"),
    )
    assert ev(ready_facts(consents=consents)).status == "ready"


def test_only_practitioner_or_staff_time_counts() -> None:
    """§3.6: time by a related person, the patient, a device or an unknown performer never counts."""
    for who in ("RelatedPerson/rp", "Patient/p1", "Device/d", None):
        v = ev(ready_facts(time_entries=(entry("x", "2026-03-03T14:00:00", 25, performer=who),)))
        assert v.minutes.clinical_staff == 0 and finding(v, "time.not-staff").severity == "warning", who


def test_people_compare_through_aliases() -> None:
    """Visit participant, billed performer and time performer by role or NPI are the billing practitioner."""
    aliases = (("PractitionerRole/r-doc", DOC), ("Practitioner?identifier=npi|1", DOC))
    own = entry("o", "2026-03-03T14:00:00", 30, performer="PractitionerRole/r-doc")
    facts = replace(ready_facts(time_entries=(own,)), aliases=aliases)
    v = ev(facts, billing_practitioner="Practitioner?identifier=npi|1")
    assert v.billing_practitioner == DOC and v.minutes.billing_practitioner == 30


def test_other_program_codes_on_a_ccm_entry_never_count() -> None:
    """§3.6: TCM/RPM/RTM/BHI minutes never count for CCM, whatever the form of the record."""
    for code in ("99457", "99495", "98980", "99484", "G0506"):
        tagged = replace(entry("r", "2026-03-03T14:00:00", 25), codings=(Coding("cpt", code),))
        v = ev(ready_facts(time_entries=(tagged,)))
        assert v.minutes.clinical_staff == 0 and "time.other-program" in rules_of(v), code


def test_time_entry_fields_default_for_hand_built_records() -> None:
    e = TimeEntry(
        "Encounter/x", "finished", "ccm", at("2026-03-03T14:00:00"), at("2026-03-03T14:20:00"), 20, NURSE
    )
    assert e.codings == ()


def test_time_inside_a_face_to_face_visit_is_the_visits_own() -> None:
    """cms-rules.md §3.6: CCM time on the day of an E/M counts, time inside the E/M encounter does not."""
    from tests.support.facts import visit

    same_day = visit("v2", start="2026-03-03T14:00:00+00:00")  # 14:00-14:25
    facts = ready_facts(
        visits=(*ready_facts().visits, same_day),
        time_entries=(entry("a", "2026-03-03T14:10:00", 30), entry("b", "2026-03-03T16:00:00", 10)),
    )
    v = ev(facts)
    assert v.minutes.clinical_staff == 25 and finding(v, "time.during-visit").severity == "info"


def test_consent_given_and_stopped_the_same_day_covers_that_month() -> None:
    """§3.3: the stop takes effect at the end of the month; a date-precision stop covers its whole day."""
    c = replace(
        consent("s", "2026-03-03T10:00:00", status="inactive", stop="2026-03-03T00:00:00"),
        period_start=at("2026-03-03T00:00:00"),
        period_end=at("2026-03-04T00:00:00"),
    )
    facts = ready_facts(consents=(c,), time_entries=(entry("a", "2026-03-10T14:00:00", 25),))
    v = ev(facts)
    assert v.status == "ready" and finding(v, "consent.stop-effective").severity == "info"
    assert ev(facts, "2026-04").consent_state == "stopped"
