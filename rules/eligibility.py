"""Eligibility: two or more distinct chronic conditions, alive in the month, significant risk attested."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rules import rule_ids
from rules.chronic import ICD10_WHO, ICD10CM, SNOMED, TEXT
from rules.packs import Citation
from rules.patient_month import PatientMonth
from rules.record_type import record
from rules.records import Coding, ConditionRecord
from rules.verdict import ChronicCondition, ConditionReview, Finding

CITE_CHRONIC = Citation("CMS MLN909188; Noridian CCM Q&A", "3.1, 0", ("S1", "S3", "S4", "S12"), "H")
CITE_DECEASED = Citation(
    "CMS MLN909188 (CCM is furnished to a living beneficiary per calendar month)",
    "3.1, 3.6",
    ("S1", "S21"),
    "M",
)
CITE_RISK = Citation("CMS MLN909188; Noridian JF Part A CCM", "3.1, 6", ("S1", "S4"), "H")

COUNTED_CLINICAL = frozenset({"active", "recurrence", "relapse"})
# Only a confirmed (or unqualified) diagnosis counts: a suspicion is not a chronic condition.
EXCLUDED_VERIFICATION = frozenset(
    {"refuted", "entered-in-error", "unconfirmed", "provisional", "differential"}
)
STANDARD_SYSTEMS = frozenset({ICD10CM, ICD10_WHO, SNOMED})
DIAGNOSIS_CATEGORIES = frozenset({"problem-list-item", "encounter-diagnosis"})
CITE_CODED = Citation("AHRQ HCUP CCIR; CMS CCW condition categories", "6, 3.1", ("S18",), "H")
MIN_CONDITIONS = 2


# coding -> a classification with chronic, source, condition_key, condition_label, display, reason
# (rules.chronic.classify, or a test's table).
Classifier = Callable[[Coding], Any]


@record
class ChronicResult:
    """The chronic conditions found, those reviewed, and the findings."""

    chronic_conditions: tuple[ChronicCondition, ...]
    conditions_reviewed: tuple[ConditionReview, ...]
    distinct: tuple[str, ...]  # condition keys counted, in first-seen order
    labels: tuple[str, ...]  # their labels
    findings: tuple[Finding, ...]


def _exclusion(pm: PatientMonth, c: ConditionRecord) -> str | None:
    """Why a condition does not count this month, or None when it does."""
    clinical = (c.clinical_status or "").strip().lower() or None
    verification = (c.verification_status or "").strip().lower() or None
    if clinical is None:
        return "clinical status not recorded: not counted (record it as active)"
    if c.categories and not DIAGNOSIS_CATEGORIES & set(c.categories):
        return f"category {', '.join(c.categories)}: not a problem-list or encounter diagnosis, not counted"
    if clinical not in COUNTED_CLINICAL:
        return f"clinical status {clinical}: not counted"
    if verification in EXCLUDED_VERIFICATION:
        return f"verification status {verification}: not counted"
    if c.onset is not None and not pm.before_end(c.onset):
        return "onset after this month: not counted"
    if c.onset is None and c.recorded is not None and not pm.before_end(c.recorded):
        return "no onset date, and first recorded after this month: not counted"
    if c.abatement is not None and pm.aware(c.abatement) < pm.start:
        return "abated before this month: not counted"
    if c.abated and c.abatement is None:
        return "abated (no date can be derived): not counted"
    return None


def _classify(classifier: Classifier, coding: Coding) -> tuple[bool, str | None, str | None, str, str, str]:
    """(chronic, source, key, label, display, reason) for one coding; never raises."""
    try:
        r = classifier(coding)
        return (
            bool(r.chronic),
            r.source,
            r.condition_key,
            r.condition_label or "",
            r.display or coding.display or coding.code,
            r.reason or "",
        )
    except Exception as exc:  # a classifier bug must not sink the whole verdict
        return (
            False,
            None,
            None,
            "",
            coding.display or coding.code,
            f"could not classify ({type(exc).__name__})",
        )


def chronic_conditions(pm: PatientMonth, classifier: Classifier) -> ChronicResult:
    """Classify every condition; count distinct chronic conditions (by condition key) that are in effect."""
    reviewed: list[ConditionReview] = []
    by_code: dict[tuple[str, str], dict[str, Any]] = {}
    keys: dict[str, str] = {}
    uncoded: list[str] = []
    for cond in pm.facts.conditions:
        codings = cond.codings
        if cond.text.strip() and not any(c.system in STANDARD_SYSTEMS for c in codings):
            codings = (*codings, Coding(TEXT, cond.text.strip(), cond.text.strip()))
        if not codings:
            reviewed.append(
                ConditionReview(
                    cond.id,
                    cond.text or "(no code)",
                    "",
                    "",
                    False,
                    None,
                    "no coded diagnosis: cannot classify",
                )
            )
            continue
        results = [(coding, _classify(classifier, coding)) for coding in codings]
        chronic_hits = [(coding, r) for coding, r in results if r[0]]
        shown_coding, shown = chronic_hits[0] if chronic_hits else results[0]
        excluded = _exclusion(pm, cond)
        display = cond.text or shown[4]
        if excluded is not None:
            reason = f"{shown[5]}; {excluded}" if shown[5] else excluded
            reviewed.append(
                ConditionReview(
                    cond.id, display, shown_coding.system, shown_coding.code, False, shown[1], reason
                )
            )
            continue
        reviewed.append(
            ConditionReview(
                cond.id,
                display,
                shown_coding.system,
                shown_coding.code,
                bool(chronic_hits),
                shown[1],
                shown[5],
            )
        )
        if not any(c.system in STANDARD_SYSTEMS for c in cond.codings) and not any(
            c.system == TEXT for c, _r in chronic_hits
        ):
            uncoded.append(cond.id)
        for coding, (_, source, key, label, disp, _reason) in chronic_hits:
            condition_key = key or f"{coding.system}|{coding.code}"
            keys.setdefault(condition_key, label or disp)
            slot = by_code.setdefault(
                (coding.system, coding.code),
                {
                    "display": disp,
                    "source": source or "curated",
                    "key": condition_key,
                    "label": label or disp,
                    "evidence": [],
                },
            )
            if cond.id not in slot["evidence"]:
                slot["evidence"].append(cond.id)
    chronic = tuple(
        ChronicCondition(system, code, s["display"], s["source"], s["key"], s["label"], tuple(s["evidence"]))
        for (system, code), s in by_code.items()
    )
    findings: list[Finding] = []
    if len(keys) < MIN_CONDITIONS:
        have = ", ".join(keys.values()) or "none"
        evidence = tuple(dict.fromkeys(e for c in chronic for e in c.evidence))
        findings.append(
            Finding(
                rule_ids.ELIGIBILITY_CHRONIC_CONDITIONS,
                "eligibility",
                "blocker",
                f"CCM needs at least {MIN_CONDITIONS} distinct chronic conditions expected to last 12 months "
                f"or more; found {len(keys)} ({have}). Codes of one condition (such as two diabetes codes) "
                "count once. Add any missing chronic diagnoses to the problem list if they apply.",
                str(CITE_CHRONIC),
                evidence,
            )
        )
    if uncoded:
        findings.append(
            Finding(
                rule_ids.ELIGIBILITY_UNCODED_CONDITION,
                "eligibility",
                "warning",
                f"{len(uncoded)} condition(s) on the problem list have no ICD-10-CM or SNOMED CT code, only "
                "text or a local code, so they cannot be classified and do not count as chronic "
                "conditions. Code them (ICD-10-CM or SNOMED CT).",
                str(CITE_CODED),
                tuple(uncoded),
            )
        )
    return ChronicResult(chronic, tuple(reviewed), tuple(keys), tuple(keys.values()), tuple(findings))


def deceased(pm: PatientMonth) -> tuple[Finding, ...]:
    """Died before the month: not eligible. Died during the month: information (minutes after death drop)."""
    p = pm.facts.patient
    if p.deceased_at is not None:
        at = pm.aware(p.deceased_at)
        if at < pm.start:
            return (
                Finding(
                    rule_ids.ELIGIBILITY_DECEASED,
                    "eligibility",
                    "blocker",
                    f"The patient died before {pm.month} ({at.astimezone(pm.tz).date()}); no CCM can be "
                    "billed for this month.",
                    str(CITE_DECEASED),
                    (p.id,),
                ),
            )
        if at < pm.end:
            return (
                Finding(
                    rule_ids.ELIGIBILITY_DECEASED_IN_MONTH,
                    "eligibility",
                    "info",
                    f"The patient died during {pm.month} ({at.astimezone(pm.tz).date()}); only time before "
                    "that counts.",
                    str(CITE_DECEASED),
                    (p.id,),
                ),
            )
        return ()
    if p.deceased:
        return (
            Finding(
                rule_ids.ELIGIBILITY_DECEASED,
                "eligibility",
                "blocker",
                "The patient record says deceased without a date; no CCM can be billed. Record the date of "
                "death if earlier months are still open.",
                str(CITE_DECEASED),
                (p.id,),
            ),
        )
    return ()


def risk_attestation(pm: PatientMonth) -> tuple[Finding, ...]:
    """Warn when no practitioner has attested that the conditions place the patient at significant risk."""
    for a in pm.facts.attestations:
        if a.kind == "risk-attestation" and a.practitioner and (a.at is None or pm.before_end(a.at)):
            return ()
    return (
        Finding(
            rule_ids.ELIGIBILITY_RISK_ATTESTATION,
            "eligibility",
            "warning",
            "No practitioner has attested that the chronic conditions place the patient at significant risk "
            "of death, acute exacerbation or decompensation, or functional decline. This is a clinical "
            "judgment CMS requires; the data alone cannot settle it. Ask the billing practitioner to record "
            "a risk attestation.",
            str(CITE_RISK),
            (pm.facts.patient.id,),
        ),
    )
