"""Operations: /healthz and /readyz, request ids and JSON logs, ProxyFix from PROXIES, one background loop per
instance (flock election) and the stop callbacks."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

from flask import Flask, request

from smart_app.web import lifecycle
from smart_app.web.request_log import JsonFormatter, RequestIdFilter
from tests.support import app as support_app


def make_app(tmp_path: Path, **config: Any) -> Flask:
    app = support_app.make_app(tmp_path, **config)

    @app.get("/_t/seen")
    def _seen() -> dict[str, Any]:
        logging.getLogger("smart_app.test").info("inside the request")
        return {"scheme": request.scheme, "remote": request.remote_addr, "host": request.host}

    return app


def test_healthz_and_readyz_report_databases_and_the_outbox_backlog(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    client = app.test_client()
    assert client.get("/healthz").json["status"] == "ok"
    outbox, _ = app.extensions["ccm_ready_outbox"]
    outbox.add("i-1", "time", fhir_base="http://fhir.test", patient_id="p1", payload={"bundle": {}})
    resp = client.get("/readyz")
    assert resp.status_code == 200
    body = resp.json
    assert body["status"] == "ready"
    assert set(body["database"]) >= {"sqlite:sessions.sqlite3", "sqlite:outbox.sqlite3"}
    assert body["outbox"]["backlog"] == 1 and body["outbox"]["oldest_pending_seconds"] >= 0
    assert "Set-Cookie" not in resp.headers  # probes never create sessions


def test_readyz_answers_503_when_a_database_is_unreachable(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    outbox, _ = app.extensions["ccm_ready_outbox"]
    outbox.db.close()
    resp = app.test_client().get("/readyz")
    assert resp.status_code == 503
    assert resp.json["database"]["sqlite:outbox.sqlite3"].startswith("unreachable")
    assert app.test_client().get("/healthz").status_code == 200


def test_request_ids_are_echoed_or_made_and_carried_by_json_logs(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.INFO)
    try:
        client = app.test_client()
        given = client.get(
            "/_t/seen?patient=pt-query-value&code=secret", headers={"X-Request-Id": "proxy-id-0001"}
        )
        made = client.get("/_t/seen", headers={"X-Request-Id": "bad id <script>"})
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    assert given.headers["X-Request-Id"] == "proxy-id-0001"
    assert made.headers["X-Request-Id"] != "bad id <script>" and len(made.headers["X-Request-Id"]) == 32
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    inside = [r for r in lines if r["message"] == "inside the request"]
    assert [r["request_id"] for r in inside] == ["proxy-id-0001", made.headers["X-Request-Id"]]
    access = [r for r in lines if r["logger"] == "ccm_ready.access"]
    assert access and access[0]["route"] == "/_t/seen" and access[0]["status"] == 200
    # no query strings in logs (values no random request id or timestamp can contain by chance)
    assert "secret" not in out.getvalue() and "pt-query-value" not in out.getvalue()


def test_forwarded_headers_are_trusted_from_the_configured_number_of_proxies_only(tmp_path: Path) -> None:
    forwarded = {
        "X-Forwarded-For": "203.0.113.9, 10.0.0.2",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "ccm.example.org",
    }
    none = make_app(tmp_path / "a").test_client().get("/_t/seen", headers=forwarded).json
    assert none["scheme"] == "http" and none["remote"] == "127.0.0.1" and none["host"] == "localhost"
    one = make_app(tmp_path / "b", PROXIES=1).test_client().get("/_t/seen", headers=forwarded).json
    assert one == {"scheme": "https", "remote": "10.0.0.2", "host": "ccm.example.org"}
    two = make_app(tmp_path / "c", PROXIES=2).test_client().get("/_t/seen", headers=forwarded).json
    assert two["remote"] == "203.0.113.9"


def test_one_process_per_instance_runs_the_loop_and_another_takes_over(tmp_path: Path) -> None:
    lock = tmp_path / "outbox.lock"
    started: list[str] = []
    first = lifecycle.once_per_instance("loop", lock, lambda: started.append("first"), retry=0.05)
    deadline = time.monotonic() + 5
    while not started and time.monotonic() < deadline:
        time.sleep(0.01)
    second = lifecycle.once_per_instance("loop", lock, lambda: started.append("second"), retry=0.05)
    time.sleep(0.3)
    assert started == ["first"]  # the lock is held: the second waits
    first()  # the first process stops (or dies: the kernel releases its lock)
    while len(started) < 2 and time.monotonic() < deadline + 5:
        time.sleep(0.01)
    assert started == ["first", "second"]
    second()


def test_stop_callbacks_run_once_last_registered_first_and_never_raise() -> None:
    app = Flask(__name__)
    calls: list[str] = []
    lifecycle.on_stop(app, lambda: calls.append("lock released"))
    lifecycle.on_stop(app, lambda: (_ for _ in ()).throw(RuntimeError("db gone")))
    lifecycle.on_stop(app, lambda: calls.append("worker stopped"))
    lifecycle.stop(app)
    lifecycle.stop(app)
    assert calls == ["worker stopped", "lock released"]


def test_the_outbox_worker_stops_cleanly_and_hands_back_its_leases(tmp_path: Path) -> None:
    from smart_app.capture.outbox import Outbox, OutboxWorker

    outbox = Outbox(tmp_path / "o.sqlite3", owner="me")
    for n in range(3):
        outbox.add(f"i-{n}", "time", fhir_base="http://fhir.test", patient_id="p1", payload={"bundle": {}})
    release = threading.Event()

    class SlowClient:
        def transaction(self, bundle: dict[str, Any]) -> dict[str, Any]:
            release.wait(5)
            return {"resourceType": "Bundle", "entry": []}

    worker = OutboxWorker(outbox, lambda item: SlowClient(), interval=0.05)  # type: ignore[arg-type,return-value]
    worker.start()
    deadline = time.monotonic() + 5
    while outbox.counts().get("sending", 0) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    stopper = threading.Thread(target=worker.stop)
    stopper.start()
    time.sleep(0.1)
    release.set()  # the send in flight finishes
    stopper.join(10)
    assert not worker.running
    counts = outbox.counts()
    assert counts.get("sending", 0) == 0 and sum(counts.values()) == 3  # finished or handed back, none lost


def test_a_process_not_running_the_worker_sends_what_its_requests_hold_a_client_for(tmp_path: Path) -> None:
    """gunicorn: the worker loop runs in one process; another process that served the request (and holds
    the session's client, e.g. a SMART token) sends that item itself when woken."""
    from smart_app.capture.outbox import Outbox, OutboxWorker
    from tests.unit.test_outbox import FakeServer, draft, queue

    outbox = Outbox(tmp_path / "o.sqlite3")
    item_id = queue(outbox, draft())
    worker = OutboxWorker(outbox, lambda item: None)  # no client of its own (SMART items need a session)
    worker.assist = True
    server = FakeServer()
    worker.remember(item_id, server)  # type: ignore[arg-type]
    worker.wake()
    deadline = time.monotonic() + 5
    while outbox.counts() != {"saved": 1} and time.monotonic() < deadline:
        time.sleep(0.02)
    assert outbox.counts() == {"saved": 1}
    assert len(server.of("Encounter")) == 1


def test_gunicorn_trusts_no_forwarded_header_itself(tmp_path: Path) -> None:
    """ProxyFix (PROXIES) alone decides; gunicorn's own X-Forwarded-* handling is off."""
    from smart_app import config
    from smart_app.web import serve

    options = serve.gunicorn_options("127.0.0.1", 5000, 2, 4, config.defaults(), tmp_path / "l.lock")
    server = serve.ProductionServer(options)
    assert server.cfg.forwarded_allow_ips == [] and server.cfg.secure_scheme_headers == {}
    assert (server.cfg.workers, server.cfg.threads, server.cfg.worker_class_str) == (2, 4, "gthread")
