"""Minute counting: time zones, overlaps, inpatient stays, other programs, flooring."""

from __future__ import annotations

import pytest

from rules.minutes import merge, subtract, whole
from tests.support.facts import (
    DOC,
    NURSE,
    NURSE2,
    entry,
    ev,
    finding,
    ready_facts,
    rules_of,
    stay,
    with_entries,
)


def test_month_boundary_follows_the_practice_time_zone() -> None:
    facts = with_entries(
        ready_facts(),
        entry("late", "2026-03-31T23:30:00-05:00", 10),
        entry("mid", "2026-03-15T10:00:00-05:00", 12),
    )
    chicago = ev(facts, tz="America/Chicago")
    utc = ev(facts, tz="UTC")
    assert chicago.minutes.clinical_staff == 22 and chicago.status == "ready"
    assert utc.minutes.clinical_staff == 12 and utc.status == "not-yet"
    assert ev(facts, "2026-04", tz="UTC").minutes.clinical_staff == 10
    assert ev(facts, "2026-04", tz="America/Chicago").minutes.clinical_staff == 0
    assert chicago.timezone == "America/Chicago"


def test_entry_straddling_midnight_is_split_between_months() -> None:
    facts = with_entries(ready_facts(), entry("x", "2026-03-31T23:50:00+00:00", 30))
    assert ev(facts).minutes.clinical_staff == 10
    assert ev(facts, "2026-04").minutes.clinical_staff == 20


def test_overlap_of_one_person_counts_once() -> None:
    facts = with_entries(
        ready_facts(), entry("a", "2026-03-03T14:00:00", 20), entry("b", "2026-03-03T14:10:00", 20)
    )
    v = ev(facts)
    assert v.minutes.clinical_staff == 30 and v.minutes.not_counted == 10
    f = finding(v, "time.overlap")
    assert "10 min" in f.message and f.evidence == ("Encounter/b",)


def test_overlap_of_two_people_adds_up() -> None:
    facts = with_entries(
        ready_facts(),
        entry("a", "2026-03-03T14:00:00", 20, NURSE),
        entry("b", "2026-03-03T14:10:00", 20, NURSE2),
    )
    v = ev(facts)
    assert v.minutes.clinical_staff == 40 and "time.overlap" not in rules_of(v)


def test_contained_and_adjacent_entries() -> None:
    facts = with_entries(
        ready_facts(),
        entry("a", "2026-03-03T14:00:00", 30),
        entry("b", "2026-03-03T14:05:00", 5),
        entry("c", "2026-03-03T14:30:00", 10),
    )
    assert ev(facts).minutes.clinical_staff == 40


def test_practitioner_time_counts_as_staff_and_as_own() -> None:
    facts = with_entries(
        ready_facts(),
        entry("d", "2026-03-03T14:00:00", 12, DOC),
        entry("n", "2026-03-04T14:00:00", 10, NURSE),
    )
    v = ev(facts)
    assert (v.minutes.clinical_staff, v.minutes.billing_practitioner) == (22, 12)


def test_minutes_are_floored_never_rounded() -> None:
    v = ev(with_entries(ready_facts(), entry("a", "2026-03-03T14:00:00", 19.9)))
    assert v.status == "not-yet" and v.minutes.clinical_staff == 19 and v.codes == ()
    assert (v.next_threshold.code, v.next_threshold.minutes_needed) == ("99490", 1)
    assert "1 more min" in finding(v, "time.below-threshold").message
    pieces = with_entries(
        ready_facts(), entry("a", "2026-03-03T14:00:00", 10.5), entry("b", "2026-03-04T14:00:00", 9.5)
    )
    assert ev(pieces).minutes.clinical_staff == 20


@pytest.mark.parametrize("status", ["entered-in-error", "cancelled", "in-progress", "planned"])
def test_only_finished_entries_count(status: str) -> None:
    v = ev(with_entries(ready_facts(), entry("a", "2026-03-03T14:00:00", 25, status=status)))
    assert v.minutes.clinical_staff == 0 and v.minutes.by_program == ()


@pytest.mark.parametrize("minutes", [0, -5, float("nan"), float("inf")])
def test_nonsense_lengths_are_ignored(minutes: float) -> None:
    from dataclasses import replace

    bad = replace(entry("a", "2026-03-03T14:00:00", 1), minutes=minutes)
    v = ev(with_entries(ready_facts(), bad, entry("b", "2026-03-04T14:00:00", 21)))
    assert v.minutes.clinical_staff == 21


def test_other_programs_never_count_for_ccm() -> None:
    facts = with_entries(
        ready_facts(),
        entry("c", "2026-03-03T14:00:00", 15),
        entry("r", "2026-03-05T14:00:00", 30, program="rpm"),
        entry("t", "2026-03-06T14:00:00", 40, program="tcm"),
    )
    v = ev(facts)
    assert v.minutes.clinical_staff == 15 and v.status == "not-yet"
    assert dict(v.minutes.by_program) == {"ccm": 15, "rpm": 30, "tcm": 40}
    f = finding(v, "time.other-program")
    assert "RPM 30 min" in f.message and "TCM 40 min" in f.message
    assert set(f.evidence) == {"Encounter/r", "Encounter/t"}


def test_same_person_same_interval_in_two_programs_counts_once() -> None:
    facts = with_entries(
        ready_facts(),
        entry("c", "2026-03-03T14:00:00", 30),
        entry("r", "2026-03-03T14:00:00", 10, program="rpm"),
        entry("r2", "2026-03-03T14:20:00", 10, program="rpm", performer=NURSE2),
    )
    v = ev(facts)
    assert v.minutes.clinical_staff == 20
    assert "10 min of CCM time overlapped" in finding(v, "time.other-program").message


def test_inpatient_minutes_do_not_count() -> None:
    facts = ready_facts(
        time_entries=(entry("a", "2026-03-10T10:00:00", 30), entry("b", "2026-03-20T10:00:00", 15)),
        stays=(stay("s1", "2026-03-10T10:20:00", "2026-03-15T00:00:00"),),
    )
    v = ev(facts)
    assert v.minutes.clinical_staff == 35
    assert "10 min" in finding(v, "time.inpatient").message
    still_in = ready_facts(
        time_entries=(entry("a", "2026-03-10T10:00:00", 30),),
        stays=(stay("s2", "2026-03-01T00:00:00", None),),
    )
    assert ev(still_in).minutes.clinical_staff == 0


def test_interval_helpers() -> None:
    assert merge([(5, 7), (1, 3), (2, 4), (7, 8)]) == [(1, 4), (5, 8)]
    assert subtract([(0, 10)], [(2, 3), (5, 20)]) == ([(0, 2), (3, 5)], 6)
    assert subtract([(0, 10)], []) == ([(0, 10)], 0)
    assert whole(1199.9999999) == 20 and whole(1199.0) == 19 and whole(-3) == 0
