"""CSRF tokens, security headers, request limits and log redaction (no tokens or query strings in logs)."""

from __future__ import annotations

import hmac
import logging
import re
import secrets
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from flask import Flask, current_app, render_template, request, session
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wrappers import Response

log = logging.getLogger(__name__)

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
_SESSION_KEY = "csrf"
# Blueprints called server-to-server (JWT-authenticated, no cookie): never carry a CSRF token.
DEFAULT_CSRF_EXEMPT_BLUEPRINTS = ("cds_hooks",)

F = TypeVar("F", bound=Callable[..., Any])


# --------------------------------------------------------------------------- CSRF


def csrf_token() -> str:
    """This session's CSRF token (created on first use)."""
    token = session.get(_SESSION_KEY)
    if not isinstance(token, str) or len(token) < 32:
        token = secrets.token_urlsafe(32)
        session[_SESSION_KEY] = token
    return token


def csrf_exempt(view: F) -> F:
    """Mark a view as not needing a CSRF token (server-to-server endpoints only)."""
    view.csrf_exempt = True  # type: ignore[attr-defined]
    return view


def _exempt() -> bool:
    if request.blueprint in current_app.config.get("CSRF_EXEMPT_BLUEPRINTS", DEFAULT_CSRF_EXEMPT_BLUEPRINTS):
        return True
    view = current_app.view_functions.get(request.endpoint or "")
    return bool(getattr(view, "csrf_exempt", False))


def _check_csrf() -> Response | tuple[Any, int] | None:
    if request.method not in UNSAFE_METHODS or request.endpoint is None or _exempt():
        return None
    expected = session.get(_SESSION_KEY)
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        sent = request.form.get(CSRF_FIELD)
    if isinstance(expected, str) and isinstance(sent, str) and hmac.compare_digest(expected, sent):
        return None
    reason = "missing" if not sent else "does not match this session"
    log.warning("CSRF check failed on %s %s: token %s", request.method, request.path, reason)
    message = (
        f"The form's security token is {reason}. Reload the page and try again "
        "(the session may have expired or the request came from another site)."
    )
    if request.headers.get(CSRF_HEADER) is not None or request.is_json:
        return {"error": "csrf", "message": message}, 400
    return render_template("launch/error.html", title="Security check failed", message=message), 400


# --------------------------------------------------------------------------- headers


_SOURCE = re.compile(r"'self'|'none'|https?://[A-Za-z0-9.\-:\[\]*]+")


def frame_ancestors(value: str | Iterable[str] | None) -> str:
    """CSP frame-ancestors source list from config ("*" and junk are refused: back to 'self')."""
    items = value.split() if isinstance(value, str) else list(value or [])
    ok = [s for s in items if s and s != "*" and _SOURCE.fullmatch(s)]
    if len(ok) != len(items):
        log.warning("FRAME_ANCESTORS contains entries that are not allowed; they were dropped")
    return " ".join(ok) or "'self'"


def content_security_policy(app: Flask, style_src: str | None = None) -> str:
    """The app's CSP; `style_src` (e.g. one inline stylesheet's hash) is added for print pages."""
    policy = (
        "default-src 'self'; "
        f"frame-ancestors {frame_ancestors(app.config.get('FRAME_ANCESTORS'))}; "
        "object-src 'none'; base-uri 'none'; form-action 'self'"
    )
    return f"{policy}; style-src {style_src}" if style_src else policy


def _headers(response: Response) -> Response:
    app = current_app
    response.headers.setdefault("Content-Security-Policy", content_security_policy(app))
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    if request.endpoint != "static":
        # Pages carry patient data: keep them out of shared caches and the back/forward cache.
        response.headers.setdefault("Cache-Control", "no-store")
    if request.is_secure:  # only over https (browsers ignore it on http; local http must keep working)
        response.headers.setdefault("Strict-Transport-Security", f"max-age={HSTS_SECONDS}; includeSubDomains")
    return response


# --------------------------------------------------------------------------- request limits

HSTS_SECONDS = 31536000
DEFAULT_MAX_CONTENT_LENGTH = 256 * 1024  # forms and JSON bodies of the app's own pages
# Routes that legitimately receive more (a CDS prefetch carries a patient's chart).
DEFAULT_ROUTE_LIMITS = {
    "cds_hooks.call_service": 8 * 1024 * 1024,  # a CDS prefetch carries a patient's chart
    "payer.remit_upload": 32 * 1024 * 1024,  # up to 20 remittance (835) files
}
DEFAULT_MAX_JSON_DEPTH = 64


