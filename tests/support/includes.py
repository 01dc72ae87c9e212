"""What a FHIR server adds to an Encounter search for `_include=Encounter:participant` (and, with
`iterate`, `_include:iterate=PractitionerRole:practitioner`): the fakes and prefetch builders share it."""

from __future__ import annotations

from typing import Any

from fhir_mapping.references import relative_key

PEOPLE_TYPES = ("Practitioner", "PractitionerRole")


def included_people(
    matches: list[dict[str, Any]], resources: list[dict[str, Any]], iterate: bool = True
) -> list[dict[str, Any]]:
    """The Practitioners and PractitionerRoles among `resources` that the matched Encounters point at."""
    by_key = {
        f"{r['resourceType']}/{r.get('id')}": r for r in resources if r.get("resourceType") in PEOPLE_TYPES
    }

    def pick(refs: list[Any]) -> list[dict[str, Any]]:
        keys = [relative_key(r) for r in refs if isinstance(r, str)]
        return [by_key[k] for k in dict.fromkeys(k for k in keys if k in by_key)]

    took_part = [p.get("individual") or {} for e in matches for p in e.get("participant") or ()]
    people = pick([who.get("reference") for who in took_part])
    if iterate:
        roles = [r for r in people if r["resourceType"] == "PractitionerRole"]
        held_by = pick([(r.get("practitioner") or {}).get("reference") for r in roles])
        people += [r for r in held_by if r not in people]
    return people
