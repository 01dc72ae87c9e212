"""CCM consent as a timeline (cms-rules.md §3.3): every CCM Consent of the patient becomes dated events.

Events, per billing practitioner:
- given: from the later of `dateTime` and `provision.period.start` (consent comes before CCM);
- declined: `rejected`, or a `deny` provision; ends coverage at once;
- stopped: `inactive`; effective at the end of the calendar month of the date the record states
  (`provision.period.end`, else `dateTime`), however late it was recorded;
- superseded: a later consent naming another billing practitioner ends the earlier practitioner's coverage
  from the start of the month it was given (only one practitioner may bill CCM in a month);
- an `active` consent whose `provision.period.end` has passed is no longer in force after that instant.
`entered-in-error` records are ignored; `draft` and `proposed` records are not in force. Minutes count only
inside an interval where a consent for the billing practitioner is in force.
"""

from __future__ import annotations

from datetime import datetime, tzinfo

from rules import rule_ids
from rules.month import Month
from rules.packs import Citation
from rules.patient_month import PatientMonth
from rules.people import canonical
from rules.record_type import record
from rules.records import ConsentRecord, PatientFacts
from rules.verdict import ConsentStateName, Finding

# The four things CMS requires the patient to be told (cms-rules.md §3.3).
DISCLOSURES: frozenset[str] = frozenset(
    {"ccm-available", "cost-sharing", "one-practitioner", "right-to-stop"}
)
DISCLOSURE_WORDS = {
    "ccm-available": "that CCM is available",
    "cost-sharing": "that cost sharing applies",
    "one-practitioner": "that only one practitioner can bill CCM per month",
    "right-to-stop": "that the patient may stop at any time (effective at the end of the month)",
}
RECORDED = frozenset({"active", "rejected", "inactive"})
NOT_IN_FORCE = frozenset({"draft", "proposed"})
EARLIEST = datetime.min.replace(tzinfo=None)

CITE_CONSENT = Citation(
    "CMS MLN909188; Noridian CCM Q&A; CY2017 PFS final rule", "3.3", ("S1", "S3", "S12", "S29"), "H"
)
CITE_DATED = Citation("CMS MLN909188; claim edits", "3.3, 5.3", ("S1", "S3"), "H")
CITE_RECONSENT = Citation("Noridian CCM Q&A (Q3)", "3.3, 0", ("S3",), "H")
CITE_PRACTITIONER = Citation("CMS MLN909188; CMS CCM FAQ", "3.3, 5.3", ("S1", "S2"), "H")

Window = tuple[datetime | None, datetime | None]  # [from, until): None = unbounded


@record
class Event:
    """A dated consent event for one billing practitioner."""

    at: datetime | None  # None: undated (sorts first)
    kind: str  # given | declined | stopped | expired
    record: ConsentRecord
    practitioner: str | None  # canonical billing practitioner the record names
    stated: datetime | None = None  # stopped: the stop date the record states (`at` is the end of that day)


@record
class ConsentState:
    """The consent findings for the month and the consent in force."""

    findings: tuple[Finding, ...]
    consent: ConsentRecord | None  # the given consent that governs the month for the billing practitioner
    # Minutes count only inside these [from, until) windows (None = unbounded); () = nothing counts.
    windows: tuple[Window, ...] = ()
    ended: datetime | None = None  # when the latest coverage ended (time after it is "after the stop")

    @property
    def counts_from(self) -> datetime | None:
        """Start of the first window (kept for callers that need one instant)."""
        return self.windows[0][0] if self.windows else None


def state_of(findings: tuple[Finding, ...]) -> ConsentStateName:
    """The month's consent state, read from the consent findings (a stop within the month is still given)."""
    rules = {f.rule for f in findings if f.severity == "blocker"}
    if rule_ids.CONSENT_DECLINED in rules:
        return "declined"
    if rule_ids.CONSENT_STOPPED in rules:
        return "stopped"
    return "missing" if rules & rule_ids.NO_CONSENT else "given"


def _aware(moment: datetime, tz: tzinfo) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=tz)


def ccm_consents(facts: PatientFacts) -> tuple[ConsentRecord, ...]:
    """Recorded CCM consents (given, declined or stopped); drafts, proposals and errors are not in force."""
    return tuple(c for c in facts.consents if "ccm" in c.programs and (c.status or "").lower() in RECORDED)


