"""People as the rules see them: a person key (see fhir_mapping.people) and whether their time can count."""

from __future__ import annotations

from collections.abc import Mapping

# Only a practitioner's or clinical staff member's time counts (cms-rules.md §3.6, §3.7).
STAFF_KINDS = frozenset({"Practitioner", "PractitionerRole"})


def kind(key: str | None) -> str | None:
    """The resource type a person key names ("Practitioner", "RelatedPerson", ...); None for no one."""
    if not key:
        return None
    return key.partition("/")[0].partition("?")[0]


_STAFF_PREFIXES = tuple(f"{k}{sep}" for k in sorted(STAFF_KINDS) for sep in "/?")


def is_staff(key: str | None) -> bool:
    """True for a Practitioner or PractitionerRole; never for a RelatedPerson, Patient, Device or no one."""
    if not key:
        return False
    # kind(key) in STAFF_KINDS without building the kind (the type ends at the first "/" or "?")
    return key.startswith(_STAFF_PREFIXES) or key in STAFF_KINDS


def canonical(key: str | None, aliases: Mapping[str, str]) -> str | None:
    """`key` as the one key its person goes by (a role or NPI key becomes the practitioner's)."""
    if key is None:
        return None
    return aliases.get(key, key)
