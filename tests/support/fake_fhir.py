"""The one hand-written FHIR fake for unit tests: an R4 server in a dict behind FhirClient's interface.

It answers `batch`, `search`, `read`, `create` and `transaction` like a strict server would: the search
parameters the app uses are honoured (patient, date, type, code, status, occurrence,
`_revinclude=Task:encounter`, `_count`); any other parameter, or one listed in `reject`, is a 400.
`filtering=False` makes searches return every resource of the type (the rules cut dates and codes
themselves), `error` makes every call fail, `forbidden` answers 403 for those types, `batch_ok=False`
refuses batches (the app falls back to GETs), `any_id` answers every read. Every call is recorded
(`calls`, `batches`, `gets`) and counted (`round_trips`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode

from smart_app.fhir.client import BatchResult, FhirError, error_for

BASE = "http://fhir.fake.test/fhir"
# Where each resource type names its patient.
SUBJECT = {
    "Condition": "subject",
    "CarePlan": "subject",
    "Encounter": "subject",
    "ChargeItem": "subject",
    "Communication": "subject",
    "Consent": "patient",
    "Task": "for",
    "Goal": "subject",
    "MedicationRequest": "subject",
    "AllergyIntolerance": "patient",
    "CareTeam": "subject",
    "DocumentReference": "subject",
    "Claim": "patient",
    "ExplanationOfBenefit": "patient",
}
KNOWN = frozenset(
    {"patient", "date", "type", "code", "status", "occurrence", "_revinclude", "_count", "identifier"}
)


class FakeFhir:
    """An in-memory FHIR server with FhirClient's methods."""

    def __init__(
        self,
        resources: Iterable[dict[str, Any]] = (),
        *,
        base: str = BASE,
        filtering: bool = True,
        batch_ok: bool = True,
        reject: frozenset[str] = frozenset(),
        forbidden: frozenset[str] = frozenset(),
        ignore_patient: bool = False,
        error: Exception | None = None,
        any_id: bool = False,
    ) -> None:
        self.resources: list[dict[str, Any]] = list(resources)  # a live list: tests may share it
        self.base = base
        self.filtering, self.batch_ok = filtering, batch_ok
        self.reject, self.forbidden, self.ignore_patient = reject, forbidden, ignore_patient
        self.error = error
        self.any_id = any_id  # a read of an unknown id answers a bare resource (a server full of patients)
        self.round_trips = 0
        self.calls: list[tuple[str, Any]] = []
        self.batches: list[list[str]] = []
        self.gets: list[str] = []
        self._ids = itertools.count(1)

    def _of(self, rtype: str) -> list[dict[str, Any]]:
        return [r for r in self.resources if isinstance(r, dict) and r.get("resourceType") == rtype]

    def _get(self, rtype: str, rid: str) -> dict[str, Any] | None:
        return next((r for r in self._of(rtype) if r.get("id") == rid), None)

    def add(self, *resources: dict[str, Any]) -> None:
        """Store (or replace, by type and id) resources."""
        for r in resources:
            old = self._get(r["resourceType"], r["id"])
            if old is not None:
                self.resources.remove(old)
            self.resources.append(r)

    # -- the client interface
    def batch(self, requests_: list[str], **_: Any) -> list[BatchResult]:
        self._call("batch", list(requests_))
        if not self.batch_ok:
            raise FhirError(405, "HTTP 405 from FHIR server: batch is not supported")
        self.batches.append(list(requests_))
        return [self._answer(u) for u in requests_]

    def search(self, resource_type: str, params: Any = None, **_: Any) -> list[dict[str, Any]]:
        self._call("search", (resource_type, params))
        pairs = list(params.items()) if isinstance(params, dict) else list(params or [])
        url = f"{resource_type}?{urlencode(pairs)}" if pairs else resource_type
        self.gets.append(url)
        result = self._answer(url)
        if not result.ok:
            raise error_for(result.status, result.message)
        return result.resources

    def read(self, resource_type: str, resource_id: str) -> dict[str, Any]:
        self._call("read", (resource_type, resource_id))
        self.gets.append(f"{resource_type}/{resource_id}")
        result = self._answer(f"{resource_type}/{resource_id}")
        if not result.ok:
            raise error_for(result.status, result.message)
        return result.resources[0]

    def create(self, resource: dict[str, Any], if_none_exist: str | None = None, **_: Any) -> dict[str, Any]:
        self._call("create", resource)
        stored = {**resource, "id": resource.get("id") or f"fake-{next(self._ids)}"}
        self.add(stored)
        return stored

    def update(self, resource: dict[str, Any], **_: Any) -> dict[str, Any]:
        self._call("update", resource)
        self.add(resource)
        return resource

    def _call(self, kind: str, what: Any) -> None:
        self.round_trips += 1
        self.calls.append((kind, what))
        if self.error is not None:
            raise self.error

    # -- the server side
    def _answer(self, url: str) -> BatchResult:
        path, _, query = url.partition("?")
        rtype, _, rid = path.partition("/")
        if rtype in self.forbidden:
            return BatchResult(403, [], "HTTP 403 from FHIR server: scope not granted", None, url)
        if rid:
            found = self._get(rtype, unquote(rid))
            if found is None and self.any_id:
                found = {"resourceType": rtype, "id": unquote(rid)}
            if found is None:
                return BatchResult(404, [], f"HTTP 404 from FHIR server: {rtype} not found", None, url)
            return BatchResult(200, [found], request=url)
        params = parse_qsl(query)
        for name, _ in params:
            if self.filtering and (name not in KNOWN or name in self.reject):
                return BatchResult(
                    400, [], f"HTTP 400 from FHIR server: Unknown search parameter '{name}'", None, url
                )
        of_type = self._of(rtype)
        matches = [r for r in of_type if not self.filtering or _matches(r, params, self.ignore_patient)]
        included: list[dict[str, Any]] = []
        if ("_revinclude", "Task:encounter") in params:
            keys = {f"Encounter/{r['id']}" for r in matches}
            tasks = self._of("Task")
            included = tasks if not self.filtering else [
                r for r in tasks if (r.get("encounter") or {}).get("reference") in keys
            ]
        return BatchResult(200, matches + included, request=url)


