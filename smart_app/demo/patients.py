"""Building blocks of the demo population: the practice's practitioners, a clock anchored on the current
month in the practice time zone, and PatientBuilder, which writes one patient's resources (following
docs/fhir-conventions.md) as a transaction Bundle of conditional creates on demo identifiers.
"""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from rules.month import Month, zone

DEMO_SYSTEM = "https://ccm-ready.org/fhir/demo"
PROGRAM_SYSTEM = "https://ccm-ready.org/fhir/CodeSystem/care-program"
ACTIVITY_SYSTEM = "https://ccm-ready.org/fhir/CodeSystem/care-activity"
DISCLOSURE_URL = "https://ccm-ready.org/fhir/StructureDefinition/ccm-disclosure"
DISCLOSURE_SYSTEM = "https://ccm-ready.org/fhir/CodeSystem/ccm-disclosure"
METHOD_URL = "https://ccm-ready.org/fhir/StructureDefinition/consent-method"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
SNOMED = "http://snomed.info/sct"
CPT = "http://www.ama-assn.org/go/cpt"
HCPCS = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
UCUM = "http://unitsofmeasure.org"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
HTEST = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "HTEST",
         "display": "test health data"}
DISCLOSURES = ("ccm-available", "cost-sharing", "one-practitioner", "right-to-stop")


_UUID_NS = uuid.UUID("0b5c7a7e-5d1f-4a8e-9f3e-2c6a1d4b8e10")


@dataclass(frozen=True)
class Practitioner:
    key: str
    given: str
    family: str
    prefix: str = ""
    qualification: str = ""


DR_OKAFOR = Practitioner("dr-okafor", "Maya", "Okafor", "Dr.", "MD")  # the billing practitioner
RN_RIVERA = Practitioner("rn-rivera", "Sam", "Rivera", "", "RN")  # clinical staff
DR_CHEN = Practitioner("dr-chen", "Lee", "Chen", "Dr.", "MD")  # another practice's physician
DR_NAIR = Practitioner("dr-nair", "Priya", "Nair", "Dr.", "MD")  # nephrologist (ESRD monthly service)


# ---------------------------------------------------------------------------------------------
# Time: everything is placed relative to "now" in the practice time zone.


@dataclass(frozen=True)
class Clock:
    now: datetime  # aware, in the practice zone
    tz: ZoneInfo

    @classmethod
    def at(cls, now: datetime | None, tz: str) -> Clock:
        zi = zone(tz)
        assert isinstance(zi, ZoneInfo)
        moment = (now or datetime.now(zi)).astimezone(zi)
        return cls(moment, zi)

    @property
    def month(self) -> Month:
        return Month.of(self.now)

    def this_month(self, frac: float) -> datetime:
        """A moment in this month, `frac` (0..1) of the way from the 1st to now (at least one day in).

        Early in a month the window is the first day, so some moments may lie a few hours ahead.
        """
        start, end = (b.astimezone(UTC) for b in self.month.bounds(self.tz))
        stop = min(max(self.now.astimezone(UTC), start + timedelta(days=1)), end - timedelta(hours=1))
        moment = start + (stop - start) * frac  # in UTC: no wall-clock gaps at DST changes
        return moment.replace(second=0, microsecond=0).astimezone(self.tz)

    def months_ago(self, months: int, day: int = 10, hour: int = 10) -> datetime:
        m = self.month.shift(-months)
        return datetime(m.year, m.month, min(day, m.last_day.day), hour, tzinfo=self.tz)


def later(moment: datetime, minutes: int) -> datetime:
    """`minutes` of elapsed time after `moment` (not wall-clock time), in the same zone."""
    return (moment.astimezone(UTC) + timedelta(minutes=minutes)).astimezone(moment.tzinfo)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


# ---------------------------------------------------------------------------------------------
# Building one patient's Bundle.


def demo_identifier(key: str) -> dict[str, str]:
    """The identifier every demo resource carries (and is conditionally created on)."""
    return {"system": DEMO_SYSTEM, "value": key}


def _full_url(key: str) -> str:
    return f"urn:uuid:{uuid.uuid5(_UUID_NS, key)}"


def _concept(system: str, code: str, display: str = "") -> dict[str, Any]:
    coding = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return {"coding": [coding], **({"text": display} if display else {})}


