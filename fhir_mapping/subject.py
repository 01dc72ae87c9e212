"""Which patient a resource is about: the reader binds every resource to one patient or leaves it out.

A resource counts for the patient only when its subject names that patient: by reference (relative,
absolute, versioned or a Bundle fullUrl), or by an identifier the patient's own record carries (an
identifier-only, conditional or contained Patient reference). A subject naming another patient, a Group
or anything that does not resolve is not this patient's. A resource that names no subject at all is read
as the patient's (one patient's file, the lenient reading of an incomplete export).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from fhir_mapping.references import References, conditional_identifier

Binding = Literal["ours", "other", "unbound"]
Identifier = tuple[str, str]  # (system, value); system "" when the identifier has none


def identifiers(resource: Any) -> frozenset[Identifier]:
    """The (system, value) pairs of a resource's `identifier` list."""
    out: set[Identifier] = set()
    items = resource.get("identifier") if isinstance(resource, dict) else None
    for ident in items if isinstance(items, list) else ():
        pair = _pair(ident)
        if pair is not None:
            out.add(pair)
    return frozenset(out)


def bind(
    subject: Any, target: str, refs: References, own: frozenset[Identifier], container: dict[str, Any]
) -> Binding:
    """Whether `subject` (a resource's patient element) names `target` ("Patient/X"), whose record carries
    the identifiers `own`: "ours", "other" (another patient, by reference) or "unbound" (nothing that
    resolves to this patient). `container` is the resource, for a contained (`#id`) reference."""
    if subject is None:
        return "ours"
    key = refs.key(subject)
    if key is not None:
        if key == target:
            return "ours"
        return "other" if key.startswith("Patient/") else "unbound"
    ref = subject.get("reference") if isinstance(subject, dict) else subject
    if isinstance(ref, str) and ref.startswith("#"):
        named = _contained(container, ref[1:])
        return "ours" if named is not None and _matches(identifiers(named), own) else "unbound"
    if isinstance(ref, str) and ref.startswith("Patient?"):
        searched = conditional_identifier(ref)
        return "ours" if searched is not None and _matches([searched[1:]], own) else "unbound"
    if isinstance(ref, str) and ref.startswith("urn:uuid:") and f"Patient/{ref[9:]}" == target:
        return "ours"  # Synthea-style, as the stream keys it too (fhir_mapping.stream.subject_key)
    if isinstance(ref, str) and ref:
        return "unbound"  # a reference that resolves to nothing here (a dangling urn:uuid, a typo)
    if isinstance(subject, dict):
        pair = _pair(subject.get("identifier"))
        if pair is not None and _matches((pair,), own):
            return "ours"
    return "unbound"


def _pair(ident: Any) -> Identifier | None:
    if not isinstance(ident, dict):
        return None
    value, system = ident.get("value"), ident.get("system")
    if not isinstance(value, str) or not value.strip():
        return None
    return (system if isinstance(system, str) else "", value.strip())


def _matches(named: Iterable[Identifier], own: frozenset[Identifier]) -> bool:
    """True when one named identifier is one of the patient's: same value, and the same system where both
    say one (an identifier without a system matches on its value alone)."""
    for system, value in named:
        for own_system, own_value in own:
            if value == own_value and (system == own_system or not system or not own_system):
                return True
    return False


def _contained(container: dict[str, Any], local_id: str) -> dict[str, Any] | None:
    for res in container.get("contained") or ():
        if isinstance(res, dict) and res.get("id") == local_id and res.get("resourceType") == "Patient":
            return res
    return None

