"""Two app instances (gunicorn) behind no balancer but the test, sharing one PostgreSQL and one sekmet-fhir.

200 time entries are spread over both; instance A is SIGKILLed mid-burst (while it holds outbox leases)
and not restarted. Whatever the client could not get an answer for is sent again to B with the same entry
id (as a browser retry or a load balancer would). After recovery every entry is on the FHIR server
exactly once, and the entries A had leased were delivered by B. A session opened on A works on B.
A clean stop (SIGTERM) with entries pending loses none either.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
import requests

from benchmarks.latency_proxy import LatencyProxy
from fhir_mapping.write_time import TIME_ENTRY_ID
from smart_app.fhir.client import FhirClient
from tests.support.instances import AppInstance, SwitchableProxy, proxied_base, start_instance
from tests.support.postgres import PostgresCluster
from tests.support.sekmet import SekmetServer, free_port

pytestmark = pytest.mark.integration

NURSE = "Practitioner/rn-two"
NOTE = "Reviewed home glucose log (diabetes); adjusted metformin timing; recheck readings Friday."
ENTRIES = 200
PATIENTS = 8
CLIENTS = 8
LEASE = 4.0


@pytest.fixture
def shared(postgres: PostgresCluster, sekmet: SekmetServer, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A fresh database, sekmet behind a 20 ms latency proxy, and the environment both instances share."""
    url = postgres.new_database("two")
    parts = urlsplit(sekmet.base)
    with LatencyProxy(f"{parts.scheme}://{parts.netloc}", 0.02) as proxy:
        base = proxied_base(proxy, sekmet.base)
        env = {
            "CCM_READY_DATABASE_URL": url,
            "CCM_READY_OPEN_SERVERS": base,
            "CCM_READY_SECRET_KEY": uuid.uuid4().hex,
            "CCM_READY_TIMEZONE": "UTC",
            "CCM_READY_OUTBOX_INTERVAL": "0.3",
            "CCM_READY_OUTBOX_BACKOFF": "0.2",
            "CCM_READY_OUTBOX_LEASE_SECONDS": str(LEASE),
            "CCM_READY_DATABASE_POOL_SIZE": "6",
            "CCM_READY_FHIR_TIMEOUT": "10",
        }
        instances: list[AppInstance] = []
        try:
            yield {"url": url, "base": base, "env": env, "instances": instances, "tmp": tmp_path}
        finally:
            for instance in instances:
                instance.kill()


def _start(shared: dict[str, Any], name: str) -> AppInstance:
    instance = start_instance(free_port(), shared["tmp"] / name, shared["env"])
    shared["instances"].append(instance)
    return instance


def _open_session(origin: str, base: str, patient: str) -> requests.Session:
    http = requests.Session()
    resp = http.get(
        f"{origin}/open", params={"iss": base, "patient": patient}, allow_redirects=False, timeout=30
    )
    assert resp.status_code == 302, resp.text[:500]
    return http


def _csrf(http: requests.Session, origin: str) -> str:
    page = http.get(f"{origin}/time/new", timeout=30)
    assert page.status_code == 200, page.text[:300]
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, "no CSRF token on the form"
    return found.group(1)


def _entry(i: int, now: datetime) -> dict[str, Any]:
    start = (now - timedelta(minutes=10 * (i + 1))).replace(second=0, microsecond=0)
    return {
        "id": str(uuid.uuid4()),
        "date": start.date().isoformat(),
        "start": start.strftime("%H:%M"),
        "minutes": 5,
        "program": "ccm",
        "activity": "patient-call",
        "note": NOTE,
        "performer": NURSE,
    }


def _post(http: requests.Session, origin: str, csrf: str, body: dict[str, Any]) -> requests.Response:
    return http.post(
        f"{origin}/time", json=body, headers={"X-CSRF-Token": csrf, "Accept": "application/json"}, timeout=30
    )


