"""Who a reference names: every spelling of one person becomes one key (docs/fhir-conventions.md, "People").

A person may be referenced as `Practitioner/x`, as a `PractitionerRole` (whose `practitioner` is the person),
by identifier only (NPI), as a contained resource (`#id`), by absolute URL, by versioned reference or by
`urn:uuid` in a transaction. `People.key` answers one key for all of them:

- `Practitioner/<id>` when the practitioner is known (directly, via a role, or by NPI against a
  Practitioner or PractitionerRole in the data);
- `Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|<npi>` for an NPI no resource in the data carries;
- `PractitionerRole/<id>` for a role whose practitioner cannot be found (still a practitioner's time);
- `RelatedPerson/..`, `Patient/..`, `Device/..`, `Organization/..` as they are (never clinical staff);
- None when the reference names no one we can find (display only, unknown identifier, dangling `#id`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fhir_mapping.references import References, conditional_identifier

NPI = "http://hl7.org/fhir/sid/us-npi"
PERSON_TYPES = frozenset({"Practitioner", "PractitionerRole"})
_NPI_SYSTEMS = frozenset({NPI, "urn:oid:2.16.840.1.113883.4.6", "http://hl7.org/fhir/sid/us-npi/"})


# Roles of the HL7 practitioner-role code system that are not clinical: their time never counts as CCM
# staff time (cms-rules.md §3.6: "Non-clinical staff time never counts").
PRACTITIONER_ROLE = "http://terminology.hl7.org/CodeSystem/practitioner-role"
NON_CLINICAL_ROLES = frozenset({"ict", "researcher", "teacher"})


def non_clinical(role: dict[str, Any]) -> bool:
    """True for a PractitionerRole whose every role code is a non-clinical one (and it has one)."""
    found = [(c.get("system"), c.get("code")) for cc in role.get("code") or () if isinstance(cc, dict)
             for c in cc.get("coding") or () if isinstance(c, dict)]
    return bool(found) and all(s == PRACTITIONER_ROLE and c in NON_CLINICAL_ROLES for s, c in found)


def npi_key(npi: str) -> str:
    return f"Practitioner?identifier={NPI}|{npi}"


def _npis(res: dict[str, Any]) -> list[str]:
    out = []
    for ident in res.get("identifier") or ():
        if isinstance(ident, dict) and ident.get("system") in _NPI_SYSTEMS:
            value = ident.get("value")
            if isinstance(value, str) and value.strip():
                out.append(value.strip())
    return out


class People:
    """Person keys for one set of resources. The index of Practitioners and roles is built on first need."""

    __slots__ = ("_by_npi", "_known", "_pending", "_roles", "refs")

    def __init__(self, refs: References, resources: Sequence[Any] = ()) -> None:
        self.refs = refs
        self._pending: Sequence[Any] | None = resources
        self._roles: dict[str, dict[str, Any]] = {}
        self._by_npi: dict[str, str] = {}
        self._known: dict[str, str] = {}  # plain reference string -> person key (the resolver, memoised)

    def narrow(self, persons: Sequence[Any]) -> None:
        """Index only `persons` (the Practitioners and roles the reader met), if nothing was indexed yet."""
        if self._pending is not None:
            self._pending = persons

    def _index(self) -> None:
        resources, self._pending = self._pending or (), None
        roles: list[dict[str, Any]] = []
        for res in resources:
            if not isinstance(res, dict):
                continue
            rtype, rid = res.get("resourceType"), res.get("id")
            if not isinstance(rid, str) or not rid:
                continue
            if rtype == "Practitioner":
                for npi in _npis(res):
                    self._by_npi.setdefault(npi, f"Practitioner/{rid}")
            elif rtype == "PractitionerRole":
                self._roles[f"PractitionerRole/{rid}"] = res
                roles.append(res)
        for role in roles:  # a role's NPI names its practitioner, when the practitioner is not indexed
            person = self._role_person(role)
            for npi in _npis(role):
                if person.startswith("Practitioner/"):
                    self._by_npi.setdefault(npi, person)

    def _role_person(self, role: dict[str, Any], depth: int = 0) -> str:
        key = self.key(role.get("practitioner"), role, depth + 1)
        if key is not None:
            return key
        rid = role.get("id")
        return f"PractitionerRole/{rid}" if isinstance(rid, str) and rid else "PractitionerRole/?"

    def key(self, value: Any, container: dict[str, Any] | None = None, depth: int = 0) -> str | None:
        """The person key of a Reference (dict) or reference string; `container` resolves `#id`."""
        if depth > 4:
            return None
        if isinstance(value, str):
            value = {"reference": value}
        if not isinstance(value, dict):
            return None
        ref = value.get("reference")
        if isinstance(ref, str) and ref:
            if depth == 0:
                known = self._known.get(ref)
                if known is not None:
                    return known
            if ref.startswith("#"):
                return self._contained(ref[1:], container, depth)
            if "?" in ref:  # conditional reference: Practitioner?identifier=system|value
                return self._conditional(ref)
            key = self.refs.key(ref)
            if key is not None:
                person = self._follow(key, depth)
                if depth == 0:  # the answer depends on the reference alone (the index never changes)
                    self._known[ref] = person
                return person
        return self._by_identifier(value.get("identifier"), value.get("type"))

    def _follow(self, key: str, depth: int) -> str:
        if not key.startswith("PractitionerRole/"):
            return key
        if self._pending is not None:
            self._index()
        role = self._roles.get(key)
        if role is None:
            return key
        return f"NonClinical/{key}" if non_clinical(role) else self._role_person(role, depth)

    def _contained(self, rid: str, container: dict[str, Any] | None, depth: int) -> str | None:
        if not isinstance(container, dict):
            return None
        for res in container.get("contained") or ():
            if isinstance(res, dict) and res.get("id") == rid:
                rtype = res.get("resourceType")
                if rtype == "PractitionerRole":
                    if non_clinical(res):
                        return f"NonClinical/PractitionerRole/{container.get('id')}-{rid}"
                    return self.key(res.get("practitioner"), container, depth + 1) or self._npi(_npis(res))
                npi = self._npi(_npis(res))
                if npi is not None:
                    return npi
                if not isinstance(rtype, str):
                    return None
                return f"{rtype}/{container.get('resourceType')}-{container.get('id')}-{rid}"
        return None

    def _npi(self, npis: list[str]) -> str | None:
        if not npis:
            return None
        if self._pending is not None:
            self._index()
        return self._by_npi.get(npis[0], npi_key(npis[0]))

    def _by_identifier(self, ident: Any, rtype: Any) -> str | None:
        if not isinstance(ident, dict):
            return None
        system, value = ident.get("system"), ident.get("value")
        if not isinstance(value, str) or not value.strip():
            return None
        if system in _NPI_SYSTEMS:
            return self._npi([value.strip()])
        if isinstance(rtype, str) and rtype and isinstance(system, str):
            return f"{rtype}?identifier={system}|{value.strip()}"
        return None

    def _conditional(self, ref: str) -> str | None:
        named = conditional_identifier(ref)
        if named is None:
            return None
        rtype, system, value = named
        return self._by_identifier({"system": system, "value": value}, rtype)

    def aliases(self) -> tuple[tuple[str, str], ...]:
        """Every other key a known person goes by (roles, NPIs) -> their person key, for the rules."""
        if self._pending is not None:
            self._index()
        out = {npi_key(n): k for n, k in self._by_npi.items()}
        for role_key, role in self._roles.items():
            person = self._role_person(role)
            if person != role_key:
                out[role_key] = person
        return tuple(sorted(out.items()))

