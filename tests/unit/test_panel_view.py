"""Presentation helpers of the readiness panel: bars, money, days left, findings order, headline."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from rules.month import Month
from rules.packs import Track, load_pack
from rules.verdict import CodeLine, Finding, Minutes, NextThreshold, Verdict
from smart_app.panel import view_model as pv


def verdict(**kw: object) -> Verdict:
    base: dict[str, object] = {
        "patient": "Patient/p1",
        "month": "2026-11",
        "policy": "cms-pfs-2026",
        "policy_version": "test",
        "status": "not-yet",
        "codes": (),
        "minutes": Minutes(clinical_staff=14, billing_practitioner=0),
        "next_threshold": NextThreshold("99490", 6, "clinical-staff", 20),
        "chronic_conditions": (),
        "findings": (),
    }
    base.update(kw)
    return Verdict(**base)  # type: ignore[arg-type]


def finding(rule: str, severity: str = "blocker", category: str = "consent") -> Finding:
    return Finding(rule, category, severity, f"message for {rule}", f"citation for {rule}")  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def specs() -> tuple[Track, ...]:
    return pv.track_specs(load_pack("cms-pfs-2026"))


def test_track_thresholds_come_from_the_pack(specs: tuple[Track, ...]) -> None:
    marks = {s.id: pv.track_marks(s) for s in specs}
    assert marks["clinical-staff"] == ((20, "99490"), (40, "99439"), (60, "99439"))
    assert marks["practitioner"] == ((30, "99491"), (60, "99437"), (90, "99437"))
    assert marks["complex"] == ((60, "99487"), (90, "99489"), (120, "99489"))  # 99489 cap 2 (pack)


def test_bars_show_minutes_marks_and_text(specs: tuple[Track, ...]) -> None:
    bars = pv.progress_bars(verdict(minutes=Minutes(45, 12)), specs)
    assert [b.track for b in bars] == ["clinical-staff", "practitioner"]  # complex only when relevant
    staff, prac = bars
    assert (staff.minutes, staff.maximum, staff.value) == (45, 60, 45)
    assert [m.reached for m in staff.marks] == [True, True, False]
    assert staff.text == "45 of 60 min; 2 of 3 thresholds met; 15 more for 99439 at 60 min"
    assert [(s.start, s.end, s.value, s.span) for s in staff.segments] == [
        (0, 20, 20, 1), (20, 40, 20, 1), (40, 60, 5, 1)]
    assert staff.active and not prac.active
    assert prac.value == 12 and prac.next_mark is not None and prac.next_mark.code == "99491"


def test_bar_clamps_beyond_the_last_threshold(specs: tuple[Track, ...]) -> None:
    staff = pv.progress_bars(verdict(minutes=Minutes(75, 0)), specs)[0]
    assert staff.value == 60 and staff.percent == 100
    assert staff.text == "75 of 60 min; every threshold met"


def test_complex_bar_appears_on_the_complex_track(specs: tuple[Track, ...]) -> None:
    nxt = NextThreshold("99489", 20, "complex", 90)
    v = verdict(track="complex", minutes=Minutes(70, 0), next_threshold=nxt)
    bars = {b.track: b for b in pv.progress_bars(v, specs)}
    assert bars["complex"].active
    assert [(s.end, s.span) for s in bars["complex"].segments] == [(60, 2), (90, 1), (120, 1)]
    assert bars["complex"].columns == 4


@pytest.mark.parametrize(
    ("amount", "text"),
    [(Decimal("66.13"), "$66.13"), (Decimal("1234.5"), "$1,234.50"), (Decimal("0.005"), "$0.01"),
     (Decimal(0), "$0.00"), (None, "n/a")],
)
def test_format_money(amount: Decimal | None, text: str) -> None:
    assert pv.format_money(amount) == text


def test_days_left_counts_today_and_stops_at_zero() -> None:
    nov = Month(2026, 11)
    assert pv.days_left(nov, date(2026, 11, 23)) == 8
    assert pv.days_left("2026-11", date(2026, 11, 30)) == 1
    assert pv.days_left(nov, date(2026, 12, 1)) == 0
    assert pv.days_left_text(0, nov, date(2026, 12, 1)) == "the month is over"
    assert pv.days_left_text(1, nov, date(2026, 11, 30)) == "1 day left"
    assert pv.days_left_text(30, nov, date(2026, 10, 2)) == "the month has not started"


def test_practice_today_uses_the_practice_zone() -> None:
    late = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)  # still November 30 in Chicago
    assert pv.practice_today("America/Chicago", late) == date(2026, 11, 30)
    assert pv.practice_today("UTC", late) == date(2026, 12, 1)


def test_findings_sort_blockers_first_then_category_then_rule() -> None:
    fs = [finding("doc.a", "warning", "documentation"), finding("time.x", "info", "time"),
          finding("consent.b", "blocker"), finding("eligibility.a", "blocker", "eligibility")]
    assert [f.rule for f in pv.sort_findings(fs)] == ["eligibility.a", "consent.b", "doc.a", "time.x"]
    groups = pv.group_findings(fs)
    assert [(sev, len(items)) for sev, items in groups] == [("blocker", 2), ("warning", 1), ("info", 1)]


def test_headline_not_yet_names_minutes_code_and_days() -> None:
    h = pv.headline(verdict(), date(2026, 11, 23))
    assert h.title == "Not yet"
    assert h.next_step == "6 more clinical-staff minutes for 99490; 8 days left."


def test_headline_for_a_past_month_says_how_short_it_fell() -> None:
    h = pv.headline(verdict(), date(2026, 12, 2))
    assert h.next_step == "6 clinical-staff minutes short of 99490; the month is over."
    nothing = verdict(next_threshold=None, minutes=Minutes(0, 0))
    assert pv.next_step(nothing, date(2026, 11, 29)) == "Log CCM time this month; 2 days left."


def test_headline_ready_lists_codes_and_total() -> None:
    v = verdict(
        status="ready",
        codes=(CodeLine("99490", 1, "staff", Decimal("66.13")),
               CodeLine("99439", 1, "more", Decimal("50.44"))),
        minutes=Minutes(45, 0),
        next_threshold=NextThreshold("99439", 15, "clinical-staff", 60),
    )
    h = pv.headline(v, date(2026, 11, 23))
    assert h.title == "Ready to bill"
    assert h.next_step == (
        "Bill 99490 + 99439 ($116.57). Next: 15 more clinical-staff minutes for 99439; 8 days left.")
    assert pv.next_step(v, date(2026, 12, 5)) == "Bill 99490 + 99439 ($116.57)."
    lines = (CodeLine("99490", 1, "", Decimal(1)), CodeLine("99439", 2, "", Decimal(1)))
    two = verdict(status="ready", codes=lines)
    assert pv.next_step(two, date(2026, 12, 5)) == "Bill 99490 + 99439 ×2 ($3.00)."


def test_headline_blocked_shows_the_first_blocker() -> None:
    v = verdict(status="blocked", findings=(finding("doc.w", "warning", "documentation"),
                                            finding("consent.missing")))
    assert pv.headline(v, date(2026, 11, 23)).next_step == "message for consent.missing"
    assert pv.headline(verdict(status="not-eligible"), date(2026, 11, 23)).title == "Not eligible"


def test_prerequisites_states() -> None:
    v = verdict(findings=(finding("consent.missing"), finding("care-plan.stale", "warning", "care-plan")))
    checks = {c.category: c for c in pv.prerequisites(v)}
    assert (checks["consent"].state, checks["consent"].symbol) == ("missing", "✖")
    assert checks["care-plan"].state == "warning"
    assert (checks["initiating-visit"].state, checks["initiating-visit"].symbol) == ("met", "✔")


def test_other_programs_exclude_ccm() -> None:
    v = verdict(minutes=Minutes(10, 0, by_program=(("ccm", 10), ("rpm", 25), ("pcm", 0))))
    assert pv.other_program_minutes(v) == [("RPM", 25)]


def test_code_labels_are_ours_from_the_pack() -> None:
    labels = pv.code_labels(load_pack("cms-pfs-2026"))
    assert labels["99490"].startswith("CCM, clinical staff")


def test_patient_banner_reads_leniently() -> None:
    b = pv.patient_banner(
        {"id": "p1", "name": [{"use": "old", "text": "Old Name"}, {"use": "official", "given": ["Ada", "B"],
                                                                    "family": "Lovelace"}],
         "birthDate": "1950-02-03", "gender": "female"}, "p1")
    assert (b.name, b.birth_date, b.gender, b.id) == ("Ada B Lovelace", "1950-02-03", "female", "p1")
    blank = pv.patient_banner({"name": "junk"}, "p9")
    assert (blank.name, blank.id) == ("Name not recorded", "p9")
