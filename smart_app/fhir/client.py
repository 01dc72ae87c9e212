"""A small FHIR R4 REST client on requests: timeouts, retries, paging, batch, readable errors.

Every request carries `Accept: application/fhir+json` and `Prefer: handling=strict` (so servers reject
unknown search parameters, as HAPI does by default). `Authorization: Bearer` is sent only when a
token provider exists *and* returns a token: open servers answer 403 to tokens they do not know.

Logging records the method, the resource type and the status only: never query values, ids or bodies.

Connections are pooled per FHIR origin for the whole process (`pooled_session`): every FhirClient built
for a request reuses the keep-alive connections of the ones before it, so a page view pays no new TCP/TLS
handshake. The shared sessions never store cookies (no state crosses users) and are dropped in a forked
child (sockets are never shared across processes).

Why over 400 lines: one HTTP engine for every FHIR call (retries, paging, batch, errors, connection
pools); a second engine is what this module replaced.
"""

from __future__ import annotations

import http.cookiejar
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import orjson
import requests
from requests.adapters import HTTPAdapter

log = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_PAGES = 50
MAX_RETRY_AFTER = 30.0  # seconds; a server asking for longer is treated as unavailable
_TYPE = re.compile(r"^[A-Z][A-Za-z]{1,63}$")
POOL_SIZE = 16  # keep-alive connections per origin (the no-batch fallback runs up to 9 GETs at once)

Params = Mapping[str, str | int | Sequence[str]] | Sequence[tuple[str, str]]


