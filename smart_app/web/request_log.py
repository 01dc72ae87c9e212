"""Request ids, structured (JSON) logs and the proxy headers we trust.

Every request gets an id (a sane incoming `X-Request-Id` from our own proxy, else a new one), echoed in the
response and added to each log record written while serving it. One access line per request names the
route pattern (`/timelog/<item_id>`, never the actual path or query: they can carry identifiers), the
status and the duration. Messages are still rewritten by `smart_app.web.security`'s redaction.
`X-Forwarded-*` headers are honoured from exactly PROXIES reverse proxies (werkzeug's ProxyFix), never more.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from typing import Any

from flask import Flask, Response, g, has_request_context, request
from werkzeug.middleware.proxy_fix import ProxyFix

HEADER = "X-Request-Id"
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
access_log = logging.getLogger("ccm_ready.access")


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every record (empty outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = g.get("request_id", "") if has_request_context() else ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, request_id, pid (and the fields given via
    `extra={"fields": {...}}`)."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", ""),
            "pid": record.process,
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            data.update(fields)
        if record.exc_info:
            data["exception"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(data, default=str)


def configure_logging(fmt: str = "json", level: str = "INFO") -> None:
    """Root logging to stderr in `fmt` ("json" or "text"), with request ids (call once per process)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        text = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
        handler.setFormatter(logging.Formatter(text))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())


def _begin() -> None:
    incoming = request.headers.get(HEADER, "")
    g.request_id = incoming if _SAFE_ID.match(incoming) else uuid.uuid4().hex
    g.request_started = time.perf_counter()


def _finish(response: Response) -> Response:
    rid = g.get("request_id")
    if rid:
        response.headers[HEADER] = rid
    started = g.get("request_started")
    if started is not None and request.endpoint not in ("health.healthz", "health.readyz"):
        rule = request.url_rule.rule if request.url_rule is not None else "(no route)"
        access_log.info(
            "%s %s %s",
            request.method,
            rule,
            response.status_code,
            extra={
                "fields": {
                    "method": request.method,
                    "route": rule,
                    "status": response.status_code,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                }
            },
        )
    return response


def init_app(app: Flask) -> None:
    """Request ids and the access line; ProxyFix for exactly PROXIES proxies (none by default)."""
    app.before_request(_begin)
    app.after_request(_finish)
    proxies = int(app.config.get("PROXIES") or 0)
    if proxies > 0:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies, x_port=proxies, x_prefix=0
        )
