"""Code selection: tracks, caps, add-ons, complex CCM and the payment choice."""

from __future__ import annotations

from decimal import Decimal

import pytest

from rules.code_selection import violations
from rules.packs import load_pack
from rules.verdict import CodeLine
from tests.support.facts import (
    DOC,
    NURSE,
    NURSE2,
    attestation,
    care_plan,
    codes_of,
    consent,
    entry,
    ev,
    finding,
    ready_facts,
    rules_of,
    visit,
)


def staff(minutes: float, performer: str = NURSE) -> tuple:
    """`minutes` of CCM time as 15-minute entries, one per day from March 2."""
    out, day, left = [], 2, minutes
    while left > 0:
        chunk = min(15, left)
        out.append(entry(f"{performer[-4:]}{day}", f"2026-03-{day:02d}T14:00:00", chunk, performer))
        left -= chunk
        day += 1
    return tuple(out)


def mdm(kind: str = "mdm-moderate", when: str = "2026-03-15T10:00:00", who: str = DOC) -> object:
    return attestation(kind, when, who, aid=f"{kind}-{when[:7]}")


@pytest.mark.parametrize(
    ("minutes", "codes", "next_code", "needed"),
    [
        (19, [], "99490", 1),
        (20, [("99490", 1)], "99439", 20),
        (39, [("99490", 1)], "99439", 1),
        (40, [("99490", 1), ("99439", 1)], "99439", 20),
        (59, [("99490", 1), ("99439", 1)], "99439", 1),
        (60, [("99490", 1), ("99439", 2)], None, None),
        (75, [("99490", 1), ("99439", 2)], None, None),
    ],
)
def test_staff_track(minutes: int, codes: list, next_code: str | None, needed: int | None) -> None:
    v = ev(ready_facts(time_entries=staff(minutes)))
    assert v.minutes.clinical_staff == minutes
    assert codes_of(v) == codes
    assert (v.next_threshold.code if v.next_threshold else None) == next_code
    assert (v.next_threshold.minutes_needed if v.next_threshold else None) == needed
    if codes:
        assert v.status == "ready" and v.track == "clinical-staff"


def test_staff_cap_explains_minutes_beyond_sixty() -> None:
    v = ev(ready_facts(time_entries=staff(75)))
    f = finding(v, "time.staff-cap")
    assert "15 clinical-staff min beyond 60" in f.message and "MDM" in f.message
    assert v.payment_total == Decimal("66.13") + 2 * Decimal("50.44")


def test_practitioner_track_pays_more_at_thirty_own_minutes() -> None:
    v = ev(ready_facts(time_entries=staff(30, DOC)))
    assert v.track == "practitioner" and codes_of(v) == [("99491", 1)]
    assert "clinical-staff track would earn 99490 ($66.13)" in v.track_reason
    assert v.payment_total == Decimal("89.18")
    assert (v.next_threshold.code, v.next_threshold.minutes_needed, v.next_threshold.track) == (
        "99437",
        30,
        "practitioner",
    )


def test_staff_track_pays_more_at_sixty_own_minutes() -> None:
    v = ev(ready_facts(time_entries=staff(60, DOC)))
    assert v.track == "clinical-staff" and codes_of(v) == [("99490", 1), ("99439", 2)]
    assert "practitioner track would earn 99491 + 1×99437 ($152.31)" in v.track_reason


def test_practitioner_track_with_cap() -> None:
    v = ev(ready_facts(time_entries=staff(120, DOC)))
    assert v.track == "practitioner" and codes_of(v) == [("99491", 1), ("99437", 2)]
    assert v.next_threshold is None


def test_practitioner_time_below_thirty_counts_toward_99490() -> None:
    v = ev(ready_facts(time_entries=staff(25, DOC)))
    assert v.track == "clinical-staff" and codes_of(v) == [("99490", 1)]


