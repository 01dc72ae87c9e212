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

import base64
import hashlib
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from fhir_mapping.reader import SUBJECT_FIELD
from rules.month import Month, zone
from rules.records import PatientFacts
from rules.verdict import Verdict, to_json
from smart_app.packet import narrative
from smart_app.readiness.options import EvaluationOptions
from smart_app.readiness.use_case import ResourceSource, verdict_for

EXT = "https://ccm-ready.org/fhir/StructureDefinition"
HASH_EXT = f"{EXT}/resource-sha256"
POLICY_EXT = f"{EXT}/policy-pack"
OPTIONS_EXT = f"{EXT}/evaluation-options"
VERDICT_EXT = f"{EXT}/verdict-json"
DOC_TYPE = {"system": "http://loinc.org", "code": "11503-0", "display": "Medical records"}
RELEVANT_TYPES = frozenset(SUBJECT_FIELD) | {"Patient"}


class PacketError(ValueError):
    """The packet cannot be built; the message is one line, fit for a CLI."""


@dataclass(frozen=True)
class Packet:
    """A built packet: the document Bundle, the verdict it reproduces, and the facts behind it."""

    bundle: dict[str, Any]
    verdict: Verdict
    facts: PatientFacts
    hashes: tuple[tuple[str, str, str], ...]  # (fullUrl, "Type/id", sha256 hex)
    generated_at: datetime


def canonical_json(resource: Any) -> bytes:
    """The canonical JSON bytes hashed for integrity (see the module docstring)."""
    return json.dumps(resource, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sha256_of(resource: Any) -> str:
    return hashlib.sha256(canonical_json(resource)).hexdigest()


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


def _trimmed(
    relevant: list[dict[str, Any]], facts: PatientFacts, month: Month, tz: str
) -> list[dict[str, Any]]:
    """Drop time entries (and their Tasks) that end before or start after the month (a day of slack)."""
    start, end = month.bounds(zone(tz))
    start, end = start - timedelta(days=1), end + timedelta(days=1)
    outside = {t.id for t in facts.time_entries if t.end < start or t.start >= end}
    outside_tasks = {tid for t in facts.time_entries if t.id in outside for tid in t.task_ids}
    return [r for r in relevant if _key(r) not in outside and _key(r) not in outside_tasks]


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
    for candidate in (_trimmed(relevant, facts, month, tz), relevant, everything):
        again, _facts = _verdict(candidate, pid, month, tz, pack, billing_practitioner)
        if to_json(again) == expected:
            return candidate, verdict, facts
    raise PacketError("the input's verdict cannot be reproduced from its resources (resources without ids?)")


def _full_url(res: dict[str, Any], fhir_base: str | None) -> str:
    rid = res.get("id")
    if isinstance(rid, str) and rid:
        if fhir_base:
            return f"{fhir_base.rstrip('/')}/{res['resourceType']}/{rid}"
        try:
            return f"urn:uuid:{uuid.UUID(rid)}"
        except ValueError:
            pass
    return f"urn:uuid:{uuid.uuid4()}"


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
) -> Packet:
    """Evaluate the patient-month and wrap it, with every resource it used, in a document Bundle."""
    m = month if isinstance(month, Month) else Month.parse(month)
    items = list(resources)
    chosen, verdict, facts = select_resources(items, patient_id, m, tz, pack, billing_practitioner)
    generated = (now or datetime.now(UTC)).replace(microsecond=0)
    entries: list[dict[str, Any]] = []
    url_of: dict[str, str] = {}
    used_urls: set[str] = set()
    for res in chosen:
        url = _full_url(res, fhir_base)
        while url in used_urls:  # two resources with one id: keep both, distinct entries
            url = f"urn:uuid:{uuid.uuid4()}"
        used_urls.add(url)
        key = _key(res)
        if key and key not in url_of:
            url_of[key] = url
        entries.append({"fullUrl": url, "resource": res})
    hashes = tuple((e["fullUrl"], _key(e["resource"]) or "", sha256_of(e["resource"])) for e in entries)
    composition = _composition(verdict, facts, m, tz, pack, billing_practitioner, url_of, hashes, generated)
    bundle = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "identifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{uuid.uuid4()}"},
        "type": "document",
        "timestamp": generated.isoformat(),
        "entry": [{"fullUrl": f"urn:uuid:{composition['id']}", "resource": composition}, *entries],
    }
    validate_document(bundle)
    return Packet(bundle, verdict, facts, hashes, generated)


