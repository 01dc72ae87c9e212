"""Care plan: an active CCM care plan must be in effect in the month."""

from __future__ import annotations

from datetime import datetime

from rules import rule_ids
from rules.packs import Citation
from rules.patient_month import PatientMonth
from rules.records import CarePlanRecord
from rules.verdict import Finding

CITE_PLAN = Citation("CMS MLN909188; Noridian CCM Q&A", "3.4, 5.3", ("S1", "S3", "S24"), "H")
CITE_SHARED = Citation("CMS MLN909188; CY2017 PFS final rule", "3.4", ("S1", "S29"), "H")
CITE_REVIEW = Citation(
    "CMS MLN909188 (periodic review and revision of the care plan)", "3.4", ("S1", "S3"), "M",
    "CMS names no interval; 12 months is this app's threshold",
)


ESTABLISHED = frozenset({"plan", "order"})  # a CDS `proposal` or an `option` is not an established plan


def in_effect(pm: PatientMonth, plan: CarePlanRecord) -> bool:
    """Active, tagged CCM, intent plan or order, begun before the month ends and not ended before it
    is over (Period.end is inclusive: a date end covers its whole day; cms-rules.md §3.4)."""
    if (plan.status or "").lower() != "active" or "ccm" not in plan.programs:
        return False
    if (plan.intent or "").lower() not in ESTABLISHED:
        return False
    return pm.runs_through(plan.period_start or plan.created, plan.period_end)


def check(pm: PatientMonth) -> tuple[Finding, ...]:
    plans = [p for p in pm.facts.care_plans if in_effect(pm, p)]
    if not plans:
        ccm = [p for p in pm.facts.care_plans if "ccm" in p.programs]
        why = (
            "A CCM care plan exists but is not an established plan in effect through this month (it must be "
            "active, with intent plan or order, and its period must run to the month's end)"
            if ccm
            else "No CCM care plan is recorded"
        )
        return (
            Finding(
                rule_ids.CARE_PLAN_MISSING,
                "care-plan",
                "blocker",
                f"{why}. CCM needs a comprehensive care plan (problems, measurable goals, interventions and "
                f"who is responsible, medication management, review) in effect for {pm.month}, with a copy "
                "given to the patient.",
                str(CITE_PLAN),
                tuple(p.id for p in ccm),
            ),
        )
    findings: list[Finding] = []
    if not any(p.shared_with_patient_at is not None for p in plans):
        findings.append(
            Finding(
                rule_ids.CARE_PLAN_NOT_SHARED,
                "care-plan",
                "warning",
                "No record shows that a copy of the care plan was given to the patient or caregiver; CMS "
                "requires that it be shared and documented.",
                str(CITE_SHARED),
                tuple(p.id for p in plans),
            )
        )
    findings += review_overdue(pm, plans)
    return tuple(findings)


def last_review(plan: CarePlanRecord) -> datetime | None:
    """The latest review we know of: the review mark, else creation, else the period start."""
    return plan.last_reviewed or plan.created or plan.period_start


def review_overdue(pm: PatientMonth, plans: list[CarePlanRecord]) -> tuple[Finding, ...]:
    """Warning when no plan in effect was reviewed in the 12 months before the month ends."""
    known = [(pm.aware(when), p) for p in plans if (when := last_review(p)) is not None]
    if not known:
        return ()
    latest, plan = max(known, key=lambda item: item[0])
    limit = pm.end.replace(year=pm.end.year - 1)
    if latest >= limit:
        return ()
    return (
        Finding(
            rule_ids.CARE_PLAN_REVIEW_OVERDUE,
            "care-plan",
            "warning",
            f"The care plan was last reviewed on {latest.astimezone(pm.tz).date().isoformat()}, more than "
            "12 months ago. CMS expects the plan to be reviewed periodically and revised when needed; review "
            "it with the patient and save the revision.",
            str(CITE_REVIEW),
            (plan.id,),
        ),
    )
