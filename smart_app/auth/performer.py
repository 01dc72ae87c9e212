"""Who did the work: the performer a write names must be a user the app verified.

Order: the launch's verified `fhirUser` (from the id_token); else, on a SMART server, a Practitioner the
form names who is on the launch patient's care team as the FHIR server has it (CareTeam participants or
the patient's general practitioners); else, in open mode (public test servers), what the user typed,
marked `unverified` in the Provenance. Anything else is refused before anything is stored.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from smart_app.context import LaunchContext
from smart_app.fhir.patient_scope import belongs_to, valid_fhir_id

log = logging.getLogger(__name__)

PERFORMER_TYPES = ("Practitioner", "PractitionerRole")


class PerformerUnverified(ValueError):
    """The performer cannot be verified; `message` is safe to show."""


@dataclass(frozen=True)
class VerifiedPerformer:
    reference: str  # "Practitioner/ID" or "PractitionerRole/ID"
    how: str  # a fhir_mapping.write_provenance.VERIFICATION_CODES key


def performer_reference(value: Any) -> str | None:
    """'Practitioner/1' from a reference (relative, absolute or versioned); None for anything else."""
    if not isinstance(value, str) or not value.strip():
        return None
    parts = [p for p in value.split("?", 1)[0].split("/") if p]
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) >= 2 and parts[-2] in PERFORMER_TYPES and valid_fhir_id(parts[-1]):
        return f"{parts[-2]}/{parts[-1]}"
    return None


def care_team(client: Any, patient_id: str) -> set[str]:
    """Practitioners (and roles) the FHIR server lists on the patient's care team or as their GP."""
    members: set[str] = set()
    try:
        teams = client.search("CareTeam", {"patient": patient_id})
    except Exception:  # a server that refuses the parameter in a search: a batch entry is lenient
        (result,) = client.batch([f"CareTeam?patient={patient_id}"])
        if not result.ok:
            raise result.error() from None
        teams = result.resources
    # A lenient server may ignore a parameter it does not know and answer every CareTeam: keep the patient's.
    teams = [t for t in teams if isinstance(t, dict) and belongs_to(t, patient_id)]
    for team in teams:
        for part in team.get("participant") or () if isinstance(team, dict) else ():
            member = part.get("member") if isinstance(part, dict) else None
            ref = performer_reference(member.get("reference") if isinstance(member, dict) else None)
            if ref:
                members.add(ref)
    patient = client.read("Patient", patient_id)
    for gp in patient.get("generalPractitioner") or () if isinstance(patient, dict) else ():
        ref = performer_reference(gp.get("reference") if isinstance(gp, dict) else None)
        if ref:
            members.add(ref)
    return members


def establish(ctx: LaunchContext, claimed: Any, client: Any) -> VerifiedPerformer:
    """The performer for a write by this launch (see the module docstring); PerformerUnverified if none."""
    user = performer_reference(ctx.user)
    if user is not None:
        return VerifiedPerformer(user, "id-token")
    named = performer_reference(claimed)
    if named is None:
        raise PerformerUnverified(
            "Say who did the work: a practitioner (Practitioner/ID) from the patient's care team."
        )
    if ctx.mode == "open":
        return VerifiedPerformer(named, "unverified")
    try:
        team = care_team(client, ctx.patient_id)
    except Exception as exc:  # the server must vouch for the performer; unreachable means not verified
        log.info("care team could not be read to verify the performer: %s", type(exc).__name__)
        raise PerformerUnverified(
            "The app could not check the performer against the patient's care team on the FHIR server; "
            "nothing was recorded. Try again, or launch the app with your own sign-in (openid fhirUser)."
        ) from None
    if named not in team:
        raise PerformerUnverified(
            "This launch did not identify you (no verified fhirUser), and the performer is not on the "
            "patient's care team on the FHIR server; nothing was recorded. Pick a care-team member or "
            "launch the app with your own sign-in."
        )
    return VerifiedPerformer(named, "care-team")
