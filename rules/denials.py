"""Why a CCM claim line was denied: CARC/RARC -> root cause, as cited data. Pure.

Top level = the seed article's four failure areas (consent, documentation/time, overlap, eligibility),
plus "other" for what none of them explains. Each cause says which readiness rule category checks it
(`rules_cover`, a verdict Category) or None when the app's rules cannot see it (payer coverage, claim
data): a "ready" verdict denied for a covered cause is a false ready.

Code meanings are our own short wording of the X12 CARC / RARC lists; how a code maps to a CCM scenario
is inferred from MAC denial guidance (cms-rules.md §5.2, conf. M) unless a row says otherwise.
A RARC names the problem more precisely than its CARC, so remarks are looked up first.
"""

from __future__ import annotations

from collections.abc import Iterable

from rules.record_type import record

AREAS: tuple[str, ...] = ("consent", "documentation-time", "overlap", "eligibility", "other")
AREA_LABELS: dict[str, str] = {
    "consent": "Consent",
    "documentation-time": "Documentation and time",
    "overlap": "Overlap with another service",
    "eligibility": "Eligibility and coverage",
    "other": "Other",
}
# cause -> (area, label)
CAUSES: dict[str, tuple[str, str]] = {
    "consent": ("consent", "Consent missing or incomplete"),
    "documentation": ("documentation-time", "Documentation or claim data"),
    "time-threshold": ("documentation-time", "Time threshold, units or add-on without base"),
    "overlap": ("overlap", "Overlap with another service"),
    "duplicate": ("overlap", "Duplicate: CCM already paid for the month"),
    "eligibility": ("eligibility", "Eligibility: chronic conditions / diagnosis"),
    "coverage": ("eligibility", "Coverage: payer, plan or hospice"),
    "other": ("other", "Other"),
}
# Adjustments that are not denials: deductible, coinsurance, copay, fee-schedule contractual, sequestration.
ROUTINE_CARCS = frozenset({"1", "2", "3", "45", "253"})
ROUTINE_CITATION = "X12 CARC list: 1/2/3 patient cost sharing, 45 fee schedule, 253 sequestration"
SECTION_52 = "cms-rules.md §5.2 [S16, S10]"
X12_LISTS = "X12 CARC/RARC code lists (code meaning)"


@record
class CauseRule:
    kind: str  # "CARC" | "RARC"
    code: str
    cause: str  # a key of CAUSES
    meaning: str  # our own short wording
    rules_cover: str | None  # verdict category that checks it; None = outside the app's rules
    citation: str
    confidence: str  # H | M | L

    @property
    def area(self) -> str:
        return CAUSES[self.cause][0]


