"""Where a captured entry goes: the ledger first, then the EHR in the write profile the server allows.

`capture()` appends the entry to the ledger and queues its outbox item (same id) carrying both shapes: the
structured transaction and the US Core note. `Delivery.route` is the outbox's sender: it writes the entry in
its profile and, when the server refuses a resource type for good (403/405/422 with an OperationOutcome),
remembers that refusal for the server and moves on to the next profile at once (structured -> note -> none),
so the entry is kept and never retried forever. Every outcome is appended to the ledger as a delivery record.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from fhir_mapping.write_note import note_condition
from smart_app.capture.ledger import Ledger, LedgerRecord
from smart_app.capture.outbox import Client, Outbox, OutboxItem, Reject, _classify, deliver
from smart_app.fhir.capabilities import (
    KIND_TYPES,
    NOTE_KINDS,
    NOTE_TYPE,
    PROFILE_TEXT,
    CapabilityCache,
    WriteProfiles,
    choose,
    is_refusal,
)
from smart_app.fhir.client import FhirError

log = logging.getLogger(__name__)

LEDGER_ONLY = "ledger-only"


@dataclass(frozen=True)
class Where:
    """Where an entry lives, for the answer to the user."""

    profile: str
    message: str
    moved: str = ""  # why it moved down a profile at run time, if it did

    def to_json(self) -> dict[str, Any]:
        return {"profile": self.profile, "message": self.message, "moved": self.moved or None}


class _Tracking:
    """A client wrapper remembering the type of the last create (to name what a server refused)."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self.patient_id = getattr(client, "patient_id", None)
        self.base = getattr(client, "base", None)
        self.last_type: str | None = None

    @property
    def inner(self) -> _Tracking:
        return self

    def transaction(self, bundle: dict[str, Any]) -> dict[str, Any]:
        self.last_type = None
        return self._client.transaction(bundle)

    def create(self, resource: dict[str, Any], if_none_exist: str | None = None) -> dict[str, Any]:
        self.last_type = str(resource.get("resourceType"))
        inner = getattr(self._client, "inner", self._client)  # scope was checked on the whole bundle
        return inner.create(resource, if_none_exist=if_none_exist)

    def search(self, resource_type: str, params: Any = None) -> list[dict[str, Any]]:
        return self._client.search(resource_type, params)


def _refusal(exc: Exception) -> tuple[int, str] | None:
    """(status, server message) when `exc` is a definite refusal by the server."""
    cause = exc if isinstance(exc, FhirError) else exc.__context__
    if isinstance(cause, FhirError) and is_refusal(cause.status, cause.outcome):
        return int(cause.status or 0), cause.message
    return None


class Delivery:
    """The outbox's sender, aware of write profiles; appends each delivery to the ledger."""

    def __init__(self, ledger: Ledger, capabilities: CapabilityCache | None = None) -> None:
        self.ledger = ledger
        self.capabilities = capabilities or CapabilityCache()

    def profiles(self, fhir_base: str, client: Any, can_write: Any) -> WriteProfiles:
        """The write profiles for a launch: server capability + launch scopes + refusals learned so far."""
        fetch = getattr(client, "capabilities", None)
        server = self.capabilities.get(fhir_base, fetch if callable(fetch) else (lambda: None))
        return choose(server, can_write, self.ledger.refusals(fhir_base))

    def _current(self, item: OutboxItem) -> str:
        """The item's profile now: the one chosen at capture, lowered by refusals learned since."""
        profile = str(item.payload.get("profile") or "structured")
        refused = self.ledger.refusals(item.fhir_base)
        if profile == "structured" and any(t in refused for t in KIND_TYPES.get(item.kind, ())):
            profile = "note"
        if profile == "note" and (NOTE_TYPE in refused or not item.payload.get("note")):
            profile = "none"
        return profile

    def route(self, client: Client, item: OutboxItem) -> list[str]:
        """Write `item` in its profile, moving down on a definite refusal; Retry/Reject like deliver."""
        profile = self._current(item)
        moved: list[str] = []
        while True:
            if profile == "structured":
                tracking = _Tracking(client)
                try:
                    written = deliver(tracking, item)
                except Reject as exc:
                    refused = _refusal(exc)
                    if refused is None:
                        raise
                    types = [tracking.last_type] if tracking.last_type else list(KIND_TYPES[item.kind])
                    self._refused(item.fhir_base, types, "note", refused)
                    moved.append(
                        f"the EHR refused {', '.join(types)} (HTTP {refused[0]}: {refused[1][:120]})"
                    )
                    profile = "note" if item.kind in NOTE_KINDS and item.payload.get("note") else "none"
                    continue
            elif profile == "note":
                note = item.payload["note"]
                try:
                    stored = client.create(note, if_none_exist=note_condition(note))
                except Exception as exc:
                    refused = _refusal(exc)
                    if refused is None:
                        raise _classify(exc) from None
                    self._refused(item.fhir_base, [NOTE_TYPE], "none", refused)
                    moved.append(f"the EHR refused {NOTE_TYPE} (HTTP {refused[0]}: {refused[1][:120]})")
                    profile = "none"
                    continue
                written = [f"{NOTE_TYPE}/{stored.get('id')}"]
            else:
                if self.ledger.get(item.id) is None:  # an item queued before the ledger existed: keep it here
                    raise Reject(
                        "; ".join(
                            [
                                *moved,
                                "the EHR accepts no such write and the entry is not in the "
                                "ledger: it is kept here, not saved",
                            ]
                        )
                    )
                written = []
            break
        self._record(item, profile, written, "; ".join(moved))
        return written or [LEDGER_ONLY]

    def _refused(self, base: str, types: list[str], to: str, refused: tuple[int, str]) -> None:
        for rtype in types:
            self.ledger.set_profile(base, rtype, to, f"the EHR refused {rtype} (HTTP {refused[0]})")
        log.warning(
            "FHIR server refused %s (HTTP %s): moved to the %s profile", ",".join(types), refused[0], to
        )

    def _record(self, item: OutboxItem, profile: str, written: list[str], moved: str) -> None:
        entry = self.ledger.get(item.id)
        if entry is not None:
            self.ledger.record_delivery(entry, profile, written, moved)

    def where(self, item: OutboxItem) -> Where:
        """Where the item's entry lives now (after its last delivery, or as planned while pending)."""
        delivery = self.ledger.deliveries(item.fhir_base, item.patient_id).get(item.id)
        if delivery is None:
            return Where(self._current(item), PROFILE_TEXT[self._current(item)])
        profile = str(delivery.facts.get("profile", "none"))
        return Where(profile, PROFILE_TEXT.get(profile, ""), str(delivery.facts.get("message") or ""))


def capture(
    ledger: Ledger,
    outbox: Outbox,
    item_id: str,
    kind: str,
    *,
    fhir_base: str,
    patient_id: str,
    user: str | None,
    facts: dict[str, Any],
    payload: dict[str, Any],
    summary: dict[str, Any] | None,
    mode: str,
    profile: str,
) -> tuple[LedgerRecord, OutboxItem]:
    """Append the entry to the ledger, then queue its delivery (the outbox item with the same id)."""
    record = ledger.append(item_id, kind, fhir_base=fhir_base, patient_id=patient_id, user=user, facts=facts)
    item = outbox.add(
        item_id,
        kind,
        fhir_base=fhir_base,
        patient_id=patient_id,
        payload={**payload, "profile": profile},
        summary=summary,
        mode=mode,
        user=user,
    )
    return record, item
