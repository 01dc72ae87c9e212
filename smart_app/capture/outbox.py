"""Durable outbox: nothing the user records is lost when the FHIR server is down, slow or refuses a token.

An item (time entry, correction, consent) is stored (SQLite DATA_DIR/outbox.sqlite3, or the shared PostgreSQL
database; see smart_app.storage) BEFORE the first
attempt, in state `pending`. A send claims the item with a lease (so two threads or processes never send the
same item at once), writes it idempotently (a transaction whose creates are conditional on our identifiers, or
conditional creates when the server refuses transactions) and marks it `saved` only after the server answered
with success. Transient failures (unreachable, timeout, 5xx/429, expired token, a concurrent change) keep it
`pending` with exponential backoff; a refusal of the content itself (4xx) makes it `rejected`, still stored
and shown with the server's message, and it can be queued again. A background worker retries due items,
also after an app restart. Logs carry item ids and states only: never notes or patient data.

Why over 400 lines: the outbox's store (leases, state changes) and its worker must agree on every
state transition; the delivery decisions live in capture/delivery.py.
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Protocol

from fhir_mapping.write_consent import is_ccm_consent, stop_transaction
from fhir_mapping.write_provenance import WriteError
from fhir_mapping.write_time import correction_transaction, draft_from_json
from smart_app.fhir.client import FhirError, FhirForbidden, FhirUnauthorized, FhirUnavailable
from smart_app.fhir.patient_scope import PatientScopeError, check_transaction
from smart_app.storage import Database, as_database

log = logging.getLogger(__name__)

KINDS = ("time", "correction", "consent", "consent-stop", "visit")
STATES = ("pending", "sending", "saved", "rejected")
RETRY_LATER_STATUSES = frozenset({401, 408, 409, 412, 423, 429})
TRANSACTION_REFUSED = frozenset({404, 405, 501})


class Client(Protocol):
    """The FHIR client methods the outbox uses (FhirClient, PatientScopedClient or a test fake)."""

    def transaction(self, bundle: dict[str, Any]) -> dict[str, Any]: ...

    def create(self, resource: dict[str, Any], if_none_exist: str | None = None) -> dict[str, Any]: ...

    def search(self, resource_type: str, params: Any = None) -> list[dict[str, Any]]: ...


def default_owner() -> str:
    """This process as a lease holder: host and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True, slots=True)
class OutboxItem:
    id: str
    kind: str
    fhir_base: str
    patient_id: str
    mode: str
    user: str | None
    payload: dict[str, Any]
    summary: dict[str, Any]
    state: str
    attempts: int
    next_attempt: float
    last_error: str
    created: float
    saved_at: float | None
    result: list[str]

    @property
    def label(self) -> str:
        """What the user sees: pending | saved | rejected (an item being sent is still pending)."""
        return "pending" if self.state == "sending" else self.state


class Retry(Exception):
    """A transient failure: try again later."""


class Reject(Exception):
    """The server refused the content: retrying the same request cannot succeed."""


_COLUMNS = (
    'id, kind, fhir_base, patient_id, mode, "user", payload, summary, state, attempts, next_attempt,'
    " last_error, created, saved_at, result"
)


def _row(row: tuple[Any, ...]) -> OutboxItem:
    return OutboxItem(
        row[0],
        row[1],
        row[2],
        row[3],
        row[4],
        row[5],
        json.loads(row[6]),
        json.loads(row[7]),
        row[8],
        row[9],
        row[10],
        row[11] or "",
        row[12],
        row[13],
        json.loads(row[14] or "[]"),
    )


