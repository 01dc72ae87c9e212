"""Probes for a load balancer or orchestrator: `/healthz` (the process answers) and `/readyz` (it can serve:
every database it uses is reachable; the outbox backlog and its oldest item's age are reported)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Flask, current_app

from smart_app.storage import Database

bp = Blueprint("health", __name__)
log = logging.getLogger(__name__)
STARTED = time.time()


def _databases(app: Flask) -> Iterator[Database]:
    """Each Database the app's stores use, once (found through app.extensions)."""
    seen: set[int] = set()
    for value in app.extensions.values():
        for obj in value if isinstance(value, tuple | list) else (value,):
            db = getattr(obj, "db", None)
            if isinstance(db, Database) and id(db) not in seen:
                seen.add(id(db))
                yield db


@bp.get("/healthz")
def healthz() -> Any:
    return {"status": "ok", "uptime_seconds": round(time.time() - STARTED, 1)}


@bp.get("/readyz")
def readyz() -> Any:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    checks: dict[str, str] = {}
    ok = True
    for db in _databases(app):
        try:
            db.ping()
            checks[db.label] = "ok"
        except Exception as exc:  # reported, never raised: this is the probe
            ok = False
            checks[db.label] = f"unreachable ({type(exc).__name__})"
            log.warning("readiness: database %s unreachable: %s", db.label, type(exc).__name__)
    body: dict[str, Any] = {"status": "ready" if ok else "not ready", "database": checks}
    boxes = app.extensions.get("ccm_ready_outbox")
    if boxes is not None and ok:
        outbox, worker = boxes
        try:
            backlog, oldest = outbox.backlog()
            body["outbox"] = {
                "backlog": backlog,
                "oldest_pending_seconds": None if oldest is None else round(oldest, 1),
                "worker_in_this_process": worker.running,
            }
        except Exception as exc:
            ok = False
            body["status"] = "not ready"
            body["outbox"] = {"error": type(exc).__name__}
    return body, (200 if ok else 503)