def _matches(res: dict[str, Any], params: list[tuple[str, str]], ignore_patient: bool) -> bool:
    """Does `res` match the search (the parameters the readiness fetch uses; missing fields match)."""
    for name, value in params:
        if name == "patient" and not ignore_patient:
            field = SUBJECT.get(res["resourceType"], "subject")
            ref = (res.get(field) or {}).get("reference")
            if ref is not None and ref != f"Patient/{value}":
                return False
        elif name in ("date", "occurrence") and not _in_range(res, name, value):
            return False
        elif name in ("type", "code"):
            concepts = res.get(name)
            concepts = concepts if isinstance(concepts, list) else [concepts or {}]
            codes = {c.get("code") for cc in concepts for c in cc.get("coding", [])}
            if not codes & set(value.split(",")):
                return False
        elif name == "status" and res.get("status") not in value.split(","):
            return False
        elif name == "identifier":
            system, _, code = value.rpartition("|")
            if not any(i.get("value") == code and (not system or i.get("system") == system)
                       for i in res.get("identifier") or () if isinstance(i, dict)):
                return False
    return True


def _in_range(res: dict[str, Any], name: str, value: str) -> bool:
    if name == "date":
        period = res.get("period") or {}
        lo = str(period.get("start") or "0000")[:10]
        hi = str(period.get("end") or "9999")[:10]
    else:
        when = res.get("occurrenceDateTime") or (res.get("occurrencePeriod") or {}).get("start") or ""
        lo = hi = str(when)[:10]
        if not lo:
            return True
    bound = value[2:]
    return not ((value.startswith("ge") and hi < bound) or (value.startswith("lt") and lo >= bound))