class FhirError(Exception):
    """A FHIR request failed. `message` is readable text (from the OperationOutcome when there is one)."""

    def __init__(self, status: int | None, message: str, outcome: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.outcome = outcome


class FhirUnavailable(FhirError):
    """The server could not be reached, timed out, or kept failing (5xx/429) after the retries."""


class FhirUnauthorized(FhirError):
    """401: the token is missing, expired or revoked (the session layer may refresh once)."""


class FhirForbidden(FhirError):
    """403: the token lacks the scope for this request."""


class FhirNotFound(FhirError):
    """404/410: no such resource (or it was deleted)."""


@dataclass(frozen=True)
class BatchResult:
    """The answer to one entry of a batch: its status, its resources (paging followed), its problem."""

    status: int
    resources: list[dict[str, Any]] = field(default_factory=list)
    message: str = ""
    outcome: dict[str, Any] | None = None
    request: str = ""
    warnings: str = ""  # issues the server reported alongside a successful search (e.g. ignored params)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def error(self) -> FhirError:
        """The FhirError this entry's status corresponds to (for callers that want to raise it)."""
        return error_for(self.status, self.message, self.outcome)


def outcome_text(outcome: Any, limit: int = 5) -> str:
    """Readable text from an OperationOutcome's issues ('' when there is nothing usable)."""
    if not isinstance(outcome, dict) or outcome.get("resourceType") != "OperationOutcome":
        return ""
    parts: list[str] = []
    issues = outcome.get("issue")
    for item in issues if isinstance(issues, list) else []:
        if not isinstance(item, dict):
            continue
        details = item.get("details") if isinstance(item.get("details"), dict) else {}
        codings = details.get("coding") if isinstance(details.get("coding"), list) else []
        text = (
            item.get("diagnostics")
            or details.get("text")
            or next((c.get("display") for c in codings if isinstance(c, dict) and c.get("display")), None)
            or item.get("code")
            or ""
        )
        if not isinstance(text, str) or not text.strip():
            continue
        text = " ".join(text.split())
        severity = item.get("severity")
        if severity in ("warning", "information"):
            text = f"{severity}: {text}"
        where = item.get("expression") or item.get("location")
        if isinstance(where, list) and where and all(isinstance(w, str) for w in where):
            missing = [w for w in where if w not in text]
            if missing:
                text += f" ({', '.join(missing)})"
        parts.append(text)
        if len(parts) >= limit:
            break
    return "; ".join(parts)[:800]


def error_for(status: int, message: str, outcome: dict[str, Any] | None = None) -> FhirError:
    """The FhirError subclass for an HTTP status, carrying `message` as is."""
    if status == 401:
        return FhirUnauthorized(status, message, outcome)
    if status == 403:
        return FhirForbidden(status, message, outcome)
    if status in (404, 410):
        return FhirNotFound(status, message, outcome)
    if status in RETRY_STATUSES:
        return FhirUnavailable(status, message, outcome)
    return FhirError(status, message, outcome)


_REASONS = {
    400: "bad request", 401: "not authorised (token missing or expired)",
    403: "forbidden (scope not granted)",
    404: "not found", 405: "method not allowed", 410: "gone (deleted)", 412: "precondition failed",
    422: "unprocessable resource", 429: "too many requests", 500: "internal server error",
    501: "not implemented", 502: "bad gateway", 503: "service unavailable", 504: "gateway timeout",
}


def _status_code(text: Any) -> int:
    """'404 Not Found' -> 404 (0 when unreadable)."""
    m = re.match(r"\s*(\d{3})", str(text or ""))
    return int(m.group(1)) if m else 0


def _param_list(params: Params | None) -> list[tuple[str, str]]:
    if not params:
        return []
    if isinstance(params, Mapping):
        out: list[tuple[str, str]] = []
        for key, value in params.items():
            if isinstance(value, (list, tuple)):
                out.extend((key, str(v)) for v in value)
            else:
                out.append((key, str(value)))
        return out
    return [(str(k), str(v)) for k, v in params]


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or {"http": 80, "https": 443}.get(scheme)
    return scheme, (parts.hostname or "").lower(), port


def searchset_resources(bundle: Any) -> list[dict[str, Any]]:
    """The match/include resources of a searchset page (outcome entries and junk are dropped)."""
    out: list[dict[str, Any]] = []
    entries = bundle.get("entry") if isinstance(bundle, dict) else None
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or not isinstance(entry.get("resource"), dict):
            continue
        search = entry.get("search") if isinstance(entry.get("search"), dict) else {}
        mode = search.get("mode", "match")
        if mode in ("match", "include") and entry["resource"].get("resourceType") != "OperationOutcome":
            out.append(entry["resource"])
    return out


def searchset_warnings(bundle: Any) -> str:
    """Readable text of the OperationOutcome entries a server put in a searchset ('' if none)."""
    entries = bundle.get("entry") if isinstance(bundle, dict) else None
    texts = []
    for entry in entries if isinstance(entries, list) else []:
        res = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(res, dict) and res.get("resourceType") == "OperationOutcome":
            texts.append(outcome_text(res))
    return "; ".join(t for t in texts if t)


def next_link(bundle: Any) -> str | None:
    links = bundle.get("link") if isinstance(bundle, dict) else None
    for link in links if isinstance(links, list) else []:
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return link["url"]
    return None


def checked_base(base: str) -> str:
    """A FHIR base URL without surrounding space or trailing slash; ValueError unless it is http(s)."""
    parts = urlsplit(base.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"FHIR base must be an http(s) URL, got {base!r}")
    return base.strip().rstrip("/")


class _NoCookies(http.cookiejar.DefaultCookiePolicy):
    """A shared session must not carry one user's cookies into another user's request."""

    def set_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False

    def return_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False


_POOLS: dict[tuple[str, str, int | None], requests.Session] = {}
_POOLS_LOCK = threading.Lock()


def pooled_session(base: str) -> requests.Session:
    """The process-wide requests.Session (keep-alive pool) for `base`'s origin, created on first use."""
    origin = _origin(base)
    with _POOLS_LOCK:
        session = _POOLS.get(origin)
        if session is None:
            session = requests.Session()
            session.cookies.set_policy(_NoCookies())
            _environment_once(session, base)
            adapter = HTTPAdapter(pool_connections=1, pool_maxsize=POOL_SIZE)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            _POOLS[origin] = session
        return session


def _environment_once(session: requests.Session, url: str) -> None:
    """Read the proxy and CA-bundle environment once, when the pool is made, not on every request.

    requests otherwise re-reads the proxy variables and `~/.netrc` for each request (~0.7 ms). The pool
    keeps what the environment says for this origin (HTTP(S)_PROXY honouring NO_PROXY, REQUESTS_CA_BUNDLE
    or CURL_CA_BUNDLE); `.netrc` credentials are never wanted here (the app sends its own tokens)."""
    session.proxies.update(requests.utils.get_environ_proxies(url))
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        session.verify = bundle
    session.trust_env = False


def close_pools() -> None:
    """Close every pooled connection (tests; a long-lived process never needs it)."""
    with _POOLS_LOCK:
        sessions = list(_POOLS.values())
        _POOLS.clear()
    for session in sessions:
        session.close()


def _forget_pools_in_child() -> None:
    global _POOLS_LOCK
    _POOLS_LOCK = threading.Lock()
    _POOLS.clear()  # the parent's sockets stay the parent's


os.register_at_fork(after_in_child=_forget_pools_in_child)


def bearer(token_provider: Callable[[], str | None] | None) -> dict[str, str]:
    """The Authorization header when a token provider gives a token, else none (open servers get none)."""
    token = token_provider() if token_provider is not None else None
    return {"Authorization": f"Bearer {token}"} if token else {}


class FhirClient:
    """One FHIR server. Thread-safe enough for a few concurrent GETs (round_trips is locked)."""

    def __init__(
        self,
        base: str,
        *,
        token_provider: Callable[[], str | None] | None = None,
        timeout: float = 10.0,
        max_retries: int = 3,
        backoff: float = 0.3,
        session: requests.Session | None = None,
        max_pages: int = MAX_PAGES,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base = checked_base(base)
        self.token_provider = token_provider
        self.timeout = timeout
        self.max_retries = max(0, max_retries)
        self.backoff = max(0.0, backoff)
        self.max_pages = max(1, max_pages)
        self.session = session or pooled_session(self.base)
        self.round_trips = 0
        self._sleep = sleep
        self._lock = threading.Lock()
        self._capabilities: dict[str, Any] | None = None

    # ---------------------------------------------------------------- public API

    def read(self, resource_type: str, resource_id: str) -> dict[str, Any]:
        """GET [base]/Type/id."""
        url = f"{self.base}/{_check_type(resource_type)}/{_check_id(resource_id)}"
        return self._json("GET", url, rtype=resource_type)

    def search_bundles(
        self, resource_type: str, params: Params | None = None, *, max_pages: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """Each searchset page in turn, following `next` links on the base's origin only."""
        url = f"{self.base}/{_check_type(resource_type)}"
        bundle = self._json("GET", url, params=_param_list(params), rtype=resource_type)
        yield bundle
        yield from self._pages_after(bundle, resource_type, max_pages)

    def search(
        self, resource_type: str, params: Params | None = None, *, max_pages: int | None = None
    ) -> list[dict[str, Any]]:
        """All match/include resources of a search, across pages."""
        out: list[dict[str, Any]] = []
        for bundle in self.search_bundles(resource_type, params, max_pages=max_pages):
            out.extend(searchset_resources(bundle))
        return out

    def follow_pages(
        self, bundle: dict[str, Any], resource_type: str = "", *, max_pages: int | None = None
    ) -> list[dict[str, Any]]:
        """The resources of the pages after `bundle` (e.g. a searchset inside a batch response)."""
        out: list[dict[str, Any]] = []
        for page in self._pages_after(bundle, resource_type, max_pages):
            out.extend(searchset_resources(page))
        return out

    def batch(self, requests_: Sequence[str], *, follow_pages: bool = True) -> list[BatchResult]:
        """POST a batch Bundle of GETs (relative URLs such as 'Condition?patient=1'); one result each.

        Raises FhirError when the server rejects the batch as a whole; per-entry failures are results.
        """
        entries = []
        for req in requests_:
            if not isinstance(req, str) or not req or "://" in req or req.startswith("/"):
                raise ValueError(f"batch requests must be relative GET URLs, got {req!r}")
            entries.append({"request": {"method": "GET", "url": req}})
        if not entries:
            return []
        body = {"resourceType": "Bundle", "type": "batch", "entry": entries}
        answer = self._json("POST", self.base, body=body, rtype="batch", idempotent=True)
        got = answer.get("entry") if isinstance(answer, dict) else None
        if answer.get("resourceType") != "Bundle" or not isinstance(got, list) or len(got) != len(entries):
            raise FhirError(None, "The FHIR server answered the batch with something other than a "
                            f"batch-response Bundle of {len(entries)} entries")
        results = []
        for req, entry in zip(requests_, got, strict=True):
            results.append(self._batch_result(req, entry if isinstance(entry, dict) else {}, follow_pages))
        return results

    def transaction(self, bundle: dict[str, Any]) -> dict[str, Any]:
        """POST a transaction Bundle (never retried blindly); returns the transaction-response."""
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle" or bundle.get(
            "type"
        ) != "transaction":
            raise ValueError("transaction() needs a Bundle of type 'transaction'")
        return self._json("POST", self.base, body=bundle, rtype="transaction", idempotent=False)

    def create(self, resource: dict[str, Any], if_none_exist: str | None = None) -> dict[str, Any]:
        """POST [base]/Type (conditional with If-None-Exist); returns the stored resource."""
        rtype = _check_type(str(resource.get("resourceType", "")))
        headers = {"If-None-Exist": if_none_exist} if if_none_exist else {}
        response = self._request(
            "POST", f"{self.base}/{rtype}", body=resource, headers=headers, rtype=rtype, idempotent=False
        )
        data = _decode(response) if response.content else None
        if isinstance(data, dict) and data.get("resourceType") == rtype:
            return data
        location = response.headers.get("Location") or response.headers.get("Content-Location") or ""
        m = re.search(rf"{rtype}/([^/?#]+)", location)
        if not m:
            raise FhirError(response.status_code, "The FHIR server created the resource but returned neither "
                            "the resource nor a Location")
        return self.read(rtype, m.group(1))

    def capabilities(self) -> dict[str, Any]:
        """The server's CapabilityStatement (fetched once per client)."""
        if self._capabilities is None:
            self._capabilities = self._json("GET", f"{self.base}/metadata", rtype="metadata")
        return self._capabilities

    # ---------------------------------------------------------------- internals

    def _batch_result(self, req: str, entry: dict[str, Any], follow: bool) -> BatchResult:
        response = entry.get("response") if isinstance(entry.get("response"), dict) else {}
        status = _status_code(response.get("status"))
        resource = entry.get("resource") if isinstance(entry.get("resource"), dict) else None
        outcome = response.get("outcome") if isinstance(response.get("outcome"), dict) else None
        is_outcome = bool(resource) and resource.get("resourceType") == "OperationOutcome"
        if outcome is None and is_outcome and status >= 400:
            outcome, resource = resource, None
        if not status:
            status = 200 if resource is not None else 500
        if status >= 400 or resource is None:
            detail = outcome_text(outcome) or _REASONS.get(status, "no resource in the batch entry")
            return BatchResult(status, [], f"HTTP {status} from FHIR server: {detail}", outcome, req)
        if resource.get("resourceType") == "Bundle":
            resources = searchset_resources(resource)
            if follow:
                resources += self.follow_pages(resource, req.split("?", 1)[0].split("/", 1)[0])
            return BatchResult(status, resources, "", None, req, searchset_warnings(resource))
        return BatchResult(status, [resource], "", None, req)

    def _pages_after(
        self, bundle: dict[str, Any], resource_type: str, max_pages: int | None
    ) -> Iterator[dict[str, Any]]:
        limit = max_pages or self.max_pages
        seen: set[str] = set()
        pages = 1
        url = next_link(bundle)
        while url:
            url = self._checked_next(url)
            if url in seen:
                break  # a server looping on the same page
            if pages >= limit:
                raise FhirError(None, f"Search for {resource_type or 'resources'} has more than "
                                f"{limit} pages; narrow the search")
            seen.add(url)
            page = self._json("GET", url, rtype=resource_type or "page")
            pages += 1
            yield page
            url = next_link(page)

    def _checked_next(self, url: str) -> str:
        """A `next` link made absolute, refused unless it stays on the base URL's origin and path."""
        absolute = urljoin(self.base + "/", url)
        if _origin(absolute) != _origin(self.base):
            raise FhirError(None, "The FHIR server's next-page link points to another origin; "
                            "refusing to follow it")
        base_path = urlsplit(self.base).path.rstrip("/")
        path = urlsplit(absolute).path
        if base_path and not (path == base_path or path.startswith(base_path + "/")):
            raise FhirError(None, "The FHIR server's next-page link leaves the FHIR base path; "
                            "refusing to follow it")
        return absolute

    def _json(
        self,
        method: str,
        url: str,
        *,
        params: list[tuple[str, str]] | None = None,
        body: dict[str, Any] | None = None,
        rtype: str = "",
        idempotent: bool | None = None,
    ) -> dict[str, Any]:
        response = self._request(method, url, params=params, body=body, rtype=rtype, idempotent=idempotent)
        data = _decode(response)
        if not isinstance(data, dict):
            raise FhirError(response.status_code, f"HTTP {response.status_code} from FHIR server: "
                            "the answer is not a JSON object")
        return data

    def _headers(self, extra: Mapping[str, str] | None) -> dict[str, str]:
        headers = {"Accept": FHIR_JSON, "Prefer": "handling=strict", **bearer(self.token_provider)}
        if extra:
            headers.update(extra)
        return headers

    def _request(
        self,
        method: str,
        url: str,
        *,
        params: list[tuple[str, str]] | None = None,
        body: dict[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        rtype: str = "",
        idempotent: bool | None = None,
    ) -> requests.Response:
        """Send with timeouts; retry idempotent requests on transient failures with exponential backoff."""
        retryable = method == "GET" if idempotent is None else idempotent
        extra = dict(headers or {})
        if body is not None:
            extra["Content-Type"] = FHIR_JSON
        attempt = 0
        while True:
            with self._lock:
                self.round_trips += 1
            try:
                response = self.session.request(
                    method, url, params=params or None, json=body, headers=self._headers(extra),
                    timeout=self.timeout, allow_redirects=False,
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                kind = "timed out" if isinstance(exc, requests.Timeout) else "could not connect"
                log.warning("FHIR %s %s %s (attempt %d)", method, rtype, kind, attempt + 1)
                if retryable and attempt < self.max_retries:
                    self._sleep(self.backoff * 2**attempt)
                    attempt += 1
                    continue
                tries = f" after {attempt + 1} attempts" if retryable and attempt else ""
                where = urlsplit(self.base).netloc
                raise FhirUnavailable(None, f"FHIR server {kind}{tries} ({where})") from None
            except requests.RequestException as exc:
                raise FhirUnavailable(None, f"FHIR request failed: {type(exc).__name__}") from None
            status = response.status_code
            log.info("FHIR %s %s -> %d", method, rtype, status)
            if status < 400:
                return response
            # 429 means "not processed": safe to repeat even for a POST.
            if status in RETRY_STATUSES and (retryable or status == 429) and attempt < self.max_retries:
                delay = self.backoff * 2**attempt
                retry_after = retry_after_seconds(response.headers.get("Retry-After"))
                if retry_after is not None:
                    if retry_after > MAX_RETRY_AFTER:
                        raise error_for(status, f"HTTP {status} from FHIR server: server busy; it asks "
                                        f"to retry after {retry_after:.0f} s", _maybe_outcome(response))
                    delay = max(delay, retry_after)
                self._sleep(delay)
                attempt += 1
                continue
            outcome = _maybe_outcome(response)
            detail = outcome_text(outcome) or _REASONS.get(status, "request failed")
            raise error_for(status, f"HTTP {status} from FHIR server: {detail}", outcome)


def _decode(response: requests.Response) -> Any:
    try:
        return orjson.loads(response.content)  # several times faster than json for large Bundles
    except orjson.JSONDecodeError:
        raise FhirError(response.status_code, f"HTTP {response.status_code} from FHIR server: "
                        "the answer is not JSON") from None


def _maybe_outcome(response: requests.Response) -> dict[str, Any] | None:
    try:
        data = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) and data.get("resourceType") == "OperationOutcome" else None


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def _check_type(resource_type: str) -> str:
    if not isinstance(resource_type, str) or not _TYPE.match(resource_type):
        raise ValueError(f"not a FHIR resource type: {resource_type!r}")
    return resource_type


def _check_id(resource_id: str) -> str:
    if not isinstance(resource_id, str) or not resource_id.strip() or len(resource_id) > 255:
        raise ValueError("a FHIR resource id must be a non-empty string of at most 255 characters")
    return quote(resource_id.strip(), safe="")