def given_from(c: ConsentRecord, tz: tzinfo, *, counting: bool = True) -> datetime | None:
    """When a consent took effect: the later of its date and its provision's start (None: undated).

    For counting minutes, a date without a time of day counts from the end of the day (or month) it names
    (`given_by`): the first counted minute must come after the consent (cms-rules.md §5.3) and a day alone
    does not say when in it the consent was given. With `counting=False`, from the start of that day (an
    initiating visit that day; a decline from that day on).
    """
    dates = [_aware(d, tz) for d in (c.obtained_at, c.period_start) if d is not None]
    if counting and c.given_by is not None:
        dates.append(_aware(c.given_by, tz))
    return max(dates) if dates else None


def _stop_date(c: ConsentRecord, tz: tzinfo) -> datetime | None:
    when = c.stop_date or c.obtained_at
    return _aware(when, tz) if when is not None else None


def _month_start(moment: datetime, tz: tzinfo) -> datetime:
    local = moment.astimezone(tz)
    return datetime(local.year, local.month, 1, tzinfo=tz)


def _month_after(moment: datetime, tz: tzinfo) -> datetime:
    nxt = Month.of(moment.astimezone(tz)).next()
    return datetime(nxt.year, nxt.month, 1, tzinfo=tz)


def events(facts: PatientFacts, tz: tzinfo, aliases: dict[str, str]) -> list[Event]:
    """Every CCM consent record as dated events, in time order (undated first, then record order)."""
    out: list[Event] = []
    for c in ccm_consents(facts):
        status = c.status.lower()
        who = canonical(c.billing_practitioner, aliases)
        if status == "rejected" or (status == "active" and (c.provision_type or "").lower() == "deny"):
            out.append(Event(given_from(c, tz, counting=False), "declined", c, who))
        elif status == "active":
            out.append(Event(given_from(c, tz), "given", c, who))
            end = c.period_end or c.stop_date
            if end is not None:  # the provision's own end: no longer in force after it
                out.append(Event(_aware(end, tz), "expired", c, who))
        else:  # inactive: it was given once (when a start is known), and stopped
            start = given_from(c, tz) if c.period_start is not None or c.stop_date is not None else None
            stop = _stop_date(c, tz)
            last = _aware(c.period_end, tz) if c.period_end is not None else stop  # a date end: its whole day
            if start is not None and (last is None or start <= last):
                out.append(Event(start, "given", c, who))
            out.append(Event(last, "stopped", c, who, stop))
    indexed = list(enumerate(out))
    indexed.sort(key=lambda ie: (ie[1].at is not None, ie[1].at or EARLIEST, ie[0]))
    return [e for _, e in indexed]


def _names(event: Event, practitioner: str | None) -> bool:
    """Does the event concern `practitioner` (an unnamed record concerns everyone)?"""
    return event.practitioner is None or practitioner is None or event.practitioner == practitioner


@record(frozen=False)
class _Timeline:
    """Intervals where a consent is in force, and why the last one ended."""

    windows: list[tuple[datetime | None, datetime | None, Event]]
    last_end: tuple[str, Event] | None  # why the latest coverage ended: stopped | declined | superseded
    ended: datetime | None = None  # when the latest coverage ended


def timeline(evs: list[Event], practitioner: str | None, tz: tzinfo) -> _Timeline:
    """Intervals in which a consent for `practitioner` is in force, and why the last one ended."""
    windows: list[tuple[datetime | None, datetime | None, Event]] = []
    open_from: tuple[datetime | None, Event] | None = None
    last_end: tuple[str, Event] | None = None
    ended: datetime | None = None

    def close(until: datetime | None, why: str, event: Event) -> None:
        nonlocal open_from, last_end, ended
        if open_from is not None:
            ended = until
            start = open_from[0]
            if until is None or start is None or until > start:
                windows.append((start, until, open_from[1]))
            open_from = None
        last_end = (why, event)

    for e in evs:
        if e.kind == "given" and _names(e, practitioner):
            if open_from is None:
                open_from = (e.at, e)
        elif e.kind == "expired":
            if open_from is not None and open_from[1].record.id == e.record.id:
                close(e.at, "expired", e)
        elif e.kind == "given" and open_from is not None:  # another practitioner's consent supersedes
            close(_month_start(e.at, tz) if e.at else None, "superseded", e)
        elif e.kind == "stopped" and _names(e, practitioner):
            if e.at is None:  # a stop with no date at all: nothing before it can be shown to count
                open_from = None
                last_end = ("stopped", e)
            elif open_from is not None or last_end is None:
                close(_month_after(e.stated or e.at, tz), "stopped", e)
        elif e.kind == "declined" and _names(e, practitioner):
            close(e.at, "declined", e)
    if open_from is not None:
        windows.append((open_from[0], None, open_from[1]))
    return _Timeline(windows, last_end, ended)


