"""The program page's worklist jobs: one per FHIR server, Group, month, zone, policy and practitioner.

Kept in the app's database (`JobStore`, shared by every process and instance), run in a background
thread with a heartbeat, progress twice a second, and the per-user and total job limits of
auth/program_access.py. The views (views.py, payer_views.py) read and start them here.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from typing import Any

from flask import current_app

from smart_app.auth import program_access
from smart_app.errors import AppError
from smart_app.program.jobs import HEARTBEAT_SECONDS, JobState, JobStore, WorklistResult, build_worklist
from smart_app.readiness.captured import captured_by_patient, ledger_of
from smart_app.storage import database_for

log = logging.getLogger(__name__)

HISTORY_MONTHS = 5  # the trend shows the month and the five before it
MAX_JOBS = 8  # finished worklists kept (per server, group, month, zone, policy)


Job = JobState  # what the page and /program/status show


def job_store() -> JobStore:
    """The app's worklist jobs (shared by every process and instance through the app's database)."""
    store = current_app.extensions.get("ccm_ready_worklist_jobs")
    if store is None:
        with _lock:
            store = current_app.extensions.get("ccm_ready_worklist_jobs")
            if store is None:
                store = JobStore(database_for(current_app.config, "worklist_jobs"), keep=MAX_JOBS)
                current_app.extensions["ccm_ready_worklist_jobs"] = store
    return store


_lock = threading.Lock()


def _key(base: str, p: dict[str, Any]) -> tuple[str, ...]:
    who = p["billing_practitioner"] or ""
    return (base, p["group"] or "", str(p["month"]), p["tz"], p["policy"] or "", who)


def job_key(base: str, p: dict[str, Any]) -> str:
    """The stored job's key: server, Group, month, zone, policy and billing practitioner."""
    return json.dumps(_key(base, p))


def job_for(base: str, p: dict[str, Any]) -> Job | None:
    """The worklist job for this server and these parameters as stored (any instance may have run it)."""
    return job_store().get(job_key(base, p))


def store_result(base: str, p: dict[str, Any], result: WorklistResult) -> Job:
    """Record a finished worklist for this server and these parameters (tests; a run made elsewhere)."""
    store = job_store()
    key = job_key(base, p)
    store.begin(key, force=True, owner="stored")
    store.finish(key, result=result)
    job = store.get(key)
    assert job is not None
    return job


def start_job(base: str, p: dict[str, Any], force: bool = False) -> Job:
    """The job for these parameters, started in a background thread here unless it is running or done."""
    store = job_store()
    key = job_key(base, p)
    token_provider = program_access.population_token_provider(base)
    job, run_it = store.begin(key, force=force, owner=f"{socket.gethostname()}:{os.getpid()}")
    if not run_it:
        return job
    try:
        ticket = program_access.start_job()  # per-user and total limits, running jobs counted (429)
    except AppError:
        store.finish(key, error="Not started: too many worklists are being prepared; try again in a minute.")
        raise
    prefer_bulk = bool(current_app.config.get("PROGRAM_BULK", True))
    finished = threading.Event()
    last = {"at": 0.0}
    captured = captured_by_patient(ledger_of(current_app), base)  # what the app captured on this server

    def stage(text: str) -> None:
        store.progress(key, stage=text)

    def count(done: int, total: int) -> None:
        now = time.monotonic()
        if done == total or now - last["at"] >= 0.5:  # progress is for people: twice a second is plenty
            last["at"] = now
            store.progress(key, done=done, total=total)

    def heartbeat() -> None:
        while not finished.wait(HEARTBEAT_SECONDS):
            try:
                store.progress(key)
            except Exception:  # the database may be briefly away; the job goes on
                log.warning("worklist job heartbeat failed")

    def work() -> None:
        try:
            result = build_worklist(
                base,
                p["month"],
                group=p["group"],
                tz=p["tz"],
                policy=p["policy"],
                billing_practitioner=p["billing_practitioner"],
                history_months=HISTORY_MONTHS,
                prefer_bulk=prefer_bulk,
                token_provider=token_provider,
                on_stage=stage,
                on_patient=count,
                captured=captured,
            )
            store.finish(key, result=result)
        except Exception as exc:  # shown on the page; the worker must never die silently
            log.warning("worklist job failed: %s", type(exc).__name__)
            store.finish(key, error=str(exc) or type(exc).__name__)
        finally:
            finished.set()
            ticket.release()

    threading.Thread(target=heartbeat, name="program-worklist-heartbeat", daemon=True).start()
    threading.Thread(target=work, name="program-worklist", daemon=True).start()
    return job
