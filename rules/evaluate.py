"""evaluate(): one patient, one month -> one Verdict. Pure: no I/O beyond the cached policy packs."""

from __future__ import annotations

from rules import (
    care_plan,
    code_selection,
    concurrency,
    consent,
    documentation,
    eligibility,
    entry_length,
    initiating_visit,
    rule_ids,
)
from rules import minutes as minute_rules
from rules.chronic import classify
from rules.eligibility import Classifier
from rules.month import BadMonth, Month, zone
from rules.next_step import next_step
from rules.packs import Citation, PolicyPack, resolve_pack
from rules.patient_month import PatientMonth
from rules.records import PatientFacts
from rules.verdict import CATEGORIES, Finding, Status, Verdict

SEVERITY_ORDER = {"blocker": 0, "warning": 1, "info": 2}
CATEGORY_ORDER = {c: i for i, c in enumerate(CATEGORIES)}
CITE_PACK = Citation("CMS PFS yearly final rule and RVU files", "4, 8", ("S7", "S30"), "H")
CITE_CLAIM = Citation("CMS claim edits; OIG CCM reports", "5.2, 5.3", ("S10", "S16"), "H")


def default_classifier() -> Classifier:
    """rules.chronic.classify (owned by the value-sets module)."""
    return classify


def _zone_name(tz: object) -> str:
    """Callers outside the type checker may pass None or a tzinfo; read it as a zone name."""
    return tz if isinstance(tz, str) else "UTC" if tz is None else str(tz)


def stale_pack(policy: PolicyPack, m: Month) -> tuple[Finding, ...]:
    """Warning when the month is later than the year the pack was written for (no newer pack yet)."""
    year = policy.effective_start.year
    if m.year <= year:
        return ()
    return (
        Finding(
            rule_ids.POLICY_PACK_STALE,
            "time",
            "warning",
            f"No policy pack for {m.year} is installed: {m} was evaluated with {policy.id}, written for "
            f"CY{year}. Codes, thresholds, caps and payments may have changed; add the CY{m.year} pack when "
            "CMS publishes the fee schedule (rules/packs/README.md).",
            str(CITE_PACK),
            (policy.id,),
        ),
    )


def status_of(findings: tuple[Finding, ...], has_codes: bool) -> Status:
    """not-eligible > blocked (any blocker) > not-yet (no code reached) > ready."""
    blockers = [f for f in findings if f.severity == "blocker"]
    if any(f.category == "eligibility" for f in blockers):
        return "not-eligible"
    if blockers:
        return "blocked"
    return "ready" if has_codes else "not-yet"


def evaluate(
    facts: PatientFacts,
    month: Month | str,
    *,
    pack: str | PolicyPack | None = None,
    tz: str = "UTC",
    billing_practitioner: str | None = None,
    classifier: Classifier | None = None,
    month_closed: bool = False,
) -> Verdict:
    """The CCM verdict for `facts` in `month` (practice time zone `tz`) under the policy pack in effect.

    `month_closed` says the month was already over when asked (evaluate reads no clock): the next step
    then never advises logging more time.
    Raises BadMonth, BadTimezone or UnknownPolicy for bad arguments; odd facts become findings, never errors.
    """
    if isinstance(month, Month):
        m = month
    elif isinstance(month, str):
        m = Month.parse(month)
    else:
        raise BadMonth(f"month must be YYYY-MM, got {month!r}")
    tz = _zone_name(tz)
    tzinfo = zone(tz)
    policy = resolve_pack(pack, m)
    start, end = m.bounds(tzinfo)
    consent_events = consent.events(facts, tzinfo, dict(facts.aliases))
    practitioner, _source = consent.resolve_practitioner(
        facts, billing_practitioner, end, tzinfo, consent_events
    )
    pm = PatientMonth(facts, m, tzinfo, tz, start, end, policy, practitioner, dict(facts.aliases))
    classify = classifier if classifier is not None else default_classifier()

    findings: list[Finding] = list(stale_pack(policy, m))
    chronic = eligibility.chronic_conditions(pm, classify)
    findings += chronic.findings
    findings += eligibility.deceased(pm)
    if not chronic.findings:
        findings += eligibility.risk_attestation(pm)
    findings += consent.practitioner_unknown(pm)
    state = consent.check(pm, consent_events)
    findings += state.findings
    findings += care_plan.check(pm)
    findings += initiating_visit.check(pm, state.consent)
    died = facts.patient.deceased_at if pm.in_month(facts.patient.deceased_at) else None
    long_entries = entry_length.too_long(pm)
    findings += entry_length.check(long_entries)
    counted = minute_rules.count(entry_length.without(pm, long_entries), state.windows, died, state.ended)
    findings += counted.findings
    selection = code_selection.select(pm, counted.minutes, code_selection.mdm_attestation(pm))
    findings += selection.findings
    findings += concurrency.check(pm)
    findings += documentation.check(pm, counted.entries)

    codes = selection.codes
    problems = code_selection.violations(policy, codes) if codes else []
    if problems:  # a defect in the pack or the selection; never send such a claim
        findings.append(
            Finding(
                rule_ids.TIME_INVALID_CLAIM,
                "time",
                "blocker",
                "The selected codes break a claim edit (" + "; ".join(problems) + "). Nothing is billed.",
                str(CITE_CLAIM),
            )
        )
        codes = ()
    # A total order, so a verdict does not depend on the order the server returned resources in.
    ordered = tuple(
        sorted(
            findings,
            key=lambda f: (
                CATEGORY_ORDER.get(f.category, 99), SEVERITY_ORDER.get(f.severity, 9), f.rule, f.evidence
            ),
        )
    )
    status = status_of(ordered, bool(codes))
    codes = codes if status == "ready" else ()
    return Verdict(
        patient=facts.patient.id,
        month=str(m),
        policy=policy.id,
        policy_version=policy.version,
        status=status,
        codes=codes,
        minutes=counted.minutes,
        next_threshold=selection.next_threshold,
        chronic_conditions=tuple(
            sorted(chronic.chronic_conditions, key=lambda c: (c.condition_key, c.system, c.code, c.evidence))
        ),
        findings=ordered,
        skipped=facts.skipped,
        billing_practitioner=practitioner,
        track=selection.track.id if selection.track else None,
        track_reason=selection.reason,
        conditions_reviewed=chronic.conditions_reviewed,
        timezone=tz,
        billed_in_month=bool(concurrency.billed_ccm(pm)),
        consent_state=consent.state_of(state.findings),
        distinct_conditions=len({c.condition_key for c in chronic.chronic_conditions}),
        next_step=next_step(status, ordered, codes, selection.next_threshold, month_closed),
        month_closed=month_closed,
    )