def _outbox_rows(url: str) -> list[tuple[str, str, str | None]]:
    with psycopg.connect(url) as conn:
        return [tuple(r) for r in conn.execute("SELECT id, state, lease_owner FROM outbox").fetchall()]


def _states(url: str | None, data_dir: Path) -> dict[str, str]:
    """Outbox item states from PostgreSQL (`url`) or the instance's SQLite file."""
    if url:
        return {i: s for i, s, _ in _outbox_rows(url)}
    import sqlite3

    with contextlib.closing(sqlite3.connect(data_dir / "outbox.sqlite3")) as conn:
        return dict(conn.execute("SELECT id, state FROM outbox").fetchall())


def _new_patient(base: str) -> str:
    fhir = FhirClient(base)
    return str(
        fhir.create({"resourceType": "Patient", "name": [{"family": f"Two{uuid.uuid4().hex[:6]}"}]})["id"]
    )


def _on_server(base: str, patient: str) -> Counter[str]:
    encounters = FhirClient(base).search("Encounter", {"patient": f"Patient/{patient}", "_count": "1000"})
    return Counter(
        ident["value"]
        for enc in encounters
        for ident in enc.get("identifier", [])
        if ident.get("system") == TIME_ENTRY_ID
    )


def _wait_all_saved(url: str, expected: set[str], timeout: float = 90) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        states = {i: s for i, s, _ in _outbox_rows(url)}
        if expected <= states.keys() and all(states[i] == "saved" for i in expected):
            return states
        time.sleep(0.3)
    return states