def _limit_request() -> Response | tuple[Any, int] | None:
    """Refuse a body over the route's limit before reading it (413); Werkzeug enforces it while streaming."""
    limits = {**DEFAULT_ROUTE_LIMITS, **(current_app.config.get("ROUTE_MAX_CONTENT_LENGTH") or {})}
    limit = int(limits.get(request.endpoint or "", current_app.config.get("MAX_CONTENT_LENGTH")
                           or DEFAULT_MAX_CONTENT_LENGTH))
    request.max_content_length = limit
    request.max_form_memory_size = limit
    if request.content_length is not None and request.content_length > limit:
        raise RequestEntityTooLarge()
    return None


def json_depth_ok(value: Any, limit: int) -> bool:
    """True when `value` (parsed JSON) nests at most `limit` arrays/objects deep (iterative, no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Iterable[Any] = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return False
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return True


class BoundedJSONProvider(DefaultJSONProvider):
    """Flask's JSON, refusing request bodies nested deeper than MAX_JSON_DEPTH (a ValueError: Flask answers
    400) instead of letting a 200k-deep body reach RecursionError (500)."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        try:
            value = super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None
        limit = int(self._app.config.get("MAX_JSON_DEPTH") or DEFAULT_MAX_JSON_DEPTH)
        if not json_depth_ok(value, limit):
            raise ValueError("JSON nested too deeply")
        return value


# --------------------------------------------------------------------------- log redaction

_REDACTIONS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9\-._~+/]+=*"), r"\1 [redacted]"),
    (
        re.compile(
            r"(?i)([\"']?(?:access_token|refresh_token|id_token|client_assertion|client_secret|code_verifier|"
            r"assertion|password)[\"']?\s*[=:]\s*[\"']?)[^\"'&\s,}]+"
        ),
        r"\1[redacted]",
    ),
    (re.compile(r"(?i)\b((?:code|state|launch)=)[^&\s\"']+"), r"\1[redacted]"),
    # JWTs anywhere (three base64url parts).
    (re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), "[redacted-jwt]"),
    # Resource ids in FHIR paths and references (Patient/123 -> Patient/[id]).
    (re.compile(r"\b([A-Z][a-z][A-Za-z]{2,63})/(?!\[id\])[A-Za-z0-9\-.]{1,64}"), r"\1/[id]"),
    # Query strings of URLs and request paths: they carry patient ids, names, codes.
    (re.compile(r"((?:https?://[^\s?\"'<>]+|(?<![\w/])/[^\s?\"'<>]*))\?[^\s\"'<>]*"), r"\1?[query redacted]"),
]


def redact(text: str) -> str:
    """Remove bearer tokens, OAuth secrets and URL query strings from a log line."""
    for pattern, repl in _REDACTIONS:
        text = pattern.sub(repl, text)
    return text


class RedactingFilter(logging.Filter):
    """Logging filter: rewrites each record's message with `redact()` (never drops records)."""

    def filter(self, record: logging.LogRecord) -> bool:
        sanitize(record)
        return True


def sanitize(record: logging.LogRecord) -> logging.LogRecord:
    if getattr(record, "_ccm_redacted", False):
        return record
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: keep the raw template only
        message = str(record.msg)
    record.msg = redact(message)
    record.args = ()
    if record.exc_info and not record.exc_text:
        record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
    record._ccm_redacted = True  # type: ignore[attr-defined]
    return record


_installed = False


def install_log_redaction() -> None:
    """Redact every log record at creation (whatever logger or handler), once per process."""
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return sanitize(previous(*args, **kwargs))

    logging.setLogRecordFactory(factory)
    root = logging.getLogger()
    for handler in root.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
    _installed = True


# --------------------------------------------------------------------------- wiring


def init_app(app: Flask) -> None:
    """Install CSRF checks, the Jinja global `csrf_token()`, security headers and log redaction."""
    install_log_redaction()
    app.json = BoundedJSONProvider(app)
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.before_request(_limit_request)
    app.before_request(_check_csrf)
    app.after_request(_headers)
