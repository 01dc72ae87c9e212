"""Verify the JWT a CDS client (the EHR) sends with every CDS Hooks call.

Checks: signature against the issuer's configured JWKS (inline `jwks` or `jwks_url`), a known `iss`,
`aud` equal to this service's URL, sane `exp`/`iat`, and a `jti` not seen before (remembered until it
expires). Only asymmetric algorithms are accepted. Tokens are never logged.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import requests
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512")
LEEWAY = 60  # seconds of clock skew tolerated
MAX_LIFETIME = 3600  # CDS Hooks asks for short-lived tokens (about 5 minutes); refuse anything over an hour
JWKS_CACHE_SECONDS = 300
JWKS_MIN_REFETCH_SECONDS = 60  # a forced re-fetch (unknown kid) at most once a minute per URL
IMPORTED_KEY_SETS = 64  # distinct JWKS documents whose imported keys are kept (LRU)


class CdsAuthError(Exception):
    """The request's JWT is missing or not acceptable (-> 401)."""


class ReplayCache:
    """Thread-safe memory of (iss, jti) pairs until their token expires."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def check_and_remember(self, iss: str, jti: str, exp: float, now: float) -> bool:
        """True when (iss, jti) is new (and remember it); False when it is a replay."""
        with self._lock:
            if len(self._seen) > 1000:
                self._seen = {k: v for k, v in self._seen.items() if v + LEEWAY >= now}
            seen_until = self._seen.get((iss, jti))
            if seen_until is not None and seen_until + LEEWAY >= now:
                return False
            self._seen[(iss, jti)] = exp
            return True


@dataclass
class JwksFetcher:
    """Fetch and cache a client's JWKS by URL (only URLs from our own configuration).

    A re-fetch asked for by `refresh=True` (a token names a `kid` the cached set lacks) happens at most
    once per JWKS_MIN_REFETCH_SECONDS per URL, so forged tokens cannot make the service hammer the EHR.
    """

    timeout: float = 5.0
    min_refetch: float = JWKS_MIN_REFETCH_SECONDS
    fetches: int = 0
    _cache: dict[str, tuple[float, dict[str, Any]]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, url: str, *, refresh: bool = False) -> dict[str, Any]:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(url)
            if hit and now - hit[0] < JWKS_CACHE_SECONDS and (not refresh or now - hit[0] < self.min_refetch):
                return hit[1]
            self.fetches += 1
        try:
            resp = requests.get(url, timeout=self.timeout, headers={"Accept": "application/json"})
            resp.raise_for_status()
            jwks = resp.json()
        except (requests.RequestException, ValueError) as exc:
            raise CdsAuthError(f"cannot load the client's JWKS from {url}") from exc
        with self._lock:
            self._cache[url] = (now, jwks)
        return jwks


def _unverified_claims(token: str) -> dict[str, Any]:
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError) as exc:
        raise CdsAuthError("malformed JWT") from exc
    if not isinstance(claims, dict):
        raise CdsAuthError("malformed JWT")
    return claims


class ImportedKeys:
    """Imported key sets by the content of their JWKS document (bounded LRU, thread-safe).

    Importing a JWKS (parsing every key into a cryptography object) costs more than checking a signature
    with an already imported key; the same document (inline in the configuration, or cached by
    JwksFetcher) is imported once. The key is the document's content, so a rotated JWKS (a re-fetch that
    JwksFetcher still rate-limits per URL) is imported afresh and a stale key is never used.
    """

    def __init__(self, size: int = IMPORTED_KEY_SETS) -> None:
        self.size = size
        self.imports = 0
        self._sets: OrderedDict[bytes, KeySet] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, jwks: Any) -> KeySet:
        try:
            fingerprint = hashlib.sha256(orjson.dumps(jwks, option=orjson.OPT_SORT_KEYS)).digest()
        except (TypeError, orjson.JSONEncodeError) as exc:
            raise CdsAuthError("the issuer's JWKS is not usable") from exc
        with self._lock:
            keys = self._sets.get(fingerprint)
            if keys is not None:
                self._sets.move_to_end(fingerprint)
                return keys
        try:
            keys = KeySet.import_key_set(jwks)
        except (JoseError, ValueError, TypeError, KeyError, AttributeError) as exc:
            raise CdsAuthError("the issuer's JWKS is not usable") from exc
        with self._lock:
            self.imports += 1
            self._sets[fingerprint] = keys
            while len(self._sets) > self.size:
                self._sets.popitem(last=False)
        return keys


_imported = ImportedKeys()


def _keyset(client: Mapping[str, Any], fetch_jwks: Callable[..., dict[str, Any]], refresh: bool) -> KeySet:
    if "jwks" in client:
        jwks = client["jwks"]
    elif client.get("jwks_url"):
        jwks = fetch_jwks(client["jwks_url"], refresh=refresh)
    else:
        raise CdsAuthError("no JWKS configured for this issuer")
    return _imported(jwks)


def _header_kid(token: str) -> str | None:
    try:
        part = token.split(".")[0]
        header = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (IndexError, ValueError) as exc:
        raise CdsAuthError("malformed JWT") from exc
    if not isinstance(header, dict):
        raise CdsAuthError("malformed JWT")
    kid = header.get("kid")
    return kid if isinstance(kid, str) and kid else None


def _kids(keys: KeySet) -> set[str]:
    return {str(k.kid) for k in keys.keys if k.kid}


def _decode(
    token: str, client: Mapping[str, Any], fetch_jwks: Callable[..., dict[str, Any]]
) -> dict[str, Any]:
    """Verify the signature with the key the token's `kid` names (required when the set has several keys).

    A URL-based JWKS is re-fetched only when the `kid` is not in the cached set (a key rotation), and the
    fetcher rate-limits that; a bad signature with a known key never causes a fetch.
    """
    kid = _header_kid(token)
    keys = _keyset(client, fetch_jwks, False)
    by_url = "jwks_url" in client and "jwks" not in client
    if kid is not None and kid not in _kids(keys) and by_url:
        keys = _keyset(client, fetch_jwks, True)  # maybe rotated: one (rate-limited) re-fetch
    if kid is None and len(keys.keys) > 1:
        raise CdsAuthError("JWT header 'kid' is required: the issuer's JWKS holds several keys")
    if kid is not None and kid not in _kids(keys):
        raise CdsAuthError("JWT 'kid' is not in the issuer's JWKS")
    try:
        return dict(jwt.decode(token, keys, algorithms=ALGORITHMS).claims)
    except (JoseError, ValueError) as exc:
        raise CdsAuthError("bad JWT signature") from exc


def _number(claims: Mapping[str, Any], name: str) -> float:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CdsAuthError(f"JWT claim {name!r} missing or not a number")
    return float(value)


def verify(
    token: str,
    *,
    clients: Mapping[str, Mapping[str, Any]],
    audiences: Iterable[str],
    replay: ReplayCache,
    fetch_jwks: Callable[..., dict[str, Any]],
    now: float | None = None,
) -> dict[str, Any]:
    """The verified claims of `token`, or CdsAuthError saying (without secrets) why not."""
    iss = _unverified_claims(token).get("iss")
    if not isinstance(iss, str) or iss not in clients:
        raise CdsAuthError("unknown JWT issuer")
    claims = _decode(token, clients[iss], fetch_jwks)
    if claims.get("iss") != iss:
        raise CdsAuthError("unknown JWT issuer")
    aud = claims.get("aud")
    auds = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    wanted = {a.rstrip("/") for a in audiences}
    if not any(isinstance(a, str) and a.rstrip("/") in wanted for a in auds):
        raise CdsAuthError("JWT audience is not this service")
    t = time.time() if now is None else now
    exp, iat = _number(claims, "exp"), _number(claims, "iat")
    if exp < t - LEEWAY:
        raise CdsAuthError("JWT expired")
    if iat > t + LEEWAY:
        raise CdsAuthError("JWT issued in the future")
    if exp <= iat or exp - iat > MAX_LIFETIME:
        raise CdsAuthError("JWT lifetime is not acceptable")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti:
        raise CdsAuthError("JWT claim 'jti' missing")
    if not replay.check_and_remember(iss, jti, exp, t):
        raise CdsAuthError("JWT replayed (jti already used)")
    return claims


def bearer_token(header: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header, or CdsAuthError."""
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise CdsAuthError("missing Authorization: Bearer JWT")
    return token.strip()
