"""SMART App Launch 2.2 client side: issuer allow-list, discovery, authorize (PKCE S256), token, refresh.

authlib does the OAuth2 mechanics (authorization URL with PKCE, token and refresh grants, client
authentication: public, `client_secret_basic`, `private_key_jwt` RS384 with `kid`); joserfc verifies
the `id_token` against the server's `jwks_uri`. Nothing here touches the Flask session: launch.py
keeps the pending state server side and sessions.py keeps the tokens.

Why over 400 lines: the client side of one protocol, step by step (issuer and endpoint checks,
discovery, scope choice, client keys, authorize, token, `id_token` verification, refresh), each step
checking what the one before it returned; the routes are in views.py, the stored session in web/sessions.py.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from authlib.oauth2.rfc7523.assertion import private_key_jwt_sign
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, RSAKey

from smart_app.context import LaunchContext, LaunchMode, Token
from smart_app.fhir.patient_scope import valid_fhir_id

log = logging.getLogger(__name__)

HTTP_TIMEOUT = 10.0
ASSERTION_LIFETIME = 300  # SMART: client_assertion exp at most 5 minutes ahead
DEFAULT_EXPIRES_IN = 300  # when a token response omits expires_in, assume little
ID_TOKEN_ALGS = ["RS256", "RS384", "ES256", "ES384"]
V1_SUFFIXES = (".read", ".write", ".*")
CLIENT_AUTH_METHODS = ("none", "client_secret_basic", "private_key_jwt")
OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"


class SmartAuthError(Exception):
    """A launch cannot go on; `message` is safe to show to the user (no secrets, no PHI)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


# --------------------------------------------------------------------------- allow-lists


def normalize_base(url: str) -> str:
    return (url or "").strip().rstrip("/")


def _config_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return value.split()
    return [str(v) for v in value or []]


