"""Use case: one patient, one month -> a Verdict, fetching everything in as few round trips as possible.

The whole fetch is ONE batch Bundle of searches (Patient read; Conditions; CarePlans; Consents; the month's
Encounters with their Tasks; initiating-visit Encounters; attestation Tasks; Communications that share a
plan; the month's ChargeItems; DocumentReferences, where the app's notes are). Visits are filtered by code,
not by date, so an old consent never needs a second look-up; a second round trip happens only for paging or
a fallback. Servers that refuse batches get the same searches as concurrent GETs, all at once (one thread per
query, over the FHIR client's pooled keep-alive connections), so the fallback costs one round trip of
wall time, not one per wave.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import field
from typing import Any, Protocol
from urllib.parse import parse_qsl, quote, unquote, urlencode

from fhir_mapping.codes import ATTESTATION_KINDS
from fhir_mapping.people import NPI
from fhir_mapping.reach import Reach
from fhir_mapping.reader import SUBJECT_FIELD
from fhir_mapping.references import relative_key
from rules.month import Month, zone
from rules.record_type import record
from rules.records import Skipped
from smart_app.fhir.client import BatchResult, FhirError, FhirUnauthorized, FhirUnavailable, error_for

log = logging.getLogger(__name__)

PAGE_SIZE = 500  # HAPI caps _count at 500; sekmet at 1000
MAX_WORKERS = 16  # the no-batch fallback sends every planned query at once (one wave, not two)
# Initiating-visit codes (CPT E/M and HCPCS AWV/IPPE), used only as a server-side search filter:
# code-only tokens so that variant system URLs still match. The policy pack decides what counts.
VISIT_CODES = (
    "99202", "99203", "99204", "99205", "99211", "99212", "99213", "99214", "99215",
    "G0402", "G0438", "G0439",
)
ATTESTATION_CODES = tuple(sorted(ATTESTATION_KINDS))  # the reader's attestation codes, in a stable order


class ReadinessClient(Protocol):
    """What the use case needs from a FHIR client (FhirClient, or a hand-written fake in tests)."""

    round_trips: int

    def batch(self, requests_: list[str]) -> list[BatchResult]: ...

    def search(self, resource_type: str, params: Any = None) -> list[dict[str, Any]]: ...

    def read(self, resource_type: str, resource_id: str) -> dict[str, Any]: ...


@record
class Query:
    """One planned GET: a relative URL, what it is for, and what to try if the server rejects it."""

    url: str
    purpose: str
    required: bool = True
    fallbacks: tuple[str, ...] = ()


@record(frozen=False)
class Fetched:
    """The resources for one patient-month, and the searches that could not be done."""

    resources: list[dict[str, Any]]
    problems: list[Skipped] = field(default_factory=list)
    round_trips: int = 0
    used_batch: bool = True


def plan_queries(patient_id: str, month: Month | str, tz: str = "UTC") -> list[Query]:
    """The searches for one patient-month (relative URLs, ready for a batch Bundle)."""
    m = month if isinstance(month, Month) else Month.parse(month)
    zone(tz)  # fail early on a bad zone
    pid = _check_patient_id(patient_id)
    # The month's reach (fhir_mapping.reach): date-only bounds two days wider than the month, as the
    # reader reads a file; the server's zone is unknown, and the rules cut the month exactly.
    month_window = list(Reach.of(m).search())
    hi = month_window[1][2:]
    count = str(PAGE_SIZE)
    charge_window = [f"ge{m.previous().first_day.isoformat()}", f"lt{m.shift(2).first_day.isoformat()}"]

    def q(rtype: str, *pairs: tuple[str, str]) -> str:
        return f"{rtype}?{urlencode([('patient', pid), *pairs, ('_count', count)], safe=':,|')}"

    # Who took part comes in the same answer (`_include`): the page names people without a second request.
    who = (("_include", "Encounter:participant"), ("_include:iterate", "PractitionerRole:practitioner"))
    encounters_month = q("Encounter", ("date", month_window[0]), ("date", month_window[1]),
                         ("_revinclude", "Task:encounter"), *who)
    return [
        Query(f"Patient/{quote(pid, safe='')}", "the patient"),
        Query(q("Condition"), "conditions"),
        Query(q("CarePlan"), "care plans"),
        Query(q("Consent"), "consents"),
        Query(
            encounters_month,
            "time entries, inpatient stays and visits in the month (with their Tasks)",
            fallbacks=(
                q("Encounter", ("date", month_window[0]), ("date", month_window[1])),
                q("Task"),
            ),
        ),
        Query(
            q("Encounter", ("type", ",".join(VISIT_CODES)), ("date", f"lt{hi}"), *who),
            "initiating visits (any date before the month ends)",
            fallbacks=(q("Encounter", ("date", f"lt{hi}")),),
        ),
        Query(q("Task", ("code", ",".join(ATTESTATION_CODES))), "practitioner attestations",
              required=False, fallbacks=(q("Task"),)),
        Query(q("Communication", ("status", "completed")), "care plans shared with the patient",
              required=False, fallbacks=(q("Communication"),)),
        Query(
            q("ChargeItem", ("occurrence", charge_window[0]), ("occurrence", charge_window[1])),
            "services already billed around the month",
            required=False,
            fallbacks=(q("ChargeItem"),),
        ),
        # Claims and remittances name services billed by others too (cms-rules.md §4: concurrency).
        Query(q("Claim"), "claims for services in or around the month", required=False),
        Query(q("ExplanationOfBenefit"), "payer decisions on claims", required=False),
        # The app's own clinical notes (the "note" write profile): time and consent read back from them.
        Query(q("DocumentReference"), "the app's clinical notes", required=False),
    ]


def fetch_patient_data(
    client: ReadinessClient,
    patient_id: str,
    month: Month | str,
    tz: str = "UTC",
    billing_practitioner: str | None = None,
) -> Fetched:
    """All resources the verdict needs, plus the searches that failed (as Skipped entries).

    One batch; a second, small one only when people are named by role or NPI (see `people_requests`).
    """
    queries = plan_queries(patient_id, month, tz)
    patient_id = _check_patient_id(patient_id)
    start = client.round_trips
    used_batch = True
    try:
        results = client.batch([qr.url for qr in queries])
    except (FhirUnauthorized, FhirUnavailable):
        raise
    except FhirError as exc:
        log.info("FHIR batch refused (HTTP %s); falling back to concurrent searches", exc.status)
        used_batch = False
        results = _concurrent(client, [qr.url for qr in queries])
    resources: list[dict[str, Any]] = []
    problems: list[Skipped] = []
    for query, result in zip(queries, results, strict=True):
        got = _settle(client, query, result)
        if isinstance(got, Skipped):
            problems.append(got)
        else:
            resources.extend(got)
    mine = _only_patient(resources, patient_id)
    mine.extend(_people(client, mine, billing_practitioner))
    return Fetched(mine, problems, client.round_trips - start, used_batch)


# ------------------------------------------------------------------ people named by role or NPI

MAX_PEOPLE = 40  # reads in the people batch: a patient's care team, never the whole directory
_PERSON_FIELDS = ("individual", "actor", "performer", "owner", "requester", "provider", "practitioner",
                  "enterer", "author", "recorder", "asserter", "who", "agent")


def _person_refs(value: Any, out: list[dict[str, Any]], depth: int = 0) -> None:
    """Every Reference-shaped dict under the person-valued fields of a resource."""
    if depth > 6:
        return
    if isinstance(value, dict):
        if ("reference" in value or "identifier" in value) and not value.get("resourceType"):
            out.append(value)
        for key, child in value.items():
            if key in _PERSON_FIELDS or isinstance(child, (list, dict)):
                _person_refs(child, out, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _person_refs(item, out, depth + 1)


def people_requests(resources: list[dict[str, Any]], billing_practitioner: str | None = None) -> list[str]:
    """The reads and searches that resolve people named by role or by NPI only (empty when none are).

    A time entry by `PractitionerRole/r` and a consent naming `Practitioner/p` are the same person only
    when the role is read; an NPI-only reference (or a billing practitioner configured by NPI) only when
    the Practitioner carrying that NPI is. Plain `Practitioner/x` references need nothing.
    """
    have = {f"{r.get('resourceType')}/{r.get('id')}" for r in resources}
    refs: list[dict[str, Any]] = []
    for res in resources:
        _person_refs(res, refs)
    roles: dict[str, None] = {}
    npis: dict[str, None] = {}
    for ref in refs:
        text = ref.get("reference")
        key = relative_key(text) if isinstance(text, str) and not text.startswith("#") else None
        if key and key.startswith("PractitionerRole/") and key not in have:
            roles[key] = None
        ident = ref.get("identifier")
        if not key and isinstance(ident, dict) and ident.get("system") == NPI and ident.get("value"):
            npis[str(ident["value"]).strip()] = None
    if billing_practitioner and billing_practitioner.startswith("Practitioner?identifier="):
        npis[billing_practitioner.rsplit("|", 1)[-1]] = None
    if not roles and not npis:
        return []
    practitioners = {
        key: None
        for ref in refs
        if isinstance(ref.get("reference"), str)
        for key in [relative_key(ref["reference"])]
        if key and key.startswith("Practitioner/") and key not in have
    }
    reads = [*roles, *practitioners][:MAX_PEOPLE]
    searches = [f"Practitioner?{urlencode({'identifier': f'{NPI}|{n}'}, safe=':|/')}" for n in npis]
    return [*reads, *searches[:MAX_PEOPLE]]


def _people(
    client: ReadinessClient, resources: list[dict[str, Any]], billing_practitioner: str | None
) -> list[dict[str, Any]]:
    """Practitioners and roles for the people named by role or NPI (a second batch, only then)."""
    urls = people_requests(resources, billing_practitioner)
    if not urls:
        return []
    try:
        results = client.batch(urls)
    except FhirError as exc:  # people are a refinement: without them, roles stay unresolved (never "ready")
        log.info("people batch refused (HTTP %s)", exc.status)
        return []
    found = [
        r
        for result in results
        if result.ok
        for r in result.resources
        if isinstance(r, dict) and r.get("resourceType") in ("Practitioner", "PractitionerRole")
    ]
    # A role names its practitioner: read those too when they were not in the first answers.
    extra = [
        key
        for role in found
        if role.get("resourceType") == "PractitionerRole"
        for key in [relative_key(str((role.get("practitioner") or {}).get("reference") or ""))]
        if key and key.startswith("Practitioner/")
        and key not in {f"{r['resourceType']}/{r.get('id')}" for r in [*resources, *found]}
    ][:MAX_PEOPLE]
    if extra:
        with contextlib.suppress(FhirError):
            answers = client.batch(extra)
            found += [r for got in answers if got.ok for r in got.resources if isinstance(r, dict)]
    return found


def fetch_patient_resources(
    client: ReadinessClient,
    patient_id: str,
    month: Month | str,
    tz: str = "UTC",
    billing_practitioner: str | None = None,
) -> list[dict[str, Any]]:
    """Everything the verdict needs for one patient-month (usually one round trip, at most two)."""
    return fetch_patient_data(client, patient_id, month, tz, billing_practitioner).resources


# ------------------------------------------------------------------ internals


def _settle(client: ReadinessClient, query: Query, result: BatchResult) -> list[dict[str, Any]] | Skipped:
    """The resources of one query, trying its fallbacks when the server rejected it."""
    if result.ok:
        if result.warnings:
            log.warning("FHIR search for %s came back with server warnings", _type_of(query.url))
        return result.resources
    if result.status == 401:
        raise result.error()
    if query.url.startswith("Patient/"):
        raise result.error()  # no patient, no verdict (404 -> FhirNotFound)
    if result.status == 400 and query.fallbacks:
        log.info("FHIR search for %s rejected (HTTP 400); using the simpler form", _type_of(query.url))
        try:
            out: list[dict[str, Any]] = []
            for url in query.fallbacks:
                rtype, _, qs = url.partition("?")
                out.extend(client.search(rtype, parse_qsl(qs)))
            return out
        except (FhirUnauthorized, FhirUnavailable):
            raise
        except FhirError as exc:
            result = BatchResult(exc.status or 0, [], exc.message, exc.outcome, query.url)
    if query.required:
        raise error_for(result.status, f"Could not fetch {query.purpose}: {result.message}", result.outcome)
    return Skipped(f"{_type_of(query.url)}?", f"could not fetch {query.purpose}: {result.message}")


def _type_of(url: str) -> str:
    """The resource type of a relative URL (never its id or query: those stay out of logs)."""
    return url.split("?", 1)[0].split("/", 1)[0]


def _one(client: ReadinessClient, url: str) -> BatchResult:
    path, _, qs = url.partition("?")
    try:
        if "/" in path:
            rtype, _, rid = path.partition("/")
            return BatchResult(200, [client.read(rtype, unquote(rid))], request=url)
        return BatchResult(200, client.search(path, parse_qsl(qs)), request=url)
    except FhirUnauthorized:
        raise
    except FhirError as exc:
        return BatchResult(exc.status or 0, [], exc.message, exc.outcome, url)


def _concurrent(client: ReadinessClient, urls: list[str]) -> list[BatchResult]:
    with ThreadPoolExecutor(max_workers=min(MAX_WORKERS, len(urls)) or 1) as pool:
        return list(pool.map(lambda u: _one(client, u), urls))


def _only_patient(resources: Iterable[dict[str, Any]], patient_id: str) -> list[dict[str, Any]]:
    """De-duplicated resources, dropping any that name a different patient (a session sees one patient)."""
    want = f"Patient/{patient_id}"
    seen: set[tuple[str, str]] = set()
    out: list[dict[str, Any]] = []
    for res in resources:
        if not isinstance(res, dict):
            continue
        rtype, rid = res.get("resourceType"), res.get("id")
        if isinstance(rtype, str) and isinstance(rid, str):
            if (rtype, rid) in seen:
                continue
            seen.add((rtype, rid))
        element = SUBJECT_FIELD.get(rtype) if isinstance(rtype, str) else None
        ref = res.get(element) if element else None
        target = relative_key(ref["reference"]) if isinstance(ref, dict) and isinstance(
            ref.get("reference"), str) else None
        if target and target.startswith("Patient/") and target != want:
            continue
        out.append(res)
    return out


def _check_patient_id(patient_id: str) -> str:
    if not isinstance(patient_id, str) or not patient_id.strip() or len(patient_id) > 255 or (
        "/" in patient_id
    ):
        raise ValueError("patient id must be a bare FHIR id such as '123'")
    return patient_id.strip()