def test_two_instances_one_killed_mid_burst_lose_and_duplicate_nothing(shared: dict[str, Any]) -> None:
    a, b = _start(shared, "a"), _start(shared, "b")
    base, url = shared["base"], shared["url"]
    patients = [_new_patient(base) for _ in range(PATIENTS)]

    # Sessions opened on one instance are used on both (the cookie carries only a key; the session row is
    # in PostgreSQL): half are opened on A, half on B.
    sessions: list[tuple[requests.Session, str]] = []
    for n, patient in enumerate(patients):
        opener, other = (a, b) if n % 2 == 0 else (b, a)
        http = _open_session(opener.origin, base, patient)
        csrf = _csrf(http, other.origin)
        assert csrf == _csrf(http, opener.origin)
        sessions.append((http, csrf))

    now = datetime.now(UTC)
    entries = [_entry(i, now) for i in range(ENTRIES)]
    answered: dict[str, int] = {}
    a_dead = threading.Event()
    leased_by_a: set[str] = set()

    def send(i: int) -> None:
        body = entries[i]
        http, csrf = sessions[i % PATIENTS]
        target = a if (i // PATIENTS) % 2 == 0 and not a_dead.is_set() else b
        try:
            resp: requests.Response | None = _post(http, target.origin, csrf, body)
        except requests.RequestException:
            resp = None
        if resp is None or resp.status_code >= 500:
            assert target is a, "B must answer every request"
            resp = _post(http, b.origin, csrf, body)  # the client sends it again, same id: idempotent
        assert resp.status_code in (201, 202), resp.text[:300]
        answered[body["id"]] = resp.status_code

    def killer() -> None:
        """Once a third of the burst is in, SIGKILL A the moment it holds an outbox lease."""
        deadline = time.monotonic() + 120
        while len(answered) < ENTRIES // 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        with psycopg.connect(url) as conn:
            while time.monotonic() < deadline:
                rows = conn.execute("SELECT id, lease_owner FROM outbox WHERE state = 'sending'").fetchall()
                mine = {i for i, owner in rows if owner and a.owns(int(owner.rsplit(":", 1)[1]))}
                if mine:
                    a.kill()
                    a_dead.set()
                    saved = {r[0] for r in conn.execute("SELECT id FROM outbox WHERE state = 'saved'")}
                    leased_by_a.update(mine - saved)  # what A had leased and not saved when it died
                    return
                time.sleep(0.002)
        a.kill()
        a_dead.set()

    kill_thread = threading.Thread(target=killer)
    kill_thread.start()
    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(send, range(ENTRIES)))
    kill_thread.join()

    assert a.process.poll() is not None, "A was killed and stays dead"
    ids = {e["id"] for e in entries}
    assert set(answered) == ids
    assert leased_by_a, "A was killed while it held outbox leases"
    states = _wait_all_saved(url, ids)
    assert Counter(states.get(i) for i in ids) == {"saved": ENTRIES}
    on_server: Counter[str] = Counter()
    for patient in patients:
        on_server.update(_on_server(base, patient))
    assert set(on_server) == ids, f"lost: {len(ids - set(on_server))}"
    assert max(on_server.values()) == 1, "duplicated on the FHIR server"
    # One outbox worker per instance, not one per gunicorn worker process (B runs two).
    assert b.log.read_text().count("outbox worker runs in process") == 1
    # Only B is alive: the entries A had leased were delivered by the survivor; the sessions still work.
    for http, _ in sessions:
        pending = http.get(f"{b.origin}/time/pending", headers={"Accept": "application/json"}, timeout=30)
        assert pending.status_code == 200


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_restart_with_entries_pending_loses_none(
    backend: str, postgres: PostgresCluster, sekmet: SekmetServer, tmp_path: Path
) -> None:
    """Entries pending (FHIR server down) when the instance stops (SIGTERM) are all sent after a restart."""
    parts = urlsplit(sekmet.base)
    with SwitchableProxy(f"{parts.scheme}://{parts.netloc}", 0.0) as proxy:
        base = proxied_base(proxy, sekmet.base)
        env = {
            "CCM_READY_OPEN_SERVERS": base,
            "CCM_READY_SECRET_KEY": uuid.uuid4().hex,
            "CCM_READY_TIMEZONE": "UTC",
            "CCM_READY_OUTBOX_INTERVAL": "0.3",
            "CCM_READY_OUTBOX_BACKOFF": "0.2",
            "CCM_READY_FHIR_TIMEOUT": "3",
        }
        if backend == "postgresql":
            env["CCM_READY_DATABASE_URL"] = postgres.new_database("restart")
        patient = _new_patient(base)
        data_dir = tmp_path / "data"
        first = start_instance(free_port(), data_dir, env, workers=1, threads=4)
        try:
            http = _open_session(first.origin, base, patient)
            csrf = _csrf(http, first.origin)
            proxy.down = True
            now = datetime.now(UTC)
            ids = []
            for i in range(5):
                body = _entry(500 + i, now)
                resp = _post(http, first.origin, csrf, body)
                assert resp.status_code == 202, resp.text[:300]  # pending: kept, not lost
                ids.append(body["id"])
            assert first.terminate() == 0  # a clean stop with the entries pending
        finally:
            first.kill()
        states = _states(env.get("CCM_READY_DATABASE_URL"), data_dir)
        assert {states[i] for i in ids} == {"pending"}  # none left leased ("sending") by the stopped instance
        assert _on_server(sekmet.base, patient) == Counter()
        proxy.down = False
        second = start_instance(free_port(), data_dir, env, workers=1, threads=4)  # same data / database
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not set(ids) <= set(_on_server(base, patient)):
                time.sleep(0.3)
            on_server = _on_server(base, patient)
            assert set(ids) <= set(on_server) and max(on_server.values()) == 1
            # The entry reaches the server before the outbox marks it saved: wait for the mark, then check.
            while time.monotonic() < deadline:
                ready = requests.get(f"{second.origin}/readyz", timeout=10).json()
                if ready["outbox"]["backlog"] == 0:
                    break
                time.sleep(0.2)
            assert ready["status"] == "ready" and ready["outbox"]["backlog"] == 0
        finally:
            second.terminate()