def _checked_url(url: str, what: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SmartAuthError(f"{what} must be an http(s) URL")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise SmartAuthError(f"{what} must not carry credentials, a query or a fragment")
    return normalize_base(url)


def allowed_issuers(config: Mapping[str, Any]) -> set[str]:
    """launch.json `allowed_issuers` plus config SMART_ALLOWED_ISSUERS (env CCM_READY_ALLOWED_ISSUERS)."""
    reg = config.get("REGISTRATION") or {}
    items = _config_list(reg.get("allowed_issuers"))
    items += _config_list(config.get("SMART_ALLOWED_ISSUERS"))
    return {normalize_base(i) for i in items if i}


def open_servers(config: Mapping[str, Any]) -> list[str]:
    """launch.json `open_servers` plus config OPEN_SERVERS (env CCM_READY_OPEN_SERVERS); "*" = any."""
    reg = config.get("REGISTRATION") or {}
    items = _config_list(reg.get("open_servers")) + _config_list(config.get("OPEN_SERVERS"))
    out: list[str] = []
    for item in items:
        base = item if item == "*" else normalize_base(item)
        if base and base not in out:
            out.append(base)
    return out


def check_issuer(iss: str | None, config: Mapping[str, Any]) -> str:
    """The normalised iss when it is on the allow-list and safe for bearer tokens; SmartAuthError(403)
    otherwise. No network."""
    if not iss:
        raise SmartAuthError("The launch did not say which FHIR server it came from (iss is missing).")
    base = _checked_url(iss, "iss")
    if base not in allowed_issuers(config):
        raise SmartAuthError(
            "This FHIR server is not on the app's list of allowed issuers; ask the administrator to add "
            "it to launch.json allowed_issuers (or CCM_READY_ALLOWED_ISSUERS).",
            403,
        )
    if not token_safe(base):
        raise SmartAuthError(
            "This FHIR server uses plain http: the app sends access tokens only over https (or to this "
            "computer, for local testing). Use the server's https address.",
            403,
        )
    return base


def token_safe(url: str) -> bool:
    """True when a bearer token may be sent to `url`: https, or http to a loopback address."""
    parts = urlsplit(url)
    return parts.scheme == "https" or (parts.scheme == "http" and _is_loopback(url))


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port


def check_endpoint_binding(conf: SmartConfiguration) -> None:
    """The token endpoint must belong to the authorization server that authorizes the launch.

    A hostile (but allow-listed) server could publish another server's authorization endpoint with its own
    token endpoint, and so receive that server's code and our PKCE verifier (a mix-up). The authorization
    and token endpoints, and the `issuer` when published, must share one origin.
    """
    origins = {_origin(conf.authorization_endpoint), _origin(conf.token_endpoint)}
    if conf.issuer:
        origins.add(_origin(conf.issuer))
    if len(origins) != 1:
        raise SmartAuthError(
            "The server's SMART configuration names a token endpoint that does not belong to its "
            "authorization server; the app will not send a sign-in code there.",
            502,
        )


def check_open_server(base: str | None, config: Mapping[str, Any]) -> str:
    """The normalised base when open mode may use it; SmartAuthError(403) otherwise. No network."""
    if not base:
        raise SmartAuthError("Give the FHIR base URL of an open server.")
    checked = _checked_url(base, "The FHIR base URL")
    allowed = open_servers(config)
    if "*" in allowed or checked in allowed:
        return checked
    raise SmartAuthError(
        "This FHIR server is not on the open-server list; add it to launch.json open_servers "
        "(or CCM_READY_OPEN_SERVERS).",
        403,
    )


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _endpoint(url: Any, what: str) -> str:
    if not isinstance(url, str) or not url:
        raise SmartAuthError(f"The server's SMART configuration has no {what}.", 502)
    parts = urlsplit(url)
    if parts.scheme == "https" or (parts.scheme == "http" and _is_loopback(url)):
        return url
    raise SmartAuthError(f"The server's {what} must use https.", 502)


# --------------------------------------------------------------------------- discovery


@dataclass(frozen=True)
class SmartConfiguration:
    authorization_endpoint: str
    token_endpoint: str
    issuer: str | None = None
    jwks_uri: str | None = None
    capabilities: tuple[str, ...] = ()
    scopes_supported: tuple[str, ...] = ()
    code_challenge_methods_supported: tuple[str, ...] = ()
    token_endpoint_auth_methods_supported: tuple[str, ...] = ()
    source: str = "well-known"  # well-known | capability-statement | override
    iss_parameter_supported: bool = False  # RFC 9207 authorization_response_iss_parameter_supported

    @classmethod
    def from_json(cls, data: Mapping[str, Any], source: str) -> SmartConfiguration:
        def strings(key: str) -> tuple[str, ...]:
            value = data.get(key)
            return tuple(str(v) for v in value) if isinstance(value, list) else ()

        conf = cls(
            authorization_endpoint=_endpoint(data.get("authorization_endpoint"), "authorization endpoint"),
            token_endpoint=_endpoint(data.get("token_endpoint"), "token endpoint"),
            issuer=data.get("issuer") if isinstance(data.get("issuer"), str) else None,
            jwks_uri=_endpoint(data["jwks_uri"], "jwks_uri") if data.get("jwks_uri") else None,
            capabilities=strings("capabilities"),
            scopes_supported=strings("scopes_supported"),
            code_challenge_methods_supported=strings("code_challenge_methods_supported"),
            token_endpoint_auth_methods_supported=strings("token_endpoint_auth_methods_supported"),
            source=source,
            iss_parameter_supported=data.get("authorization_response_iss_parameter_supported") is True,
        )
        if source != "capability-statement" and "S256" not in conf.code_challenge_methods_supported:
            raise SmartAuthError(
                "The server does not support PKCE S256 (code_challenge_methods_supported); the app will not "
                "launch without it.",
                502,
            )
        return conf


def _get_json(url: str, http: requests.Session | None) -> Any:
    getter = http or requests
    resp = getter.get(url, headers={"Accept": "application/json"}, timeout=HTTP_TIMEOUT,
                      allow_redirects=False)
    if resp.status_code != 200:
        raise SmartAuthError(f"HTTP {resp.status_code}", 502)
    try:
        return resp.json()
    except ValueError:
        raise SmartAuthError("not JSON", 502) from None


def _from_capability_statement(cap: Any) -> dict[str, Any]:
    """The oauth-uris extension of CapabilityStatement.rest[].security (SMART 1 servers)."""
    for rest in cap.get("rest") or [] if isinstance(cap, dict) else []:
        security = rest.get("security") if isinstance(rest, dict) else None
        for ext in (security or {}).get("extension") or []:
            if isinstance(ext, dict) and ext.get("url") == OAUTH_URIS:
                out: dict[str, Any] = {}
                for sub in ext.get("extension") or []:
                    if isinstance(sub, dict) and sub.get("url") in ("authorize", "token"):
                        name = "authorization" if sub["url"] == "authorize" else "token"
                        out[f"{name}_endpoint"] = sub.get("valueUri")
                return out
    return {}


def discover(iss: str, config: Mapping[str, Any], http: requests.Session | None = None) -> SmartConfiguration:
    """SMART configuration of an (allowed) issuer: overrides, then .well-known, then CapabilityStatement."""
    overrides = {normalize_base(k): v for k, v in (config.get("SMART_DISCOVERY_OVERRIDES") or {}).items()}
    if iss in overrides:
        return SmartConfiguration.from_json(overrides[iss], "override")
    try:
        data = _get_json(f"{iss}/.well-known/smart-configuration", http)
        if isinstance(data, dict) and data.get("authorization_endpoint"):
            return SmartConfiguration.from_json(data, "well-known")
    except SmartAuthError as exc:
        log.info("no .well-known/smart-configuration (%s); trying the CapabilityStatement", exc.message)
    except requests.RequestException as exc:
        raise SmartAuthError(f"Could not reach the FHIR server for SMART discovery ({type(exc).__name__}).",
                             502) from None
    try:
        uris = _from_capability_statement(_get_json(f"{iss}/metadata", http))
    except (SmartAuthError, requests.RequestException):
        uris = {}
    if not uris:
        raise SmartAuthError("The FHIR server does not publish a SMART configuration; it cannot launch this "
                             "app with OAuth (use open mode for open servers).", 502)
    return SmartConfiguration.from_json(uris, "capability-statement")


# --------------------------------------------------------------------------- scopes


def _is_v1(scope: str) -> bool:
    return "/" in scope and scope.endswith(V1_SUFFIXES)


def _is_v2(scope: str) -> bool:
    if "/" not in scope or "." not in scope:
        return False
    perms = scope.rsplit(".", 1)[1].split("?", 1)[0]
    return bool(perms) and set(perms) <= set("cruds")


def choose_scopes(registration: Mapping[str, Any], conf: SmartConfiguration, mode: LaunchMode) -> str:
    """SMART v2 scopes from launch.json; the v1 fallback when the server shows only v1 support."""
    v2 = str(registration.get("scope") or "")
    v1 = str(registration.get("scope_v1_fallback") or "")
    only_v1 = ("permission-v1" in conf.capabilities and "permission-v2" not in conf.capabilities) or (
        any(_is_v1(s) for s in conf.scopes_supported) and not any(_is_v2(s) for s in conf.scopes_supported)
    )
    scopes = (v1 if v1 and only_v1 else v2).split()
    if mode == "standalone":
        scopes = [s for s in scopes if s != "launch"]
        if "launch/patient" not in scopes:
            scopes.insert(0, "launch/patient")
    elif "launch" not in scopes:
        scopes.insert(0, "launch")
    return " ".join(dict.fromkeys(scopes))


# --------------------------------------------------------------------------- client key (private_key_jwt)

_key_lock = threading.Lock()


def key_path(data_dir: str | Path) -> Path:
    return Path(data_dir) / "keys" / "smart-client-rs384.json"


def client_key(data_dir: str | Path) -> RSAKey:
    """The app's private signing key: generated on first use in DATA_DIR (0600), never committed."""
    path = key_path(data_dir)
    with _key_lock:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            key = RSAKey.generate_key(2048, parameters={"alg": "RS384", "use": "sig"}, private=True)
            data = key.as_dict(private=True)
            data["kid"] = key.thumbprint()
            fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh)
            log.info("generated the app's private_key_jwt signing key")
        data = json.loads(path.read_text(encoding="utf-8"))
    return RSAKey.import_key(data)