class Outbox:
    """The store (SQLite or PostgreSQL). Thread-safe; several processes and instances may share it: a send
    takes a lease (state `sending` until `next_attempt`), so an item is sent by one sender at a time and
    an item whose sender died is taken over when its lease expires."""

    def __init__(
        self,
        db: Database | Path | str,
        *,
        backoff: float = 2.0,
        max_backoff: float = 300.0,
        lease: float = 120.0,
        clock: Callable[[], float] = time.time,
        owner: str | None = None,
        sender: Callable[[Client, OutboxItem], list[str]] | None = None,
    ) -> None:
        self.db = as_database(db)
        self.path = getattr(self.db, "path", None)
        self.sender = sender  # how an item is written (capture.delivery: per write profile); default deliver
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.lease = lease
        self.clock = clock
        self.owner = owner or default_owner()
        self.db.migrate("outbox")  # tables: storage/migrations/versions/outbox_*.py

    def close(self) -> None:
        if self.db.dialect == "sqlite":  # a shared PostgreSQL pool outlives one store
            self.db.close()

    # ------------------------------------------------------------------ writes

    def add(
        self,
        item_id: str,
        kind: str,
        *,
        fhir_base: str,
        patient_id: str,
        payload: dict[str, Any],
        summary: dict[str, Any] | None = None,
        mode: str = "open",
        user: str | None = None,
    ) -> OutboxItem:
        """Store an item as pending (a repeat with the same id keeps the first; that is what makes a
        double-submitted form idempotent)."""
        if kind not in KINDS:
            raise ValueError(f"unknown outbox kind {kind!r}")
        now = self.clock()
        with self.db.transaction() as tx:
            tx.run(
                f"INSERT INTO outbox ({_COLUMNS})"
                " VALUES (?,?,?,?,?,?,?,?,'pending',0,?,'',?,NULL,'[]') ON CONFLICT (id) DO NOTHING",
                (
                    item_id,
                    kind,
                    fhir_base.rstrip("/"),
                    patient_id,
                    mode,
                    user,
                    json.dumps(payload),
                    json.dumps(summary or {}),
                    now,
                    now,
                ),
            )
        item = self.get(item_id)
        assert item is not None
        return item

    def claim(self, item_id: str) -> OutboxItem | None:
        """Take the item for sending (None when saved, rejected, or leased by another sender)."""
        now = self.clock()
        with self.db.transaction() as tx:
            row = tx.one(
                "UPDATE outbox SET state = 'sending', next_attempt = ?, lease_owner = ? WHERE id = ? AND"
                f" (state = 'pending' OR (state = 'sending' AND next_attempt <= ?)) RETURNING {_COLUMNS}",
                (now + self.lease, self.owner, item_id, now),
            )
        return _row(row) if row else None

    def claim_due(self, limit: int = 10) -> list[OutboxItem]:
        """Lease up to `limit` due items at once (pending and due, or leased by a sender that died).

        PostgreSQL: `SELECT ... FOR UPDATE SKIP LOCKED`, so instances polling together take disjoint items
        without waiting on each other; SQLite: the write transaction is exclusive.
        """
        now = self.clock()
        with self.db.transaction() as tx:
            ids = [
                r[0]
                for r in tx.all(
                    "SELECT id FROM outbox WHERE state IN ('pending', 'sending') AND next_attempt <= ?"
                    " ORDER BY created LIMIT ?" + tx.skip_locked,
                    (now, limit),
                )
            ]
            if not ids:
                return []
            marks = ",".join("?" * len(ids))
            rows = tx.all(
                "UPDATE outbox SET state = 'sending', next_attempt = ?, lease_owner = ?"
                f" WHERE id IN ({marks}) RETURNING {_COLUMNS}",
                (now + self.lease, self.owner, *ids),
            )
        return sorted((_row(r) for r in rows), key=lambda i: i.created)

    def release(self, owner: str | None = None) -> int:
        """Hand back the leases `owner` (default: this process) holds: due again now, for any sender."""
        with self.db.transaction() as tx:
            n = tx.run(
                "UPDATE outbox SET state = 'pending', next_attempt = ?, lease_owner = NULL"
                " WHERE state = 'sending' AND lease_owner = ?",
                (self.clock(), owner or self.owner),
            )
        if n:
            log.info("outbox: released %d leased item(s)", n)
        return n

    def mark_saved(self, item_id: str, result: list[str]) -> None:
        with self.db.transaction() as tx:
            tx.run(
                "UPDATE outbox SET state = 'saved', saved_at = ?, last_error = '', result = ?,"
                " attempts = attempts + 1, lease_owner = NULL WHERE id = ?",
                (self.clock(), json.dumps(result), item_id),
            )
        log.info("outbox item %s saved", item_id)

    def mark_retry(
        self, item_id: str, error: str, *, count: bool = True, delay: float | None = None
    ) -> float:
        """Back to pending with exponential backoff (and jitter); returns the delay in seconds."""
        with self.db.read() as tx:
            row = tx.one("SELECT attempts FROM outbox WHERE id = ?", (item_id,))
        attempts = (row[0] if row else 0) + (1 if count else 0)
        if delay is None:
            delay = min(self.max_backoff, self.backoff * 2 ** max(0, attempts - 1)) * random.uniform(0.8, 1.2)
        with self.db.transaction() as tx:
            tx.run(
                "UPDATE outbox SET state = 'pending', attempts = ?, next_attempt = ?, last_error = ?,"
                " lease_owner = NULL WHERE id = ? AND state != 'saved'",
                (attempts, self.clock() + delay, error[:500], item_id),
            )
        log.info("outbox item %s pending (attempt %d): retry in %.1f s", item_id, attempts, delay)
        return delay

    def mark_rejected(self, item_id: str, error: str) -> None:
        with self.db.transaction() as tx:
            tx.run(
                "UPDATE outbox SET state = 'rejected', attempts = attempts + 1, last_error = ?,"
                " lease_owner = NULL WHERE id = ? AND state != 'saved'",
                (error[:500], item_id),
            )
        log.warning("outbox item %s rejected by the server", item_id)

    def purge_saved(self, max_age: float) -> int:
        """Forget items saved over `max_age` seconds ago (the server has them; notes need not stay here)."""
        with self.db.transaction() as tx:
            return tx.run(
                "DELETE FROM outbox WHERE state = 'saved' AND saved_at < ?", (self.clock() - max_age,)
            )

    def requeue(self, item_id: str) -> bool:
        """Queue a rejected item again (after the cause was fixed, e.g. a scope granted)."""
        with self.db.transaction() as tx:
            changed = tx.run(
                "UPDATE outbox SET state = 'pending', next_attempt = ? WHERE id = ? AND state = 'rejected'",
                (self.clock(), item_id),
            )
        return changed == 1

    # ------------------------------------------------------------------ reads

    def _select(self, where: str, params: tuple[Any, ...] = ()) -> list[OutboxItem]:
        with self.db.read() as tx:
            return [_row(r) for r in tx.all(f"SELECT {_COLUMNS} FROM outbox {where}", params)]

    def get(self, item_id: str) -> OutboxItem | None:
        found = self._select("WHERE id = ?", (item_id,))
        return found[0] if found else None

    def due(self, limit: int = 50) -> list[OutboxItem]:
        """Pending items whose time has come, and items whose sender died (expired lease)."""
        return self._select(
            "WHERE state IN ('pending', 'sending') AND next_attempt <= ? ORDER BY created LIMIT ?",
            (self.clock(), limit),
        )

    def for_patient(
        self, fhir_base: str, patient_id: str, states: tuple[str, ...] = STATES
    ) -> list[OutboxItem]:
        marks = ",".join("?" * len(states))
        return self._select(
            f"WHERE fhir_base = ? AND patient_id = ? AND state IN ({marks}) ORDER BY created",
            (fhir_base.rstrip("/"), patient_id, *states),
        )

    def unsaved_time(self, performer: str) -> list[OutboxItem]:
        """Time entries of one performer not yet on the server (any patient): for the overlap check."""
        items = self._select("WHERE kind = 'time' AND state IN ('pending', 'sending')")
        return [i for i in items if i.summary.get("performer") == performer]

    def counts(self) -> dict[str, int]:
        with self.db.read() as tx:
            rows = tx.all("SELECT state, COUNT(*) FROM outbox GROUP BY state")
        return {state: n for state, n in rows}

    def backlog(self) -> tuple[int, float | None]:
        """Items not yet on the server (pending or being sent) and the age in seconds of the oldest."""
        with self.db.read() as tx:
            row = tx.one("SELECT COUNT(*), MIN(created) FROM outbox WHERE state IN ('pending', 'sending')")
        n, oldest = (row or (0, None))
        return int(n or 0), (None if oldest is None else max(0.0, self.clock() - float(oldest)))

    # ------------------------------------------------------------------ sending

    def send(self, item_id: str, client: Client) -> OutboxItem | None:
        """Claim and send one item now; returns its new state (None when someone else holds it)."""
        item = self.claim(item_id)
        if item is None:
            return self.get(item_id)
        return self.send_claimed(item, client)

    def send_claimed(self, item: OutboxItem, client: Client) -> OutboxItem | None:
        """Send an item this process holds the lease of; returns its new state."""
        try:
            result = (self.sender or deliver)(client, item)
        except Retry as exc:
            self.mark_retry(item.id, str(exc))
        except Reject as exc:
            self.mark_rejected(item.id, str(exc))
        except Exception as exc:  # never lose an item to an unexpected error
            log.exception("outbox item %s: unexpected %s", item.id, type(exc).__name__)
            self.mark_retry(item.id, f"unexpected problem ({type(exc).__name__}); will retry")
        else:
            self.mark_saved(item.id, result)
        return self.get(item.id)