TABLE: tuple[CauseRule, ...] = (
    # overlap and duplicates (OIG's two findings, §5.1)
    CauseRule("CARC", "18", "duplicate", "exact duplicate claim or service", "conflict", SECTION_52, "M"),
    CauseRule(
        "CARC",
        "119",
        "duplicate",
        "benefit maximum for the period reached (second CCM claim)",
        "conflict",
        SECTION_52,
        "M",
    ),
    CauseRule(
        "CARC",
        "97",
        "overlap",
        "included in another service already adjudicated",
        "conflict",
        SECTION_52,
        "M",
    ),
    CauseRule(
        "CARC", "236", "overlap", "procedure combination not compatible (NCCI)", "conflict", SECTION_52, "M"
    ),
    CauseRule("CARC", "B9", "coverage", "patient enrolled in hospice", None, SECTION_52, "M"),
    CauseRule(
        "RARC",
        "M80",
        "overlap",
        "not covered with a service already processed for the patient",
        "conflict",
        SECTION_52,
        "M",
    ),
    CauseRule(
        "RARC",
        "N20",
        "overlap",
        "not payable with another service on the same date",
        "conflict",
        SECTION_52,
        "M",
    ),
    # time thresholds, units, add-on pairing
    CauseRule(
        "CARC",
        "B15",
        "time-threshold",
        "qualifying (base) service not received or adjudicated",
        "time",
        SECTION_52,
        "M",
    ),
    CauseRule(
        "CARC", "107", "time-threshold", "related or qualifying claim not identified", "time", SECTION_52, "M"
    ),
    CauseRule(
        "CARC",
        "151",
        "time-threshold",
        "frequency or units not supported by the information",
        "time",
        SECTION_52,
        "M",
    ),
    CauseRule(
        "RARC", "N362", "time-threshold", "units exceed the acceptable maximum", "time", SECTION_52, "M"
    ),
    # documentation and claim data
    CauseRule(
        "CARC", "16", "documentation", "claim lacks information or has a billing error", None, SECTION_52, "M"
    ),
    CauseRule(
        "RARC",
        "MA130",
        "documentation",
        "incomplete or invalid claim information (unprocessable)",
        None,
        SECTION_52,
        "M",
    ),
    CauseRule(
        "RARC",
        "N290",
        "documentation",
        "missing or invalid rendering provider identifier",
        None,
        X12_LISTS + "; " + SECTION_52,
        "M",
    ),
    CauseRule(
        "RARC",
        "M127",
        "documentation",
        "missing patient medical record for the service",
        "documentation",
        X12_LISTS,
        "L",
    ),
    CauseRule(
        "RARC",
        "N29",
        "documentation",
        "missing documentation, orders or notes",
        "documentation",
        X12_LISTS,
        "L",
    ),
    CauseRule(
        "CARC",
        "252",
        "documentation",
        "an attachment or other documentation is required",
        "documentation",
        X12_LISTS,
        "L",
    ),
    # consent: no consent-specific CARC; the remark codes for a missing or invalid consent form
    CauseRule(
        "RARC",
        "N3",
        "consent",
        "missing consent form",
        "consent",
        X12_LISTS + "; consent denial driver: market.md §3",
        "L",
    ),
    CauseRule(
        "RARC",
        "N228",
        "consent",
        "incomplete or invalid consent form",
        "consent",
        X12_LISTS + "; consent denial driver: market.md §3",
        "L",
    ),
    # eligibility: chronic-condition diagnoses; coverage
    CauseRule(
        "CARC",
        "11",
        "eligibility",
        "diagnosis inconsistent with the procedure",
        "eligibility",
        SECTION_52,
        "M",
    ),
    CauseRule(
        "CARC",
        "50",
        "eligibility",
        "not medically necessary for the diagnosis",
        "eligibility",
        SECTION_52,
        "M",
    ),
    CauseRule(
        "RARC",
        "M76",
        "eligibility",
        "missing or invalid diagnosis",
        "eligibility",
        X12_LISTS + "; fewer than 2 chronic dx on the claim: " + SECTION_52,
        "L",
    ),
    CauseRule(
        "RARC", "N30", "eligibility", "patient ineligible for this service", "eligibility", X12_LISTS, "L"
    ),
    CauseRule(
        "CARC",
        "109",
        "coverage",
        "not covered by this payer (e.g. Medicare Advantage plan)",
        None,
        SECTION_52,
        "M",
    ),
    CauseRule("CARC", "26", "coverage", "service before coverage began", None, X12_LISTS, "L"),
    CauseRule("CARC", "27", "coverage", "service after coverage ended", None, X12_LISTS, "L"),
    CauseRule(
        "CARC", "31", "coverage", "patient not identified as the payer's insured", None, X12_LISTS, "L"
    ),
)
_BY_CODE: dict[tuple[str, str], CauseRule] = {(r.kind, r.code): r for r in TABLE}
OTHER = CauseRule("CARC", "", "other", "no cause on file for these codes", None, "", "")


def is_routine(carc: str) -> bool:
    return carc in ROUTINE_CARCS


def cause_of(carcs: Iterable[str], rarcs: Iterable[str] = ()) -> CauseRule:
    """The cause of a denied line: its first RARC on the table, else its first non-routine CARC on it."""
    for code in rarcs:
        rule = _BY_CODE.get(("RARC", code))
        if rule is not None:
            return rule
    for code in carcs:
        if is_routine(code):
            continue
        rule = _BY_CODE.get(("CARC", code))
        if rule is not None:
            return rule
    return OTHER


def area_label(area: str) -> str:
    return AREA_LABELS.get(area, area)


def cause_label(cause: str) -> str:
    return CAUSES.get(cause, ("other", cause))[1]
