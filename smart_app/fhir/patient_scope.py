"""Keep a session's FHIR traffic inside its launch patient.

`PatientScopedClient` wraps a FhirClient (or a test fake with the same methods). Reads are allowed for
`Patient/<launch patient>` and for a few non-clinical directory types (who did the work); searches
must be constrained to the launch patient (`patient=`, `subject=`, `for=`, `beneficiary=`, or
`Patient?_id=`); writes must point at the launch patient. Anything else raises PatientScopeError
(rendered as 403). On a 401 the wrapper refreshes the token once and repeats the call.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import is_dataclass, replace
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote

from fhir_mapping.references import relative_key
from smart_app.fhir.client import FhirNotFound

T = TypeVar("T")
log = logging.getLogger(__name__)

# Directory resources that carry no patient data: readable by id (names of practitioners etc.).
DIRECTORY_TYPES = frozenset({"Practitioner", "PractitionerRole", "Organization", "Location"})
DIRECTORY_LOOKUPS = frozenset({"identifier", "_id", "_count"})
PATIENT_PARAMS = frozenset({"patient", "subject", "for", "beneficiary"})
# Where each resource we write points at its patient.
PATIENT_FIELDS = ("subject", "patient", "for", "beneficiary")
# A FHIR id (R4 `id` datatype): the only shape a launch patient id may have.
FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def valid_fhir_id(value: Any) -> bool:
    """True when `value` is a FHIR resource id (letters, digits, '-', '.', at most 64)."""
    return isinstance(value, str) and FHIR_ID.fullmatch(value) is not None and value not in (".", "..")


class PatientScopeError(PermissionError):
    """A request would leave the launch patient's record (HTTP 403)."""

    def __init__(self, message: str, kind: str = "request") -> None:
        super().__init__(message)
        self.kind = kind


def _refers_to(value: str, patient_id: str, bare_ok: bool) -> bool:
    value = value.strip()
    if bare_ok and value == patient_id:
        return True
    target = f"Patient/{patient_id}"
    return value == target or value.endswith("/" + target)


def _pairs(params: Any) -> list[tuple[str, str]]:
    if not params:
        return []
    if isinstance(params, str):
        return parse_qsl(params.lstrip("?"), keep_blank_values=True)
    if isinstance(params, Mapping):
        out: list[tuple[str, str]] = []
        for key, value in params.items():
            if isinstance(value, (list, tuple)):
                out.extend((str(key), str(v)) for v in value)
            else:
                out.append((str(key), str(value)))
        return out
    return [(str(k), str(v)) for k, v in params]


def check_search(resource_type: str, params: Any, patient_id: str) -> None:
    """Raise unless the search can only return the launch patient's data."""
    pairs = _pairs(params)
    if resource_type == "Patient":
        ids = [v for k, v in pairs if k == "_id"]
        values = [x for v in ids for x in v.split(",")]
        if values and all(x.strip() == patient_id for x in values):
            return
        raise PatientScopeError("Patient searches are limited to the launch patient (_id)", "patient-search")
    if resource_type in DIRECTORY_TYPES and pairs and all(k in DIRECTORY_LOOKUPS for k, _ in pairs):
        return  # a directory look-up by identifier or id (who is NPI 1234567893?) holds no patient data
    constraining = [(k, v) for k, v in pairs if k.split(":", 1)[0] in PATIENT_PARAMS and "." not in k]
    values = [x for _, v in constraining for x in v.split(",")]
    if values and all(_refers_to(x, patient_id, bare_ok=True) for x in values):
        return
    raise PatientScopeError(
        f"{resource_type} searches must be limited to the launch patient (patient=…)", "search"
    )


def check_read(resource_type: str, resource_id: str, patient_id: str) -> None:
    if resource_type == "Patient" and resource_id == patient_id:
        return
    if resource_type in DIRECTORY_TYPES:
        return
    raise PatientScopeError(f"reading {resource_type} by id is outside the launch patient", "read")


def check_request_url(url: str, patient_id: str) -> None:
    """A relative GET url of a batch: 'Type?query' or 'Type/id'."""
    path, _, query = url.partition("?")
    parts = [p for p in path.split("/") if p]
    if len(parts) == 1:
        check_search(parts[0], query, patient_id)
    elif len(parts) == 2 and not query:
        check_read(parts[0], unquote(parts[1]), patient_id)
    else:
        raise PatientScopeError("this kind of FHIR request is not allowed for a launch session", "url")


