"""Names for the people a page mentions: Practitioner / PractitionerRole references become names.

A page collects the references it shows and asks the Directory once: the unknown ones are read in ONE
batch of reads (`Practitioner/a`, `PractitionerRole/c`; a role's practitioner in a second one) and
remembered in the browser session, so the next page asks the server for nothing it already knows.
(Reads, not searches: the patient-scope guard allows reading directory resources.)
People are never typed as ids: `choices` offers the signed-in user, the patient's care team and the
practitioners chosen earlier in this session; `search` finds other practitioners by name or NPI.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any

from fhir_mapping.read_clinical import human_name

log = logging.getLogger(__name__)

PERSON_TYPES = ("Practitioner", "PractitionerRole")
NPI = "http://hl7.org/fhir/sid/us-npi"
CACHE_KEY = "ccm_people"  # session: {fhir_base: {ref: name}}
RECENT_KEY = "ccm_people_recent"  # session: {fhir_base: [ref, ...]} chosen in this session, newest first
MAX_CACHED = 300
MAX_RECENT = 8
UNKNOWN = "Unnamed practitioner"


@dataclass(frozen=True, slots=True)
class Person:
    ref: str  # "Practitioner/ID" or "PractitionerRole/ID"
    name: str
    detail: str = ""  # role or NPI, to tell two people with one name apart


def person_ref(value: Any) -> str | None:
    """"Practitioner/ID" / "PractitionerRole/ID" from a reference (absolute, versioned), else None."""
    if not isinstance(value, str):
        return None
    parts = value.strip().split("/_history/")[0].rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2] in PERSON_TYPES and parts[-1]:
        return f"{parts[-2]}/{parts[-1]}"
    return None


def _npi(res: dict[str, Any]) -> str:
    for ident in res.get("identifier") or ():
        if isinstance(ident, dict) and ident.get("system") == NPI and isinstance(ident.get("value"), str):
            return str(ident["value"])
    return ""


def _role_text(role: dict[str, Any]) -> str:
    for concept in role.get("code") or ():
        if isinstance(concept, dict):
            text = concept.get("text")
            if isinstance(text, str) and text.strip():
                return text.strip()
            for coding in concept.get("coding") or ():
                if isinstance(coding, dict) and isinstance(coding.get("display"), str):
                    return str(coding["display"])
    return ""


def names_from(resources: Iterable[Any]) -> dict[str, Person]:
    """People named by Practitioner and PractitionerRole resources (a role takes its practitioner's name)."""
    practitioners: dict[str, Person] = {}
    roles: list[dict[str, Any]] = []
    for res in resources:
        if not isinstance(res, dict) or not isinstance(res.get("id"), str):
            continue
        if res.get("resourceType") == "Practitioner":
            ref = f"Practitioner/{res['id']}"
            npi = _npi(res)
            name = human_name(res.get("name")) or UNKNOWN
            practitioners[ref] = Person(ref, name, f"NPI {npi}" if npi else "")
        elif res.get("resourceType") == "PractitionerRole":
            roles.append(res)
    out = dict(practitioners)
    for role in roles:
        ref = f"PractitionerRole/{role['id']}"
        who = person_ref((role.get("practitioner") or {}).get("reference"))
        base = practitioners.get(who or "")
        display = (role.get("practitioner") or {}).get("display")
        name = base.name if base else (display if isinstance(display, str) and display else UNKNOWN)
        out[ref] = Person(ref, name, _role_text(role))
    return out


class Directory:
    """The session's cache of names for one FHIR server, filled in batches through `client`."""

    def __init__(
        self, client: Any, store: MutableMapping[str, Any] | None, base: str, searcher: Any = None
    ) -> None:
        self.client = client
        self.searcher = searcher if searcher is not None else client  # Practitioner searches
        self.store = store if store is not None else {}
        self.base = base
        cache = self.store.get(CACHE_KEY)
        self._all: dict[str, dict[str, list[str]]] = cache if isinstance(cache, dict) else {}
        self._known: dict[str, list[str]] = self._all.get(base) or {}
        self.round_trips = 0

    def _save(self) -> None:
        if len(self._known) > MAX_CACHED:  # keep the newest entries
            self._known = dict(list(self._known.items())[-MAX_CACHED:])
        self._all[self.base] = self._known
        self.store[CACHE_KEY] = self._all

    def remember(self, people: Iterable[Person]) -> None:
        for p in people:
            self._known[p.ref] = [p.name, p.detail]
        self._save()

    def resolve(self, refs: Iterable[Any]) -> dict[str, Person]:
        """Person for each reference (one batch for those not cached; unknown ones get UNKNOWN)."""
        wanted = list(dict.fromkeys(r for r in (person_ref(x) for x in refs) if r))
        missing = [r for r in wanted if r not in self._known]
        if missing and self.client is not None:
            self._fetch(missing)
        out: dict[str, Person] = {}
        for ref in wanted:
            name, detail = (self._known.get(ref) or [UNKNOWN, ""])[:2]
            out[ref] = Person(ref, name, detail)
        return out

    def _batch(self, refs: list[str]) -> list[Any]:
        """Read `refs` in one batch of GETs (reads of directory resources pass the patient-scope guard)."""
        self.round_trips += 1
        found: list[Any] = []
        for result in self.client.batch(refs):
            if getattr(result, "ok", False):
                found.extend(result.resources)
        return found

    def _fetch(self, refs: list[str]) -> None:
        try:
            found = self._batch(refs)
            # A role names its practitioner: read those too (one more batch, only when a role was asked for).
            wanted_people = {
                who for res in found
                if isinstance(res, dict) and res.get("resourceType") == "PractitionerRole"
                for who in [person_ref((res.get("practitioner") or {}).get("reference"))]
                if who and who not in refs and who not in self._known
            }
            if wanted_people:
                found += self._batch(sorted(wanted_people))
        except Exception as exc:  # names are a courtesy: a page still renders without them
            log.info("practitioner names unavailable: %s", type(exc).__name__)
            return
        people = names_from(found)
        for ref, known in self._known.items():  # a role's practitioner named earlier in the session
            people.setdefault(ref, Person(ref, known[0], known[1] if len(known) > 1 else ""))
        people = {**people, **names_from([r for r in found if isinstance(r, dict)])}
        wanted = set(refs)
        resolved = [p for ref, p in people.items() if ref in wanted]
        # Remember misses too (as unnamed) so a page does not ask again for someone the server lacks.
        resolved += [Person(r, UNKNOWN) for r in refs if r not in people]
        self.remember(resolved)

    def name(self, ref: Any) -> str:
        if person_ref(ref) is None:
            return str(ref) if ref else ""
        return self.resolve([ref])[person_ref(ref) or ""].name

    # ------------------------------------------------------------------ choosing people

    def recent(self) -> list[str]:
        value = (self.store.get(RECENT_KEY) or {}).get(self.base) or []
        return [r for r in value if isinstance(r, str)]

    def remember_choice(self, ref: str) -> None:
        """Keep `ref` at the head of this session's recently chosen people."""
        clean = person_ref(ref)
        if clean is None:
            return
        allr = dict(self.store.get(RECENT_KEY) or {})
        allr[self.base] = [clean, *(r for r in self.recent() if r != clean)][:MAX_RECENT]
        self.store[RECENT_KEY] = allr

    def choices(self, user: str | None, care_team: Iterable[str]) -> list[Person]:
        """The signed-in user, then this session's recent picks, then the patient's care team."""
        refs = [r for r in [person_ref(user), *self.recent(), *map(person_ref, care_team)] if r]
        people = self.resolve(refs)
        return [people[r] for r in dict.fromkeys(refs)]

    def search(self, text: str) -> list[Person]:
        """Practitioners whose name (or NPI) matches `text` (at most 20)."""
        text = text.strip()
        if not text or self.searcher is None:
            return []
        params = [("identifier", f"{NPI}|{text}")] if text.isdigit() else [("name", text)]
        try:
            found = self.searcher.search("Practitioner", [*params, ("_count", "20")])
        except Exception as exc:
            log.info("practitioner search failed: %s", type(exc).__name__)
            return []
        people = list(names_from(found).values())[:20]
        needle = text.lower()
        if not text.isdigit():  # a server that ignores `name` must not offer everyone
            people = [p for p in people if needle in p.name.lower()] or people
        self.remember(people)
        return people


def care_team_refs(resources: Iterable[Any]) -> list[str]:
    """People on the patient's CareTeams and general practitioners (Patient.generalPractitioner)."""
    out: list[str] = []
    for res in resources:
        if not isinstance(res, dict):
            continue
        if res.get("resourceType") == "CareTeam" and res.get("status") in (None, "active", "proposed"):
            for p in res.get("participant") or ():
                ref = person_ref(((p or {}).get("member") or {}).get("reference"))
                if ref:
                    out.append(ref)
        elif res.get("resourceType") == "Patient":
            for gp in res.get("generalPractitioner") or ():
                ref = person_ref((gp or {}).get("reference"))
                if ref:
                    out.append(ref)
    return list(dict.fromkeys(out))