def test_complex_needs_mdm() -> None:
    entries = staff(45, NURSE) + staff(45, NURSE2)
    without = ev(ready_facts(time_entries=entries))
    assert without.track == "clinical-staff" and codes_of(without) == [("99490", 1), ("99439", 2)]
    with_mdm = ev(ready_facts(time_entries=entries, attestations=(attestation(), mdm())))
    assert with_mdm.track == "complex" and codes_of(with_mdm) == [("99487", 1), ("99489", 1)]
    assert with_mdm.payment_total == Decimal("144.29") + Decimal("78.16")
    assert (with_mdm.next_threshold.code, with_mdm.next_threshold.minutes_needed) == ("99489", 30)
    assert "time.staff-cap" not in rules_of(with_mdm)


@pytest.mark.parametrize(
    "bad",
    [mdm(who="Practitioner/other-doc"), mdm(when="2026-02-27T10:00:00"), mdm(kind="mdm-low")],
)
def test_mdm_must_be_by_the_billing_practitioner_in_the_month(bad) -> None:  # type: ignore[no-untyped-def]
    v = ev(ready_facts(time_entries=staff(45, NURSE) + staff(45, NURSE2), attestations=(attestation(), bad)))
    assert v.track == "clinical-staff"


def test_complex_at_sixty_pays_less_than_the_staff_track() -> None:
    v = ev(ready_facts(time_entries=staff(60), attestations=(attestation(), mdm("mdm-high"))))
    assert v.track == "clinical-staff" and "complex track would earn 99487 ($144.29)" in v.track_reason


def test_complex_add_on_is_capped_by_the_pack() -> None:
    """cms-rules.md §5.3: add-on unit caps come from the pack (99489: conservative 2 until the MUE file)."""
    entries = staff(60, NURSE) + staff(60, NURSE2) + staff(60, "Practitioner/nurse3")
    v = ev(ready_facts(time_entries=entries, attestations=(attestation(), mdm())))
    assert codes_of(v) == [("99487", 1), ("99489", 2)]


def test_2025_months_use_2025_payments() -> None:
    facts = ready_facts(
        time_entries=tuple(entry(f"a{d}", f"2025-03-{d:02d}T14:00:00", 15, DOC) for d in (3, 4)),
        consents=(consent(obtained="2025-01-05T10:00:00"),),
        care_plans=(care_plan(start="2025-01-05T00:00:00"),),
        visits=(visit(start="2024-12-10T10:00:00"),),
        attestations=(attestation(when="2025-01-05T10:00:00"),),
    )
    v = ev(facts, "2025-03")
    assert v.policy == "cms-pfs-2025" and v.track == "practitioner" and v.status == "ready"
    assert v.payment_total == Decimal("82.16") and v.codes[0].payment_each == Decimal("82.16")


def test_nearest_track_when_nothing_is_earned() -> None:
    v = ev(ready_facts(time_entries=staff(12, DOC)))
    assert v.status == "not-yet" and v.track is None and v.track_reason == ""
    assert (v.next_threshold.code, v.next_threshold.minutes_needed, v.next_threshold.track) == (
        "99490",
        8,
        "clinical-staff",
    )


def test_track_choice_is_explained() -> None:
    f = finding(ev(ready_facts()), "time.track-choice")
    assert "99490" in f.message and "never both" in f.message and "S21" in f.citation


def test_violations_catch_bad_claims() -> None:
    pack = load_pack("cms-pfs-2026")
    assert violations(pack, [CodeLine("99490", 1), CodeLine("99439", 2)]) == []
    assert "over its cap" in violations(pack, [CodeLine("99490", 1), CodeLine("99439", 3)])[0]
    assert "without its base" in violations(pack, [CodeLine("99439", 1)])[0]
    assert any("ccm-tracks" in p for p in violations(pack, [CodeLine("99490", 1), CodeLine("99491", 1)]))
    assert any("ccm-vs-pcm" in p for p in violations(pack, [CodeLine("99490", 1), CodeLine("99426", 1)]))
    assert "not in" in violations(pack, [CodeLine("12345", 1)])[0]
