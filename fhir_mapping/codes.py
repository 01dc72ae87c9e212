"""Code systems the app reads and writes, and how variant spellings map onto them.

Real data spells the same system several ways: http vs https, a trailing slash, an HL7 OID
(`urn:oid:2.16.840.1.113883.6.90`), odd capitalisation of the host. `canonical_system` folds
them onto one URL so the rules compare plain strings.
"""

from __future__ import annotations

from typing import Any

from rules.records import Coding

ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
SNOMED = "http://snomed.info/sct"
CPT = "http://www.ama-assn.org/go/cpt"
HCPCS = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
V3_ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
V3_PARTICIPATION_TYPE = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VER_STATUS = "http://terminology.hl7.org/CodeSystem/condition-ver-status"

# Our own systems (documented in docs/fhir-conventions.md).
CARE_PROGRAM = "https://ccm-ready.org/fhir/CodeSystem/care-program"
CARE_ACTIVITY = "https://ccm-ready.org/fhir/CodeSystem/care-activity"
CCM_DISCLOSURE = "https://ccm-ready.org/fhir/CodeSystem/ccm-disclosure"
EXT_CCM_DISCLOSURE = "https://ccm-ready.org/fhir/StructureDefinition/ccm-disclosure"
EXT_CONSENT_METHOD = "https://ccm-ready.org/fhir/StructureDefinition/consent-method"
EXT_CARE_PLAN_REVIEWED = "https://ccm-ready.org/fhir/StructureDefinition/care-plan-reviewed"

LOINC_PATIENT_CONSENT = "59284-0"
PPRF = "PPRF"  # primary performer: the billing practitioner on a CCM Consent
INPATIENT_CLASSES = frozenset({"IMP", "ACUTE", "NONAC", "I"})  # v3 ActCode; "I": v2 patient class
# Encounter classes where the patient is seen in person (v3 ActCode): ambulatory, home health, emergency,
# field. Not VR (virtual): a telephone or video contact may be the CCM call itself.
FACE_TO_FACE_CLASSES = frozenset({"AMB", "HH", "EMER", "FLD"})
# SNOMED CT encounter types that are not face to face, whatever the class an EHR gives them: telephone
# encounter, indirect encounter, telemedicine consultation.
NOT_FACE_TO_FACE_TYPES = frozenset({"185317003", "185316007", "448337001"})
ATTESTATION_KINDS = frozenset({"risk-attestation", "mdm-moderate", "mdm-high", "mdm-low"})
DISCLOSURES = frozenset({"ccm-available", "cost-sharing", "one-practitioner", "right-to-stop"})

_CANONICAL = (
    ICD10CM, SNOMED, CPT, HCPCS, LOINC, UCUM, V3_ACT_CODE, V3_PARTICIPATION_TYPE,
    CONDITION_CLINICAL, CONDITION_VER_STATUS, CARE_PROGRAM, CARE_ACTIVITY, CCM_DISCLOSURE,
)

# HL7 OIDs and other spellings seen in the wild.
_ALIASES: dict[str, str] = {
    "urn:oid:2.16.840.1.113883.6.90": ICD10CM,
    "urn:oid:2.16.840.1.113883.6.96": SNOMED,
    "urn:oid:2.16.840.1.113883.6.12": CPT,
    "urn:oid:2.16.840.1.113883.6.285": HCPCS,
    "urn:oid:2.16.840.1.113883.6.14": HCPCS,  # HCPCS (all levels) OID, used for level II codes
    "urn:oid:2.16.840.1.113883.6.1": LOINC,
    "urn:oid:2.16.840.1.113883.6.8": UCUM,
    "urn:oid:2.16.840.1.113883.5.4": V3_ACT_CODE,
    "urn:oid:2.16.840.1.113883.5.90": V3_PARTICIPATION_TYPE,
    "icd-10-cm": ICD10CM,
    "icd10cm": ICD10CM,
    "www.cms.gov/medicare/coding/icd10": ICD10CM,
    "hl7.org/fhir/sid/icd-10": ICD10CM,  # WHO ICD-10 URL, commonly misused for ICD-10-CM in US data
    "snomed.info/sct": SNOMED,
    "snomed": SNOMED,
    "sct": SNOMED,
    "cpt": CPT,
    "ama-assn.org/go/cpt": CPT,
    "hcpcs": HCPCS,
    "cms.gov/medicare/coding/hcpcsreleasecodesets": HCPCS,
    "hl7.org/fhir/v3/actcode": V3_ACT_CODE,
    "hl7.org/fhir/v3/participationtype": V3_PARTICIPATION_TYPE,
}


