"""Check a proposed time entry before it is written: minutes, clock, overlap, note (pure; no I/O).

Errors block the entry; warnings (vague note, late entry) let it through with a message. Every message
says what to change. The vague-note test is the one the documentation rule uses (`rules.documentation`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta, tzinfo

from rules.documentation import GOOD_NOTE, is_vague
from rules.month import Month
from rules.record_type import record
from rules.records import PROGRAMS, TimeEntry

MIN_MINUTES = 1
MAX_MINUTES = 240
MAX_NOTE_CHARS = 4000
MIN_YEAR, MAX_YEAR = 1900, 2200  # outside this a date is a typo (and date arithmetic could overflow)
CLOCK_SKEW = timedelta(minutes=2)  # a browser clock slightly ahead is not "the future"

PROGRAM_LABELS: dict[str, str] = {
    "ccm": "CCM (chronic care management)",
    "pcm": "PCM (principal care management)",
    "rpm": "RPM (remote physiologic monitoring)",
    "rtm": "RTM (remote therapeutic monitoring)",
    "bhi": "BHI (behavioral health integration)",
    "tcm": "TCM (transitional care management)",
    "apcm": "APCM (advanced primary care management)",
}
# The short activity list of the capture form (codes of the care-activity system).
ACTIVITIES: dict[str, str] = {
    "patient-call": "Call with the patient or caregiver",
    "care-coordination": "Coordination with other providers",
    "medication-reconciliation": "Medication review / reconciliation",
    "care-plan": "Care plan review or update",
    "transition-follow-up": "Follow-up after a transition of care",
    "education": "Self-management education",
    "data-review": "Review of monitoring data or results",
    "other": "Other (say what in the note)",
}
PERFORMER_TYPES = ("Practitioner/", "PractitionerRole/")


@record
class ProposedEntry:
    """What a user (or an import row) wants to record. Either `minutes` or `end` (or both) is given."""

    start: datetime | None
    minutes: int | None = None
    end: datetime | None = None
    performer: str | None = None  # "Practitioner/..." or "PractitionerRole/..."
    program: str = "ccm"
    activity: str = "care-coordination"
    note: str = ""
    conditions: tuple[str, ...] = ()
    replaces: str | None = None  # the Encounter id this entry corrects (excluded from the overlap check)


@record
class Problem:
    """One message about one field of the entry."""

    field: str
    code: str
    message: str


@record
class EntryCheck:
    """The outcome: errors (entry refused), warnings, and the entry's interval when it could be computed."""

    errors: tuple[Problem, ...] = ()
    warnings: tuple[Problem, ...] = ()
    start: datetime | None = None
    end: datetime | None = None
    minutes: int | None = None
    late: bool = False
    month: Month | None = None

    @property
    def ok(self) -> bool:
        return not self.errors

    def messages(self) -> list[str]:
        return [p.message for p in self.errors]


def note_warning(note: str) -> Problem | None:
    """The warning for a vague note (None when the note says enough or is empty)."""
    if not note.strip() or not is_vague(note):
        return None
    return Problem("note", "vague-note", f"This note is too vague to support billing. {GOOD_NOTE}")


def _aware(moment: datetime, tz: tzinfo) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=tz)


def _hhmm(moment: datetime, tz: tzinfo) -> str:
    return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M")


