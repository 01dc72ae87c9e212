"""Audit packet: one patient-month as a FHIR `document` Bundle that reproduces its own verdict.

The Bundle's first entry is a Composition (LOINC 11503-0 "Medical records": the generic document
type used for medical-record attachments sent to claims reviewers, which is what this packet is)
with sections for eligibility, consent, care plan, initiating visit, time log, billed services,
verdict and integrity; then every resource the verdict was computed from (incl. the Patient), so
`ccm-ready evaluate packet.json` gives the same verdict JSON as the source did.

Integrity: each included resource's SHA-256 over its canonical JSON = `json.dumps(resource,
sort_keys=True, separators=(",", ":"), ensure_ascii=False)` encoded as UTF-8 (keys sorted at every
level, no whitespace, non-ASCII kept as is). Recorded per entry as a Composition extension.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fhir_mapping.reach import Reach, unread
from fhir_mapping.reader import SUBJECT_FIELD
from fhir_mapping.write_packet import (
    PacketError,
    full_url,
    sha256_of,
    validate_document,
)
from fhir_mapping.write_packet import composition as write_composition
from rules.month import Month
from rules.records import PatientFacts
from rules.verdict import Verdict, to_json
from smart_app.packet import ledger_extract
from smart_app.readiness.options import EvaluationOptions
from smart_app.readiness.use_case import ResourceSource, verdict_for

RELEVANT_TYPES = frozenset(SUBJECT_FIELD) | {"Patient"}


@dataclass(frozen=True)
class Packet:
    """A built packet: the document Bundle, the verdict it reproduces, and the facts behind it."""

    bundle: dict[str, Any]
    verdict: Verdict
    facts: PatientFacts
    hashes: tuple[tuple[str, str, str], ...]  # (fullUrl, "Type/id", sha256 hex)
    generated_at: datetime
    ledger: Any = None  # packet.ledger_extract.LedgerExtract, when the app's ledger was included


def _key(res: dict[str, Any]) -> str | None:
    rid = res.get("id")
    return f"{res.get('resourceType')}/{rid}" if isinstance(rid, str) and rid else None


def _verdict(
    resources: Sequence[Any],
    patient_id: str | None,
    month: Month,
    tz: str,
    pack: str | None,
    billing_practitioner: str | None,
) -> tuple[Verdict, PatientFacts]:
    options = EvaluationOptions(month, tz, pack or "", billing_practitioner)
    result = verdict_for(ResourceSource(list(resources)), patient_id, options)
    return result.verdict, result.facts


def _trimmed(relevant: list[dict[str, Any]], month: Month) -> list[dict[str, Any]]:
    """Drop the time entries (and their Tasks) outside the month's reach: the verdict does not read them."""
    outside = unread(relevant, Reach.of(month))
    return [r for r in relevant if _key(r) not in outside]


def select_resources(
    resources: Sequence[Any],
    patient_id: str | None,
    month: Month,
    tz: str,
    pack: str | None,
    billing_practitioner: str | None,
) -> tuple[list[dict[str, Any]], Verdict, PatientFacts]:
    """The smallest of (month-trimmed, all readable types, everything) that reproduces the verdict."""
    verdict, facts = _verdict(resources, patient_id, month, tz, pack, billing_practitioner)
    keys = {_key(r) for r in resources if isinstance(r, dict) and r.get("resourceType") == "Patient"}
    if facts.patient is None or facts.patient.id not in keys:
        raise PacketError("no Patient resource (with an id) for this patient in the input")
    pid = facts.patient.id.split("/", 1)[1]
    expected = to_json(verdict)
    relevant = [r for r in resources if isinstance(r, dict) and r.get("resourceType") in RELEVANT_TYPES]
    everything = [r for r in resources if isinstance(r, dict)]
    for candidate in (_trimmed(relevant, month), relevant, everything):
        again, _facts = _verdict(candidate, pid, month, tz, pack, billing_practitioner)
        if to_json(again) == expected:
            return candidate, verdict, facts
    raise PacketError("the input's verdict cannot be reproduced from its resources (resources without ids?)")


def _known_type(rtype: Any) -> bool:
    """True when `rtype` names an R4 resource type (the document is validated against those models)."""
    if not isinstance(rtype, str) or not rtype.isalpha():
        return False
    # lazy: optional heavy dependency (fhir.resources, packet building only)
    from fhir.resources.R4B import get_fhir_model_class

    try:
        get_fhir_model_class(rtype)
    except (ValueError, KeyError):
        return False
    return True


def build_packet(
    resources: Iterable[Any],
    month: Month | str,
    *,
    tz: str = "UTC",
    pack: str | None = None,
    billing_practitioner: str | None = None,
    patient_id: str | None = None,
    fhir_base: str | None = None,
    now: datetime | None = None,
    ledger: Any = None,
) -> Packet:
    """Evaluate the patient-month and wrap it, with every resource it used, in a document Bundle.

    `ledger` (a packet.ledger_extract.LedgerExtract) adds the app's ledger extract with its chain hashes."""
    m = month if isinstance(month, Month) else Month.parse(month)
    # Only FHIR resources (a resourceType that is a list, object, number or unknown name is not FHIR).
    items = [r for r in resources if isinstance(r, dict) and _known_type(r.get("resourceType"))]
    chosen, verdict, facts = select_resources(items, patient_id, m, tz, pack, billing_practitioner)
    generated = (now or datetime.now(UTC)).replace(microsecond=0)
    entries: list[dict[str, Any]] = []
    url_of: dict[str, str] = {}
    used_urls: set[str] = set()
    for res in chosen:
        url = full_url(res, fhir_base)
        while url in used_urls:  # two resources with one id: keep both, distinct entries
            url = f"urn:uuid:{uuid.uuid4()}"
        used_urls.add(url)
        key = _key(res)
        if key and key not in url_of:
            url_of[key] = url
        entries.append({"fullUrl": url, "resource": res})
    hashes = tuple((e["fullUrl"], _key(e["resource"]) or "", sha256_of(e["resource"])) for e in entries)
    composition = write_composition(
        verdict, facts, m, tz, pack, billing_practitioner, url_of, hashes, generated
    )
    if ledger is not None:
        composition["extension"].append(ledger_extract.extension(ledger))
        composition["section"].append(ledger_extract.section(ledger))
    bundle = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "identifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{uuid.uuid4()}"},
        "type": "document",
        "timestamp": generated.isoformat(),
        "entry": [{"fullUrl": f"urn:uuid:{composition['id']}", "resource": composition}, *entries],
    }
    validate_document(bundle)
    return Packet(bundle, verdict, facts, hashes, generated, ledger)


