"""Helpers for the security tests: a tiny local HTTP server that records what it is sent (a hostile
authorization server, a FHIR server the app must not call, a JWKS endpoint), and SMART launches through
the real oauth2-mock-server."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from flask import Flask
from flask.testing import FlaskClient

from smart_app.config import load_registration
from tests.support import app as support_app
from tests.support.oauth import OAuthServer

CALLBACK = "http://localhost/callback"
Answer = tuple[int, dict[str, str], bytes]


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


@dataclass
class LocalServer:
    """A running recorder; `url` is http://127.0.0.1:<port>."""

    url: str
    seen: list[Seen] = field(default_factory=list)

    def paths(self) -> list[str]:
        return [s.path for s in self.seen]


@contextmanager
def local_server(answer: Callable[[Seen], Answer]) -> Iterator[LocalServer]:
    """Serve `answer(request)` on a free loopback port while the block runs; every request is recorded."""
    state: dict[str, LocalServer] = {}

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            seen = Seen(self.command, parts.path, parse_qs(parts.query), dict(self.headers.items()),
                        self.rfile.read(length) if length else b"")
            state["server"].seen.append(seen)
            status, headers, body = answer(seen)
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _handle

        def log_message(self, *args: Any) -> None:  # quiet
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state["server"] = LocalServer(f"http://127.0.0.1:{httpd.server_address[1]}")
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state["server"]
    finally:
        httpd.shutdown()
        httpd.server_close()


def json_answer(body: Any, status: int = 200) -> Answer:
    return status, {"Content-Type": "application/json"}, json.dumps(body).encode()


def smart_app(tmp: Path, issuers: dict[str, dict[str, Any]], **config: Any) -> Flask:
    """The app with these allowed issuers ({FHIR base: SMART configuration}); public client."""
    registration = dict(load_registration())
    registration.update({"client_id": "ccm-ready", "token_endpoint_auth_method": "none",
                         "allowed_issuers": list(issuers), "redirect_uris": [CALLBACK]})
    settings: dict[str, Any] = {
        "SECRET_KEY": "security", "REGISTRATION": registration, "SMART_DISCOVERY_OVERRIDES": issuers,
        "OPEN_SERVERS": [],
    }
    settings.update(config)
    return support_app.make_app(tmp, **settings)


def browser_follow(location: str, hops: int = 5) -> dict[str, str]:
    """The browser following authorization-server redirects until it is sent back to our /callback."""
    for _ in range(hops):
        resp = requests.get(location, allow_redirects=False, timeout=10)
        assert resp.status_code in (302, 303), resp.text[:300]
        location = resp.headers["Location"]
        back = urlsplit(location)
        if f"{back.scheme}://{back.netloc}{back.path}" == CALLBACK:
            return {k: v[0] for k, v in parse_qs(back.query).items()}
    raise AssertionError("never sent back to /callback")


def launch(client: FlaskClient, iss: str) -> Any:
    """EHR launch through the real authorization server; returns the /callback response."""
    start = client.get("/launch", query_string={"iss": iss, "launch": "xyz"})
    assert start.status_code == 302, start.get_data(as_text=True)[:500]
    return client.get("/callback", query_string=browser_follow(start.headers["Location"]))


def session_context(app: Flask, client: FlaskClient) -> Any:
    cookie = client.get_cookie(app.config["SESSION_COOKIE_NAME"])
    if cookie is None:
        return None
    loaded = app.extensions["ccm_ready_sessions"].load_context(cookie.value)
    return None if loaded is None else loaded[0]


def csrf_of(client: FlaskClient) -> str:
    with client.session_transaction() as sess:
        if "csrf" not in sess:
            sess["csrf"] = "t" * 43
        return str(sess["csrf"])


def oauth_ready(oauth: OAuthServer, **context: Any) -> OAuthServer:
    oauth.reset()
    oauth.set_context(**context)
    return oauth