def public_jwks(data_dir: str | Path) -> dict[str, Any]:
    """The JWKS the app publishes (public part only)."""
    key = client_key(data_dir)
    public = key.as_dict(private=False)
    public.update({"kid": key.kid, "alg": "RS384", "use": "sig"})
    return {"keys": [public]}


class SmartPrivateKeyJWT(PrivateKeyJWT):
    """private_key_jwt as SMART wants it: RS384, `kid` header, exp at most 5 minutes, unique jti."""

    alg = "RS384"

    def __init__(self, token_endpoint: str, kid: str) -> None:
        super().__init__(token_endpoint, headers={"kid": kid}, alg="RS384")
        self.kid = kid

    def sign(self, auth: Any, token_endpoint: str) -> str:
        return private_key_jwt_sign(
            auth.client_secret,
            client_id=auth.client_id,
            token_endpoint=token_endpoint,
            alg=self.alg,
            header={"kid": self.kid, "typ": "JWT"},
            expires_in=ASSERTION_LIFETIME,
        )


def _client_secret(config: Mapping[str, Any]) -> str:
    secret = config.get("SMART_CLIENT_SECRET")
    if not secret:
        raise SmartAuthError("launch.json says client_secret_basic but no client secret is configured "
                             "(CCM_READY_CLIENT_SECRET).", 500)
    return str(secret)