# ---------------------------------------------------------------------- delivery


def _classify(exc: Exception) -> Exception:
    """Retry or Reject for an exception raised while talking to the server."""
    if isinstance(exc, (FhirUnavailable, FhirUnauthorized)):
        return Retry(exc.message)
    if isinstance(exc, FhirForbidden):
        return Reject(f"{exc.message}. The app lacks the write permission (scope) for this record.")
    if isinstance(exc, FhirError):
        if exc.status is None or exc.status in RETRY_LATER_STATUSES or exc.status >= 500:
            return Retry(exc.message)
        return Reject(exc.message)
    if isinstance(exc, PermissionError):  # session expired (waits for a new sign-in) or patient scope

        return Reject(str(exc)) if isinstance(exc, PatientScopeError) else Retry(str(exc))
    if isinstance(exc, WriteError):
        return Reject(str(exc))
    return Retry(f"unexpected problem ({type(exc).__name__})")


def _locations(response: dict[str, Any]) -> list[str]:
    out = []
    for entry in response.get("entry") or []:
        resp = entry.get("response") if isinstance(entry, dict) else None
        loc = resp.get("location") if isinstance(resp, dict) else None
        if isinstance(loc, str):
            parts = [p for p in loc.split("/_history")[0].split("/") if p]
            out.append("/".join(parts[-2:]))
    return out