def resolve_practitioner(
    facts: PatientFacts,
    explicit: str | None,
    month_end: datetime,
    tz: tzinfo,
    evs: list[Event] | None = None,
) -> tuple[str | None, str]:
    """Billing practitioner: explicit option, else the latest given consent's PPRF actor, else the GP."""
    aliases = dict(facts.aliases)
    if explicit and explicit.strip():
        return canonical(explicit.strip(), aliases), "option"
    evs = events(facts, tz, aliases) if evs is None else evs
    named = [e for e in evs if e.practitioner and e.kind == "given"]
    if named:
        in_time = [e for e in named if e.at is None or e.at < month_end]
        return (in_time or named)[-1].practitioner, "consent"
    if facts.patient.general_practitioners:
        return canonical(facts.patient.general_practitioners[0], aliases), "general-practitioner"
    return None, "unknown"


def practitioner_unknown(pm: PatientMonth) -> tuple[Finding, ...]:
    if pm.practitioner:
        return ()
    return (
        Finding(
            rule_ids.BILLING_PRACTITIONER_UNKNOWN,
            "consent",
            "blocker",
            "No billing practitioner is known: none was chosen, the CCM consent names none and the patient "
            "has no general practitioner. Choose the billing practitioner (or record them on the consent).",
            str(CITE_PRACTITIONER),
            (pm.facts.patient.id,),
        ),
    )


def _consent(
    rule: str, severity: str, message: str, evidence: tuple[str, ...], cite: Citation = CITE_CONSENT
) -> Finding:
    return Finding(rule, "consent", severity, message, str(cite), evidence)  # type: ignore[arg-type]


def _day(moment: datetime | None, tz: tzinfo) -> str:
    return moment.astimezone(tz).date().isoformat() if moment is not None else "an unrecorded date"


def _blocked(pm: PatientMonth, evs: list[Event], tl: _Timeline) -> ConsentState:
    """No consent for the billing practitioner is in force at any time in the month: say why."""
    before = [e for e in evs if e.at is None or e.at < pm.end]
    mine = [e for e in before if _names(e, pm.practitioner)]
    if tl.last_end is not None and tl.last_end[1] in before:
        why, e = tl.last_end
        ids = (e.record.id,)
        if why == "declined":
            message = (
                "The patient declined CCM. Do not bill; the patient may agree later (record a new consent)."
            )
            return ConsentState((_consent(rule_ids.CONSENT_DECLINED, "blocker", message, ids),), e.record)
        if why == "stopped":
            if e.stated is None or e.record.stop_date is None:
                taken = f"; its record date ({_day(e.stated, pm.tz)}) is the stop date" if e.stated else ""
                message = (
                    "The CCM consent is inactive (the patient stopped CCM) but the stop date is not recorded"
                    f"{taken}. Record the stop date: CCM stays billable through the end of the month of the "
                    "stop."
                )
            else:
                stop = pm.month_of(e.stated)
                message = (
                    f"The patient stopped CCM in {stop}; the stop took effect at the end of that month, so "
                    f"{pm.month} cannot be billed. A new consent is needed to restart."
                )
            return ConsentState((_consent(rule_ids.CONSENT_STOPPED, "blocker", message, ids),), e.record)
        if why == "superseded":
            message = (
                f"On {_day(e.at, pm.tz)} the patient consented to CCM with another billing practitioner "
                f"({e.practitioner}), which ends the consent for {pm.practitioner} from that month. Only one "
                "practitioner may bill CCM in a month; a new consent is needed to switch back."
            )
            blocker = _consent(rule_ids.CONSENT_OTHER_PRACTITIONER, "blocker", message, ids, CITE_RECONSENT)
            return ConsentState((blocker,), e.record)
        message = f"The CCM consent's period ended on {_day(e.at, pm.tz)}; record a new consent."
        return ConsentState((_consent(rule_ids.CONSENT_MISSING, "blocker", message, ids),), e.record)
    given_mine = [e for e in evs if e.kind == "given" and _names(e, pm.practitioner)]
    if given_mine:  # all given after the month
        message = (
            f"The CCM consent was obtained after {pm.month}; CCM cannot be billed for a month before consent."
        )
        later = tuple(dict.fromkeys(e.record.id for e in given_mine))
        return ConsentState((_consent(rule_ids.CONSENT_MISSING, "blocker", message, later),), None)
    others = [e for e in before if e.kind == "given" and not _names(e, pm.practitioner)]
    if others and not mine:
        names = ", ".join(sorted({e.practitioner or "" for e in others}))
        message = (
            f"The CCM consent names a different billing practitioner ({names}), not {pm.practitioner}. A "
            "new consent is needed when the billing practitioner changes."
        )
        theirs = tuple(dict.fromkeys(e.record.id for e in others))
        blocker = _consent(rule_ids.CONSENT_OTHER_PRACTITIONER, "blocker", message, theirs, CITE_RECONSENT)
        return ConsentState((blocker,), None)
    pending = tuple(c.id for c in pm.facts.consents if "ccm" in c.programs)
    message = (
        "No CCM consent is in force. Before CCM starts, tell the patient that CCM is available, that "
        "cost sharing applies, that only one practitioner can bill CCM per month and that they may stop "
        "at any time; record their verbal or written answer."
    )
    return ConsentState((_consent(rule_ids.CONSENT_MISSING, "blocker", message, pending),), None)