def _oauth_session(oauth: Mapping[str, Any], config: Mapping[str, Any], **kwargs: Any) -> OAuth2Session:
    method = oauth.get("auth_method", "none")
    client_id = oauth["client_id"]
    if method == "client_secret_basic":
        return OAuth2Session(client_id, _client_secret(config), token_endpoint_auth_method=method, **kwargs)
    if method == "private_key_jwt":
        key = client_key(config.get("DATA_DIR") or ".ccm-ready")
        session = OAuth2Session(client_id, key, token_endpoint_auth_method=method, **kwargs)
        session.register_client_auth_method(SmartPrivateKeyJWT(oauth["token_endpoint"], str(key.kid)))
        return session
    return OAuth2Session(client_id, token_endpoint_auth_method="none", **kwargs)


def auth_method(registration: Mapping[str, Any]) -> str:
    method = str(registration.get("token_endpoint_auth_method") or "none")
    if method not in CLIENT_AUTH_METHODS:
        raise SmartAuthError(f"launch.json token_endpoint_auth_method {method!r} is not supported "
                             f"(use one of {', '.join(CLIENT_AUTH_METHODS)})", 500)
    return method


# --------------------------------------------------------------------------- authorize


@dataclass(frozen=True)
class PendingAuthorization:
    """What the browser session remembers between /launch and /callback (server side only)."""

    state: str
    code_verifier: str
    nonce: str
    iss: str
    mode: LaunchMode
    redirect_uri: str
    scope: str
    conf: dict[str, Any]
    created: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PendingAuthorization:
        return cls(**data)

    def check_response_issuer(self, iss: str | None, config: Mapping[str, Any]) -> None:
        """RFC 9207: the authorization response's `iss` must be the server this launch went to.

        Required when the server says it sends it (or SMART_REQUIRE_ISS_PARAMETER is set); checked
        whenever present. A mismatch means another server answered: the code is never redeemed.
        """
        expected = self.conf.get("issuer")
        required = bool(self.conf.get("iss_parameter_supported")) or bool(
            config.get("SMART_REQUIRE_ISS_PARAMETER")
        )
        if iss is None:
            if required:
                raise SmartAuthError("The sign-in answer does not say which server sent it (no iss); "
                                     "launch the app again.", 400)
            return
        if not isinstance(expected, str) or iss.rstrip("/") != expected.rstrip("/"):
            log.warning("authorization response from an unexpected issuer (mix-up refused)")
            raise SmartAuthError("The sign-in answer came from a different authorization server than the "
                                 "one this launch went to; nothing was sent. Launch the app again.", 400)


