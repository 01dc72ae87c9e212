"""CCM minutes of a month: clip, de-duplicate per person, floor to whole minutes.

Each finished CCM time entry covers [start, start + minutes]. It is clipped to the month (practice time zone),
to on/after consent, to before the effective end of a stop (and death), and to outside inpatient stays. Per
person, overlapping intervals count once, and time the same person logged for another program in the same
interval never counts twice. Counted minutes = floor(seconds / 60): thresholds are met in full, never rounded.

Why about 400 lines: clipping, de-duplication per person, exclusions and flooring are one computation
whose steps must stay in order; each step is its own small function.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime

from rules import rule_ids
from rules.packs import Citation
from rules.patient_month import PatientMonth
from rules.people import is_staff
from rules.record_type import record
from rules.records import PROGRAMS, TimeEntry
from rules.verdict import Finding, Minutes

FINISHED = "finished"
UNRECORDED = "(performer not recorded)"
PROGRAM_NAMES = {
    "ccm": "CCM",
    "pcm": "PCM",
    "rpm": "RPM",
    "rtm": "RTM",
    "bhi": "BHI",
    "tcm": "TCM",
    "apcm": "APCM",
}

CITE_MONTH = Citation("AAFP (CMS FAQ); Codapedia (CMS FAQ)", "3.6", ("S19", "S21"), "H")
CITE_CONSENT_FIRST = Citation("CMS MLN909188; Noridian CCM Q&A", "3.3, 5.3", ("S1", "S3"), "H")
CITE_INPATIENT = Citation("AAFP (CMS FAQ on SNF/hospital inpatients)", "1.1, 3.6", ("S19",), "M")
CITE_OVERLAP = Citation("CMS CCM FAQ; CY2026 PFS final rule", "2, 3.6, 5.3", ("S2", "S7"), "H")
CITE_OTHER = Citation(
    "CMS CCM FAQ; CY2026 PFS final rule; G0506 summaries", "3.6, 2", ("S2", "S7", "S24"), "H"
)

CITE_STAFF = Citation("CMS CCM FAQ (Q1, Q2); Noridian JF Part A", "3.6, 3.7", ("S2", "S4"), "H")
Span = tuple[float, float]
Window = tuple[datetime | None, datetime | None]


@record
class MinuteCount:
    """Counted minutes, the findings why, and the month's CCM entries."""

    minutes: Minutes
    findings: tuple[Finding, ...]
    entries: tuple[TimeEntry, ...]  # finished CCM entries that fall (partly) in the month


