"""Domain records: the facts the rules read. Frozen, plain, no FHIR library types.

Every record carries `id` as a FHIR-style reference ("Condition/123") so that findings can
cite their evidence. Datetimes are timezone-aware; readers attach UTC when a source omits it.
"""

from __future__ import annotations

from dataclasses import field
from datetime import date, datetime

from rules.record_type import record

# Programs whose minutes are logged (our care-program code system).
PROGRAMS = ("ccm", "pcm", "rpm", "rtm", "bhi", "tcm", "apcm")


@record
class Coding:
    """One code. `system` is canonicalised by the reader (http/https, trailing slash)."""

    system: str
    code: str
    display: str = ""


@record
class PatientRecord:
    """The patient: name for display, birth and death dates, general practitioners."""

    id: str  # "Patient/123"
    name: str = ""  # display only; never logged
    birth_date: date | None = None
    deceased: bool = False
    deceased_at: datetime | None = None
    general_practitioners: tuple[str, ...] = ()  # "Practitioner/..." references


@record
class ConditionRecord:
    """A Condition: its codings, statuses, onset and abatement."""

    id: str
    codings: tuple[Coding, ...]
    text: str = ""
    clinical_status: str | None = None  # active | recurrence | relapse | inactive | remission | resolved
    verification_status: str | None = None  # confirmed | refuted | entered-in-error | ...
    onset: datetime | None = None
    recorded: datetime | None = None  # recordedDate, read when no onset date is given
    abatement: datetime | None = None  # earliest instant the condition is known to have abated
    abated: bool = False  # abated (abatement[x] present), even when no date can be derived
    categories: tuple[str, ...] = ()  # HL7/US Core codes: problem-list-item, encounter-diagnosis, ...


@record
class ConsentRecord:
    """A Consent as recorded (the timeline of events is built by rules.consent)."""

    id: str
    # active (given) | rejected (declined) | inactive (stopped) | draft | proposed | entered-in-error
    status: str
    programs: tuple[str, ...] = ("ccm",)
    obtained_at: datetime | None = None  # Consent.dateTime
    billing_practitioner: str | None = None  # provision.actor with role PPRF
    obtained_by: str | None = None  # Consent.performer (who obtained it)
    stop_date: datetime | None = None  # provision.period.end as stated (the stop date when inactive)
    method: str | None = None  # verbal | written
    disclosures: frozenset[str] = frozenset()  # see rules.consent.DISCLOSURES
    period_start: datetime | None = None  # provision.period.start
    period_end: datetime | None = None  # provision.period.end, exclusive (a date end covers its whole day)
    provision_type: str | None = None  # provision.type: permit | deny (None: not stated, read as permit)
    # When `dateTime` or `provision.period.start` is a date without a time of day: the end of the day (or
    # month, or year) it names, the latest moment the consent could have been given.
    given_by: datetime | None = None


@record
class CarePlanRecord:
    """A CarePlan: status, intent, programs, period, authorship and review dates."""

    id: str
    status: str  # active | completed | draft | revoked | ...
    programs: tuple[str, ...] = ()
    period_start: datetime | None = None
    period_end: datetime | None = None
    created: datetime | None = None
    author: str | None = None
    last_reviewed: datetime | None = None  # latest review/revision we know of (meta.lastUpdated or extension)
    shared_with_patient_at: datetime | None = None  # from a Communication about the plan (issue 7)
    intent: str = "plan"  # plan | order count; proposal (a CDS suggestion), option, directive do not


@record
class VisitRecord:
    """A face-to-face Encounter: a CCM initiating-visit candidate (when CPT/HCPCS-coded), and time inside it
    is the visit's own."""

    id: str
    status: str
    codings: tuple[Coding, ...]
    start: datetime | None = None
    end: datetime | None = None
    participants: tuple[str, ...] = ()


@record
class TimeEntry:
    """Logged care-management time: one Encounter tagged with a care program, plus its Tasks."""

    id: str  # "Encounter/..."
    status: str  # finished counts; entered-in-error and cancelled never count
    program: str  # one of PROGRAMS
    start: datetime
    end: datetime  # start + minutes when the source has only `length`
    minutes: float  # Encounter.length (min) when present, else the period's duration
    performer: str | None = None  # "Practitioner/..." or "PractitionerRole/..."
    notes: tuple[str, ...] = ()  # Task.note texts (the documentation)
    activities: tuple[Coding, ...] = ()  # Task.code
    task_ids: tuple[str, ...] = ()
    codings: tuple[Coding, ...] = ()  # CPT/HCPCS codes on it (a TCM/RPM/BHI code makes it that program's)


@record
class Attestation:
    """A practitioner statement recorded as a completed Task (risk attestation, MDM level)."""

    id: str
    kind: str  # "risk-attestation" | "mdm-moderate" | "mdm-high" | "mdm-low"
    practitioner: str | None
    at: datetime | None


@record
class BilledService:
    """A ChargeItem: a service already billed (or billable) for the patient."""

    id: str
    code: str  # CPT / HCPCS code
    status: str  # billable | billed | ...
    start: datetime | None
    end: datetime | None
    performer: str | None = None
    units: int = 1


@record
class InpatientStay:
    """A hospital or SNF inpatient Encounter: CCM minutes inside it never count."""

    id: str
    start: datetime | None
    end: datetime | None  # None = still admitted


@record
class Skipped:
    """A resource the reader could not use, and why."""

    resource: str  # "Type/ID" or "#index"
    reason: str


@record
class PatientFacts:
    """Everything known about one patient; the evaluator picks the month itself."""

    patient: PatientRecord
    conditions: tuple[ConditionRecord, ...] = ()
    consents: tuple[ConsentRecord, ...] = ()
    care_plans: tuple[CarePlanRecord, ...] = ()
    visits: tuple[VisitRecord, ...] = ()
    time_entries: tuple[TimeEntry, ...] = ()
    attestations: tuple[Attestation, ...] = ()
    billed: tuple[BilledService, ...] = ()
    stays: tuple[InpatientStay, ...] = ()
    skipped: tuple[Skipped, ...] = field(default=())
    # Other keys a known person goes by (PractitionerRole, NPI) -> their one person key (rules.people).
    aliases: tuple[tuple[str, str], ...] = ()