def _interval(
    entry: ProposedEntry, tz: tzinfo, errors: list[Problem]
) -> tuple[datetime | None, datetime | None, int | None]:
    if entry.start is None:
        errors.append(Problem("start", "start-missing", "Enter the date and start time of the work."))
        return None, None, None
    start = _aware(entry.start, tz)
    if not MIN_YEAR <= start.year <= MAX_YEAR or (
        entry.end is not None and not MIN_YEAR <= entry.end.year <= MAX_YEAR
    ):
        errors.append(Problem("start", "date-range", f"Dates must be between {MIN_YEAR} and {MAX_YEAR}."))
        return None, None, None
    end = _aware(entry.end, tz) if entry.end is not None else None
    minutes = entry.minutes
    if minutes is None and end is None:
        errors.append(Problem("minutes", "minutes-missing", "Enter the minutes spent, or an end time."))
        return start, None, None
    if end is not None and end <= start:
        errors.append(Problem("end", "end-before-start", "The end time must be after the start time."))
        return start, None, None
    if end is not None:
        span = (end - start).total_seconds() / 60
        if minutes is None:
            if span != int(span):
                errors.append(Problem("end", "partial-minute", "Start and end must be whole minutes."))
                return start, end, None
            minutes = int(span)
        elif minutes > span:
            errors.append(
                Problem(
                    "minutes",
                    "minutes-exceed-span",
                    f"{minutes} minutes do not fit between the start and end times "
                    f"({int(span)} minutes apart).",
                )
            )
            return start, end, minutes
    if minutes is None:  # unreachable: no minutes and no end returned above
        return start, end, None
    if not MIN_MINUTES <= minutes <= MAX_MINUTES:
        errors.append(
            Problem(
                "minutes",
                "minutes-range",
                f"Minutes must be between {MIN_MINUTES} and {MAX_MINUTES} per entry "
                f"(got {minutes}); split longer work into several entries.",
            )
        )
        return start, end, minutes
    if end is None:
        end = start + timedelta(minutes=minutes)
    return start, end, minutes


def _overlaps(
    start: datetime,
    end: datetime,
    performer: str,
    others: Iterable[TimeEntry],
    replaces: str | None,
    tz: tzinfo,
) -> list[Problem]:
    out: list[Problem] = []
    for other in others:
        if other.status != "finished" or other.performer != performer:
            continue
        if replaces and other.id in (replaces, f"Encounter/{replaces}"):
            continue
        if other.start < end and start < other.end:
            out.append(
                Problem(
                    "start",
                    "overlap",
                    f"This overlaps another entry by the same person ({_hhmm(other.start, tz)}–"
                    f"{other.end.astimezone(tz):%H:%M}, {other.program.upper()}); the same minutes cannot be "
                    "counted twice. Change the times, or correct the other entry.",
                )
            )
    return out


def validate(
    entry: ProposedEntry,
    *,
    now: datetime,
    tz: tzinfo,
    others: Iterable[TimeEntry] = (),
) -> EntryCheck:
    """Check `entry` against the clock (`now`, aware), the practice zone and the person's other entries."""
    errors: list[Problem] = []
    warnings: list[Problem] = []
    if entry.program not in PROGRAMS:
        errors.append(
            Problem(
                "program", "program-unknown", f"Choose a program: {', '.join(p.upper() for p in PROGRAMS)}."
            )
        )
    if entry.activity not in ACTIVITIES:
        errors.append(Problem("activity", "activity-unknown", "Choose an activity from the list."))
    performer = (entry.performer or "").strip()
    if not performer.startswith(PERFORMER_TYPES) or len(performer.split("/", 1)[1]) == 0:
        errors.append(
            Problem(
                "performer",
                "performer-missing",
                "The person who did the work must be a Practitioner or PractitionerRole "
                "(e.g. Practitioner/123).",
            )
        )
    note = entry.note or ""
    if not note.strip():
        errors.append(
            Problem(
                "note",
                "note-missing",
                f"A note is required: it is the documentation for these minutes. {GOOD_NOTE}",
            )
        )
    elif len(note) > MAX_NOTE_CHARS:
        errors.append(Problem("note", "note-too-long", f"Keep the note under {MAX_NOTE_CHARS} characters."))
    elif (vague := note_warning(note)) is not None:
        warnings.append(vague)
    for ref in entry.conditions:
        if not ref.startswith("Condition/") or len(ref) <= len("Condition/"):
            errors.append(
                Problem("conditions", "condition-invalid", f"Not a Condition reference: {ref[:40]!r}.")
            )
    start, end, minutes = _interval(entry, tz, errors)
    now = _aware(now, tz)
    late = False
    month = None
    if start is not None:
        if start > now + CLOCK_SKEW:
            errors.append(
                Problem(
                    "start",
                    "future",
                    "The start time is in the future; time is logged after the work is done.",
                )
            )
        elif end is not None and end > now + CLOCK_SKEW:
            errors.append(
                Problem(
                    "end", "future", "The work cannot end in the future; check the end time or the minutes."
                )
            )
        month = Month.of(start.astimezone(tz))
        if month < Month.of(now.astimezone(tz)):
            late = True
            warnings.append(
                Problem(
                    "start",
                    "late-entry",
                    f"Late entry: this time belongs to {month}, a month that has ended. It is "
                    "recorded and flagged as late; check whether that month was already billed.",
                )
            )
    if start is not None and end is not None and not errors and performer:
        errors.extend(_overlaps(start, end, performer, others, entry.replaces, tz))
    return EntryCheck(tuple(errors), tuple(warnings), start, end, minutes, late, month)