def _check_transaction_response(bundle: dict[str, Any], response: dict[str, Any]) -> list[str]:
    entries = response.get("entry") if isinstance(response, dict) else None
    if (
        response.get("resourceType") != "Bundle"
        or not isinstance(entries, list)
        or len(entries) != len(bundle["entry"])
    ):
        raise Retry("the FHIR server's answer to the transaction was incomplete; will check again")
    for entry in entries:
        status = str((entry.get("response") or {}).get("status", "")) if isinstance(entry, dict) else ""
        if not status[:1] == "2":
            raise Retry(f"the FHIR server answered {status or 'nothing'} for part of the transaction")
    return _locations(response)


def _resolve(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {
            k: (ids.get(v, v) if k == "reference" and isinstance(v, str) else _resolve(v, ids))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_resolve(v, ids) for v in value]
    return value


def conditional_creates(client: Client, bundle: dict[str, Any]) -> list[str]:
    """The transaction's POSTs one by one as conditional creates, urn:uuid references resolved in order.

    Used when a server refuses transactions. A failure part-way leaves earlier resources in place; the
    retry finds them by identifier and continues, so nothing is duplicated.
    """
    ids: dict[str, str] = {}
    written = []
    inner = getattr(client, "inner", client)  # scope was checked on the whole bundle (see deliver)
    for entry in bundle["entry"]:
        req = entry["request"]
        if req["method"] != "POST":
            raise Reject("this server does not accept transactions, which corrections need")
        resource = _resolve(entry["resource"], ids)
        condition = req.get("ifNoneExist")
        if resource["resourceType"] == "Provenance":
            targets = [t["reference"] for t in resource.get("target", [])]
            condition = "&".join(f"target={t}" for t in targets[:1])
        stored = inner.create(resource, if_none_exist=condition)
        ref = f"{stored['resourceType']}/{stored['id']}"
        ids[entry["fullUrl"]] = ref
        written.append(ref)
    return written


def _send_bundle(client: Client, bundle: dict[str, Any]) -> list[str]:
    patient = getattr(client, "patient_id", None)
    if patient:
        check_transaction(bundle, patient)
    try:
        return _check_transaction_response(bundle, client.transaction(bundle))
    except FhirError as exc:
        if exc.status not in TRANSACTION_REFUSED:
            raise
        log.info("FHIR server refused a transaction (%s); using conditional creates", exc.status)
    return conditional_creates(client, bundle)


def _correction_bundle(client: Client, item: OutboxItem) -> dict[str, Any] | None:
    """The correction transaction for the entry as the server has it now (None: already done)."""

    p = item.payload
    patient = f"Patient/{item.patient_id}"
    found = client.search("Encounter", {"_id": p["target_encounter_id"], "patient": patient})
    if len(found) != 1:
        raise Reject("the entry to correct was not found on the FHIR server")
    enc = found[0]
    tasks = client.search(
        "Task", {"encounter": f"Encounter/{enc['id']}", "patient": f"Patient/{item.patient_id}"}
    )
    replacement = draft_from_json(p["replacement"]) if p.get("replacement") else None
    try:
        return correction_transaction(
            _base(client, item),
            enc,
            tasks,
            p["reason"],
            user=p["user"],
            recorded=datetime.fromisoformat(p["recorded"]),
            pack_id=p["pack_id"],
            pack_version=p["pack_version"],
            replacement=replacement,
            verification=p.get("verification"),
        )
    except WriteError as exc:
        if "already marked" in str(exc):
            return None
        raise


def _stop_bundle(client: Client, item: OutboxItem) -> dict[str, Any] | None:
    """Stop the patient's current CCM consent (the latest active one naming this billing practitioner, if any
    names one); None when it is already stopped on that date; with no consent on file, a new inactive one."""

    p = item.payload
    stop_date = date.fromisoformat(p["stop_date"])
    patient = f"Patient/{item.patient_id}"
    consents = [c for c in client.search("Consent", {"patient": patient}) if is_ccm_consent(c)]
    done = [
        c
        for c in consents
        if c.get("status") == "inactive"
        and ((c.get("provision") or {}).get("period") or {}).get("end") == p["stop_date"]
    ]
    if done:
        return None
    active = [c for c in consents if c.get("status") == "active"]
    pprf = p.get("billing_practitioner")
    named = [c for c in active if pprf and pprf in json.dumps((c.get("provision") or {}).get("actor") or [])]
    candidates = named or active
    if not candidates:
        return p["fallback_bundle"]
    current = max(candidates, key=lambda c: str(c.get("dateTime") or ""))
    return stop_transaction(
        _base(client, item),
        current,
        stop_date,
        user=p["user"],
        recorded=datetime.fromisoformat(p["recorded"]),
        pack_id=p["pack_id"],
        pack_version=p["pack_version"],
        verification=p.get("verification"),
    )


def _base(client: Client, item: OutboxItem) -> str:
    return str(getattr(client, "base", "") or item.fhir_base)


def deliver(client: Client, item: OutboxItem) -> list[str]:
    """Write one item to the server; Retry / Reject on failure. Returns the references written."""
    try:
        if item.kind in ("correction", "consent-stop"):
            bundle = (_correction_bundle if item.kind == "correction" else _stop_bundle)(client, item)
            if bundle is None:
                return []
        else:
            bundle = item.payload["bundle"]
        return _send_bundle(client, bundle)
    except (Retry, Reject):
        raise
    except Exception as exc:  # classified below, never swallowed
        raise _classify(exc) from None


# ---------------------------------------------------------------------- background worker


class OutboxWorker:
    """A daemon thread retrying due items; `client_for(item)` gives a client (None: wait for a session)."""

    def __init__(
        self,
        outbox: Outbox,
        client_for: Callable[[OutboxItem], Client | None],
        *,
        interval: float = 5.0,
        wait_for_session: float = 60.0,
    ) -> None:
        self.outbox = outbox
        self.client_for = client_for
        self.interval = interval
        self.wait_for_session = wait_for_session
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._clients: dict[str, Client] = {}
        self._lock = threading.Lock()
        self.assist = False  # set when another process of this instance runs the loop (see wake)
        self._assisting = False

    def remember(self, item_id: str, client: Client) -> None:
        """Keep the client a request used (it carries the session's token provider) for retries."""
        with self._lock:
            self._clients[item_id] = client

    def client(self, item: OutboxItem) -> Client | None:
        with self._lock:
            known = self._clients.get(item.id)
        return known if known is not None else self.client_for(item)

    def wake(self) -> None:
        """Retry due items now. In a process that does not run the worker (`assist`: another process of
        this instance does), send the items this process holds a session's client for, once, now."""
        self._wake.set()
        if self.assist and not self.running:
            with self._lock:
                if self._assisting:
                    return
                self._assisting = True
            threading.Thread(target=self._assist_once, name="ccm-outbox-assist", daemon=True).start()

    def _assist_once(self) -> None:
        try:
            with self._lock:
                remembered = list(self._clients.items())
            now = self.outbox.clock()
            for item_id, client in remembered:
                item = self.outbox.get(item_id)
                waiting = item is not None and item.last_error.startswith("waiting for a session")
                if item is not None and item.state == "pending" and (item.next_attempt <= now or waiting):
                    item = self.outbox.send(item_id, client)
                if item is None or item.state in ("saved", "rejected"):
                    with self._lock:
                        self._clients.pop(item_id, None)
        except Exception:
            log.exception("outbox assist round failed")
        finally:
            with self._lock:
                self._assisting = False

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="ccm-outbox", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the send in flight (if any) finishes, then hand back leases still held."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        try:
            self.outbox.release()
        except Exception:  # the database may be gone at shutdown; the leases then expire by themselves
            log.warning("outbox: could not release leases at stop")

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def run_once(self, batch: int = 10) -> int:
        """Lease due items a batch at a time and send them; returns how many were saved."""
        saved = 0
        while not self._stop.is_set() or self._thread is None:
            items = self.outbox.claim_due(batch)
            for item in items:
                if self._stop.is_set() and self._thread is not None:
                    return saved  # stopping: stop() hands the rest of the batch back (release)
                client = self.client(item)
                if client is None:
                    self.outbox.mark_retry(
                        item.id,
                        "waiting for a session with access to this FHIR server (open the app again)",
                        count=False,
                        delay=self.wait_for_session,
                    )
                    continue
                after = self.outbox.send_claimed(item, client)
                if after is not None and after.state in ("saved", "rejected"):
                    with self._lock:
                        self._clients.pop(item.id, None)
                    saved += after.state == "saved"
            if len(items) < batch:
                break
        return saved

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:  # the worker must survive (e.g. a locked database)
                log.exception("outbox worker round failed")
            self._wake.wait(self.interval)
            self._wake.clear()