def _key(url: str) -> str:
    """Scheme-less, lower-case, no trailing slash, no leading `www.`: the comparison key."""
    text = url.strip().rstrip("/").lower()
    for scheme in ("https://", "http://"):
        if text.startswith(scheme):
            text = text[len(scheme):]
            break
    if text.startswith("www."):
        text = text[4:]
    return text


_BY_KEY: dict[str, str] = {_key(url): url for url in _CANONICAL}
for _alias, _url in _ALIASES.items():
    _BY_KEY[_key(_alias)] = _url

_cache: dict[str, str] = {}


def canonical_system(url: str | None) -> str:
    """The canonical URL for a code system spelled `url` (unknown systems: trimmed, no trailing slash)."""
    if not url:
        return ""
    hit = _cache.get(url)
    if hit is not None:
        return hit
    result = _BY_KEY.get(_key(url)) or url.strip().rstrip("/")
    if len(_cache) < 10_000:
        _cache[url] = result
    return result


def normalize_icd10(code: str) -> str:
    """ICD-10-CM code in its dotted, upper-case form: `e119` -> `E11.9`, `I10` stays `I10`."""
    text = code.strip().upper().replace(" ", "")
    if "." in text:
        head, _, tail = text.partition(".")
        return f"{head}.{tail}" if tail else head
    return f"{text[:3]}.{text[3:]}" if len(text) > 3 else text


def normalize_code(system: str, code: str) -> str:
    """A code cleaned for comparison: trimmed; ICD-10-CM dotted; CPT/HCPCS upper-case."""
    if system == ICD10CM:
        return normalize_icd10(code)
    if system in (CPT, HCPCS):
        return code.strip().upper()
    return code.strip()


def codings(concept: Any) -> tuple[Coding, ...]:
    """Canonical Codings of a CodeableConcept (or a list of them); codings without a code are dropped."""
    if not concept:
        return ()
    if isinstance(concept, list):
        out: list[Coding] = []
        for item in concept:
            out.extend(codings(item))
        return tuple(out)
    raw = concept.get("coding")
    if not raw:
        return ()
    result = []
    for c in raw:
        code = c.get("code")
        if not isinstance(code, str):
            continue
        system, display = c.get("system"), c.get("display")
        try:
            hit = _coding_cache.get((system, code, display))
        except TypeError:  # an unhashable system/display: odd data, not cached
            hit = None
        if hit is None:
            hit = _make_coding(system, code, display)
            if hit is None:
                continue
        result.append(hit)
    return tuple(result)


_coding_cache: dict[tuple[Any, str, Any], Coding] = {}


def _make_coding(system: Any, code: str, display: Any) -> Coding | None:
    """A canonical Coding (memoised: the same codes recur across patients); None for a blank code."""
    if not code.strip():
        return None
    canonical = canonical_system(system) if isinstance(system, str) else ""
    coding = Coding(canonical, normalize_code(canonical, code), display if isinstance(display, str) else "")
    if len(_coding_cache) < 50_000 and isinstance(system, str | None) and isinstance(display, str | None):
        _coding_cache[(system, code, display)] = coding
    return coding


def codes_in(concept: Any, system: str) -> list[str]:
    """The codes of `system` in a CodeableConcept or a list of them."""
    return [c.code for c in codings(concept) if c.system == system]
