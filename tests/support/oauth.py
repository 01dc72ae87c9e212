"""Start and stop oauth2-mock-server (npm) with our SMART hook (tests/oauth/server.mjs) on loopback."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from smart_app.demo.local_fhir import stop_process
from tests.support.sekmet import free_port

OAUTH_DIR = Path(__file__).resolve().parents[1] / "oauth"
SCRIPT = OAUTH_DIR / "server.mjs"
NODE = os.environ.get("CCM_READY_NODE") or shutil.which("node") or "node"


@dataclass
class OAuthServer:
    """A running mock authorization server; `url` is its issuer URL (http://127.0.0.1:<port>)."""

    process: subprocess.Popen[str]
    url: str

    @property
    def authorization_endpoint(self) -> str:
        return f"{self.url}/authorize"

    @property
    def token_endpoint(self) -> str:
        return f"{self.url}/token"

    @property
    def jwks_uri(self) -> str:
        return f"{self.url}/jwks"

    def smart_configuration(self, **extra: Any) -> dict[str, Any]:
        """What a SMART server's .well-known/smart-configuration would say (for SMART_DISCOVERY_OVERRIDES)."""
        conf: dict[str, Any] = {
            "issuer": self.url,
            "authorization_endpoint": self.authorization_endpoint,
            "token_endpoint": self.token_endpoint,
            "jwks_uri": self.jwks_uri,
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": True,  # server.mjs adds iss (RFC 9207)
            "token_endpoint_auth_methods_supported": ["private_key_jwt", "client_secret_basic"],
            "capabilities": ["launch-ehr", "launch-standalone", "client-public",
                             "client-confidential-symmetric", "client-confidential-asymmetric",
                             "sso-openid-connect", "context-ehr-patient",
                             "permission-offline", "permission-v2"],
        }
        conf.update(extra)
        return conf

    def set_context(self, **context: Any) -> None:
        """SMART context for the next token responses (patient, encounter, fhirUser, scope, ...)."""
        requests.post(f"{self.url}/test/context", json=context, timeout=5).raise_for_status()

    def register_client(self, client_id: str, *, secret: str | None = None,
                        jwks: dict[str, Any] | None = None) -> None:
        """Make the server check this client's authentication (basic secret or private_key_jwt JWKS)."""
        body: dict[str, Any] = {"client_id": client_id}
        if secret is not None:
            body["secret"] = secret
        if jwks is not None:
            body["jwks"] = jwks
        requests.post(f"{self.url}/test/clients", json=body, timeout=5).raise_for_status()

    def requests_seen(self) -> list[dict[str, Any]]:
        """What each /authorize and /token request carried (no secrets)."""
        resp = requests.get(f"{self.url}/test/requests", timeout=5)
        resp.raise_for_status()
        return list(resp.json())

    def reset(self) -> None:
        requests.post(f"{self.url}/test/reset", json={}, timeout=5).raise_for_status()

    def stop(self) -> None:
        stop_process(self.process)


def _drain(process: subprocess.Popen[str]) -> None:
    """Keep reading the server's output so a full pipe never blocks it."""
    assert process.stdout is not None
    for _ in process.stdout:
        pass


def start_oauth_server(port: int | None = None, timeout: float = 30) -> OAuthServer:
    """Start the mock server on 127.0.0.1 and wait for its READY line."""
    if not (OAUTH_DIR / "node_modules" / "oauth2-mock-server").is_dir():
        raise RuntimeError("oauth2-mock-server is not installed: run `npm ci` in tests/oauth")
    port = port or free_port()
    process = subprocess.Popen(
        [NODE, str(SCRIPT), str(port)], cwd=OAUTH_DIR, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.startswith("READY "):
            server = OAuthServer(process, line.split()[1].strip())
            threading.Thread(target=_drain, args=(process,), daemon=True).start()
            requests.get(f"{server.url}/.well-known/openid-configuration", timeout=5).raise_for_status()
            return server
        if not line and process.poll() is not None:
            break
    process.kill()
    raise RuntimeError(f"oauth2-mock-server did not start (exit {process.poll()})")


@pytest.fixture(scope="session")
def oauth_server() -> Iterator[OAuthServer]:
    """One mock authorization server for the session; tests call reset() / set_context() as needed."""
    try:
        server = start_oauth_server()
    except (RuntimeError, FileNotFoundError) as exc:
        pytest.skip(f"oauth2-mock-server unavailable: {exc}")
    try:
        yield server
    finally:
        server.stop()