def check_resource(
    resource: Mapping[str, Any], patient_id: str, local_refs: frozenset[str] = frozenset()
) -> None:
    """Raise unless a resource we are about to write belongs to the launch patient."""
    rtype = resource.get("resourceType")
    if rtype == "Patient":
        if resource.get("id") == patient_id:
            return
        raise PatientScopeError("writing a Patient other than the launch patient is not allowed", "write")
    refs: list[str] = []
    for name in PATIENT_FIELDS:
        value = resource.get(name)
        if isinstance(value, dict) and isinstance(value.get("reference"), str):
            refs.append(value["reference"])
    if rtype == "Provenance":
        targets = [t.get("reference") for t in resource.get("target") or [] if isinstance(t, dict)]
        if targets and all(
            isinstance(t, str) and (_refers_to(t, patient_id, bare_ok=False) or t in local_refs)
            for t in targets
        ):
            return
        raise PatientScopeError("Provenance must target the launch patient's resources", "write")
    if refs and all(_refers_to(r, patient_id, bare_ok=False) for r in refs):
        return
    raise PatientScopeError(f"{rtype} to write does not belong to the launch patient", "write")


def belongs_to(resource: Mapping[str, Any], patient_id: str) -> bool:
    """True when a resource's patient field(s) all point at the launch patient."""
    refs = [
        v["reference"]
        for name in PATIENT_FIELDS
        if isinstance(v := resource.get(name), dict) and isinstance(v.get("reference"), str)
    ]
    return bool(refs) and all(_refers_to(r, patient_id, bare_ok=False) for r in refs)


def names_other_patient(resource: Mapping[str, Any], patient_id: str) -> bool:
    """True when a resource a server returned is another patient's (its patient field names someone else).

    Searches are sent with the launch patient, but a server may ignore a parameter (sekmet does for
    `CareTeam?subject=` inside a batch; a real EHR may for an unsupported one). Resources with no
    patient field (Practitioner, Organization, Provenance, ...) and references that name no Patient
    (Group, contained, identifier only) are kept: the server matched them.
    """
    if resource.get("resourceType") == "Patient":
        rid = resource.get("id")
        return isinstance(rid, str) and rid != patient_id
    for name in PATIENT_FIELDS:
        value = resource.get(name)
        for item in value if isinstance(value, list) else [value]:
            ref = item.get("reference") if isinstance(item, dict) else None
            key = relative_key(ref) if isinstance(ref, str) and not ref.startswith("#") else None
            if key is not None and key.startswith("Patient/") and key != f"Patient/{patient_id}":
                return True
    return False


def check_condition(condition: str, patient_id: str) -> None:
    """A conditional create (`ifNoneExist`) must match only the launch patient's resources.

    Our identifiers are unique per patient, not per server: `identifier=sys|id` alone could match
    another patient's resource (and the create would silently answer with it). So the condition must
    carry a patient parameter (`patient=`, `subject=`, or a chained `target:Type.patient=`).
    """
    pairs = _pairs(condition)
    bound = [
        (k, v) for k, v in pairs if k.rsplit(".", 1)[-1].split(":", 1)[0] in PATIENT_PARAMS
    ]
    values = [x for _, v in bound for x in v.split(",")]
    if not values or not all(_refers_to(x, patient_id, bare_ok=True) for x in values):
        raise PatientScopeError(
            "a conditional create must be limited to the launch patient (ifNoneExist without patient=)",
            "conditional",
        )


