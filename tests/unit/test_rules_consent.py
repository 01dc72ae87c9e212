"""Consent rules and the billing practitioner."""

from __future__ import annotations

from rules.records import PatientRecord
from tests.support.facts import (
    DOC,
    OTHER_DOC,
    consent,
    entry,
    ev,
    finding,
    ready_facts,
    rules_of,
    visit,
)


def test_no_consent_blocks() -> None:
    v = ev(ready_facts(consents=()))
    assert v.status == "blocked" and v.codes == ()
    assert finding(v, "consent.missing").severity == "blocker"
    # Minutes without a consent in force never count, even if consent is recorded later.
    assert v.minutes.clinical_staff == 0 and v.minutes.not_counted > 0
    assert finding(v, "time.before-consent").severity == "info"


def test_draft_consent_is_not_consent() -> None:
    v = ev(ready_facts(consents=(consent(status="draft"),)))
    assert finding(v, "consent.missing").evidence == ("Consent/c1",)


def test_declined_blocks() -> None:
    v = ev(ready_facts(consents=(consent(status="rejected"),)))
    assert v.status == "blocked" and finding(v, "consent.declined").severity == "blocker"


def test_latest_consent_wins() -> None:
    again = (consent("old", "2025-11-01T10:00:00", status="rejected"), consent("new", "2026-01-05T10:00:00"))
    assert ev(ready_facts(consents=again)).status == "ready"
    withdrawn = (
        consent("old", "2025-11-01T10:00:00"),
        consent("new", "2026-01-05T10:00:00", status="rejected"),
    )
    assert "consent.declined" in rules_of(ev(ready_facts(consents=withdrawn)))


def test_stop_is_effective_at_the_end_of_its_month() -> None:
    facts = ready_facts(
        consents=(consent(status="inactive", stop="2026-03-12T09:00:00"),),
        time_entries=(
            entry("a", "2026-03-03T14:00:00", 10),
            entry("b", "2026-03-20T14:00:00", 15),
            entry("c", "2026-04-03T14:00:00", 25),
        ),
    )
    march = ev(facts)
    assert march.status == "ready" and march.minutes.clinical_staff == 25
    assert finding(march, "consent.stop-effective").severity == "info"
    april = ev(facts, "2026-04")
    assert april.status == "blocked" and finding(april, "consent.stopped").severity == "blocker"
    assert "2026-03" in finding(april, "consent.stopped").message
    assert finding(april, "time.after-stop").evidence == ("Encounter/c",)
    assert april.minutes.clinical_staff == 0


def test_stop_in_practice_time_zone() -> None:
    # 2026-04-01T02:00Z is still March 31 in Chicago: the stop is effective at the end of March there.
    facts = ready_facts(
        consents=(consent(status="inactive", stop="2026-04-01T02:00:00+00:00"),),
        time_entries=(entry("a", "2026-04-10T14:00:00", 25),),
    )
    assert ev(facts, "2026-04", tz="UTC").status == "ready"
    assert ev(facts, "2026-04", tz="America/Chicago").status == "blocked"


def test_stopped_without_a_date_blocks() -> None:
    v = ev(ready_facts(consents=(consent(status="inactive"),)))
    assert "stop date is not recorded" in finding(v, "consent.stopped").message


def test_consent_naming_another_practitioner_blocks() -> None:
    v = ev(ready_facts(consents=(consent(practitioner=OTHER_DOC),)), billing_practitioner=DOC)
    f = finding(v, "consent.other-practitioner")
    assert f.severity == "blocker" and OTHER_DOC in f.message and "new consent" in f.message


def test_reconsent_with_the_new_practitioner_clears_it() -> None:
    consents = (
        consent("old", "2025-06-01T10:00:00", practitioner=OTHER_DOC),
        consent("new", "2026-01-05T10:00:00"),
    )
    v = ev(ready_facts(consents=consents), billing_practitioner=DOC)
    assert v.status == "ready" and v.billing_practitioner == DOC


def test_billing_practitioner_comes_from_the_latest_consent() -> None:
    consents = (
        consent("old", "2025-06-01T10:00:00", practitioner=OTHER_DOC),
        consent("new", "2026-01-05T10:00:00"),
    )
    assert ev(ready_facts(consents=consents)).billing_practitioner == DOC


def test_explicit_practitioner_beats_consent_and_gp() -> None:
    v = ev(ready_facts(), billing_practitioner=OTHER_DOC)
    assert v.billing_practitioner == OTHER_DOC and "consent.other-practitioner" in rules_of(v)


def test_general_practitioner_is_the_last_resort() -> None:
    v = ev(ready_facts(consents=(consent(practitioner=None),)))
    assert v.billing_practitioner == DOC and v.status == "ready"
    assert finding(v, "consent.practitioner-unnamed").severity == "warning"


def test_unknown_billing_practitioner_blocks() -> None:
    v = ev(ready_facts(consents=(consent(practitioner=None),), patient=PatientRecord("Patient/p1")))
    assert v.billing_practitioner is None and v.status == "blocked"
    assert finding(v, "billing-practitioner.unknown").category == "consent"


def test_incomplete_disclosures_warn_and_name_what_is_missing() -> None:
    v = ev(ready_facts(consents=(consent(disclosures=frozenset({"ccm-available", "cost-sharing"})),)))
    f = finding(v, "consent.disclosures-incomplete")
    assert v.status == "ready" and f.severity == "warning"
    assert "only one practitioner" in f.message and "stop at any time" in f.message
    assert "cost sharing" not in f.message


def test_consent_mid_month_drops_earlier_minutes() -> None:
    facts = ready_facts(
        consents=(consent(obtained="2026-03-10T12:00:00"),),
        visits=(visit(start="2026-03-10T11:00:00"),),
        time_entries=(
            entry("a", "2026-03-03T14:00:00", 15),
            entry("b", "2026-03-20T14:00:00", 15),
            entry("c", "2026-03-10T11:50:00", 20),
        ),
    )
    v = ev(facts)
    assert v.minutes.clinical_staff == 15 + 10
    f = finding(v, "time.before-consent")
    assert "25 min" in f.message and set(f.evidence) == {"Encounter/a", "Encounter/c"}
    assert v.minutes.not_counted == 25


def test_consent_after_the_month_is_missing_for_that_month() -> None:
    v = ev(ready_facts(consents=(consent(obtained="2026-04-02T10:00:00"),)))
    assert "obtained after 2026-03" in finding(v, "consent.missing").message


def test_undated_consent_blocks() -> None:
    """cms-rules.md §5.3: the consent must be dated before the first counted minute."""
    v = ev(ready_facts(consents=(consent(obtained=""),)))
    assert finding(v, "consent.undated").severity == "blocker"
    assert v.status == "blocked" and v.minutes.clinical_staff == 0
