"""The storage layer and every store on it, on SQLite and on PostgreSQL (parametrised `target`)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from smart_app.capture.outbox import Outbox, OutboxWorker
from smart_app.careplan.drafts import DraftStore
from smart_app.cds.replay_store import StoredReplayCache
from smart_app.context import LaunchContext, Token
from smart_app.program.jobs import JobStore, WorklistResult, result_from_json, result_to_json
from smart_app.program.worklist import Blocker, WorklistRow
from smart_app.storage import PostgresDatabase, SqliteDatabase, as_database, open_database
from smart_app.web.sessions import SessionStore
from tests.storage.conftest import Target
from tests.unit.test_outbox import BASE, Clock, FakeServer, draft, queue


def _db(target: Target) -> SqliteDatabase | PostgresDatabase:
    db = open_database(target())
    assert isinstance(db, SqliteDatabase | PostgresDatabase)
    return db


# ----------------------------------------------------------------------------- the layer


def test_a_failed_transaction_is_rolled_back_and_floats_keep_8_bytes(target: Target) -> None:
    db = _db(target)
    db.migrate("careplan_drafts")
    insert = "INSERT INTO drafts (key, payload, state, updated) VALUES (?, ?, ?, ?)"
    with pytest.raises(RuntimeError), db.transaction() as tx:
        tx.run(insert, ("x", "{}", "d", 1.0))
        raise RuntimeError("boom")
    with db.read() as tx:
        assert tx.one("SELECT COUNT(*) FROM drafts") == (0,)
    with db.transaction() as tx:
        tx.run(insert, ("a", "{}", "d", 1700000000.123456))
    with db.read() as tx:
        assert tx.one("SELECT updated FROM drafts WHERE key = ?", ("a",)) == (1700000000.123456,)
    db.ping()


def test_a_url_that_is_not_postgresql_is_refused() -> None:
    with pytest.raises(ValueError, match="postgresql://"):
        open_database("mysql://db/x")


# ----------------------------------------------------------------------------- outbox


def test_outbox_round_trip_and_idempotent_add(target: Target) -> None:
    clock = Clock()
    outbox = Outbox(target(), clock=clock)
    d = draft()
    item_id = queue(outbox, d)
    assert queue(outbox, d) == item_id  # a double submit keeps the first
    item = outbox.get(item_id)
    assert item is not None and item.state == "pending"
    named = outbox.add(
        "u-1",
        "consent",
        fhir_base=BASE + "/",
        patient_id="p1",
        payload={"bundle": {}},
        user="Practitioner/7",
        mode="smart",
    )
    assert (named.user, named.mode, named.fhir_base) == ("Practitioner/7", "smart", BASE)
    outbox.mark_rejected("u-1", "refused")
    server = FakeServer()
    after = outbox.send(item_id, server)
    assert after is not None and after.state == "saved" and after.result
    assert outbox.counts() == {"saved": 1, "rejected": 1}
    assert outbox.backlog() == (0, None)


def test_leases_from_two_instances_never_overlap(target: Target) -> None:
    """Two instances polling together lease disjoint items; all are sent once."""
    clock = Clock()
    a = Outbox(target(), clock=clock, owner="a")
    b = Outbox(target(), clock=clock, owner="b")
    ids = [queue(a, draft(datetime(2026, 11, 2, 8, i, tzinfo=UTC))) for i in range(40)]
    taken: dict[str, list[str]] = {"a": [], "b": []}

    def poll(box: Outbox) -> None:
        while True:
            items = box.claim_due(3)
            if not items:
                return
            taken[box.owner].extend(i.id for i in items)

    threads = [threading.Thread(target=poll, args=(box,)) for box in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(taken["a"] + taken["b"]) == sorted(ids)  # each leased exactly once
    assert not set(taken["a"]) & set(taken["b"])


def test_an_instance_that_died_is_taken_over_after_its_lease(target: Target) -> None:
    clock = Clock()
    dead = Outbox(target(), clock=clock, owner="dead", lease=30)
    ids = [queue(dead, draft(datetime(2026, 11, 2, 9, i, tzinfo=UTC))) for i in range(3)]
    assert len(dead.claim_due(10)) == 3  # leased, then the instance was killed (no release)
    survivor = Outbox(target(), clock=clock, owner="alive", lease=30)
    assert survivor.claim_due(10) == []
    clock.now += 31
    server = FakeServer()
    assert OutboxWorker(survivor, lambda item: server).run_once() == 3
    assert survivor.counts() == {"saved": 3}
    assert len(server.of("Encounter")) == 3
    assert {i.id for i in survivor.for_patient(BASE, "p1")} == set(ids)


def test_a_stopping_instance_hands_its_leases_back(target: Target) -> None:
    clock = Clock()
    stopping = Outbox(target(), clock=clock, owner="stopping")
    queue(stopping, draft())
    assert len(stopping.claim_due(10)) == 1
    assert stopping.release() == 1
    other = Outbox(target(), clock=clock, owner="other")
    assert len(other.claim_due(10)) == 1  # due at once, no lease to wait for


def test_restart_with_entries_pending_loses_none(target: Target) -> None:
    clock = Clock()
    first = Outbox(target(), clock=clock)
    down = FakeServer()
    from smart_app.fhir.client import FhirUnavailable

    down.failures = [FhirUnavailable(None, "down")] * 5
    ids = [queue(first, draft(datetime(2026, 11, 4, 8, i, tzinfo=UTC))) for i in range(5)]
    for item_id in ids:
        first.send(item_id, down)
    first.claim_due(2)  # two were being sent when the app stopped
    first.close()
    reopened = Outbox(target(), clock=clock)  # the app restarted (new process)
    assert reopened.backlog()[0] == 5
    clock.now += 3600
    server = FakeServer()
    assert OutboxWorker(reopened, lambda item: server).run_once() == 5
    assert reopened.counts() == {"saved": 5}
    assert sorted(e["identifier"][0]["value"] for e in server.of("Encounter")) == sorted(ids)


# ----------------------------------------------------------------------------- sessions, drafts, replay, jobs


def test_a_session_written_by_one_instance_is_read_by_another(target: Target) -> None:
    one = SessionStore(target())
    other = SessionStore(target())
    ctx = LaunchContext(
        mode="smart",
        fhir_base="https://ehr.example/fhir",
        patient_id="p1",
        user="Practitioner/1",
        granted_scopes=frozenset({"patient/*.rs"}),
        token=Token("at", "Bearer", time.time() + 300, "rt", "patient/*.rs"),
    )
    one.save_data("k" * 43, {"csrf": "t"})
    one.set_context("k" * 43, ctx, {"token_endpoint": "https://ehr.example/token"})
    assert other.load_data("k" * 43) == {"csrf": "t"}
    loaded = other.load_context("k" * 43)
    assert loaded is not None and loaded[0] == ctx and loaded[1]["token_endpoint"].endswith("/token")
    other.update_token("k" * 43, Token("at2", "Bearer", time.time() + 600, "rt2", ""))
    again = one.load_context("k" * 43)
    assert again is not None and again[0].token is not None and again[0].token.access_token == "at2"
    one.delete("k" * 43)
    assert other.load_data("k" * 43) is None


def test_idle_sessions_expire(target: Target) -> None:
    store = SessionStore(target(), idle_seconds=0.05)
    store.save_data("idle", {"a": 1})
    time.sleep(0.1)
    assert store.load_data("idle") is None
    assert store.purge_idle() == 0


def test_drafts(target: Target) -> None:
    store = DraftStore(target())
    store.put("k", {"plan_key": "x", "goals": []}, "draft")
    store.put("k", {"plan_key": "x", "goals": [1]}, "failed", "server down")
    got = DraftStore(target()).get("k")
    assert got is not None and got[:3] == ({"plan_key": "x", "goals": [1]}, "failed", "server down")
    store.delete("k")
    assert store.get("k") is None


def test_a_jti_seen_by_one_instance_is_a_replay_on_another(target: Target) -> None:
    now = time.time()
    one, other = StoredReplayCache(target()), StoredReplayCache(target())
    assert one.check_and_remember("iss", "jti-1", now + 300, now)
    assert not other.check_and_remember("iss", "jti-1", now + 300, now)
    assert other.check_and_remember("iss", "jti-2", now + 300, now)
    assert one.check_and_remember("other-iss", "jti-1", now + 300, now)
    # once expired (beyond the leeway) the pair may be used again
    assert other.check_and_remember("iss", "jti-1", now + 300, now + 1000)


def _row(patient: str) -> WorklistRow:
    return WorklistRow(
        patient,
        "Ann Example",
        "2026-11",
        "ready",
        (("99490", 1),),
        25,
        0,
        "99439",
        5,
        3,
        (Blocker("documentation", "doc.x", "Missing note"),),
        Decimal("60.49"),
        True,
        True,
        False,
        (("99490", 1),),
        Decimal("60.49"),
        2,
        0,
        True,
        {"status": "ready"},
    )


def test_worklist_jobs_are_shared_and_results_round_trip(target: Target) -> None:
    one, other = JobStore(target()), JobStore(target())
    job, run_it = one.begin("key-1", owner="one")
    assert run_it and job.state == "running"
    again, run_again = other.begin("key-1", owner="other")
    assert not run_again and again.state == "running"  # running elsewhere: not started twice
    one.progress("key-1", stage="evaluating patients", done=3, total=10)
    seen = other.get("key-1")
    assert seen is not None and (seen.stage, seen.done, seen.total) == ("evaluating patients", 3, 10)
    result = WorklistResult(
        "2026-11", [_row("Patient/1")], {"2026-10": [_row("Patient/2")]}, "bulk", 2, 1.0, 2.0
    )
    assert result_from_json(result_to_json(result)) == result
    one.finish("key-1", result=result)
    done = other.get("key-1")
    assert done is not None and done.state == "done" and done.result == result
    assert other.begin("key-1")[1] is False  # finished: served, not rerun
    assert other.begin("key-1", force=True)[1] is True


def test_a_job_whose_instance_died_is_run_again(target: Target, monkeypatch: pytest.MonkeyPatch) -> None:
    store = JobStore(target())
    assert store.begin("key-2", owner="dead")[1]
    import smart_app.program.jobs as jobs

    monkeypatch.setattr(jobs, "STALE_SECONDS", 0.0)
    assert JobStore(target()).begin("key-2", owner="alive")[1]


def test_as_database_accepts_a_database_path_or_url(target: Target) -> None:
    db = _db(target)
    assert as_database(db) is db
    assert as_database(target()).dialect == db.dialect


def test_a_named_lock_excludes_other_threads_and_processes(target: Target) -> None:
    import subprocess
    import sys

    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys, time\n"
                "from smart_app.storage import open_database\n"
                "db = open_database(sys.argv[1])\n"
                "with db.named_lock('refresh:k'):\n"
                "    print('held', flush=True)\n"
                "    time.sleep(0.6)\n"
            ),
            target(),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "held"
    db = _db(target)
    t0 = time.monotonic()
    with db.named_lock("refresh:k"):
        waited = time.monotonic() - t0
    child.wait(10)
    assert waited > 0.3  # the other process held it
    with db.named_lock("refresh:other"):  # another name is independent
        pass
    inside: list[int] = []

    def hold() -> None:
        with _db(target).named_lock("refresh:k"):
            inside.append(1)
            time.sleep(0.2)
            inside.append(-1)

    threads = [threading.Thread(target=hold) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert inside == [1, -1, 1, -1, 1, -1]  # never two holders at once
