"""An in-memory FHIR server for the fuzz suite: fast, never fails, stores what it is sent (bounded)."""

from __future__ import annotations

import uuid
from typing import Any

from smart_app.fhir.client import BatchResult, FhirNotFound

BASE = "http://fuzz.test/fhir"
PATIENT = "fuzz-p1"
NURSE = "Practitioner/fuzz-rn"
KEEP = 200  # stored resources kept (oldest dropped): searches stay fast over thousands of cases


class MemoryFhir:
    """read / search / batch / transaction / create over a small in-memory store."""

    def __init__(self) -> None:
        self.base = BASE
        self.round_trips = 0
        self.resources: list[dict[str, Any]] = [
            {"resourceType": "Patient", "id": PATIENT, "name": [{"family": "Fuzz"}],
             "generalPractitioner": [{"reference": NURSE}]},
            {"resourceType": "Practitioner", "id": "fuzz-rn", "name": [{"family": "Nurse"}]},
        ]

    def _of(self, rtype: str) -> list[dict[str, Any]]:
        return [r for r in self.resources if r.get("resourceType") == rtype]

    def read(self, resource_type: str, resource_id: str) -> dict[str, Any]:
        for res in self._of(resource_type):
            if res.get("id") == resource_id:
                return res
        raise FhirNotFound(404, f"{resource_type}/{resource_id} is not known")

    def search(self, resource_type: str, params: Any = None, **_: Any) -> list[dict[str, Any]]:
        return self._of(resource_type)

    def search_bundles(self, resource_type: str, params: Any = None, **_: Any) -> Any:
        yield {"resourceType": "Bundle", "type": "searchset",
               "entry": [{"resource": r} for r in self._of(resource_type)]}

    def follow_pages(self, bundle: dict[str, Any], resource_type: str = "", **_: Any) -> list[dict[str, Any]]:
        return []

    def batch(self, requests_: list[str], **_: Any) -> list[BatchResult]:
        return [BatchResult(200, self._of(str(url).split("?", 1)[0].split("/", 1)[0]), request=str(url))
                for url in requests_]

    def _store(self, resource: dict[str, Any]) -> dict[str, Any]:
        res = {**resource, "id": resource.get("id") or uuid.uuid4().hex[:12], "meta": {"versionId": "1"}}
        self.resources.append(res)
        if len(self.resources) > KEEP:
            del self.resources[2:3]
        return res

    def transaction(self, bundle: dict[str, Any]) -> dict[str, Any]:
        out = []
        for entry in bundle.get("entry") or []:
            res = self._store(entry.get("resource") or {})
            out.append({"response": {"status": "201 Created",
                                     "location": f"{BASE}/{res['resourceType']}/{res['id']}/_history/1"}})
        return {"resourceType": "Bundle", "type": "transaction-response", "entry": out}

    def create(self, resource: dict[str, Any], if_none_exist: str | None = None) -> dict[str, Any]:
        return self._store(resource)

    def capabilities(self) -> dict[str, Any]:
        return {"resourceType": "CapabilityStatement"}
