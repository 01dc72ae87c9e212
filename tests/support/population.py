"""Seed a synthetic CCM population (the demo's crafted patients, repeated) into a FHIR server.

Every copy gets its own identifier prefix, so a population can share a server with other tests.
A Group lists the seeded patients (for Group-level $export and for comparing only our own rows).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from smart_app.demo.patients import Clock
from smart_app.demo.seed import SPECS, _crafted
from smart_app.fhir.client import FhirClient

GROUP_SYSTEM = "https://ccm-ready.org/fhir/test-population"


@dataclass(frozen=True)
class SeededPopulation:
    group_id: str
    patients: dict[str, str]  # "Patient/ID" -> spec key (ready-staff, no-consent, ...)
    expected: dict[str, str]  # "Patient/ID" -> expected status


def _patient_id(response: dict[str, Any]) -> str:
    for entry in response.get("entry", []):
        location = (entry.get("response") or {}).get("location", "")
        if location.startswith("Patient/") or "/Patient/" in location:
            return location.split("Patient/", 1)[1].split("/", 1)[0]
    raise RuntimeError("the transaction response names no Patient")


def seed_population(
    client: FhirClient,
    count: int,
    prefix: str,
    *,
    now: datetime | None = None,
    tz: str = "UTC",
    workers: int = 4,
    progress: Callable[[int], None] | None = None,
) -> SeededPopulation:
    """Seed `count` patients cycling through the demo's crafted cases; return their ids and a Group."""
    clock = Clock.at(now, tz)
    specs = [
        replace(SPECS[i % len(SPECS)], key=f"{prefix}-{i:05d}-{SPECS[i % len(SPECS)].key}")
        for i in range(count)
    ]
    # The first bundle creates the shared practitioners; the rest can then run concurrently.
    first = client.transaction(_crafted(specs[0], clock).bundle)
    done = [1]

    def post(spec: Any) -> str:
        pid = _patient_id(client.transaction(_crafted(spec, clock).bundle))
        done[0] += 1
        if progress:
            progress(done[0])
        return pid

    with ThreadPoolExecutor(max_workers=workers) as pool:
        ids = [_patient_id(first), *pool.map(post, specs[1:])]
    kinds = [SPECS[i % len(SPECS)].key for i in range(count)]
    patients = {f"Patient/{pid}": kind for pid, kind in zip(ids, kinds, strict=True)}
    expected = {f"Patient/{pid}": spec.expected for pid, spec in zip(ids, specs, strict=True)}
    group = client.create(
        {
            "resourceType": "Group",
            "identifier": [{"system": GROUP_SYSTEM, "value": prefix}],
            "type": "person",
            "actual": True,
            "member": [{"entity": {"reference": ref}} for ref in patients],
        },
        if_none_exist=f"identifier={GROUP_SYSTEM}|{prefix}",
    )

    return SeededPopulation(str(group["id"]), patients, expected)