def _composition(
    verdict: Verdict,
    facts: PatientFacts,
    month: Month,
    tz: str,
    pack: str | None,
    billing_practitioner: str | None,
    url_of: dict[str, str],
    hashes: Sequence[tuple[str, str, str]],
    generated: datetime,
) -> dict[str, Any]:
    patient_ref = url_of.get(verdict.patient, verdict.patient)
    options = [{"url": "month", "valueString": str(month)}, {"url": "timezone", "valueString": tz}]
    if pack:
        options.append({"url": "policy", "valueString": pack})
    if billing_practitioner:
        options.append({"url": "billing-practitioner", "valueString": billing_practitioner})
    verdict_json = json.dumps(to_json(verdict), sort_keys=True, separators=(",", ":")).encode()
    extensions: list[dict[str, Any]] = [
        {
            "url": POLICY_EXT,
            "extension": [
                {"url": "id", "valueString": verdict.policy},
                {"url": "version", "valueString": verdict.policy_version},
            ],
        },
        {"url": OPTIONS_EXT, "extension": options},
        {
            "url": VERDICT_EXT,
            "valueAttachment": {
                "contentType": "application/json",
                "data": base64.b64encode(verdict_json).decode("ascii"),
                "title": "Verdict JSON (ccm-ready evaluate --format json)",
            },
        },
    ]
    extensions += [
        {
            "url": HASH_EXT,
            "extension": [
                {"url": "entry", "valueUri": url},
                {"url": "sha256", "valueString": digest},
            ],
        }
        for url, _key_, digest in hashes
    ]
    return {
        "resourceType": "Composition",
        "id": str(uuid.uuid4()),
        "extension": extensions,
        "status": "final",
        "type": {"coding": [DOC_TYPE], "text": "CCM audit packet"},
        "subject": {"reference": patient_ref},
        "date": generated.isoformat(),
        "author": [{"display": "CCM Ready (automated CCM billing-readiness evaluation)"}],
        "title": f"CCM audit packet {month}",
        "section": narrative.sections(verdict, facts, month, url_of, hashes),
    }


def validate_document(bundle: dict[str, Any]) -> None:
    """Check the Bundle with fhir.resources R4B and fhirclient's R4 models; PacketError on failure."""
    from fhir.resources.R4B.bundle import Bundle as R4BBundle
    from fhirclient.models.bundle import Bundle as R4Bundle
    from fhirclient.models.fhirabstractbase import FHIRValidationError
    from pydantic import ValidationError

    try:
        R4BBundle.model_validate(bundle)
    except ValidationError as exc:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise PacketError(f"packet is not valid FHIR R4B at {where}: {first.get('msg', exc)}") from None
    try:
        R4Bundle(jsondict=bundle, strict=True)
    except FHIRValidationError as exc:
        raise PacketError(
            f"packet is not valid FHIR R4 (fhirclient): {' '.join(str(exc).split())[:300]}"
        ) from None
    narrative.check_xhtml(bundle["entry"][0]["resource"])


def recompute_hashes(bundle: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """{fullUrl: (recorded sha256, recomputed sha256)} for every hashed entry of a packet Bundle."""
    comp = bundle["entry"][0]["resource"]
    recorded: dict[str, str] = {}
    for ext in comp.get("extension", ()):
        if ext.get("url") == HASH_EXT:
            parts = {e["url"]: e.get("valueUri") or e.get("valueString") for e in ext.get("extension", ())}
            recorded[parts["entry"]] = parts["sha256"]
    current = {e["fullUrl"]: sha256_of(e["resource"]) for e in bundle["entry"][1:]}
    return {url: (digest, current.get(url, "")) for url, digest in recorded.items()}
