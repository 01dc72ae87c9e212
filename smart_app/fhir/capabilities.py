"""Write profiles: what this EHR lets the app write, from its CapabilityStatement and the launch's scopes.

- *structured*: Encounter + Task + Provenance per time entry, Consent + Provenance per consent (the server
  advertises `create` for each type and the launch may create them);
- *note*: a US Core clinical-note DocumentReference per time entry and per consent (the server advertises
  DocumentReference `create` and the launch may create it);
- *none*: nothing is written to the EHR; the entry lives in the app's ledger only.

A write kind gets the first profile its server and scopes allow. A run-time refusal (403/405/422 answered
with an OperationOutcome) moves the refused resource type down to the next profile for that server
(remembered by the ledger), so nothing is retried forever against a server that will never accept it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

PROFILES = ("structured", "note", "none")
NOTE_TYPE = "DocumentReference"
KIND_TYPES: dict[str, tuple[str, ...]] = {
    "time": ("Encounter", "Task", "Provenance"),
    "correction": ("Encounter", "Task", "Provenance"),
    "consent": ("Consent", "Provenance"),
    "consent-stop": ("Consent", "Provenance"),
    "visit": ("Encounter", "Provenance"),  # the initiating visit (no note form: refused -> the ledger)
}
# Kinds the note profile can carry (a correction of a note-only entry stays in the ledger).
NOTE_KINDS = frozenset({"time", "consent", "consent-stop"})
REFUSAL_STATUSES = frozenset({403, 405, 422})
PROFILE_TEXT = {
    "structured": "Written to the EHR as structured records (Encounter, Task, Consent, Provenance).",
    "note": "Written to the EHR as clinical notes (DocumentReference); the minutes are read back from them.",
    "none": "This EHR accepts nothing from the app: entries live in the app's ledger only. Print the monthly "
    "summary and file it in the chart by hand.",
}
CACHE_SECONDS = 600.0
FAILED_SECONDS = 60.0  # an unreadable CapabilityStatement is asked for again after a minute
# app.extensions key of `(ctx, client) -> WriteProfiles` (registered by the capture face, which holds the
# refusals learned at run time); `profiles_for` falls back to capability + scopes alone.
PROFILES_EXT = "ccm_ready_write_profiles"


@dataclass(frozen=True)
class ServerWrites:
    """What a CapabilityStatement advertises for writes (None: the statement could not be read)."""

    creatable: frozenset[str] | None
    transaction: bool = False

    def allows(self, resource_type: str) -> bool:
        return self.creatable is None or resource_type in self.creatable


def server_writes(capability: Mapping[str, Any] | None) -> ServerWrites:
    """`rest.resource[].interaction` create and `rest.interaction` transaction of a CapabilityStatement.

    No statement at all (unreadable) is read as "unknown": writes are attempted and a refusal is learned."""
    if not isinstance(capability, Mapping) or capability.get("resourceType") != "CapabilityStatement":
        return ServerWrites(None, True)
    creatable: set[str] = set()
    transaction = False
    for rest in capability.get("rest") or ():
        if not isinstance(rest, Mapping) or rest.get("mode", "server") != "server":
            continue
        for inter in rest.get("interaction") or ():
            if isinstance(inter, Mapping) and inter.get("code") == "transaction":
                transaction = True
        for res in rest.get("resource") or ():
            if not isinstance(res, Mapping) or not isinstance(res.get("type"), str):
                continue
            codes = {i.get("code") for i in res.get("interaction") or () if isinstance(i, Mapping)}
            if "create" in codes:
                creatable.add(res["type"])
    return ServerWrites(frozenset(creatable), transaction)


@dataclass(frozen=True)
class WriteProfiles:
    """The profile of each write kind on one server for one launch, with why."""

    by_kind: dict[str, str]
    reasons: dict[str, str] = field(default_factory=dict)
    transaction: bool = False

    def profile(self, kind: str) -> str:
        return self.by_kind.get(kind, "none")

    @property
    def summary(self) -> str:
        """One word for the panel: the time-entry profile (what decides where minutes live)."""
        return self.profile("time")

    def to_json(self) -> dict[str, Any]:
        return {
            "time": self.profile("time"),
            "consent": self.profile("consent"),
            "correction": self.profile("correction"),
            "transaction": self.transaction,
            "reasons": dict(self.reasons),
            "message": PROFILE_TEXT[self.summary],
        }


def choose(
    server: ServerWrites,
    can_write: Callable[[str], bool],
    refused: Mapping[str, tuple[str, str]] | None = None,
) -> WriteProfiles:
    """Each kind's first allowed profile: structured, else note, else none."""
    refused = refused or {}

    def ok(rtype: str, profile: str) -> bool:
        rank = PROFILES.index(refused[rtype][0]) if rtype in refused else 0
        return PROFILES.index(profile) >= rank and server.allows(rtype) and can_write(rtype)

    by_kind: dict[str, str] = {}
    reasons: dict[str, str] = {}
    for kind, types in KIND_TYPES.items():
        blocked = [t for t in types if not ok(t, "structured")]
        if not blocked:
            by_kind[kind] = "structured"
            continue
        why = [refused[t][1] if t in refused else _why(t, server, can_write) for t in blocked]
        reasons[kind] = "; ".join(dict.fromkeys(why))
        by_kind[kind] = "note" if kind in NOTE_KINDS and ok(NOTE_TYPE, "note") else "none"
    return WriteProfiles(by_kind, reasons, server.transaction)