def begin(
    iss: str,
    *,
    mode: LaunchMode,
    launch: str | None,
    redirect_uri: str,
    config: Mapping[str, Any],
    http: requests.Session | None = None,
) -> tuple[str, PendingAuthorization]:
    """Discovery plus the authorization URL (PKCE S256, state, nonce, aud = iss, launch)."""
    registration = config.get("REGISTRATION") or {}
    auth_method(registration)
    conf = discover(iss, config, http)
    check_endpoint_binding(conf)
    scope = choose_scopes(registration, conf, mode)
    pending = PendingAuthorization(
        state=secrets.token_urlsafe(32),  # 256 bits
        code_verifier=secrets.token_urlsafe(64),
        nonce=secrets.token_urlsafe(24),
        iss=iss,
        mode=mode,
        redirect_uri=redirect_uri,
        scope=scope,
        conf=asdict(conf),
    )
    client = OAuth2Session(registration["client_id"], redirect_uri=redirect_uri, scope=scope,
                           code_challenge_method="S256")
    extra: dict[str, str] = {"aud": iss, "nonce": pending.nonce}
    if mode == "ehr":
        if not launch:
            raise SmartAuthError("The EHR launch has no launch parameter.")
        extra["launch"] = launch
    url, _ = client.create_authorization_url(
        conf.authorization_endpoint, state=pending.state, code_verifier=pending.code_verifier, **extra
    )
    return url, pending


# --------------------------------------------------------------------------- token


def _token_from(resp: Mapping[str, Any], previous: Token | None = None) -> Token:
    access = resp.get("access_token")
    if not isinstance(access, str) or not access:
        raise SmartAuthError("The authorization server returned no access token.", 502)
    if str(resp.get("token_type", "bearer")).lower() != "bearer":
        raise SmartAuthError("The authorization server returned a token type other than Bearer.", 502)
    try:
        expires_in = float(resp.get("expires_in") or DEFAULT_EXPIRES_IN)
    except (TypeError, ValueError):
        expires_in = DEFAULT_EXPIRES_IN
    return Token(
        access_token=access,
        expires_at=time.time() + expires_in,
        refresh_token=resp.get("refresh_token") or (previous.refresh_token if previous else None),
        scope=str(resp.get("scope") or (previous.scope if previous else "")),
        id_token=resp.get("id_token") or (previous.id_token if previous else None),
    )


def _relative_user(fhir_user: Any) -> str | None:
    if not isinstance(fhir_user, str) or "/" not in fhir_user:
        return None
    parts = fhir_user.rstrip("/").split("/")
    rtype, rid = parts[-2], parts[-1]
    if rtype in ("Practitioner", "PractitionerRole", "Patient", "RelatedPerson", "Person") and rid:
        return f"{rtype}/{rid}"
    return None


def verify_id_token(
    id_token: str,
    *,
    issuer: str | None,
    jwks_uri: str | None,
    client_id: str,
    nonce: str,
    http: requests.Session | None = None,
) -> dict[str, Any]:
    """Claims of a verified id_token (signature via jwks_uri; iss, aud = client_id, exp, nonce)."""
    if not jwks_uri or not issuer:
        raise SmartAuthError("The server issued an id_token but publishes no issuer/jwks_uri to check it.",
                             502)
    try:
        keys = KeySet.import_key_set(_get_json(jwks_uri, http))
        token = jwt.decode(id_token, keys, algorithms=ID_TOKEN_ALGS)
        jwt.JWTClaimsRegistry(
            leeway=60,
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": client_id},
            exp={"essential": True},
            nonce={"essential": True, "value": nonce},
        ).validate(token.claims)
    except (JoseError, ValueError, KeyError, requests.RequestException, SmartAuthError) as exc:
        log.warning("id_token rejected: %s", type(exc).__name__)
        raise SmartAuthError("The id_token from the authorization server could not be verified.",
                             502) from None
    return dict(token.claims)


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def _encounter_from(resp: Mapping[str, Any]) -> str | None:
    if isinstance(resp.get("encounter"), str):
        return resp["encounter"]
    for item in resp.get("fhirContext") or []:
        ref = item.get("reference") if isinstance(item, dict) else None
        if isinstance(ref, str) and ref.startswith("Encounter/"):
            return ref.split("/", 1)[1]
    return None


