"""The one verdict use case: a source of FHIR data + EvaluationOptions -> the Verdict every face renders.

Faces never call `read_facts` or `evaluate` themselves: the panel, CDS card and packet pass a
`ServerSource` (one batch round trip) or the resources they were given (`ResourceSource`); the CLI
and worklist pass resources read from files or a bulk export. Same source and options, same Verdict.
The app's own notes among the resources (the "note" write profile, for EHRs that take no Encounter or
Consent from an app) are read back here, for every face: a time entry or a consent stop recorded only
in a note counts on the worklist and in the CLI as it does on the panel.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import field, replace
from typing import TYPE_CHECKING, Any, Protocol

from fhir_mapping.reach import Reach
from fhir_mapping.reader import read_facts
from rules.evaluate import evaluate
from rules.month import Month, zone
from rules.packs import PolicyPack
from rules.record_type import record
from rules.records import PatientFacts, Skipped
from rules.verdict import Verdict
from smart_app.readiness.options import EvaluationOptions

if TYPE_CHECKING:  # the FHIR fetch (requests) is imported only by faces that read a server
    from smart_app.readiness.fetch import ReadinessClient


@record
class PatientMonth:
    """A verdict with what it was computed from: the facts, the resources and the Patient resource."""

    verdict: Verdict
    facts: PatientFacts
    resources: Sequence[Any] = ()
    patient: dict[str, Any] | None = None
    round_trips: int = 0
    options: EvaluationOptions | None = None


@record
class Loaded:
    """What a source loaded: resources, problems, round trips."""

    resources: list[dict[str, Any]]
    problems: list[Skipped] = field(default_factory=list)
    round_trips: int = 0


class Source(Protocol):
    """Where a patient's resources come from."""

    def load(self, patient_id: str | None, options: EvaluationOptions) -> Loaded: ...


@record
class ServerSource:
    """A FHIR server, read in one batch round trip (searches the server refuses are reported as Skipped)."""

    client: ReadinessClient

    def load(self, patient_id: str | None, options: EvaluationOptions) -> Loaded:
        if patient_id is None:
            raise ValueError("a FHIR server source needs the patient id")
        # lazy: CLI start-up
        from smart_app.readiness.fetch import fetch_patient_data

        fetched = fetch_patient_data(
            self.client, patient_id, options.month, options.tz, options.billing_practitioner
        )
        return Loaded(fetched.resources, list(fetched.problems), fetched.round_trips)


@record
class ResourceSource:
    """Resources already in hand: a Bundle or NDJSON file, a CDS prefetch, a bulk-export group."""

    resources: Sequence[dict[str, Any]]

    def load(self, patient_id: str | None, options: EvaluationOptions) -> Loaded:
        return Loaded(list(self.resources))


def evaluate_facts(facts: PatientFacts, options: EvaluationOptions) -> Verdict:
    """Facts -> Verdict with the options (the only call of rules.evaluate in the app)."""
    return evaluate(
        facts,
        options.month,
        pack=options.policy or None,
        tz=options.tz,
        billing_practitioner=options.billing_practitioner,
        month_closed=options.today is not None and options.today >= options.month.next().first_day,
    )


def with_notes(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`resources` plus what the app's notes among them record (fhir_mapping.read_note), each entry once."""
    for r in resources:
        if type(r) is dict and r.get("resourceType") == "DocumentReference":
            # lazy: CLI start-up (the note readers load only for a source holding DocumentReferences)
            from fhir_mapping.read_note import read_back

            return read_back(resources)
    return resources


def verdict_for(source: Source, patient_id: str | None, options: EvaluationOptions) -> PatientMonth:
    """The Verdict for one patient-month from `source`, with the facts and resources behind it."""
    loaded = source.load(patient_id, options)
    resources = with_notes(loaded.resources)
    if resources is not loaded.resources:
        loaded = replace(loaded, resources=resources)
    facts = read_facts(loaded.resources, patient_id, options.tz, Reach.of(options.month))
    if loaded.problems:
        facts = replace(facts, skipped=(*facts.skipped, *loaded.problems))
    bare = (patient_id or "").removeprefix("Patient/")
    patient = next(
        (r for r in loaded.resources
         if type(r) is dict and r.get("resourceType") == "Patient" and r.get("id") == bare),
        None,
    )
    return PatientMonth(
        evaluate_facts(facts, options), facts, loaded.resources, patient, loaded.round_trips, options
    )


def verdicts_for_months(
    resources: Iterable[dict[str, Any]], patient_id: str, options: EvaluationOptions, months: Sequence[Month]
) -> tuple[PatientFacts, list[Verdict]]:
    """One patient's resources read once, evaluated for several months (the worklist's trend).

    Read with the months' reach together, as `verdict_for` reads one month's: the history no month asks
    about is not read (each month's status, codes, minutes and findings are the same either way)."""
    reach = Reach.of(min(months), max(months))
    facts = read_facts(with_notes(list(resources)), patient_id, options.tz, reach)
    return facts, [evaluate_facts(facts, options.for_month(m)) for m in months]


def patient_month(
    client: ReadinessClient,
    patient_id: str,
    month: Month | str,
    *,
    tz: str,
    policy: str | PolicyPack | None = None,
    billing_practitioner: str | None = None,
) -> Verdict:
    """Shorthand: the Verdict for one patient-month read from a FHIR server."""
    m = month if isinstance(month, Month) else Month.parse(month)
    zone(tz)
    options = EvaluationOptions(m, tz, policy or "", billing_practitioner)
    return verdict_for(ServerSource(client), patient_id, options).verdict
