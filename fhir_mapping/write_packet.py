"""The audit packet as a FHIR document: the Composition with its narrative, the hashes, validation.

Strict writer: the document Bundle is validated with fhir.resources (R4B) and fhirclient's R4 models before
it leaves. Every entry is hashed over its canonical JSON (sorted keys, no spaces, UTF-8) so a reviewer can
check that nothing changed after the packet was made.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from fhir_mapping import packet_narrative as narrative
from rules.month import Month
from rules.records import PatientFacts
from rules.verdict import Verdict, to_json

EXT = "https://ccm-ready.org/fhir/StructureDefinition"
HASH_EXT = f"{EXT}/resource-sha256"
POLICY_EXT = f"{EXT}/policy-pack"
OPTIONS_EXT = f"{EXT}/evaluation-options"
VERDICT_EXT = f"{EXT}/verdict-json"
DOC_TYPE = {"system": "http://loinc.org", "code": "11503-0", "display": "Medical records"}


class PacketError(ValueError):
    """The packet cannot be built; the message is one line, fit for a CLI."""


def canonical_json(resource: Any) -> bytes:
    """The canonical JSON bytes hashed for integrity (see the module docstring)."""
    return json.dumps(resource, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sha256_of(resource: Any) -> str:
    return hashlib.sha256(canonical_json(resource)).hexdigest()


def full_url(res: dict[str, Any], fhir_base: str | None) -> str:
    rid = res.get("id")
    if isinstance(rid, str) and rid:
        if fhir_base:
            return f"{fhir_base.rstrip('/')}/{res['resourceType']}/{rid}"
        try:
            return f"urn:uuid:{uuid.UUID(rid)}"
        except ValueError:
            pass
    return f"urn:uuid:{uuid.uuid4()}"


def composition(
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
    # lazy: optional heavy dependency (the two FHIR model libraries take ~0.5 s to import)
    from fhir.resources.R4B.bundle import Bundle as R4BBundle
    from fhirclient.models.bundle import Bundle as R4Bundle
    from fhirclient.models.fhirabstractbase import FHIRValidationError
    from pydantic import ValidationError

    try:
        R4BBundle.model_validate(bundle)
    except ValidationError as exc:
        first: dict[str, Any] = dict(exc.errors()[0]) if exc.errors() else {}
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


KEEP_IDS = frozenset({"integrity", "ledger"})  # sections whose references are the evidence itself


def name_people(bundle: dict[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    """The document with people shown by name in its narrative (`names`: {reference: name}).

    The Composition's section entries keep every reference, and the integrity and ledger sections keep
    their ids, so a reviewer can still trace each name to its resource."""
    composition = bundle["entry"][0]["resource"]
    pairs = sorted(((html.escape(r), html.escape(n)) for r, n in names.items() if r and n), reverse=True)
    for section in composition.get("section") or ():
        codes = {c.get("code") for c in (section.get("code") or {}).get("coding") or ()}
        text = section.get("text")
        if codes & KEEP_IDS or not isinstance(text, dict) or not pairs:
            continue
        div = str(text.get("div", ""))
        for ref, name in pairs:  # longest reference first: Practitioner/a10 before Practitioner/a1
            div = re.sub(re.escape(ref) + r"(?![A-Za-z0-9\-.])", name.replace("\\", "\\\\"), div)
        text["div"] = div
    return bundle
