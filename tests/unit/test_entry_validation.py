"""The entry validator: minutes, clock, overlap, notes, late entries; consent form checks; properties."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from rules.entry_validation import (
    ACTIVITIES,
    CONSENT_DISCLOSURES,
    MAX_MINUTES,
    ConsentForm,
    ProposedEntry,
    validate,
    validate_consent,
)
from rules.records import PROGRAMS, TimeEntry

TZ = ZoneInfo("America/Chicago")
NOW = datetime(2026, 11, 20, 15, 0, tzinfo=TZ)
NURSE = "Practitioner/rn1"
GOOD = "BP log 150s/90s (hypertension); increased lisinopril to 20 mg; recheck readings Friday."


def entry(**kw: object) -> ProposedEntry:
    base: dict[str, object] = {
        "start": NOW - timedelta(hours=2),
        "minutes": 20,
        "performer": NURSE,
        "note": GOOD,
    }
    base.update(kw)
    return ProposedEntry(**base)  # type: ignore[arg-type]


def codes(result: object) -> set[str]:
    return {p.code for p in result.errors}  # type: ignore[attr-defined]


def other(start: datetime, minutes: int, performer: str = NURSE, status: str = "finished") -> TimeEntry:
    return TimeEntry(
        id="Encounter/x",
        status=status,
        program="ccm",
        start=start,
        end=start + timedelta(minutes=minutes),
        minutes=minutes,
        performer=performer,
    )


def test_a_good_entry_passes_and_gets_its_interval() -> None:
    result = validate(entry(), now=NOW, tz=TZ)
    assert result.ok and not result.warnings
    assert result.minutes == 20
    assert result.end == NOW - timedelta(hours=2) + timedelta(minutes=20)
    assert not result.late


def test_minutes_must_be_between_1_and_240() -> None:
    assert "minutes-range" in codes(validate(entry(minutes=0), now=NOW, tz=TZ))
    assert "minutes-range" in codes(validate(entry(minutes=241), now=NOW, tz=TZ))
    assert validate(entry(minutes=MAX_MINUTES, start=NOW - timedelta(hours=5)), now=NOW, tz=TZ).ok
    message = validate(entry(minutes=300), now=NOW, tz=TZ).errors[0].message
    assert "between 1 and 240" in message


def test_start_and_end_give_the_minutes_and_end_must_follow_start() -> None:
    start = NOW - timedelta(hours=3)
    result = validate(entry(minutes=None, end=start + timedelta(minutes=35), start=start), now=NOW, tz=TZ)
    assert result.ok and result.minutes == 35
    assert "end-before-start" in codes(validate(entry(minutes=None, start=start, end=start), now=NOW, tz=TZ))
    too_many = validate(entry(minutes=50, start=start, end=start + timedelta(minutes=30)), now=NOW, tz=TZ)
    assert "minutes-exceed-span" in codes(too_many)
    assert "minutes-missing" in codes(validate(entry(minutes=None), now=NOW, tz=TZ))


def test_no_future_times() -> None:
    assert "future" in codes(validate(entry(start=NOW + timedelta(hours=1)), now=NOW, tz=TZ))
    ends_later = entry(start=NOW - timedelta(minutes=10), minutes=30)
    assert "future" in codes(validate(ends_later, now=NOW, tz=TZ))


def test_overlap_with_the_same_persons_entries_only() -> None:
    start = NOW - timedelta(hours=2)
    clash = [other(start + timedelta(minutes=10), 15)]
    result = validate(entry(start=start), now=NOW, tz=TZ, others=clash)
    assert "overlap" in codes(result)
    assert "cannot be counted twice" in result.errors[0].message
    assert validate(entry(start=start), now=NOW, tz=TZ, others=[other(start, 15, "Practitioner/b")]).ok
    assert validate(
        entry(start=start), now=NOW, tz=TZ, others=[other(start, 15, status="entered-in-error")]
    ).ok
    touching = [other(start + timedelta(minutes=20), 10)]
    assert validate(entry(start=start), now=NOW, tz=TZ, others=touching).ok
    assert validate(entry(start=start, replaces="x"), now=NOW, tz=TZ, others=clash).ok


def test_note_required_and_vague_notes_warned_with_what_a_good_note_says() -> None:
    assert "note-missing" in codes(validate(entry(note="  "), now=NOW, tz=TZ))
    for vague in ("followed up", "CCM call completed", "called patient"):
        result = validate(entry(note=vague), now=NOW, tz=TZ)
        assert result.ok
        assert [w.code for w in result.warnings] == ["vague-note"]
        assert "problem addressed" in result.warnings[0].message
        assert "next step" in result.warnings[0].message


def test_past_month_entries_are_allowed_and_flagged_late() -> None:
    result = validate(entry(start=datetime(2026, 10, 31, 22, 0, tzinfo=TZ)), now=NOW, tz=TZ)
    assert result.ok and result.late
    assert any(w.code == "late-entry" and "2026-10" in w.message for w in result.warnings)


def test_month_is_decided_in_the_practice_time_zone() -> None:
    # 2026-11-01 03:00 UTC is still October 31 in Chicago.
    start = datetime(2026, 11, 1, 3, 0, tzinfo=ZoneInfo("UTC"))
    assert validate(entry(start=start), now=NOW, tz=TZ).late


def test_naive_times_are_read_in_the_practice_zone() -> None:
    naive = (NOW - timedelta(hours=1)).replace(tzinfo=None)
    result = validate(entry(start=naive), now=NOW, tz=TZ)
    assert result.ok and result.start is not None and result.start.tzinfo == TZ


def test_program_activity_performer_and_conditions_are_checked() -> None:
    assert "program-unknown" in codes(validate(entry(program="xyz"), now=NOW, tz=TZ))
    assert "activity-unknown" in codes(validate(entry(activity="golf"), now=NOW, tz=TZ))
    assert "performer-missing" in codes(validate(entry(performer="Patient/1"), now=NOW, tz=TZ))
    assert "performer-missing" in codes(validate(entry(performer=None), now=NOW, tz=TZ))
    assert "condition-invalid" in codes(validate(entry(conditions=("Observation/1",)), now=NOW, tz=TZ))
    assert validate(entry(program="rpm", conditions=("Condition/c1",)), now=NOW, tz=TZ).ok


def test_consent_form_checks() -> None:
    all_four = tuple(CONSENT_DISCLOSURES)
    ok = ConsentForm("given", "2026-11-02", "verbal", all_four, NURSE, "Practitioner/dr")
    result = validate_consent(ok, today=date(2026, 11, 20))
    assert result.ok and result.day == date(2026, 11, 2)
    partial = validate_consent(
        ConsentForm("given", "2026-11-02", "verbal", all_four[:2], NURSE, "Practitioner/dr"),
        today=date(2026, 11, 20),
    )
    assert [p.code for p in partial.errors] == ["disclosure-missing"]
    assert "one practitioner" in partial.errors[0].message.lower()
    declined = ConsentForm("declined", "2026-11-02", "written", (), NURSE, "Practitioner/dr")
    assert validate_consent(declined, today=date(2026, 11, 20)).ok
    future = validate_consent(
        ConsentForm("stopped", "2026-12-01", "verbal", (), NURSE, "Practitioner/dr"), today=date(2026, 11, 20)
    )
    assert [p.code for p in future.errors] == ["date-future"]
    bad = validate_consent(
        ConsentForm("maybe", "yesterday", "email", ("x",), None, ""), today=date(2026, 11, 20)
    )
    assert {p.code for p in bad.errors} >= {
        "decision-unknown",
        "method-unknown",
        "date-unreadable",
        "disclosure-unknown",
        "obtained-by-missing",
        "billing-practitioner-missing",
    }


# ------------------------------------------------------------------------------------ properties

moments = st.datetimes(
    min_value=datetime(1, 1, 2),
    max_value=datetime(9999, 12, 30),
    timezones=st.sampled_from([TZ, ZoneInfo("UTC"), ZoneInfo("Asia/Kolkata")]) | st.none(),
)
texts = st.text(max_size=300)


@settings(max_examples=300, deadline=None)
@given(
    start=moments | st.none(),
    end=moments | st.none(),
    minutes=st.integers(min_value=-(10**6), max_value=10**6) | st.none(),
    performer=st.sampled_from([NURSE, "PractitionerRole/r", "Patient/1", "", "Practitioner/"])
    | texts
    | st.none(),
    program=st.sampled_from(PROGRAMS) | texts,
    activity=st.sampled_from(tuple(ACTIVITIES)) | texts,
    note=texts,
    conditions=st.lists(texts, max_size=3),
    others=st.lists(
        st.tuples(moments.filter(lambda m: m is not None and 1900 < m.year < 2200), st.integers(1, 240)),
        max_size=3,
    ),
)
def test_any_entry_gets_a_result_or_clear_errors_never_an_exception(
    start: datetime | None,
    end: datetime | None,
    minutes: int | None,
    performer: str | None,
    program: str,
    activity: str,
    note: str,
    conditions: list[str],
    others: list[tuple[datetime, int]],
) -> None:
    known = [other(s if s.tzinfo else s.replace(tzinfo=TZ), m) for s, m in others]
    proposed = ProposedEntry(
        start=start,
        minutes=minutes,
        end=end,
        performer=performer,
        program=program,
        activity=activity,
        note=note,
        conditions=tuple(conditions),
    )
    result = validate(proposed, now=NOW, tz=TZ, others=known)
    if result.ok:
        assert result.start is not None and result.end is not None and result.minutes is not None
        assert 1 <= result.minutes <= 240
        assert result.start < result.end <= NOW + timedelta(minutes=2)
        assert note.strip()
    else:
        assert all(p.message and p.field for p in result.errors)
