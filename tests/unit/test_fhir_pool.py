"""FhirClient connections: one keep-alive pool per FHIR origin, kept across clients (i.e. across requests)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from smart_app.fhir.client import FhirClient, close_pools, pooled_session


class _Server:
    """A loopback FHIR-ish server that counts TCP connections and sets a cookie on every answer."""

    def __init__(self) -> None:
        self.connections: set[tuple[str, int]] = set()
        self.cookies_seen: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                server.connections.add(self.client_address)
                server.cookies_seen.append(self.headers.get("Cookie") or "")
                body = json.dumps({"resourceType": "Patient", "id": "p1"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Set-Cookie", "sid=user-a; Path=/")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}/fhir"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[_Server]:
    close_pools()
    s = _Server()
    yield s
    close_pools()
    s.stop()


def test_clients_for_the_same_base_share_one_keep_alive_connection(server: _Server) -> None:
    for _ in range(5):  # a new client per page view, as the panel builds them
        assert FhirClient(server.base).read("Patient", "p1")["id"] == "p1"
    assert len(server.connections) == 1
    assert FhirClient(server.base).session is FhirClient(server.base + "/").session
    assert pooled_session(server.base) is not pooled_session("http://127.0.0.2:1/fhir")


def test_the_shared_pool_never_carries_cookies_between_requests(server: _Server) -> None:
    FhirClient(server.base).read("Patient", "p1")
    FhirClient(server.base).read("Patient", "p1")
    assert server.cookies_seen == ["", ""]


def test_an_explicit_session_is_used_as_given(server: _Server) -> None:
    import requests

    own = requests.Session()
    assert FhirClient(server.base, session=own).session is own
