"""The people and patient a page shows, for templates: names by reference, choices, the patient banner.

One `Directory` per request (kept on `flask.g`) over the session's name cache, so every name on a page
is fetched in at most one batch and never again in the session. Template globals are registered by
`init_app(app)` (called once by create_app).
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, g, session

from fhir_mapping.read_clinical import human_name
from smart_app.fhir.people import UNKNOWN, Directory, Person, care_team_refs, person_ref
from smart_app.web import sessions

log = logging.getLogger(__name__)
BANNER_KEY = "ccm_banner"  # session: {"<base>|<patient>": {name, birth_date, gender}}
TEAM_KEY = "ccm_care_team"  # session: {"<base>|<patient>": [refs]}
BILLING_KEY = "ccm_billing_practitioner"  # session: {"<base>": "Practitioner/ID"}


class _PractitionerSearch:
    """Practitioner searches only (the directory is not patient data; the patient-scope guard, which
    limits every other search to the launch patient, is kept for everything else)."""

    def __init__(self, scoped: Any) -> None:
        self._inner = getattr(scoped, "_inner", scoped)

    def search(self, resource_type: str, params: Any) -> Any:
        if resource_type != "Practitioner" or self._inner is None:
            raise PermissionError("only Practitioner searches")
        return self._inner.search(resource_type, params)


def directory(client: Any = None, base: str | None = None) -> Directory:
    """This request's Directory (for the session's server unless `client`/`base` are given)."""
    if client is not None:
        return Directory(client, session, base or getattr(client, "base", "") or "")
    found = g.get("ccm_directory")
    if found is None:
        ctx = sessions.current_context()
        inner = None
        if ctx is not None and not g.get("ccm_people_offline"):
            try:
                inner = sessions.fhir_client()
            except Exception:  # no usable client: names fall back to "Unnamed practitioner"
                inner = None
        found = Directory(inner, session, ctx.fhir_base if ctx else "", _PractitionerSearch(inner))
        g.ccm_directory = found
    return found


def person_name(ref: Any) -> str:
    """A person's name for a reference (non-person references are shown as they are)."""
    return directory().name(ref) if ref else ""


def preload(refs: Any) -> None:
    """Resolve every reference a page will show in one batch."""
    directory().resolve(list(refs))


def _patient_resources() -> list[dict[str, Any]]:
    """The launch patient and its CareTeams (once per request)."""
    found = g.get("ccm_patient_resources")
    if found is not None:
        return found
    ctx = sessions.current_context()
    out: list[dict[str, Any]] = []
    known = g.get("ccm_patient")
    if g.get("ccm_people_offline"):  # a one-request page: only what it already read
        g.ccm_patient_resources = [known] if isinstance(known, dict) else []
        return g.ccm_patient_resources
    if ctx is not None:
        try:
            client = sessions.fhir_client()
            out.append(known if isinstance(known, dict) else client.read("Patient", ctx.patient_id))
            out.extend(client.search("CareTeam", [("patient", f"Patient/{ctx.patient_id}")]))
        except Exception as exc:
            log.info("patient or care team unavailable: %s", type(exc).__name__)
    g.ccm_patient_resources = out
    return out


def offline() -> None:
    """This page makes no FHIR request of its own for people (the panel is one request): names come from
    the session's cache, and the page asks `/people/names` for the rest from the browser."""
    g.ccm_people_offline = True


def names_json(refs: list[str]) -> dict[str, str]:
    """{reference: name} for `refs` (one batch for the unknown ones), for the page's script."""
    return {p.ref: p.name for p in directory().resolve(refs[:50]).values()}


def know_patient(patient: dict[str, Any] | None) -> None:
    """The launch Patient a page already read (the panel's batch): no second read for banner or team."""
    if isinstance(patient, dict):
        g.ccm_patient = patient


def care_team() -> list[str]:
    """The launch patient's care team and general practitioners (read once per session)."""
    ctx = sessions.current_context()
    if ctx is None:
        return []
    key = f"{ctx.fhir_base}|{ctx.patient_id}"
    cached = (session.get(TEAM_KEY) or {}).get(key)
    if isinstance(cached, list):
        return [r for r in cached if isinstance(r, str)]
    found = _patient_resources()
    refs = care_team_refs(r for r in found if isinstance(r, dict))
    if found and not g.get("ccm_people_offline"):  # unread servers (or a one-request page) ask next time
        session[TEAM_KEY] = {**(session.get(TEAM_KEY) or {}), key: refs}
    return refs


def choices(extra: tuple[str, ...] = ()) -> list[Person]:
    """Whom a form offers: the signed-in user, this session's picks, the care team (+ `extra`)."""
    ctx = sessions.current_context()
    user = ctx.user if ctx else None
    return directory().choices(user, [*care_team(), *extra])


def default_person(form_value: Any = None) -> str:
    """The person a form preselects: what was posted, else the signed-in user, else the last pick."""
    posted = person_ref(form_value)
    if posted:
        return posted
    ctx = sessions.current_context()
    user = person_ref(ctx.user) if ctx else None
    if user:
        return user
    recent = directory().recent()
    return recent[0] if recent else ""


def remember_choice(ref: Any) -> None:
    if person_ref(ref):
        directory().remember_choice(str(ref))


def billing_practitioner() -> str | None:
    """The billing practitioner chosen in this session for the session's server (None: not chosen)."""
    ctx = sessions.current_context()
    if ctx is None:
        return None
    value = (session.get(BILLING_KEY) or {}).get(ctx.fhir_base)
    return value if person_ref(value) else None


def choose_billing_practitioner(ref: str) -> None:
    ctx = sessions.require_context()
    chosen = dict(session.get(BILLING_KEY) or {})
    chosen[ctx.fhir_base] = ref
    session[BILLING_KEY] = chosen
    remember_choice(ref)


def patient_banner() -> dict[str, str] | None:
    """Name, birth date, gender of the launch patient (cached per session); None: EHR draws its own."""
    ctx = sessions.current_context()
    if ctx is None or not ctx.need_patient_banner:
        return None
    key = f"{ctx.fhir_base}|{ctx.patient_id}"
    cached = (session.get(BANNER_KEY) or {}).get(key)
    if isinstance(cached, dict):
        return cached
    patient = next((r for r in _patient_resources() if r.get("resourceType") == "Patient"), {})
    birth, gender = patient.get("birthDate"), patient.get("gender")
    banner = {
        "name": human_name(patient.get("name")) or "Name not recorded",
        "birth_date": birth if isinstance(birth, str) and birth else "not recorded",
        "gender": gender if isinstance(gender, str) and gender else "not recorded",
        "id": ctx.patient_id,
    }
    if patient:
        session[BANNER_KEY] = {**(session.get(BANNER_KEY) or {}), key: banner}
    return banner


def init_app(app: Flask) -> None:
    """Template globals: person_name, people_choices, default_person, patient_banner."""
    app.add_template_global(person_name, "person_name")
    app.add_template_global(choices, "people_choices")
    app.add_template_global(default_person, "default_person")
    app.add_template_global(patient_banner, "patient_banner")
    app.add_template_global(UNKNOWN, "UNNAMED")