def _bool(value: Any, default: bool) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value.strip().lower() not in ("false", "0", "no")
    return default


def complete(
    pending: PendingAuthorization,
    code: str,
    config: Mapping[str, Any],
    http: requests.Session | None = None,
) -> tuple[LaunchContext, dict[str, Any]]:
    """Exchange the code (with the PKCE verifier) and read the launch context back."""
    registration = config.get("REGISTRATION") or {}
    conf = pending.conf
    oauth = {
        "client_id": registration["client_id"],
        "auth_method": auth_method(registration),
        "token_endpoint": conf["token_endpoint"],
        "issuer": conf.get("issuer"),
        "jwks_uri": conf.get("jwks_uri"),
    }
    client = _oauth_session(oauth, config, redirect_uri=pending.redirect_uri)
    try:
        resp = client.fetch_token(
            conf["token_endpoint"], grant_type="authorization_code", code=code,
            code_verifier=pending.code_verifier, redirect_uri=pending.redirect_uri, timeout=HTTP_TIMEOUT,
        )
    except SmartAuthError:
        raise
    except Exception as exc:  # authlib OAuthError, HTTP errors, bad JSON
        error = getattr(exc, "error", None) or type(exc).__name__
        log.warning("token exchange failed: %s", error)
        raise SmartAuthError(f"The authorization server refused the sign-in ({error}). Launch the app again.",
                             502) from None
    token = _token_from(resp)
    if not token.scope:
        token = replace(token, scope=pending.scope)
    patient = resp.get("patient")
    if not isinstance(patient, str) or not patient:
        raise SmartAuthError("The EHR did not say which patient this launch is for (no patient context).",
                             502)

    if not valid_fhir_id(patient):
        raise SmartAuthError("The EHR's patient context is not a valid FHIR id; the launch was refused.", 502)
    user = None
    if token.id_token:
        claims = verify_id_token(token.id_token, issuer=oauth["issuer"], jwks_uri=oauth["jwks_uri"],
                                 client_id=oauth["client_id"], nonce=pending.nonce, http=http)
        user = _relative_user(claims.get("fhirUser") or claims.get("profile"))
    ctx = LaunchContext(
        mode=pending.mode,
        fhir_base=pending.iss,
        patient_id=patient,
        user=user,
        encounter_id=_encounter_from(resp),
        need_patient_banner=_bool(resp.get("need_patient_banner"), True),
        smart_style_url=resp.get("smart_style_url") if isinstance(resp.get("smart_style_url"), str) else None,
        app_context=_text(resp.get("appContext") or resp.get("authorization_details")),
        granted_scopes=frozenset(token.scope.split()),
        token=token,
    )
    return ctx, oauth


def refresh(oauth: Mapping[str, Any], token: Token, config: Mapping[str, Any]) -> Token:
    """refresh_token grant with the same client authentication; the context stays as it was."""
    if not token.refresh_token:
        raise PermissionError("no refresh token")
    client = _oauth_session(oauth, config)
    try:
        resp = client.refresh_token(oauth["token_endpoint"], refresh_token=token.refresh_token,
                                    timeout=HTTP_TIMEOUT)
    except Exception as exc:
        error = getattr(exc, "error", None) or type(exc).__name__
        log.warning("token refresh failed: %s", error)
        raise PermissionError(f"the session could not be renewed ({error}); launch the app again") from None
    return _token_from(resp, token)

