"""The one hand-written FHIR fake for the tests: an R4 server in a dict behind FhirClient's interface.

It answers `batch`, `search` (and `search_bundles` / `follow_pages`), `read`, `create`, `update` and
`transaction` like a strict server would: the search parameters the app uses are honoured (patient, date,
type, code, status, occurrence, `_revinclude=Task:encounter`, `_include=Encounter:participant` with
`_include:iterate=PractitionerRole:practitioner`, `_count`); any other parameter, or one
listed in `reject`, is a 400. `filtering=False` makes searches return every resource of the type (the
rules cut dates and codes themselves), `error` makes every call fail (`write_error` every write),
`forbidden` answers 403 for those types, `batch_ok=False` refuses batches (the app falls back to GETs),
`any_id` answers every read.
`metadata` is the CapabilityStatement `capabilities()` answers (without it the fake offers none, as a
client that cannot say). Created resources get `meta.versionId` "1"; `keep=N` bounds the store (the
oldest created resources go first, the initial ones stay) so thousands of fuzz cases stay fast. Every
call is recorded (`calls`, `batches`, `gets`, `transactions`) and counted (`round_trips`).
`one_patient_practice()` is the small lenient practice of the security and fuzz tests.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode

from smart_app.fhir.client import BatchResult, FhirError, error_for
from tests.support.includes import included_people

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
# The one-patient practice of the security and fuzz tests.
PRACTICE_BASE = "http://fuzz.test/fhir"
PATIENT = "fuzz-p1"
NURSE = "Practitioner/fuzz-rn"
KNOWN = frozenset(
    {"patient", "date", "type", "code", "status", "occurrence", "_revinclude", "_include", "_include:iterate",
     "_count", "identifier"}
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
        keep: int | None = None,
        metadata: dict[str, Any] | None = None,
        write_error: Exception | None = None,
    ) -> None:
        self.resources: list[dict[str, Any]] = list(resources)  # a live list: tests may share it
        self.keep, self._seeded = keep, len(self.resources)
        self.metadata = metadata  # the CapabilityStatement `capabilities()` answers
        self.base = base
        self.filtering, self.batch_ok = filtering, batch_ok
        self.reject, self.forbidden, self.ignore_patient = reject, forbidden, ignore_patient
        self.error = error
        self.write_error = write_error  # raised by create, update and transaction (reads still answer)
        self.any_id = any_id  # a read of an unknown id answers a bare resource (a server full of patients)
        self.round_trips = 0
        self.calls: list[tuple[str, Any]] = []
        self.batches: list[list[str]] = []
        self.gets: list[str] = []
        self.transactions: list[dict[str, Any]] = []
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
        if self.keep is not None and len(self.resources) > self.keep:
            del self.resources[self._seeded : self._seeded + len(self.resources) - self.keep]

    def _new(self, resource: dict[str, Any]) -> dict[str, Any]:
        stored = {**resource, "id": resource.get("id") or f"fake-{next(self._ids)}"}
        stored.setdefault("meta", {"versionId": "1"})
        self.add(stored)
        return stored

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

    def search_bundles(self, resource_type: str, params: Any = None, **_: Any) -> Iterator[dict[str, Any]]:
        """The search as one searchset Bundle (no next pages)."""
        found = self.search(resource_type, params)
        yield {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in found]}

    def follow_pages(self, bundle: dict[str, Any], resource_type: str = "", **_: Any) -> list[dict[str, Any]]:
        return []  # every answer fits in one page

    def create(self, resource: dict[str, Any], if_none_exist: str | None = None, **_: Any) -> dict[str, Any]:
        self._call("create", resource, write=True)
        return self._new(resource)

    def transaction(self, bundle: dict[str, Any]) -> dict[str, Any]:
        """Store each entry (PUT Type/id replaces; POST creates, or finds its `ifNoneExist` match)."""
        self._call("transaction", bundle, write=True)
        self.transactions.append(bundle)
        out = []
        for entry in bundle.get("entry") or []:
            resource = entry.get("resource") or {}
            request = entry.get("request") or {}
            rtype = resource.get("resourceType", "")
            condition = request.get("ifNoneExist") if self.filtering else None  # lenient: always create
            existing = self._answer(f"{rtype}?{condition}") if condition else None
            if existing is not None and existing.ok and existing.resources:
                res, status = existing.resources[0], "200 OK"
            elif request.get("method") == "PUT" and "/" in str(request.get("url", "")):
                res = {**resource, "id": str(request["url"]).split("/")[1].split("?")[0]}
                self.add(res)
                status = "200 OK"
            else:
                res, status = self._new(resource), "201 Created"
            location = f"{self.base}/{res['resourceType']}/{res['id']}/_history/1"
            out.append({"response": {"status": status, "location": location}})
        return {"resourceType": "Bundle", "type": "transaction-response", "entry": out}

    @property
    def capabilities(self) -> Callable[[], dict[str, Any]] | None:
        """Reads `metadata`; None (a client that cannot say) unless the fake was given a `metadata`."""
        return None if self.metadata is None else self._capabilities

    def _capabilities(self) -> dict[str, Any]:
        self._call("capabilities", None)
        return dict(self.metadata or {})

    def update(self, resource: dict[str, Any], **_: Any) -> dict[str, Any]:
        self._call("update", resource, write=True)
        self.add(resource)
        return resource

    def _call(self, kind: str, what: Any, *, write: bool = False) -> None:
        self.round_trips += 1
        self.calls.append((kind, what))
        if self.error is not None:
            raise self.error
        if write and self.write_error is not None:
            raise self.write_error

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
        if ("_include", "Encounter:participant") in params:
            iterate = ("_include:iterate", "PractitionerRole:practitioner") in params
            included += [r for r in included_people(matches, self.resources, iterate) if r not in included]
        return BatchResult(200, matches + included, request=url)


def one_patient_practice(keep: int = 200) -> FakeFhir:
    """A lenient server (every search answers all of the type) holding one Patient and the GP, who is
    also the signed-in user; it stores what it is sent, keeping the last `keep` resources."""
    return FakeFhir(
        [
            {"resourceType": "Patient", "id": PATIENT, "name": [{"family": "Fuzz"}],
             "generalPractitioner": [{"reference": NURSE}]},
            {"resourceType": "Practitioner", "id": NURSE.split("/")[1], "name": [{"family": "Nurse"}]},
        ],
        base=PRACTICE_BASE,
        filtering=False,
        keep=keep,
        metadata={"resourceType": "CapabilityStatement"},
    )


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
