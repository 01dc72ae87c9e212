"""The demo population: synthetic patients as FHIR R4 transaction Bundles, one per patient.

Every resource carries an identifier `https://ccm-ready.org/fhir/demo|<key>` and is created with
`request.ifNoneExist` on it, so seeding twice changes nothing. Dates are relative to the current
month in the practice time zone, so the demo always shows this month. `seed()` posts the bundles
and returns a manifest: one entry per patient with its server id, a label and the expected state.

Why over 400 lines: mostly data (the demo's crafted cases, one small builder call each).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from rules.month import Month, zone
from smart_app.demo.patients import (
    DEMO_SYSTEM,
    DR_CHEN,
    DR_NAIR,
    DR_OKAFOR,
    HCPCS,
    ICD10,
    PROGRAM_SYSTEM,
    RN_RIVERA,
    SNOMED,
    Clock,
    PatientBuilder,
    Practitioner,
    demo_identifier,
)
from smart_app.fhir.client import FhirClient, FhirError
from smart_app.readiness.options import practice_now

__all__ = [
    "DEMO_SYSTEM", "PROGRAM_SYSTEM", "Clock", "DemoCase", "Manifest", "SeedError", "SeededPatient",
    "demo_cases", "read_manifest", "seed", "seed_demo", "write_manifest",
]

DEMO_DATA = Path(__file__).resolve().parent / "data"


@dataclass(frozen=True)
class DemoCase:
    """One demo patient: its transaction Bundle and what the app should say about it this month."""

    key: str
    label: str
    expected: str  # ready | not-yet | blocked | not-eligible
    why: str
    source: str  # crafted | carebundle | synthea
    bundle: dict[str, Any]


@dataclass(frozen=True)
class SeededPatient:
    key: str
    id: str  # server id of the Patient
    name: str
    label: str
    expected: str
    why: str
    source: str


@dataclass(frozen=True)
class Manifest:
    fhir_base: str
    month: str
    timezone: str
    seeded_at: str
    patients: tuple[SeededPatient, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "patients": [asdict(p) for p in self.patients]}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Manifest:
        return cls(
            fhir_base=obj["fhir_base"], month=obj["month"], timezone=obj["timezone"],
            seeded_at=obj.get("seeded_at", ""),
            patients=tuple(SeededPatient(**p) for p in obj.get("patients", [])),
        )


class SeedError(RuntimeError):
    """The FHIR server refused a demo bundle."""


# ---------------------------------------------------------------------------------------------
# The crafted cases.

_GOOD_NOTES = (
    "Called patient: reviewed home BP log (avg 136/82); reinforced low-salt diet; no changes.",
    "Medication reconciliation after pharmacy refill; confirmed metformin 500 mg twice daily adherence.",
    "Coordinated cardiology follow-up for 14th; sent updated care plan to cardiology.",
    "Reviewed glucose readings (fasting 118-142); patient reports no hypoglycaemia; goals unchanged.",
    "Arranged home oxygen supplier visit; educated caregiver on inhaler technique.",
)
_ACTIVITIES = ("patient-call", "medication-reconciliation", "care-coordination", "care-plan-review",
               "patient-education")

CONDITION_SETS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "dm-htn": ((ICD10, "E11.9", "Type 2 diabetes mellitus without complications"),
               (ICD10, "I10", "Essential (primary) hypertension")),
    "hf-ckd": ((ICD10, "I50.22", "Chronic systolic (congestive) heart failure"),
               (ICD10, "N18.32", "Chronic kidney disease, stage 3b"),
               (ICD10, "I10", "Essential (primary) hypertension")),
    "copd-dep": ((ICD10, "J44.9", "Chronic obstructive pulmonary disease, unspecified"),
                 (ICD10, "F33.1", "Major depressive disorder, recurrent, moderate")),
    "snomed": ((SNOMED, "44054006", "Diabetes mellitus type 2"),
               (SNOMED, "84114007", "Heart failure"),
               (SNOMED, "49436004", "Atrial fibrillation")),
    "af-oa": ((ICD10, "I48.91", "Unspecified atrial fibrillation"),
              (ICD10, "M17.11", "Unilateral primary osteoarthritis, right knee"),
              (ICD10, "E78.5", "Hyperlipidemia, unspecified")),
    "htn-only": ((ICD10, "I10", "Essential (primary) hypertension"),),
}


@dataclass(frozen=True)
class _Spec:
    key: str
    given: str
    family: str
    gender: str
    born: int
    label: str
    expected: str
    why: str
    build: Callable[[PatientBuilder, Clock], None]
    conditions: str = "dm-htn"
    deceased_months_ago: int | None = None


def _enrol(b: PatientBuilder, c: Clock, *, consent: bool = True, care_plan: bool = True, visit: bool = True,
           attest: bool = True, consent_at: datetime | None = None, **consent_kw: Any) -> datetime:
    """The usual CCM set-up: initiating visit, consent, care plan, risk attestation. Returns consent time."""
    consented = consent_at or c.months_ago(3, day=12)
    if visit:
        b.visit(consented - timedelta(days=35))
    if consent:
        b.consent(consented, **consent_kw)
    if care_plan:
        b.share_plan(b.care_plan(consented), consented + timedelta(days=1))
    if attest:
        b.attestation("risk-attestation", consented)
    return consented


def _log(b: PatientBuilder, c: Clock, minutes: Sequence[int], performer: Practitioner = RN_RIVERA,
         notes: Sequence[str | None] | None = None, start: float = 0.1, step: float = 0.15) -> None:
    """Time entries spread over this month (non-overlapping), each with a documented Task."""
    for i, m in enumerate(minutes):
        note = notes[i] if notes is not None else _GOOD_NOTES[i % len(_GOOD_NOTES)]
        b.time_entry(c.this_month(start + step * i), m, performer, _ACTIVITIES[i % len(_ACTIVITIES)], note)


def _ready_staff(b: PatientBuilder, c: Clock) -> None:
    _enrol(b, c)
    _log(b, c, [15, 10])


def _ready_cap(b: PatientBuilder, c: Clock) -> None:
    _enrol(b, c)
    _log(b, c, [20, 25, 20])


def _ready_practitioner(b: PatientBuilder, c: Clock) -> None:
    _enrol(b, c)
    _log(b, c, [30, 32, 30], performer=DR_OKAFOR)


def _ready_complex(b: PatientBuilder, c: Clock) -> None:
    _enrol(b, c)
    _log(b, c, [30, 35, 30], step=0.12)
    b.attestation("mdm-high", c.this_month(0.5))


def _not_yet(b: PatientBuilder, c: Clock) -> None:
    _enrol(b, c)
    _log(b, c, [14])


def _no_consent(b: PatientBuilder, c: Clock) -> None:
    _enrol(b, c, consent=False)
    _log(b, c, [30])


def _declined(b: PatientBuilder, c: Clock) -> None:
    _enrol(b, c, status="rejected")
    _log(b, c, [25])


def _stopped(b: PatientBuilder, c: Clock) -> None:
    _enrol(b, c, consent_at=c.months_ago(8), status="inactive", stopped=c.months_ago(1, day=18))
    _log(b, c, [25])


def _other_practitioner_consent(b: PatientBuilder, c: Clock) -> None:
    _enrol(b, c, practitioner=DR_CHEN)
    _log(b, c, [25])


def _no_care_plan(b: PatientBuilder, c: Clock) -> None:
    _enrol(b, c, care_plan=False)
    _log(b, c, [25])


def _no_visit(b: PatientBuilder, c: Clock) -> None:
    _enrol(b, c, visit=False)
    b.visit(c.months_ago(22, day=3))  # last seen almost two years before consent
    _log(b, c, [25])


def _pcm_same(b: PatientBuilder, c: Clock) -> None:
    _enrol(b, c)
    _log(b, c, [25])
    b.charge("99426", c.this_month(0.05))


def _cpo(b: PatientBuilder, c: Clock) -> None:
    _enrol(b, c)
    _log(b, c, [25])
    b.charge("G0181", c.this_month(0.05), system=HCPCS)


def _esrd(b: PatientBuilder, c: Clock) -> None:
    _enrol(b, c)
    _log(b, c, [25])
    b.charge("90960", c.this_month(0.05), performer=DR_NAIR)


def _billed_elsewhere(b: PatientBuilder, c: Clock) -> None:
    _enrol(b, c)
    _log(b, c, [25])
    b.charge("99490", c.this_month(0.05), performer=DR_CHEN)


def _rpm(b: PatientBuilder, c: Clock) -> None:
    _enrol(b, c)
    _log(b, c, [12, 13])
    b.time_entry(c.this_month(0.6), 20, RN_RIVERA, "patient-call",
                 "RPM: reviewed 18 days of BP uploads; called patient about two readings above 160/100.",
                 program="rpm")
    b.charge("99457", c.this_month(0.65))


def _tcm(b: PatientBuilder, c: Clock) -> None:
    _enrol(b, c)
    stay_end = c.months_ago(1, day=27, hour=11)
    b.inpatient(stay_end - timedelta(days=3), stay_end)
    b.charge("99495", c.this_month(0.05))
    _log(b, c, [15, 15])


def _vague(b: PatientBuilder, c: Clock) -> None:
    _enrol(b, c)
    _log(b, c, [15, 10], notes=["followed up", "followed up"])


def _no_notes(b: PatientBuilder, c: Clock) -> None:
    _enrol(b, c)
    _log(b, c, [15, 10], notes=[None, ""])


def _mid_month(b: PatientBuilder, c: Clock) -> None:
    consented = c.this_month(0.5)
    b.visit(c.months_ago(2, day=5))
    b.time_entry(c.this_month(0.2), 20, RN_RIVERA, "patient-call",
                 "Introduced CCM; discussed goals; patient wants to think about it.")
    b.consent(consented)
    b.share_plan(b.care_plan(consented), consented + timedelta(minutes=50))
    b.attestation("risk-attestation", consented)
    b.time_entry(c.this_month(0.7), 15, RN_RIVERA, "care-plan-review",
                 "Built care plan with patient after verbal consent; sent copy to patient portal.")


def _one_condition(b: PatientBuilder, c: Clock) -> None:
    _enrol(b, c)
    _log(b, c, [25])


def _deceased(b: PatientBuilder, c: Clock) -> None:
    _enrol(b, c, consent_at=c.months_ago(6))
    b.time_entry(c.months_ago(1, day=3), 25, RN_RIVERA, "patient-call",
                 "Spoke with daughter about hospice options.")


SPECS: tuple[_Spec, ...] = (
    _Spec("ready-staff", "Alma", "Reyes", "female", 1950, "Ready: 25 staff minutes",
          "ready", "25 clinical-staff minutes this month: 99490.", _ready_staff),
    _Spec("ready-cap", "Bernard", "Okoye", "male", 1946, "Ready: 65 staff minutes (cap)",
          "ready", "65 staff minutes: 99490 + 2 × 99439 (99439 is capped at 2).", _ready_cap, "hf-ckd"),
    _Spec("ready-practitioner", "Clara", "Lindqvist", "female", 1949, "Ready: practitioner time",
          "ready", "92 minutes by Dr. Okafor personally: 99491 + 2 × 99437 (pays more than the staff track).",
          _ready_practitioner, "snomed"),
    _Spec("ready-complex", "Desmond", "Achterberg", "male", 1944, "Ready: complex CCM",
          "ready", "95 staff minutes and high-complexity MDM attested this month: 99487 + 99489.",
          _ready_complex, "hf-ckd"),
    _Spec("not-yet", "Esther", "Mbeki", "female", 1952, "Not yet: 14 of 20 minutes",
          "not-yet", "Only 14 staff minutes so far; 6 more reach 99490.", _not_yet),
    _Spec("no-consent", "Farid", "Haddad", "male", 1951, "Blocked: no consent",
          "blocked", "Time is logged but no CCM consent is on file.", _no_consent, "copd-dep"),
    _Spec("consent-declined", "Greta", "Johansson", "female", 1947, "Blocked: consent declined",
          "blocked", "The patient declined CCM (Consent rejected).", _declined),
    _Spec("consent-stopped", "Hector", "Ruiz", "male", 1945, "Blocked: consent stopped last month",
          "blocked", "The patient stopped CCM last month; it ended at that month's end.", _stopped),
    _Spec("consent-other", "Ines", "Kowalczyk", "female", 1953, "Blocked: consent names another practitioner",
          "blocked", "The consent names Dr. Chen, who never saw the patient; Dr. Okafor saw the patient and "
          "her nurse logs the time. As Dr. Chen: no initiating visit; as Dr. Okafor: the consent names "
          "someone else.",
          _other_practitioner_consent),
    _Spec("no-care-plan", "Jonah", "Abernathy", "male", 1948, "Blocked: no care plan",
          "blocked", "No active CCM care plan in effect this month.", _no_care_plan, "af-oa"),
    _Spec("no-visit", "Keiko", "Tanaka", "female", 1950, "Blocked: no initiating visit",
          "blocked", "Last seen by the billing practitioner almost two years before CCM started.", _no_visit),
    _Spec("pcm-same", "Luis", "Fernandes", "male", 1949, "Blocked: PCM billed by the same practitioner",
          "blocked", "99426 (PCM) billed this month by Dr. Okafor: CCM and PCM by one practitioner conflict.",
          _pcm_same),
    _Spec("cpo", "Marta", "Novak", "female", 1943, "Blocked: home-health care plan oversight",
          "blocked", "G0181 billed this month: CCM is not paid alongside care plan oversight.", _cpo,
          "hf-ckd"),
    _Spec("esrd", "Nikolai", "Petrov", "male", 1947, "Blocked: ESRD monthly service",
          "blocked", "90960 (ESRD monthly service) billed this month by Dr. Nair.", _esrd,
          "hf-ckd"),
    _Spec("billed-elsewhere", "Olga", "Sandoval", "female", 1951,
          "Blocked: CCM billed by another practitioner",
          "blocked", "Dr. Chen already billed 99490 this month; only one practitioner may bill CCM.",
          _billed_elsewhere),
    _Spec("rpm-and-ccm", "Pavel", "Dvorak", "male", 1946, "Ready: RPM and CCM",
          "ready", "25 CCM minutes plus 20 separate RPM minutes: both can be billed.", _rpm),
    _Spec("tcm-and-ccm", "Quinn", "Adeyemi", "female", 1944, "Ready: TCM in the same month",
          "ready", "Discharged last month, TCM billed this month, 30 separate CCM minutes.", _tcm,
          "copd-dep"),
    _Spec("vague-notes", "Rafael", "Moreau", "male", 1952, "Ready with warnings: vague notes",
          "ready", "25 minutes, but the notes only say \"followed up\".", _vague),
    _Spec("missing-notes", "Sofia", "Galli", "female", 1950, "Ready with warnings: missing notes",
          "ready", "25 minutes, but one entry has no Task and the other an empty note.", _no_notes),
    _Spec("consent-mid-month", "Tomas", "Eriksen", "male", 1948, "Not yet: consent mid-month",
          "not-yet", "Consent given mid-month: the 20 minutes before it do not count; 15 after it do.",
          _mid_month),
    _Spec("one-condition", "Uma", "Raman", "female", 1955, "Not eligible: one chronic condition",
          "not-eligible", "Only one chronic condition (hypertension); CCM needs two.", _one_condition,
          "htn-only"),
    _Spec("deceased", "Victor", "Lang", "male", 1938, "Not eligible: died last month",
          "not-eligible", "The patient died last month.", _deceased, deceased_months_ago=1),
)


@dataclass(frozen=True)
class CopiedSpec:
    """A bundle from demo_data/ loaded as it is (identifiers and conditional creates added)."""

    key: str
    file: str
    label: str
    expected: str
    why: str
    source: str


COPIED: tuple[CopiedSpec, ...] = (
    CopiedSpec("carebundle-diabetes", "carebundle/type2_diabetes-3101-0003.json",
               "Carebundle: diabetes and hypertension", "blocked",
               "Two chronic conditions (ICD-10-CM E11.9, I10) but no CCM consent.", "carebundle"),
    CopiedSpec("carebundle-ckd", "carebundle/ckd_stage3-3103-0004.json",
               "Carebundle: CKD 3b and hypertension", "blocked",
               "Two chronic conditions (ICD-10-CM N18.32, I10) but no CCM consent.", "carebundle"),
    CopiedSpec("carebundle-anaemia", "carebundle/anaemia-3104-0004.json",
               "Carebundle: iron-deficiency anaemia only", "not-eligible",
               "One chronic condition (ICD-10-CM D50.9).", "carebundle"),
    CopiedSpec("carebundle-healthy", "carebundle/healthy-3105-0000.json",
               "Carebundle: no conditions", "not-eligible", "No conditions on the problem list.",
               "carebundle"),
    CopiedSpec("synthea-htn", "synthea/Edward_Gulgowski_43481611-2459-44f5-ab20-4b142dac160f.json",
               "Synthea: hypertension and obesity (SNOMED)", "blocked",
               "SNOMED-coded hypertension and obesity (BMI 30+) count as two chronic conditions, but "
               "there is no CCM consent, care plan or billing practitioner.", "synthea"),
    CopiedSpec("synthea-none", "synthea/Michael_Kihn_376f9fc0-ecd8-468a-ad93-3534a14561a3.json",
               "Synthea: no chronic condition (SNOMED)", "not-eligible",
               "Only a resolved acute pharyngitis on file.", "synthea"),
)


def _crafted(spec: _Spec, clock: Clock) -> DemoCase:
    deceased = (clock.months_ago(spec.deceased_months_ago, day=9, hour=14)
                if spec.deceased_months_ago is not None else None)
    b = PatientBuilder(spec.key, clock, spec.given, spec.family, spec.gender, date(spec.born, 3, 14),
                       deceased=deceased)
    for system, code, display in CONDITION_SETS[spec.conditions]:
        b.condition(system, code, display)
    spec.build(b, clock)
    return DemoCase(spec.key, spec.label, spec.expected, spec.why, "crafted", b.bundle())


def copied_bundle(key: str, bundle: dict[str, Any]) -> dict[str, Any]:
    """A copy of a transaction Bundle whose every POST is a conditional create on a demo identifier."""
    out = copy.deepcopy(bundle)
    out["type"] = "transaction"
    for i, entry in enumerate(out.get("entry", [])):
        resource = entry.get("resource") or {}
        ident = key if resource.get("resourceType") == "Patient" else f"{key}.{i}"
        idents = resource.setdefault("identifier", [])
        if not isinstance(idents, list):
            continue
        idents.append(demo_identifier(ident))
        request = entry.setdefault("request", {"method": "POST", "url": resource.get("resourceType", "")})
        if request.get("method", "").upper() == "POST" and not request.get("ifNoneExist"):
            request["ifNoneExist"] = f"identifier={DEMO_SYSTEM}|{ident}"
    return out


def _copied(spec: CopiedSpec, data_dir: Path) -> DemoCase:
    path = data_dir / spec.file
    with path.open(encoding="utf-8") as fh:
        bundle = json.load(fh)
    return DemoCase(spec.key, spec.label, spec.expected, spec.why, spec.source,
                    copied_bundle(spec.key, bundle))


def demo_cases(now: datetime | None = None, tz: str = "UTC", data_dir: Path | None = None,
               include_copied: bool = True) -> list[DemoCase]:
    """Every demo patient, built for the month containing `now` (default: the current time) in `tz`."""
    clock = Clock.at(now, tz)
    cases = [_crafted(spec, clock) for spec in SPECS]
    if include_copied:
        cases += [_copied(spec, data_dir or DEMO_DATA) for spec in COPIED]
    return cases


def iter_resources(cases: Iterable[DemoCase]) -> Iterable[dict[str, Any]]:
    for case in cases:
        for entry in case.bundle.get("entry", []):
            yield entry["resource"]


# ---------------------------------------------------------------------------------------------
# Posting.


def _patient_id(response: dict[str, Any]) -> str:
    for entry in response.get("entry", []):
        resource = entry.get("resource") or {}
        if resource.get("resourceType") == "Patient" and resource.get("id"):
            return str(resource["id"])
        location = (entry.get("response") or {}).get("location", "")
        if location.startswith("Patient/"):
            return location.split("/")[1]
    raise SeedError("the transaction response names no Patient")


def _patient_name(bundle: dict[str, Any]) -> str:
    for entry in bundle.get("entry", []):
        resource = entry.get("resource") or {}
        if resource.get("resourceType") == "Patient":
            for name in resource.get("name", []):
                parts = [*name.get("given", []), name.get("family", "")]
                text = " ".join(p for p in parts if p)
                if text:
                    return text
    return ""


def seed(target: FhirClient | str, cases: Sequence[DemoCase], *, tz: str = "UTC",
         month: str | None = None) -> Manifest:
    """Load every case into the FHIR server (a client, or a base URL) and return the manifest.

    Each case is one transaction of conditional creates, so seeding again changes nothing.
    """
    client = target if isinstance(target, FhirClient) else FhirClient(target, timeout=60.0)
    patients = []
    for case in cases:
        try:
            response = client.transaction(case.bundle)
        except FhirError as exc:
            raise SeedError(f"the FHIR server refused demo patient {case.key!r}: {exc}") from exc
        patients.append(SeededPatient(case.key, _patient_id(response), _patient_name(case.bundle),
                                      case.label, case.expected, case.why, case.source))
    return Manifest(
        fhir_base=client.base,
        month=month or str(Month.of(practice_now(tz))),
        timezone=tz,
        seeded_at=datetime.now(zone("UTC")).isoformat(timespec="seconds"),
        patients=tuple(patients),
    )


def seed_demo(target: FhirClient | str, tz: str = "UTC", now: datetime | None = None,
              data_dir: Path | None = None) -> Manifest:
    """Build the demo population for this month (in `tz`) and load it."""
    clock = Clock.at(now, tz)
    return seed(target, demo_cases(clock.now, tz, data_dir), tz=tz, month=str(clock.month))


def write_manifest(path: Path, manifest: Manifest) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest.to_json(), indent=2), encoding="utf-8")
    tmp.replace(path)


def read_manifest(path: Path | str) -> Manifest:
    """Read a manifest written by write_manifest (ValueError when it is not one)."""
    try:
        with Path(path).open(encoding="utf-8") as fh:
            return Manifest.from_json(json.load(fh))
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not a demo manifest: {exc}") from exc
