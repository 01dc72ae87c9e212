"""Names of the people a page or card mentions, from what is already in hand (no I/O).

The rules write people as references (`Practitioner/<id>`, `PractitionerRole/<id>`, or a practitioner known
only by NPI). Faces show names: `names_in` reads them from Practitioner / PractitionerRole resources in a
bundle or prefetch (a role takes its practitioner's name; a practitioner is also found by NPI) and from the
`display` of the references that name people. `smart_app.readiness.wording.with_names` puts them in text.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fhir_mapping.people import npi_key
from smart_app.fhir.people import NPI, names_from, person_ref
from smart_app.readiness.wording import UNNAMED_PERSON


def _displays(value: Any, out: dict[str, str], depth: int = 0) -> None:
    """{reference: display} of every Reference to a Practitioner / PractitionerRole under `value`."""
    if depth > 8:
        return
    if isinstance(value, dict):
        ref = person_ref(value.get("reference")) if "reference" in value else None
        shown = value.get("display")
        if ref and isinstance(shown, str) and shown.strip():
            out.setdefault(ref, shown.strip())
        for child in value.values():
            if isinstance(child, (dict, list)):
                _displays(child, out, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _displays(item, out, depth + 1)


def names_in(resources: Iterable[Any]) -> dict[str, str]:
    """{person reference: name} from what is in hand: Practitioner / PractitionerRole resources (a role
    takes its practitioner's name; a practitioner is also found by NPI) and references' `display`."""
    items = [r for r in resources if isinstance(r, dict)]
    people = names_from(items)
    out: dict[str, str] = {}
    for res in items:
        if res.get("resourceType") not in ("Practitioner", "PractitionerRole"):
            _displays(res, out)
    for ref, person in people.items():
        if person.name != UNNAMED_PERSON:
            out[ref] = person.name
            if person.detail.startswith("NPI "):
                out[npi_key(person.detail[4:])] = person.name
    for res in items:  # a role carrying the NPI names its practitioner
        if res.get("resourceType") == "PractitionerRole" and isinstance(res.get("id"), str):
            name = out.get(f"PractitionerRole/{res['id']}")
            for ident in res.get("identifier") or ():
                if name and isinstance(ident, dict) and ident.get("system") == NPI and ident.get("value"):
                    out.setdefault(npi_key(str(ident["value"])), name)
    return out