class PatientBuilder:
    """Collects one patient's resources as transaction entries with conditional creates."""

    def __init__(self, key: str, clock: Clock, given: str, family: str, gender: str, birth: date,
                 gp: Practitioner = DR_OKAFOR, deceased: datetime | None = None) -> None:
        self.key = key
        self.clock = clock
        self.entries: list[dict[str, Any]] = []
        self._practitioners: dict[str, str] = {}
        self._counter = 0
        patient: dict[str, Any] = {
            "resourceType": "Patient",
            "meta": {"security": [HTEST]},
            "name": [{"use": "official", "family": family, "given": [given]}],
            "gender": gender,
            "birthDate": birth.isoformat(),
            "generalPractitioner": [{"reference": self.practitioner(gp)}],
        }
        if deceased is not None:
            patient["deceasedDateTime"] = _iso(deceased)
        self.patient_url = self._add(patient, key)

    # -- plumbing ---------------------------------------------------------------------------
    def _add(self, resource: dict[str, Any], ident: str) -> str:
        resource.setdefault("identifier", []).append(demo_identifier(ident))
        url = _full_url(ident)
        self.entries.append({
            "fullUrl": url,
            "resource": resource,
            "request": {"method": "POST", "url": resource["resourceType"],
                        "ifNoneExist": f"identifier={DEMO_SYSTEM}|{ident}"},
        })
        return url

    def _next(self, kind: str) -> str:
        self._counter += 1
        return f"{self.key}.{kind}-{self._counter}"

    @property
    def subject(self) -> dict[str, str]:
        return {"reference": self.patient_url}

    def practitioner(self, p: Practitioner) -> str:
        """The bundle-local reference to `p` (shared across patients through its identifier)."""
        if p.key not in self._practitioners:
            res: dict[str, Any] = {
                "resourceType": "Practitioner",
                "meta": {"security": [HTEST]},
                "name": [{"use": "official", "family": p.family, "given": [p.given],
                          **({"prefix": [p.prefix]} if p.prefix else {})}],
            }
            if p.qualification:
                res["qualification"] = [{"code": {"text": p.qualification}}]
            self._practitioners[p.key] = self._add(res, f"practitioner.{p.key}")
        return self._practitioners[p.key]

    # -- clinical content ---------------------------------------------------------------------
    def condition(self, system: str, code: str, display: str, onset: datetime | None = None,
                  status: str = "active") -> str:
        onset = onset or self.clock.months_ago(30)
        return self._add({
            "resourceType": "Condition",
            "clinicalStatus": _concept("http://terminology.hl7.org/CodeSystem/condition-clinical", status),
            "verificationStatus": _concept(
                "http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed"),
            "category": [_concept("http://terminology.hl7.org/CodeSystem/condition-category",
                                  "problem-list-item", "Problem List Item")],
            "code": _concept(system, code, display),
            "subject": self.subject,
            "onsetDateTime": _iso(onset),
        }, self._next("condition"))

    def consent(self, obtained: datetime, status: str = "active", practitioner: Practitioner = DR_OKAFOR,
                performer: Practitioner = RN_RIVERA, stopped: datetime | None = None,
                method: str = "verbal") -> str:
        period: dict[str, str] = {"start": _iso(obtained)}
        if stopped is not None:
            period["end"] = _iso(stopped)
        return self._add({
            "resourceType": "Consent",
            "extension": [
                *({"url": DISCLOSURE_URL, "valueCoding": {"system": DISCLOSURE_SYSTEM, "code": d}}
                  for d in DISCLOSURES),
                {"url": METHOD_URL, "valueCode": method},
            ],
            "status": status,
            "scope": _concept("http://terminology.hl7.org/CodeSystem/consentscope", "treatment", "Treatment"),
            "category": [_concept(PROGRAM_SYSTEM, "ccm", "Chronic care management"),
                         _concept("http://loinc.org", "59284-0", "Consent Document")],
            "patient": self.subject,
            "dateTime": _iso(obtained),
            "performer": [{"reference": self.practitioner(performer)}],
            "policyRule": {"text": "Medicare chronic care management consent"},
            "provision": {
                "type": "deny" if status == "rejected" else "permit",
                "period": period,
                "actor": [{"role": _concept(PARTICIPATION, "PPRF", "primary performer"),
                           "reference": {"reference": self.practitioner(practitioner)}}],
            },
        }, self._next("consent"))

    def care_plan(self, start: datetime, author: Practitioner = DR_OKAFOR) -> str:
        return self._add({
            "resourceType": "CarePlan",
            "status": "active",
            "intent": "plan",
            "category": [_concept(PROGRAM_SYSTEM, "ccm", "Chronic care management")],
            "title": "Comprehensive CCM care plan",
            "description": "Problem list, measurable goals, medication management, symptom management, "
                           "planned interventions and who is responsible, community resources.",
            "subject": self.subject,
            "period": {"start": _iso(start)},
            "created": _iso(start),
            "author": {"reference": self.practitioner(author)},
        }, self._next("careplan"))

    def share_plan(self, plan: str, at: datetime, sender: Practitioner = RN_RIVERA) -> str:
        """A completed Communication recording that the patient got a copy of the care plan."""
        return self._add({
            "resourceType": "Communication",
            "status": "completed",
            "subject": self.subject,
            "about": [{"reference": plan}],
            "sent": _iso(at),
            "recipient": [self.subject],
            "sender": {"reference": self.practitioner(sender)},
            "payload": [{"contentString": "Copy of the CCM care plan sent through the patient portal."}],
        }, self._next("shared"))

    def visit(self, at: datetime, code: str = "99214", practitioner: Practitioner = DR_OKAFOR) -> str:
        """A face-to-face office visit (E/M) that can initiate CCM."""
        return self._add({
            "resourceType": "Encounter",
            "status": "finished",
            "class": {"system": ACT_CODE, "code": "AMB", "display": "ambulatory"},
            "type": [_concept(CPT, code, "Office visit, established patient")],
            "subject": self.subject,
            "participant": [{"individual": {"reference": self.practitioner(practitioner)}}],
            "period": {"start": _iso(at), "end": _iso(later(at, 30))},
        }, self._next("visit"))

    def inpatient(self, start: datetime, end: datetime) -> str:
        return self._add({
            "resourceType": "Encounter",
            "status": "finished",
            "class": {"system": ACT_CODE, "code": "IMP", "display": "inpatient encounter"},
            "subject": self.subject,
            "period": {"start": _iso(start), "end": _iso(end)},
        }, self._next("stay"))

    def time_entry(self, start: datetime, minutes: int, performer: Practitioner = RN_RIVERA,
                   activity: str = "care-coordination", note: str | None = "", program: str = "ccm") -> str:
        """Logged care-management time (Encounter with period.end) and, unless note is None, its Task."""
        end = later(start, minutes)
        who = {"reference": self.practitioner(performer)}
        encounter = self._add({
            "resourceType": "Encounter",
            "status": "finished",
            "class": {"system": ACT_CODE, "code": "VR", "display": "virtual"},
            "type": [_concept(PROGRAM_SYSTEM, program, program.upper() + " time")],
            "subject": self.subject,
            "participant": [{"individual": who}],
            "period": {"start": _iso(start), "end": _iso(end)},
            "length": {"value": minutes, "unit": "min", "system": UCUM, "code": "min"},
        }, self._next("time"))
        if note is not None:
            task: dict[str, Any] = {
                "resourceType": "Task",
                "status": "completed",
                "intent": "order",
                "code": _concept(ACTIVITY_SYSTEM, activity),
                "for": self.subject,
                "encounter": {"reference": encounter},
                "authoredOn": _iso(end),
                "executionPeriod": {"start": _iso(start), "end": _iso(end)},
                "owner": who,
            }
            if note:
                task["note"] = [{"text": note, "time": _iso(end)}]
            self._add(task, self._next("task"))
        return encounter

    def attestation(self, kind: str, at: datetime, practitioner: Practitioner = DR_OKAFOR) -> str:
        """A practitioner statement: risk-attestation, mdm-moderate or mdm-high."""
        return self._add({
            "resourceType": "Task",
            "status": "completed",
            "intent": "order",
            "code": _concept(ACTIVITY_SYSTEM, kind),
            "for": self.subject,
            "authoredOn": _iso(at),
            "executionPeriod": {"start": _iso(at)},
            "owner": {"reference": self.practitioner(practitioner)},
        }, self._next("attestation"))

    def charge(self, code: str, at: datetime, performer: Practitioner = DR_OKAFOR, status: str = "billed",
               system: str = CPT) -> str:
        """A service already billed for the patient (ChargeItem)."""
        return self._add({
            "resourceType": "ChargeItem",
            "status": status,
            "code": _concept(system, code),
            "subject": self.subject,
            "occurrenceDateTime": _iso(at),
            "performer": [{"actor": {"reference": self.practitioner(performer)}}],
            "quantity": {"value": 1},
        }, self._next("charge"))

    def bundle(self) -> dict[str, Any]:
        return {"resourceType": "Bundle", "type": "transaction", "entry": copy.deepcopy(self.entries)}
