"""SMART Backend Services: a system client authenticating with private_key_jwt (client_credentials).

The token endpoint comes from `[base]/.well-known/smart-configuration`; the client assertion is a JWT
signed with the client's private key (RS384 for RSA keys, ES384 for EC keys) with `kid`, iss = sub =
client id, aud = token endpoint, exp five minutes ahead and a unique jti. Tokens are cached until a
minute before they expire. Tokens and assertions are never logged.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import requests
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
DEFAULT_SCOPE = (
    "system/Patient.rs system/Condition.rs system/CarePlan.rs system/Consent.rs "
    "system/Encounter.rs system/Task.rs system/Communication.rs system/ChargeItem.rs system/Group.rs"
)
LEEWAY = 60.0


class BackendAuthError(Exception):
    """The token endpoint refused us or could not be found."""


def load_key(path: Path | str) -> RSAKey | ECKey:
    """A private key from a JWK (JSON) or PEM file."""
    raw = Path(path).read_bytes()
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if isinstance(data, dict) and "keys" in data:
        data = next((k for k in data["keys"] if "d" in k), None)
    if isinstance(data, dict):
        return ECKey.import_key(data) if data.get("kty") == "EC" else RSAKey.import_key(data)
    text = raw.decode("ascii", "replace")
    return ECKey.import_key(raw) if "EC PRIVATE" in text else RSAKey.import_key(raw)


def token_endpoint(base: str, session: requests.Session | None = None, timeout: float = 10.0) -> str:
    http = session or requests.Session()
    url = base.rstrip("/") + "/.well-known/smart-configuration"
    try:
        response = http.get(url, headers={"Accept": "application/json"}, timeout=timeout)
        data = response.json() if response.status_code == 200 else None
    except (requests.RequestException, ValueError):
        data = None
    endpoint = data.get("token_endpoint") if isinstance(data, dict) else None
    if not isinstance(endpoint, str) or not endpoint.startswith(("https://", "http://")):
        raise BackendAuthError(
            "the FHIR server publishes no token_endpoint in .well-known/smart-configuration"
        )
    return endpoint


class BackendServicesAuth:
    """A token provider (`callable() -> str`) for FhirClient and BulkExporter."""

    def __init__(
        self,
        base: str,
        client_id: str,
        key: RSAKey | ECKey,
        *,
        kid: str | None = None,
        scope: str = DEFAULT_SCOPE,
        endpoint: str | None = None,
        session: requests.Session | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.base = base
        self.client_id = client_id
        self.key = key
        self.kid = kid or key.kid or key.thumbprint()
        self.scope = scope
        self.session = session or requests.Session()
        self.timeout = timeout
        self._endpoint = endpoint
        self._token: tuple[str, float] | None = None
        self._lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        if self._endpoint is None:
            self._endpoint = token_endpoint(self.base, self.session, self.timeout)
        return self._endpoint

    def assertion(self) -> str:
        now = int(time.time())
        alg = "ES384" if isinstance(self.key, ECKey) else "RS384"
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": self.endpoint,
            "exp": now + 300,
            "iat": now,
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode({"alg": alg, "kid": self.kid, "typ": "JWT"}, claims, self.key, algorithms=[alg])

    def __call__(self) -> str:
        with self._lock:
            if self._token and self._token[1] - time.time() > LEEWAY:
                return self._token[0]
            form = {
                "grant_type": "client_credentials",
                "scope": self.scope,
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": self.assertion(),
            }
            try:
                response = self.session.post(
                    self.endpoint, data=form, timeout=self.timeout, headers={"Accept": "application/json"}
                )
                data: Any = response.json()
            except (requests.RequestException, ValueError):
                raise BackendAuthError(
                    "the token endpoint could not be reached or answered no JSON"
                ) from None
            if response.status_code != 200 or not isinstance(data, dict) or not data.get("access_token"):
                error = data.get("error") if isinstance(data, dict) else None
                raise BackendAuthError(
                    f"the token endpoint refused the client (HTTP {response.status_code}"
                    + (f", {error}" if error else "")
                    + ")"
                )
            expires = float(data.get("expires_in") or 300)
            self._token = (str(data["access_token"]), time.time() + expires)
            return self._token[0]