def check(pm: PatientMonth, evs: list[Event] | None = None) -> ConsentState:
    """The consent findings for the month and the windows in which minutes may count."""
    evs = events(pm.facts, pm.tz, dict(pm.aliases)) if evs is None else evs
    tl = timeline(evs, pm.practitioner, pm.tz)
    in_month = [
        (a, b, e)
        for a, b, e in tl.windows
        if (a is None or a < pm.end) and (b is None or b > pm.start)
    ]
    if not in_month:
        blocked = _blocked(pm, evs, tl)
        return ConsentState(blocked.findings, blocked.consent, (), tl.ended)
    start, _until, governing = in_month[-1]
    current = governing.record
    ids = (current.id,)
    findings: list[Finding] = []
    ends_now = tl.last_end is not None and tl.last_end[0] in ("declined", "expired")
    if tl.last_end is not None and ends_now and pm.in_month(tl.last_end[1].at):
        why, ender = tl.last_end
        message = f"The CCM consent {why} on {_day(ender.at, pm.tz)}; time after that does not count."
        findings.append(_consent(rule_ids.CONSENT_STOP_EFFECTIVE, "info", message, (ender.record.id,)))
    stops = [e for e in evs if e.kind == "stopped" and e.stated is not None and pm.in_month(e.stated)]
    if stops and any(b is not None and b >= pm.end for _a, b, _e in in_month):
        message = (
            f"The patient stopped CCM during {pm.month}; the stop takes effect at the end of this month, "
            "so this month is still billable and the next is not."
        )
        findings.append(_consent(rule_ids.CONSENT_STOP_EFFECTIVE, "info", message, (stops[-1].record.id,)))
    if start is None:
        message = (
            "The CCM consent has no date, so it cannot be shown to precede the counted minutes. Record when "
            "it was obtained; until then no CCM time counts."
        )
        findings.append(_consent(rule_ids.CONSENT_UNDATED, "blocker", message, ids, CITE_DATED))
    if pm.practitioner and current.billing_practitioner is None:
        message = (
            f"The CCM consent does not name the billing practitioner; record {pm.practitioner} on it so an "
            "auditor can see who the patient agreed to."
        )
        unnamed = rule_ids.CONSENT_PRACTITIONER_UNNAMED
        findings.append(_consent(unnamed, "warning", message, ids, CITE_PRACTITIONER))
    missing = sorted(DISCLOSURES - set(current.disclosures))
    if missing:
        told = "; ".join(DISCLOSURE_WORDS[m] for m in missing)
        message = (
            f"The consent does not record that the patient was told {told}. CMS requires all four "
            "disclosures to be documented."
        )
        findings.append(_consent(rule_ids.CONSENT_DISCLOSURES_INCOMPLETE, "warning", message, ids))
    windows = tuple((a, b) for a, b, _e in in_month) if start is not None else ()
    return ConsentState(tuple(findings), current, windows, tl.ended)
