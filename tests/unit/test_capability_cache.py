"""The CapabilityStatement cache: one GET /metadata per base however many requests arrive at once."""

from __future__ import annotations

import threading
import time
from typing import Any

from smart_app.fhir.capabilities import CapabilityCache

STATEMENT = {
    "resourceType": "CapabilityStatement",
    "rest": [{"mode": "server", "resource": [{"type": "Encounter", "interaction": [{"code": "create"}]}]}],
}


def test_concurrent_first_requests_share_one_fetch() -> None:
    cache = CapabilityCache()
    calls: list[int] = []

    def fetch() -> dict[str, Any]:
        calls.append(1)
        time.sleep(0.05)  # a slow server: the others arrive meanwhile
        return STATEMENT

    results: list[Any] = []
    threads = [threading.Thread(target=lambda: results.append(cache.get("https://ehr/fhir/", fetch)))
               for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and cache.fetches == 1
    assert all(r.allows("Encounter") and not r.allows("Consent") for r in results)
    assert cache.get("https://ehr/fhir", fetch) is results[0]  # same base with or without the slash


def test_an_unreadable_statement_is_remembered_for_a_while() -> None:
    cache = CapabilityCache(failed_ttl=0.05)
    calls: list[int] = []

    def broken() -> dict[str, Any]:
        calls.append(1)
        raise OSError("down")

    first = cache.get("https://ehr/fhir", broken)
    assert first.creatable is None  # unknown: writes are tried and refusals learned
    cache.get("https://ehr/fhir", broken)
    assert len(calls) == 1
    time.sleep(0.06)
    assert cache.get("https://ehr/fhir", lambda: STATEMENT).allows("Encounter")