def _why(rtype: str, server: ServerWrites, can_write: Callable[[str], bool]) -> str:
    if not server.allows(rtype):
        return f"the EHR does not accept {rtype} from apps"
    if not can_write(rtype):
        return f"this launch may not create {rtype}"
    return f"the EHR refused {rtype}"


def is_refusal(status: int | None, outcome: Any) -> bool:
    """A definite refusal of a write (not a transient failure): 403/405/422 with an OperationOutcome."""
    return (
        status in REFUSAL_STATUSES
        and isinstance(outcome, Mapping)
        and outcome.get("resourceType") == "OperationOutcome"
    )


def next_profile(profile: str) -> str:
    return PROFILES[min(PROFILES.index(profile) + 1, len(PROFILES) - 1)]


class CapabilityCache:
    """CapabilityStatements per server base, fetched at most once per CACHE_SECONDS (thread-safe).

    One fetch per base at a time: requests arriving while it runs wait for its answer instead of each
    sending their own GET /metadata (a cold worker's first burst of panels). A statement that could not
    be read is remembered too, for FAILED_SECONDS, so a server without a readable /metadata does not
    cost every page a round trip.
    """

    def __init__(self, ttl: float = CACHE_SECONDS, failed_ttl: float = FAILED_SECONDS) -> None:
        self.ttl = ttl
        self.failed_ttl = failed_ttl
        self.fetches = 0
        self._lock = threading.Lock()
        self._known: dict[str, tuple[float, ServerWrites]] = {}
        self._fetching: dict[str, threading.Lock] = {}

    def _fresh(self, key: str) -> ServerWrites | None:
        with self._lock:
            hit = self._known.get(key)
        if hit is None:
            return None
        expires, writes = hit
        return writes if time.monotonic() < expires else None

    def get(self, base: str, fetch: Callable[[], Any]) -> ServerWrites:
        key = base.rstrip("/")
        hit = self._fresh(key)
        if hit is not None:
            return hit
        with self._lock:
            gate = self._fetching.setdefault(key, threading.Lock())
        with gate:  # one fetch per base; the others wait for it and read its answer
            hit = self._fresh(key)
            if hit is not None:
                return hit
            with self._lock:
                self.fetches += 1
            try:
                writes, ttl = server_writes(fetch()), self.ttl
            except Exception as exc:  # unknown: try writes and learn from refusals
                log.info("CapabilityStatement unavailable (%s); write profiles from scopes only",
                         type(exc).__name__)
                writes, ttl = ServerWrites(None, True), self.failed_ttl
            with self._lock:
                self._known[key] = (time.monotonic() + ttl, writes)
            return writes

    def forget(self, base: str) -> None:
        with self._lock:
            self._known.pop(base.rstrip("/"), None)


def profiles_for(extensions: Mapping[str, Any], ctx: Any, client: Any) -> WriteProfiles:
    """The launch's write profiles, for the panel and /session (`extensions` = app.extensions)."""
    known = extensions.get(PROFILES_EXT)
    if known is not None:
        return known(ctx, client)
    fetch = getattr(client, "capabilities", None)
    server = CapabilityCache().get(ctx.fhir_base, fetch if callable(fetch) else (lambda: None))
    return choose(server, ctx.can_write)
