"""Every finding rule id, named once. Faces match on these names, never on string literals.

Conflict rule ids also live in the policy packs' concurrency tables (data); the names here must match.
"""

from __future__ import annotations

from typing import Final

# eligibility (cms-rules.md §1)
ELIGIBILITY_CHRONIC_CONDITIONS: Final = "eligibility.chronic-conditions"
ELIGIBILITY_DECEASED: Final = "eligibility.deceased"
ELIGIBILITY_DECEASED_IN_MONTH: Final = "eligibility.deceased-in-month"
ELIGIBILITY_RISK_ATTESTATION: Final = "eligibility.risk-attestation"
ELIGIBILITY_UNCODED_CONDITION: Final = "eligibility.uncoded-condition"

# consent and billing practitioner (§3.3)
BILLING_PRACTITIONER_UNKNOWN: Final = "billing-practitioner.unknown"
CONSENT_MISSING: Final = "consent.missing"
CONSENT_DECLINED: Final = "consent.declined"
CONSENT_STOPPED: Final = "consent.stopped"
CONSENT_STOP_EFFECTIVE: Final = "consent.stop-effective"
CONSENT_OTHER_PRACTITIONER: Final = "consent.other-practitioner"
CONSENT_SUPERSEDED: Final = "consent.superseded"
CONSENT_UNDATED: Final = "consent.undated"
CONSENT_PRACTITIONER_UNNAMED: Final = "consent.practitioner-unnamed"
CONSENT_DISCLOSURES_INCOMPLETE: Final = "consent.disclosures-incomplete"

# care plan (§3.4) and initiating visit (§3.2)
CARE_PLAN_MISSING: Final = "care-plan.missing"
CARE_PLAN_NOT_SHARED: Final = "care-plan.not-shared"
CARE_PLAN_REVIEW_OVERDUE: Final = "care-plan.review-overdue"
INITIATING_VISIT_MISSING: Final = "initiating-visit.missing"

# time (§3.5, §3.6, §4)
TIME_BEFORE_CONSENT: Final = "time.before-consent"
TIME_AFTER_STOP: Final = "time.after-stop"
TIME_AFTER_DEATH: Final = "time.after-death"
TIME_INPATIENT: Final = "time.inpatient"
TIME_DURING_VISIT: Final = "time.during-visit"
TIME_OVERLAP: Final = "time.overlap"
TIME_OTHER_PROGRAM: Final = "time.other-program"
TIME_NOT_STAFF: Final = "time.not-staff"
TIME_BELOW_THRESHOLD: Final = "time.below-threshold"
TIME_STAFF_CAP: Final = "time.staff-cap"
TIME_TRACK_CHOICE: Final = "time.track-choice"
TIME_INVALID_CLAIM: Final = "time.invalid-claim"
TIME_IMPLAUSIBLE_ENTRY: Final = "time.implausible-entry"

# documentation (§3.7)
DOCUMENTATION_MISSING_NOTE: Final = "documentation.missing-note"
DOCUMENTATION_VAGUE_NOTE: Final = "documentation.vague-note"

# conflicts (§2): emitted from the packs' concurrency tables
CONFLICT_ALREADY_BILLED: Final = "conflict.already-billed"
CONFLICT_CCM_OTHER_PRACTITIONER: Final = "conflict.ccm-other-practitioner"

# policy (§0)
POLICY_PACK_STALE: Final = "policy.pack-stale"

#: The consent findings that mean "no CCM consent covers this month" -> consent_state.
NO_CONSENT: Final = frozenset(
    {CONSENT_MISSING, CONSENT_DECLINED, CONSENT_STOPPED, CONSENT_OTHER_PRACTITIONER}
)
