"""A loopback HTTP proxy that adds a fixed delay to every request (a stand-in for a distant EHR).

It forwards GET/POST to one upstream origin on 127.0.0.1 and rewrites the upstream's origin in
response bodies and Location headers to its own, so `next` links stay on the proxy (as a real
FHIR proxy such as smart-launcher does).

Honest timing: every socket (client side and upstream) has TCP_NODELAY, and each response goes out in
ONE write (status line, headers and body together), so a small response never waits ~40 ms for a
delayed ACK (Nagle + delayed ACK on keep-alive connections would tax many small pages and flatter a
single large batch). Upstream connections are kept alive per proxy thread.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "proxy-authorization",
        "proxy-authenticate",
        "host",
        "content-length",
    }
)


class LatencyProxy:
    """`with LatencyProxy("http://127.0.0.1:8090", 0.05) as proxy:` then use `proxy.origin`."""

    def __init__(
        self, upstream: str, delay: float = 0.05, timeout: float = 30.0, *, replay: bool = False
    ) -> None:
        parts = urlsplit(upstream)
        if parts.hostname not in ("127.0.0.1", "localhost") or not parts.port:
            raise ValueError("the latency proxy only forwards to a loopback origin with a port")
        self.upstream_host, self.upstream_port = parts.hostname, parts.port
        self.upstream_origin = f"{parts.scheme}://{parts.netloc}"
        self.delay = delay
        self.timeout = timeout
        # replay: answer a request seen before (same method, path and body) with the upstream's first
        # answer, so the stand-in EHR's own CPU stays off this machine after warm-up (a real EHR runs
        # elsewhere); the delay is still paid. Benchmarks only: nothing is ever invalidated.
        self.replay = replay
        self.replayed = 0
        self._answers: dict[tuple[str, str, bytes], tuple[int, list[tuple[str, str]], bytes]] = {}
        self.requests = 0
        self._lock = threading.Lock()
        self._local = threading.local()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.origin = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="latency-proxy", daemon=True)

    def start(self) -> LatencyProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> LatencyProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes | None
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        with self._lock:
            self.requests += 1
            known = self._answers.get((method, path, body or b"")) if self.replay else None
            if known is not None:
                self.replayed += 1
        time.sleep(self.delay)
        if known is not None:
            return known
        try:
            status, out_headers, data = self._upstream(method, path, headers, body)
        except (OSError, http.client.HTTPException):
            self._local.conn = None  # a stale keep-alive connection: one fresh try
            status, out_headers, data = self._upstream(method, path, headers, body)
        data = data.replace(self.upstream_origin.encode(), self.origin.encode())
        out_headers = [(k, v.replace(self.upstream_origin, self.origin)) for k, v in out_headers]
        if self.replay and status == 200 and method in ("GET", "POST"):
            with self._lock:
                self._answers[(method, path, body or b"")] = (status, out_headers, data)
        return status, out_headers, data

    def _upstream(
        self, method: str, path: str, headers: dict[str, str], body: bytes | None
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=self.timeout)
            conn.connect()
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._local.conn = conn
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except BaseException:
            conn.close()
            self._local.conn = None
            raise
        if resp.will_close:
            conn.close()
            self._local.conn = None
        out_headers = [(k, v) for k, v in resp.getheaders() if k.lower() not in _HOP_BY_HOP]
        return resp.status, out_headers, data

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # TCP_NODELAY on every accepted connection

            def _relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                try:
                    status, out_headers, data = proxy._forward(self.command, self.path, headers, body)
                except OSError:
                    status, out_headers, data = 502, [("Content-Type", "text/plain")], b"upstream unreachable"
                reason = self.responses.get(status, ("",))[0]
                head = [f"HTTP/1.1 {status} {reason}"]
                head += [f"{key}: {value}" for key, value in out_headers]
                head.append(f"Content-Length: {len(data)}")
                self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + data)  # one write

            do_GET = do_POST = do_PUT = do_DELETE = _relay

            def log_message(self, format: str, *args: object) -> None:
                return  # quiet: no request lines (they carry ids)

        return Handler