def whole(seconds: float) -> int:
    """Whole minutes in `seconds` (never rounded up; tolerant of float noise below a millisecond)."""
    return int(round(seconds, 3) // 60) if seconds > 0 else 0


def _said(seconds: float) -> str:
    m = whole(seconds)
    return "less than 1 min" if m == 0 and seconds > 0 else f"{m} min"


def merge(spans: list[Span]) -> list[Span]:
    """Union of spans, sorted."""
    out: list[Span] = []
    for s, e in sorted(spans):
        if out and s <= out[-1][1]:
            if e > out[-1][1]:
                out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


def subtract(spans: list[Span], holes: list[Span]) -> tuple[list[Span], float]:
    """`spans` minus the merged, sorted `holes`; also the seconds removed."""
    if not holes:
        return spans, 0.0
    out: list[Span] = []
    removed = 0.0
    for s, e in spans:
        cur = s
        for hs, he in holes:
            if he <= cur:
                continue
            if hs >= e:
                break
            if hs > cur:
                out.append((cur, hs))
            cut_from, cut_to = max(cur, hs), min(e, he)
            removed += cut_to - cut_from
            cur = max(cur, he)
            if cur >= e:
                break
        if cur < e:
            out.append((cur, e))
    return out, removed


class _Ledger:
    """Seconds removed for one reason, and the entries they came from."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.ids: dict[str, None] = {}

    def add(self, seconds: float, entry_id: str) -> None:
        if seconds > 0:
            self.seconds += seconds
            self.ids[entry_id] = None


def program_of(pm: PatientMonth, entry: TimeEntry) -> str:
    """The entry's program; a CPT/HCPCS code of another program's family on it makes it that program's
    time (TCM, RPM, RTM, BHI, PCM, APCM, G0506 minutes never count for CCM, cms-rules.md §3.6)."""
    program = (entry.program or "").lower()
    if program != "ccm":
        return program
    for coding in entry.codings:
        spec = pm.pack.find(coding.code)
        if spec is not None and spec.family != "ccm":
            return spec.family
    return program


def _ts(pm: PatientMonth, moment: datetime | None) -> float | None:
    return pm.aware(moment).timestamp() if moment is not None else None


def _stays(pm: PatientMonth, lo: float, hi: float) -> list[Span]:
    spans: list[Span] = []
    for stay in pm.facts.stays:
        if stay.start is None and stay.end is None:
            continue
        s = pm.aware(stay.start).timestamp() if stay.start is not None else lo
        e = pm.aware(stay.end).timestamp() if stay.end is not None else hi
        s, e = max(s, lo), min(e, hi)
        if e > s:
            spans.append((s, e))
    return merge(spans)


def _allowed(pm: PatientMonth, windows: tuple[Window, ...], lo: float, hi: float) -> list[Span]:
    """The consent windows as merged spans inside [lo, hi)."""
    spans = []
    for a, b in windows:
        s = max(lo, _ts(pm, a) or lo)
        e = min(hi, _ts(pm, b) or hi)
        if e > s:
            spans.append((s, e))
    return merge(spans)


def _outside(span: Span, allowed: list[Span]) -> list[Span]:
    """The parts of `span` outside every allowed span."""
    holes, _ = subtract([span], allowed)
    return holes


VISIT_DONE = frozenset({"finished", "completed"})
MAX_VISIT_SECONDS = 12 * 3600  # a longer "visit" period is a date, not the span of a face-to-face visit


def _visits(pm: PatientMonth, lo: float, hi: float) -> list[Span]:
    """Finished face-to-face visits with a real start and end: time inside them is the visit's own."""
    spans: list[Span] = []
    for v in pm.facts.visits:
        if (v.status or "").lower() not in VISIT_DONE or v.start is None or v.end is None:
            continue
        if not pm.overlaps(v.start, v.end):
            continue
        s, e = pm.aware(v.start).timestamp(), pm.aware(v.end).timestamp()
        if 0 < e - s <= MAX_VISIT_SECONDS and e > lo and s < hi:
            spans.append((max(s, lo), min(e, hi)))
    return merge(spans)


def count(
    pm: PatientMonth,
    windows: tuple[Window, ...] = ((None, None),),
    died_at: datetime | None = None,
    ended: datetime | None = None,
) -> MinuteCount:
    """Counted CCM minutes (everyone's, and the billing practitioner's own) and the findings why.

    Only minutes inside a consent window count (cms-rules.md §3.3), only by a Practitioner or
    PractitionerRole (§3.6, §3.7), on the instant line: durations are real elapsed time.
    """
    lo, hi = pm.start.timestamp(), pm.end.timestamp()
    allowed = _allowed(pm, windows, lo, hi)
    first_ts = allowed[0][0] if allowed else hi
    whole_month = allowed == [(lo, hi)]  # the common case: consent in force all month
    ended_ts = _ts(pm, ended)
    death_ts = _ts(pm, died_at)
    stays = _stays(pm, lo, hi)
    visits = _visits(pm, lo, hi)
    logged: dict[str, float] = defaultdict(float)
    ccm: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    other: dict[str, list[Span]] = defaultdict(list)
    other_ids: dict[str, None] = {}
    before, after_stop, after_death, inpatient = _Ledger(), _Ledger(), _Ledger(), _Ledger()
    not_staff, during_visit = _Ledger(), _Ledger()
    month_entries: list[TimeEntry] = []

    tz = pm.tz
    for entry in pm.facts.time_entries:  # the patient's whole history: entries outside the month leave early
        if (entry.status or "").lower() != FINISHED:
            continue
        try:
            moment = entry.start
            if moment.tzinfo is None:  # pm.aware, inlined
                moment = moment.replace(tzinfo=tz)
            start = moment.timestamp()
            if start >= hi:
                continue  # begins after the month
            seconds = float(entry.minutes) * 60.0
        except (AttributeError, TypeError, ValueError, OverflowError, OSError):
            continue
        if not math.isfinite(seconds) or seconds <= 0:
            continue
        stop = start + seconds
        if stop <= lo:
            continue  # over before the month began
        a, b = max(start, lo), min(stop, hi)
        if b <= a:
            continue
        program = program_of(pm, entry)
        logged[program] += b - a
        person = pm.person(entry.performer) or UNRECORDED
        if program != "ccm":
            other[person].append((a, b))
            other_ids[entry.id] = None
            continue
        month_entries.append(entry)
        if not is_staff(person):
            not_staff.add(b - a, entry.id)
            continue
        if death_ts is not None and b > death_ts:
            after_death.add(b - max(a, death_ts), entry.id)
            b = min(b, death_ts)
        if b <= a:
            continue
        outside = [] if whole_month else _outside((a, b), allowed)
        for s, e in outside:
            late = (ended_ts is not None and s >= ended_ts) or (bool(allowed) and s >= first_ts)
            (after_stop if late else before).add(e - s, entry.id)
        inside, _ = subtract([(a, b)], outside) if outside else ([(a, b)], 0.0)
        kept_spans: list[Span] = []
        cut = 0.0
        for piece in inside:
            kept, removed = subtract([piece], stays)
            kept_spans += kept
            cut += removed
        inpatient.add(cut, entry.id)
        if visits:
            kept_spans, cut = subtract(kept_spans, visits)
            during_visit.add(cut, entry.id)
        ccm[person].extend((s, e, entry.id) for s, e in kept_spans)

    overlap, double = _Ledger(), _Ledger()
    total = 0.0
    own = 0.0
    for person, pieces in ccm.items():
        pieces.sort()
        union: list[Span] = []
        for s, e, entry_id in pieces:
            if union and s < union[-1][1]:
                overlap.add(min(e, union[-1][1]) - s, entry_id)
                if e > union[-1][1]:
                    union[-1] = (union[-1][0], e)
            elif union and s == union[-1][1]:
                union[-1] = (union[-1][0], max(e, union[-1][1]))
            else:
                union.append((s, e))
        if person in other:
            union, cut = subtract(union, merge(other[person]))
            if cut > 0:
                double.seconds += cut
                double.ids.update(dict.fromkeys(i for _, _, i in pieces))
        seconds = sum(e - s for s, e in union)
        total += seconds
        if pm.is_practitioner(person):
            own = seconds

    staff = whole(total)
    ccm_logged = logged.get("ccm", 0.0)
    known = [p for p in PROGRAMS if p in logged] + sorted(p for p in logged if p not in PROGRAMS)
    minutes = Minutes(
        clinical_staff=staff,
        billing_practitioner=whole(own),
        by_program=tuple((p, whole(logged[p])) for p in known),
        not_counted=max(0, whole(ccm_logged) - staff),
    )
    findings = _findings(before, after_stop, after_death, inpatient, overlap, double, logged, other_ids)
    if not_staff.seconds > 0:
        findings += (_not_staff(not_staff),)
    if during_visit.seconds > 0:
        findings += (
            Finding(
                rule_ids.TIME_DURING_VISIT,
                "time",
                "info",
                f"{_said(during_visit.seconds)} logged during a face-to-face visit are part of that visit "
                "(E/M time) and do not count as CCM time.",
                str(CITE_OTHER),
                tuple(during_visit.ids),
            ),
        )
    return MinuteCount(minutes, findings, tuple(month_entries))


def _not_staff(ledger: _Ledger) -> Finding:
    return Finding(
        rule_ids.TIME_NOT_STAFF,
        "time",
        "warning",
        f"{_said(ledger.seconds)} of CCM time were logged by someone who is not a practitioner or clinical "
        "staff member (a related person, the patient, a device, a non-clinical role) or by an unrecorded or "
        "unresolvable performer, and do not count. Record the practitioner or staff member who did the work.",
        str(CITE_STAFF),
        tuple(ledger.ids),
    )


def _findings(
    before: _Ledger,
    after_stop: _Ledger,
    after_death: _Ledger,
    inpatient: _Ledger,
    overlap: _Ledger,
    double: _Ledger,
    logged: dict[str, float],
    other_ids: dict[str, None],
) -> tuple[Finding, ...]:
    out: list[Finding] = []
    if before.seconds > 0:
        out.append(
            Finding(
                rule_ids.TIME_BEFORE_CONSENT,
                "time",
                "info",
                f"{_said(before.seconds)} logged without a CCM consent in force for this practitioner are "
                "not counted; CCM time counts only from consent on.",
                str(CITE_CONSENT_FIRST),
                tuple(before.ids),
            )
        )
    if after_stop.seconds > 0:
        out.append(
            Finding(
                rule_ids.TIME_AFTER_STOP,
                "time",
                "info",
                f"{_said(after_stop.seconds)} logged after the patient's stop of CCM took effect are not "
                "counted.",
                str(CITE_CONSENT_FIRST),
                tuple(after_stop.ids),
            )
        )
    if after_death.seconds > 0:
        out.append(
            Finding(
                rule_ids.TIME_AFTER_DEATH,
                "time",
                "info",
                f"{_said(after_death.seconds)} logged after the recorded date of death are not counted.",
                str(CITE_MONTH),
                tuple(after_death.ids),
            )
        )
    if inpatient.seconds > 0:
        out.append(
            Finding(
                rule_ids.TIME_INPATIENT,
                "time",
                "info",
                f"{_said(inpatient.seconds)} logged while the patient was a hospital or SNF inpatient are "
                "not counted.",
                str(CITE_INPATIENT),
                tuple(inpatient.ids),
            )
        )
    if overlap.seconds > 0:
        out.append(
            Finding(
                rule_ids.TIME_OVERLAP,
                "time",
                "info",
                f"{_said(overlap.seconds)} of overlapping time entries by the same person were counted once. "
                "One person's time can count only once; different people's time adds up.",
                str(CITE_OVERLAP),
                tuple(overlap.ids),
            )
        )
    others = [(p, s) for p, s in logged.items() if p != "ccm" and s > 0]
    if others:
        listed = ", ".join(f"{PROGRAM_NAMES.get(p, p.upper())} {_said(s)}" for p, s in sorted(others))
        extra = (
            f" {_said(double.seconds)} of CCM time overlapped the same person's time for another program and "
            "was not counted."
            if double.seconds > 0
            else ""
        )
        out.append(
            Finding(
                rule_ids.TIME_OTHER_PROGRAM,
                "time",
                "info",
                f"Time logged for other programs this month ({listed}) is not CCM time and never counts "
                f"toward CCM thresholds; no minute may count for two services.{extra}",
                str(CITE_OTHER),
                tuple(other_ids) + tuple(i for i in double.ids if i not in other_ids),
            )
        )
    return tuple(out)
