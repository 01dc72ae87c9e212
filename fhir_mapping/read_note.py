"""Our captured entries back into the resources the reader understands, merged without double counting.

Sources of a time entry or consent, in order of precedence, all keyed on our identifiers (time-entry|<id>,
consent|<id>): (1) a structured write on the EHR (Encounter / Consent), (2) our clinical note on the EHR
(a DocumentReference whose `application/json` attachment holds the facts, see fhir_mapping.write_note),
(3) the app's ledger. Notes and ledger records are turned into the same Encounter + Task / Consent the
structured profile writes (with ids `cr-<entry id>`), so `read_facts` and the rules need nothing new.
Lenient: a note or record that cannot be read is left out, never an exception.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Iterable, Sequence
from typing import Any

from fhir_mapping.references import relative_key
from fhir_mapping.write_consent import CONSENT_ID, consent
from fhir_mapping.write_note import NOTE_FORMAT, NOTE_KIND_CONSENT, NOTE_KIND_TIME, consent_from_json
from fhir_mapping.write_provenance import WriteError
from fhir_mapping.write_time import TIME_ENTRY_ID, draft_from_json, encounter, task
from fhir_mapping.write_visit import VISIT_ID, visit_from_json
from fhir_mapping.write_visit import encounter as visit_encounter

CAPTURED_PREFIX = "cr-"
_KEY_SYSTEMS = {"Encounter": (TIME_ENTRY_ID, VISIT_ID), "Consent": (CONSENT_ID,)}


def note_facts(doc: Any) -> dict[str, Any] | None:
    """The structured facts of one of our notes (None for any other DocumentReference)."""
    if not isinstance(doc, dict) or doc.get("resourceType") != "DocumentReference":
        return None
    for content in doc.get("content") or ():
        att = content.get("attachment") if isinstance(content, dict) else None
        fmt = content.get("format") if isinstance(content, dict) else None
        if not isinstance(att, dict) or att.get("contentType") != "application/json":
            continue
        if not isinstance(fmt, dict) or fmt.get("code") != NOTE_FORMAT:
            continue
        try:
            facts = json.loads(base64.b64decode(str(att.get("data") or ""), validate=True))
        except (ValueError, TypeError):
            return None
        return facts if isinstance(facts, dict) and facts.get("format") == NOTE_FORMAT else None
    return None


def read_back(resources: list[Any]) -> list[Any]:
    """`resources` plus what our notes among them record (`merge_captured` without a ledger); the very same
    list when none of them is one of our notes (the common case: no copy, no index of the resources)."""
    for doc in resources:
        if type(doc) is dict and doc.get("resourceType") == _NOTE_TYPE and note_facts(doc) is not None:
            return merge_captured(resources, ())
    return resources


_NOTE_TYPE = "DocumentReference"


def time_resources(entry: dict[str, Any], status: str | None = None) -> list[dict[str, Any]]:
    """Encounter + Task for one captured time entry (its JSON as in write_time.draft_to_json)."""
    draft = draft_from_json(entry)
    enc = encounter(draft)
    enc_id = f"{CAPTURED_PREFIX}{draft.entry_id}"
    enc = {**enc, "id": enc_id}
    if status:
        enc["status"] = status
    recorded = draft.period_end
    done = {**task(draft, f"Encounter/{enc_id}", recorded), "id": f"{CAPTURED_PREFIX}task-{draft.entry_id}"}
    return [enc, done]


def consent_resources(data: dict[str, Any], status: str | None = None) -> list[dict[str, Any]]:
    draft = consent_from_json(data)
    res = {**consent(draft), "id": f"{CAPTURED_PREFIX}{draft.consent_id}"}
    if status:
        res["status"] = status
    return [res]


def visit_resources(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The Encounter of one captured initiating visit (its JSON as in write_visit.visit_to_json)."""
    draft = visit_from_json(data)
    return [{**visit_encounter(draft), "id": f"{CAPTURED_PREFIX}{draft.visit_id}"}]


def _keys(resources: Iterable[Any]) -> set[tuple[str, str]]:
    out: set[tuple[str, str]] = set()
    for res in resources:
        if not isinstance(res, dict):
            continue
        systems = _KEY_SYSTEMS.get(str(res.get("resourceType")), ())
        for ident in res.get("identifier") or ():
            if (
                isinstance(ident, dict)
                and ident.get("system") in systems
                and isinstance(ident.get("value"), str)
            ):
                out.add((str(ident["system"]), ident["value"]))
    return out