CONSENT_DECISIONS = {"given": "Consent given", "declined": "Declined", "stopped": "Stopped (revoked)"}
CONSENT_METHODS = {"verbal": "Verbal", "written": "Written"}
# The CMS disclosures (cms-rules.md section 3.3), in the order the form shows them.
CONSENT_DISCLOSURES = {
    "ccm-available": "The patient was told CCM services are available to them",
    "cost-sharing": "Cost sharing (coinsurance/deductible) may apply",
    "one-practitioner": "Only one practitioner can bill CCM per calendar month",
    "right-to-stop": "The patient may stop CCM at any time (effective at the end of the month)",
}


@record
class ConsentForm:
    """A consent as entered: decision, date (YYYY-MM-DD), method, disclosures made, who and for whom."""

    decision: str
    day: str
    method: str
    disclosures: tuple[str, ...] = ()
    obtained_by: str | None = None
    billing_practitioner: str | None = None


@record
class ConsentCheck:
    errors: tuple[Problem, ...] = ()
    day: date | None = None

    @property
    def ok(self) -> bool:
        return not self.errors


def validate_consent(form: ConsentForm, *, today: date) -> ConsentCheck:
    """Check a consent form: known decision and method, a date not in the future, the people, and for a
    given consent every CMS disclosure made explicitly."""
    errors: list[Problem] = []
    if form.decision not in CONSENT_DECISIONS:
        errors.append(Problem("decision", "decision-unknown", "Choose: consent given, declined, or stopped."))
    if form.method not in CONSENT_METHODS:
        errors.append(Problem("method", "method-unknown", "Say whether consent was verbal or written."))
    day: date | None = None
    try:
        day = date.fromisoformat(form.day)
    except (TypeError, ValueError):
        errors.append(Problem("date", "date-unreadable", "Enter the date as YYYY-MM-DD."))
    if day is not None and day > today:
        errors.append(Problem("date", "date-future", "The date cannot be in the future."))
        day = None
    unknown = [d for d in form.disclosures if d not in CONSENT_DISCLOSURES]
    if unknown:
        errors.append(Problem("disclosures", "disclosure-unknown", "Unknown disclosure in the form."))
    if form.decision == "given":
        missing = [label for code, label in CONSENT_DISCLOSURES.items() if code not in form.disclosures]
        if missing:
            errors.append(
                Problem(
                    "disclosures",
                    "disclosure-missing",
                    "CMS requires each disclosure before consent is given; not confirmed: "
                    + "; ".join(missing)
                    + ".",
                )
            )
    for field_name, value, who in (
        ("obtained_by", form.obtained_by, "who obtained it"),
        ("billing_practitioner", form.billing_practitioner, "the billing practitioner"),
    ):
        if not value or not value.startswith(PERFORMER_TYPES) or not value.split("/", 1)[1]:
            errors.append(
                Problem(
                    field_name,
                    f"{field_name.replace('_', '-')}-missing",
                    f"Enter {who} as Practitioner/<id>.",
                )
            )
    return ConsentCheck(tuple(errors), day)
