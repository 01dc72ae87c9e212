"""Provenance for everything the app writes, and the strict R4 check every writer runs before sending.

Each write carries a Provenance: agent = the user (US Core `author`, and `enterer`) on behalf of the
practice (US Core provenance-1: a Practitioner agent needs `onBehalfOf`), and the app (assembler, by
identifier); policy = the policy pack (id and version) in effect, `recorded` = when the app wrote it. See
docs/fhir-conventions.md, "What the app writes" and "Write profiles".
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import import_module
from typing import Any
from urllib.parse import quote

APP_ID_SYSTEM = "https://ccm-ready.org/fhir/identifier/software"
APP_NAME = "CCM Ready"
POLICY_BASE = "https://ccm-ready.org/fhir/policy"
PARTICIPANT_TYPE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
DATA_OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
# When no Organization reference is configured, onBehalfOf names the practice by display only.
PRACTICE_DISPLAY = "The practice providing care management"


class WriteError(ValueError):
    """A resource we were about to write is not valid R4 (a bug or bad input; never sent)."""


def checked(resource: dict[str, Any]) -> dict[str, Any]:
    """`resource` validated against the fhir.resources R4B model of its type; WriteError when invalid."""
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str) or not rtype.isalpha():
        raise WriteError("resource without a resourceType")
    try:
        module = import_module(f"fhir.resources.R4B.{rtype.lower()}")
        model = getattr(module, rtype)
    except (ImportError, AttributeError):
        raise WriteError(f"unknown FHIR resource type {rtype!r}") from None
    try:
        model.model_validate(resource)
    except ValueError as exc:  # pydantic.ValidationError is a ValueError
        first = str(exc).splitlines()
        detail = "; ".join(line.strip() for line in first[1:3]) if len(first) > 1 else str(exc)
        raise WriteError(f"{rtype} is not valid FHIR R4: {detail}") from None
    return resource


def instant(moment: datetime) -> str:
    """An R4 instant/dateTime with seconds and an offset."""
    if moment.tzinfo is None:
        raise WriteError("times written to FHIR must carry a time zone")
    return moment.isoformat(timespec="seconds")


def now_utc() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def token_query(param: str, system: str, value: str) -> str:
    """`param=system|value` for an ifNoneExist / search (the value URL-encoded)."""
    return f"{param}={quote(f'{system}|{value}', safe=':/')}"


def for_patient(query: str, patient_id: str, param: str = "patient") -> str:
    """`query` limited to one patient: our identifiers are unique per patient, so every conditional create
    names the patient too (another patient's resource with the same identifier never matches)."""
    if not patient_id:
        raise WriteError("a conditional create needs the patient")
    return f"{query}&{param}={quote(f'Patient/{patient_id}', safe='/')}"


# How the user named in a Provenance was established (extension on the Provenance, code below).
EXT_PERFORMER_VERIFICATION = "https://ccm-ready.org/fhir/StructureDefinition/performer-verification"
VERIFICATION_CODES = {
    "id-token": "fhirUser from the verified OpenID Connect id_token of this launch",
    "care-team": "picked from the patient's CareTeam as read from the FHIR server",
    "unverified": "typed by the user of an open (test) server session: NOT verified",
    "operator": "given by the operator who ran the command-line import",
}


def app_version() -> str:
    try:
        # lazy: CLI start-up
        from importlib.metadata import version

        return version("ccm-ready")
    except Exception:
        return "0"


def on_behalf_of(organization: str | None) -> dict[str, Any]:
    """The practice a Practitioner agent acts for (US Core provenance-1)."""
    if organization and organization.startswith("Organization/"):
        return {"reference": organization}
    return {"display": PRACTICE_DISPLAY}


def provenance(
    targets: Sequence[str],
    *,
    user: str,
    recorded: datetime,
    pack_id: str,
    pack_version: str,
    activity: str = "CREATE",
    reason: str | None = None,
    revises: str | None = None,
    organization: str | None = None,
    verification: str | None = None,
) -> dict[str, Any]:
    """A Provenance for `targets` (references or fullUrls) written by `user` through this app, on behalf
    of `organization` ("Organization/..."; the practice by display when None).

    `verification` (a VERIFICATION_CODES key) says how the app established who `user` is.
    """
    if not targets:
        raise WriteError("a Provenance needs at least one target")
    if activity not in ("CREATE", "UPDATE"):
        raise WriteError(f"unsupported Provenance activity {activity!r}")
    on_behalf = on_behalf_of(organization)
    resource: dict[str, Any] = {
        "resourceType": "Provenance",
        "target": [{"reference": t} for t in targets],
        "recorded": instant(recorded),
        "policy": [f"{POLICY_BASE}/{quote(pack_id, safe='')}/{quote(pack_version, safe='')}"],
        "activity": {"coding": [{"system": DATA_OPERATION, "code": activity}]},
        "agent": [
            {
                "type": {"coding": [{"system": PARTICIPANT_TYPE, "code": "author", "display": "Author"}]},
                "who": {"reference": user},
                "onBehalfOf": on_behalf,
            },
            {
                "type": {"coding": [{"system": PARTICIPANT_TYPE, "code": "enterer", "display": "Enterer"}]},
                "who": {"reference": user},
                "onBehalfOf": on_behalf,
            },
            {
                "type": {
                    "coding": [{"system": PARTICIPANT_TYPE, "code": "assembler", "display": "Assembler"}]
                },
                "who": {
                    "identifier": {"system": APP_ID_SYSTEM, "value": "ccm-ready"},
                    "display": f"{APP_NAME} {app_version()}",
                },
            },
        ],
    }
    if reason:
        resource["reason"] = [{"text": reason}]
    if verification is not None:
        if verification not in VERIFICATION_CODES:
            raise WriteError(f"unknown performer verification {verification!r}")
        resource["extension"] = [{"url": EXT_PERFORMER_VERIFICATION, "valueCode": verification}]
        resource["agent"][0]["who"]["display"] = VERIFICATION_CODES[verification]
    if revises:
        resource["entity"] = [{"role": "revision", "what": {"reference": revises}}]
    return checked(resource)


def created_once(
    rtype: str,
    resource: dict[str, Any],
    url: str,
    prov: dict[str, Any],
    prov_url: str,
    id_system: str,
    id_value: str,
    patient_id: str,
) -> list[dict[str, Any]]:
    """A resource and its Provenance as transaction entries, each created once: conditional on our identifier
    and on the patient (an identifier alone could match another patient's resource)."""
    return [
        {
            "fullUrl": url,
            "resource": resource,
            "request": {
                "method": "POST",
                "url": rtype,
                "ifNoneExist": for_patient(token_query("identifier", id_system, id_value), patient_id),
            },
        },
        {
            "fullUrl": prov_url,
            "resource": prov,
            "request": {
                "method": "POST",
                "url": "Provenance",
                "ifNoneExist": for_patient(
                    token_query(f"target:{rtype}.identifier", id_system, id_value),
                    patient_id,
                    f"target:{rtype}.patient",
                ),
            },
        },
    ]