def _from_facts(kind: str, facts: dict[str, Any], status: str | None) -> tuple[tuple[str, str], list[Any]]:
    if kind in ("time", NOTE_KIND_TIME):
        entry = facts["entry"]
        return (TIME_ENTRY_ID, entry["entry_id"]), time_resources(entry, status)
    if kind in ("consent", "consent-stop", NOTE_KIND_CONSENT):
        data = facts["consent"]
        return (CONSENT_ID, data["consent_id"]), consent_resources(data, status)
    if kind == "visit":
        return (VISIT_ID, facts["visit"]["visit_id"]), visit_resources(facts["visit"])
    raise KeyError(kind)


def merge_captured(
    resources: Sequence[Any], captured: Iterable[tuple[str, dict[str, Any]]] = ()
) -> list[Any]:
    """`resources` (from the EHR) plus what only our notes and the ledger (`(kind, facts)` records in
    order) know, each entry once; ledger corrections applied (the replaced entry is entered-in-error)."""
    out = list(resources)
    seen = _keys(out)
    notes = [(doc, facts) for doc in out if (facts := note_facts(doc)) is not None]
    # Current notes first, the latest first among them (then by id): of two versions of one entry the
    # standing one is read, whatever the order of the data.
    notes.sort(key=lambda n: str(n[0].get("id") or ""))
    notes.sort(key=lambda n: n[0].get("date") if isinstance(n[0].get("date"), str) else "", reverse=True)
    notes.sort(key=lambda n: {None: 0, "superseded": 1}.get(_withdrawn(n[0]), 2))
    for doc, facts in notes:
        withdrawn = _withdrawn(doc)
        status = "entered-in-error" if withdrawn == "entered-in-error" else None
        try:
            key, derived = _from_facts(str(facts.get("kind")), facts, status)
        except (KeyError, TypeError, ValueError, WriteError):
            continue
        if withdrawn == "superseded":
            derived = [_superseded(res) for res in derived]
        if key not in seen and _same_patient(doc, derived):
            seen.add(key)
            out.extend(derived)
    corrections: list[dict[str, Any]] = []
    for kind, facts in captured:
        if kind == "correction":
            corrections.append(facts)
            continue
        try:
            key, derived = _from_facts(kind, facts, None)
        except (KeyError, TypeError, ValueError, WriteError):
            continue
        if key not in seen:
            seen.add(key)
            out.extend(derived)
    for fix in corrections:
        out = _corrected(out, fix, seen)
    return out


def _withdrawn(doc: dict[str, Any]) -> str | None:
    """"entered-in-error" or "superseded" for a note that no longer stands (its `status` or `docStatus`)."""
    if "entered-in-error" in (doc.get("status"), doc.get("docStatus")):
        return "entered-in-error"
    return "superseded" if doc.get("status") == "superseded" else None


def _superseded(res: dict[str, Any]) -> dict[str, Any]:
    """A superseded note's record: a time entry, visit or consent no longer counts (its replacement, if
    any, does); a consent stop or decline still stands (dropping it could only make a month look billable)."""
    rtype = res.get("resourceType")
    if rtype == "Consent" and res.get("status") in ("inactive", "rejected"):
        return res
    return {**res, "status": "entered-in-error"} if rtype in ("Encounter", "Consent") else res


_PATIENT_FIELD = {"Encounter": "subject", "Task": "for", "Consent": "patient"}


def _same_patient(doc: dict[str, Any], derived: list[Any]) -> bool:
    """False when the note's own subject names a patient its content does not (never read for either)."""
    about = _relative_patient(doc.get("subject"))
    if about is None:
        return True
    for res in derived:
        field = _PATIENT_FIELD.get(str(res.get("resourceType")))
        if field is not None and _relative_patient(res.get(field)) not in (about, None):
            return False
    return True


def _relative_patient(value: Any) -> str | None:
    ref = value.get("reference") if isinstance(value, dict) else None
    return relative_key(ref) if isinstance(ref, str) else None


def _corrected(resources: list[Any], fix: dict[str, Any], seen: set[tuple[str, str]]) -> list[Any]:
    target = str(fix.get("target_encounter_id") or "")
    out = []
    for res in resources:
        if (
            isinstance(res, dict)
            and res.get("resourceType") == "Encounter"
            and target
            and res.get("id") in (target, f"{CAPTURED_PREFIX}{target}")
            and res.get("status") != "entered-in-error"
        ):
            res = copy.deepcopy(res)
            res["status"] = "entered-in-error"
        out.append(res)
    replacement = fix.get("replacement")
    if isinstance(replacement, dict):
        try:
            key, derived = _from_facts("time", {"entry": replacement}, None)
        except (KeyError, TypeError, ValueError, WriteError):
            return out
        if key not in seen:
            seen.add(key)
            out.extend(derived)
    return out