def write_targets(bundle: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(resource type, id) of every PUT `Type/id` entry of a transaction (to read before updating)."""
    out = []
    for entry in bundle.get("entry") or []:
        req = entry.get("request") if isinstance(entry, dict) else None
        req = req if isinstance(req, dict) else {}
        if str(req.get("method", "")).upper() != "PUT":
            continue
        parts = str(req.get("url", "")).split("?", 1)[0].split("/")
        if len(parts) != 2 or not parts[0].isalpha() or not valid_fhir_id(parts[1]):
            raise PatientScopeError("updates must name one resource (Type/id)", "write")
        out.append((parts[0], parts[1]))
    return out


def check_transaction(bundle: Mapping[str, Any], patient_id: str) -> None:
    entries = [e for e in bundle.get("entry") or [] if isinstance(e, dict)]
    written = frozenset(
        str(e["fullUrl"])
        for e in entries
        if isinstance(e.get("fullUrl"), str)
        and isinstance(e.get("request"), dict)
        and str(e["request"].get("method", "")).upper() in ("POST", "PUT")
        and not (isinstance(e.get("resource"), dict) and e["resource"].get("resourceType") == "Provenance")
    )
    for entry in entries:
        req = entry.get("request") if isinstance(entry.get("request"), dict) else {}
        method = str(req.get("method", "")).upper()
        if method == "GET":
            check_request_url(str(req.get("url", "")), patient_id)
        elif method in ("POST", "PUT") and isinstance(entry.get("resource"), dict):
            resource = entry["resource"]
            if resource.get("resourceType") == "Provenance":
                _check_provenance(resource, written)
            else:
                check_resource(resource, patient_id)
            if method == "POST" and req.get("ifNoneExist"):
                check_condition(str(req["ifNoneExist"]), patient_id)
        else:
            what = method or "?"
            raise PatientScopeError(f"transaction entries with method {what} are not allowed", "write")
    write_targets(bundle)


def _check_provenance(resource: Mapping[str, Any], written: frozenset[str]) -> None:
    """A Provenance in a transaction may only point at resources this same transaction writes."""
    targets = [t.get("reference") for t in resource.get("target") or [] if isinstance(t, dict)]
    if targets and all(isinstance(t, str) and t in written for t in targets):
        return
    raise PatientScopeError("Provenance must target only the resources written with it", "write")


class PatientScopedClient:
    """The only FHIR client a session gets: same methods as FhirClient, limited to one patient."""

    def __init__(self, inner: Any, patient_id: str, refresh: Callable[..., Any] | None = None) -> None:
        if not patient_id:
            raise PatientScopeError("this session has no launch patient", "session")
        if not valid_fhir_id(patient_id):
            raise PatientScopeError("this session's launch patient is not a valid FHIR id", "session")
        self._inner = inner
        self.patient_id = patient_id
        self._refresh = refresh

    @property
    def base(self) -> str:
        return str(getattr(self._inner, "base", ""))

    @property
    def round_trips(self) -> int:
        return int(getattr(self._inner, "round_trips", 0))

    @property
    def inner(self) -> Any:
        """The wrapped client (tests and diagnostics only)."""
        return self._inner

    def _call(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except Exception as exc:
            if self._refresh is None or getattr(exc, "status", None) != 401:
                raise
        self._refresh(force=True)
        return fn()

    def read(self, resource_type: str, resource_id: str) -> dict[str, Any]:
        check_read(resource_type, resource_id, self.patient_id)
        return self._call(lambda: self._inner.read(resource_type, resource_id))

    def read_owned(self, resource_type: str, resource_id: str) -> dict[str, Any]:
        """Read a clinical resource by id (for types a server cannot search by patient, e.g. Goal) and
        refuse it unless it belongs to the launch patient (a Patient only when it is the launch patient)."""
        if resource_type == "Patient":
            return self.read(resource_type, resource_id)
        resource = self._call(lambda: self._inner.read(resource_type, resource_id))
        if not belongs_to(resource, self.patient_id):
            raise PatientScopeError(f"{resource_type} read by id is outside the launch patient", "read")
        return resource

    def _own(self, resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Drop what a server returned for another patient (a search parameter it ignored)."""
        kept = [r for r in resources if not (isinstance(r, dict) and names_other_patient(r, self.patient_id))]
        if len(kept) != len(resources):
            dropped = len(resources) - len(kept)
            log.warning("dropped %d resource(s) of another patient from a search answer", dropped)
        return kept

    def search(self, resource_type: str, params: Any = None, **kwargs: Any) -> list[dict[str, Any]]:
        check_search(resource_type, params, self.patient_id)
        return self._own(self._call(lambda: self._inner.search(resource_type, params, **kwargs)))

    def search_bundles(
        self, resource_type: str, params: Any = None, **kwargs: Any
    ) -> Iterator[dict[str, Any]]:
        check_search(resource_type, params, self.patient_id)
        return self._inner.search_bundles(resource_type, params, **kwargs)

    def follow_pages(
        self, bundle: dict[str, Any], resource_type: str = "", **kwargs: Any
    ) -> list[dict[str, Any]]:
        """Pages after a bundle this client fetched (the inner client keeps them on the same server)."""
        return self._own(self._call(lambda: self._inner.follow_pages(bundle, resource_type, **kwargs)))

    def batch(self, requests_: Sequence[str], **kwargs: Any) -> Any:
        for url in requests_:
            check_request_url(str(url), self.patient_id)
        results = self._call(lambda: self._inner.batch(requests_, **kwargs))
        return [
            replace(r, resources=self._own(r.resources)) if is_dataclass(r) and hasattr(r, "resources") else r
            for r in results
        ]

    def transaction(self, bundle: dict[str, Any]) -> dict[str, Any]:
        check_transaction(bundle, self.patient_id)
        for rtype, rid in write_targets(bundle):
            self._check_owned(rtype, rid)
        return self._call(lambda: self._inner.transaction(bundle))

    def _check_owned(self, resource_type: str, resource_id: str) -> None:
        """Before an update: read the target and refuse it unless it is the launch patient's (or new)."""
        try:
            current = self._call(lambda: self._inner.read(resource_type, resource_id))
        except FhirNotFound:
            return  # a client-chosen id not used yet: the PUT creates it (with this patient's subject)
        if resource_type == "Patient":
            ok = resource_id == self.patient_id
        else:
            ok = isinstance(current, dict) and belongs_to(current, self.patient_id)
        if not ok:
            raise PatientScopeError(
                f"the {resource_type} to update belongs to another patient; nothing was written", "update"
            )

    def create(self, resource: dict[str, Any], if_none_exist: str | None = None) -> dict[str, Any]:
        check_resource(resource, self.patient_id)
        return self._call(lambda: self._inner.create(resource, if_none_exist))

    def capabilities(self) -> dict[str, Any]:
        return self._call(lambda: self._inner.capabilities())
