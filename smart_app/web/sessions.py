"""Server-side sessions: the cookie holds only a random key; context and tokens stay in SQLite.

`flask.session` itself is server side (so nothing any blueprint puts in it reaches the browser), and
the launch context of a session (LaunchContext + its OAuth metadata) lives in its own column, written
only by `start_session()` and by token refreshes, so a stale request cannot overwrite a fresh token.

Why over 400 lines: the session store, Flask's session interface over it and the accessors for the
session's launch (with the FHIR clients built from it) share one stored format and one expiry rule.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from flask import (
    Flask,
    Request,
    Response,
    abort,
    current_app,
    g,
    make_response,
    render_template,
    request,
    session,
)
from flask.sessions import SecureCookieSession, SessionInterface

from smart_app.auth import smart as smart_auth
from smart_app.auth.smart import token_safe
from smart_app.context import LaunchContext, Token
from smart_app.fhir.client import FhirClient
from smart_app.fhir.patient_scope import PatientScopedClient, PatientScopeError, valid_fhir_id
from smart_app.storage import Database, as_database, database_for

log = logging.getLogger(__name__)

DEFAULT_IDLE_SECONDS = 8 * 3600
REFRESH_LEEWAY_SECONDS = 60
TOUCH_INTERVAL_SECONDS = 60


class SessionExpired(PermissionError):
    """The session's token expired and could not be renewed (shown as the friendly 401 page)."""

__all__ = [
    "PatientScopeError",
    "ServerSession",
    "SessionExpired",
    "SessionStore",
    "context_from_json",
    "context_to_json",
    "current_context",
    "current_context_fresh",
    "end_session",
    "fhir_client",
    "init_app",
    "require_context",
    "server_client",
    "start_session",
]


# --------------------------------------------------------------------------- serialisation


def context_to_json(ctx: LaunchContext) -> dict[str, Any]:
    """LaunchContext -> JSON-able dict (scopes sorted, token as a dict)."""
    data = asdict(ctx)
    data["granted_scopes"] = sorted(ctx.granted_scopes)
    return data


def context_from_json(data: dict[str, Any]) -> LaunchContext:
    """Inverse of context_to_json."""
    token = data.get("token")
    return LaunchContext(
        mode=data["mode"],
        fhir_base=data["fhir_base"],
        patient_id=data["patient_id"],
        user=data.get("user"),
        encounter_id=data.get("encounter_id"),
        need_patient_banner=bool(data.get("need_patient_banner", True)),
        smart_style_url=data.get("smart_style_url"),
        app_context=data.get("app_context"),
        granted_scopes=frozenset(data.get("granted_scopes") or ()),
        token=Token(**token) if token else None,
    )


# --------------------------------------------------------------------------- store


def _digest(key: str) -> str:
    """Rows are keyed by a hash of the cookie key, so a copied database does not hand out sessions."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class SessionStore:
    """Thread-safe store (SQLite or the shared PostgreSQL database): one row per browser session (data,
    launch context, OAuth metadata), so any instance behind a load balancer serves any session."""

    def __init__(self, db: Database | Path | str, idle_seconds: float = DEFAULT_IDLE_SECONDS) -> None:
        self.db = as_database(db)
        self.path = getattr(self.db, "path", None)
        self.idle_seconds = idle_seconds
        self.db.migrate("sessions")  # tables: storage/migrations/versions/sessions_*.py

    def _row(self, key: str) -> tuple[str, str | None, str | None, float] | None:
        with self.db.read() as tx:
            row = tx.one("SELECT data, context, oauth, touched FROM sessions WHERE id = ?", (_digest(key),))
        if row is None:
            return None
        if time.time() - row[3] > self.idle_seconds:
            self.delete(key)
            return None
        return row  # type: ignore[return-value]

    def exists(self, key: str) -> bool:
        return self._row(key) is not None

    def load_data(self, key: str) -> dict[str, Any] | None:
        row = self._row(key)
        return None if row is None else json.loads(row[0])

    def load_data_touched(self, key: str) -> tuple[dict[str, Any], float] | None:
        row = self._row(key)
        return None if row is None else (json.loads(row[0]), row[3])

    def load_context(self, key: str) -> tuple[LaunchContext, dict[str, Any]] | None:
        row = self._row(key)
        if row is None or row[1] is None:
            return None
        return context_from_json(json.loads(row[1])), json.loads(row[2] or "{}")

    def save_data(self, key: str, data: dict[str, Any]) -> None:
        with self.db.transaction() as tx:
            tx.run(
                "INSERT INTO sessions (id, data, touched) VALUES (?, ?, ?)"
                " ON CONFLICT(id) DO UPDATE SET data = excluded.data, touched = excluded.touched",
                (_digest(key), json.dumps(data), time.time()),
            )

    def touch(self, key: str) -> None:
        with self.db.transaction() as tx:
            tx.run("UPDATE sessions SET touched = ? WHERE id = ?", (time.time(), _digest(key)))

    def set_context(self, key: str, ctx: LaunchContext | None, oauth: dict[str, Any] | None = None) -> None:
        ctx_json = None if ctx is None else json.dumps(context_to_json(ctx))
        with self.db.transaction() as tx:
            tx.run(
                "INSERT INTO sessions (id, data, context, oauth, touched) VALUES (?, '{}', ?, ?, ?)"
                " ON CONFLICT(id) DO UPDATE SET context = excluded.context, oauth = excluded.oauth,"
                " touched = excluded.touched",
                (_digest(key), ctx_json, json.dumps(oauth or {}), time.time()),
            )

    def update_token(self, key: str, token: Token, scopes: frozenset[str] | None = None) -> None:
        """Replace the token of a session's context (after a refresh)."""
        loaded = self.load_context(key)
        if loaded is None:
            return
        ctx, oauth = loaded
        ctx = ctx.with_token(token)
        if scopes:
            ctx = replace(ctx, granted_scopes=scopes)
        self.set_context(key, ctx, oauth)

    def delete(self, key: str) -> None:
        with self.db.transaction() as tx:
            tx.run("DELETE FROM sessions WHERE id = ?", (_digest(key),))

    def purge_idle(self) -> int:
        with self.db.transaction() as tx:
            return tx.run("DELETE FROM sessions WHERE touched < ?", (time.time() - self.idle_seconds,))

    def refresh_lock(self, key: str) -> contextlib.AbstractContextManager[None]:
        """One token refresh at a time per session, across threads, processes and instances (a rotated
        refresh token is usable once); the provider re-reads the token once it holds the lock."""
        return self.db.named_lock(f"session-refresh:{_digest(key)}")


# --------------------------------------------------------------------------- Flask session interface


class ServerSession(SecureCookieSession):
    """A Flask session whose contents live server side; `key` is the only thing in the cookie."""

    def __init__(self, initial: dict[str, Any] | None = None, key: str | None = None,
                 touched: float = 0.0) -> None:
        super().__init__(initial or {})
        self.key = key
        self.new_key = False
        self.touched = touched

    def ensure_key(self) -> str:
        if self.key is None:
            self.key = secrets.token_urlsafe(32)
            self.new_key = True
        return self.key


def _secure_request(app: Flask, req: Request) -> bool:
    return bool(req.is_secure or app.config.get("SESSION_COOKIE_SECURE"))


class ServerSessionInterface(SessionInterface):
    """Keeps session data in a SessionStore; the cookie carries a 256-bit random key only."""

    def __init__(self, store: SessionStore) -> None:
        self.store = store

    def open_session(self, app: Flask, request: Request) -> ServerSession:
        key = request.cookies.get(self.get_cookie_name(app))
        if key:
            loaded = self.store.load_data_touched(key)
            if loaded is not None:
                return ServerSession(loaded[0], key, loaded[1])
        return ServerSession()

    def save_session(self, app: Flask, session: Any, response: Response) -> None:
        assert isinstance(session, ServerSession)
        name = self.get_cookie_name(app)
        if session.accessed:
            response.vary.add("Cookie")
        if session.key is None and not session.modified:
            return
        key = session.key
        if not session and session.modified and key is not None and not self.store.exists(key):
            # Cleared and ended (logout): drop the cookie.
            response.delete_cookie(name, path=self.get_cookie_path(app))
            return
        if session.modified or session.new_key:
            key = session.ensure_key()
            self.store.save_data(key, dict(session))
        elif session.key is not None and time.time() - session.touched > TOUCH_INTERVAL_SECONDS:
            self.store.touch(session.key)  # keeps an active session from idling out
        if session.new_key or session.modified:
            self._set_cookie(app, response, session.ensure_key())

    def _set_cookie(self, app: Flask, response: Response, key: str) -> None:
        secure = _secure_request(app, request)
        response.set_cookie(
            self.get_cookie_name(app),
            key,
            httponly=True,
            secure=secure,
            samesite="None" if secure else "Lax",
            partitioned=secure,
            path=self.get_cookie_path(app),
        )


def _store() -> SessionStore:
    return current_app.extensions["ccm_ready_sessions"]


def _session() -> ServerSession:
    assert isinstance(session, ServerSession), "sessions.init_app was not called"
    return session


# --------------------------------------------------------------------------- public API


def current_context() -> LaunchContext | None:
    """The launch context of this browser session, or None."""
    if "ccm_ctx" in g:
        return g.ccm_ctx
    key = _session().key
    loaded = _store().load_context(key) if key else None
    g.ccm_ctx = loaded[0] if loaded else None
    return g.ccm_ctx


def current_context_fresh() -> LaunchContext | None:
    """The context as stored now (e.g. after a token refresh during this request)."""
    key = _session().key
    loaded = _store().load_context(key) if key else None
    return loaded[0] if loaded else None


def require_context() -> LaunchContext:
    """The launch context, or abort with a friendly 401 page that links to /open."""
    ctx = current_context()
    if ctx is None:
        body = render_template("launch/no_session.html")

        abort(make_response(body, 401))
    return ctx


def start_session(ctx: LaunchContext, oauth: dict[str, Any] | None = None) -> None:
    """Bind `ctx` to this browser under a NEW key (no session fixation) and a NEW CSRF token (a token
    seen before sign-in, or for another patient, is worth nothing after it)."""
    if not valid_fhir_id(ctx.patient_id):
        raise PatientScopeError("the launch patient is not a valid FHIR id", "session")
    session = _session()
    store = _store()
    session.pop("csrf", None)
    if session.key is not None:
        store.delete(session.key)
    session.key = secrets.token_urlsafe(32)
    session.new_key = True
    session.modified = True
    store.save_data(session.key, dict(session))
    store.set_context(session.key, ctx, oauth)
    g.ccm_ctx = ctx


def end_session() -> None:
    """Forget this browser's session (logout)."""
    session = _session()
    if session.key is not None:
        _store().delete(session.key)
    session.clear()
    session.modified = True
    g.ccm_ctx = None


def _token_provider(key: str, app: Flask) -> Callable[..., str]:
    """A callable returning a valid access token, refreshing before expiry (force=True: refresh now)."""

    def provide(force: bool = False) -> str:
        store: SessionStore = app.extensions["ccm_ready_sessions"]
        with store.refresh_lock(key):
            loaded = store.load_context(key)
            if loaded is None or loaded[0].token is None:
                raise SessionExpired("the session has ended; launch the app again")
            ctx, oauth = loaded
            token = ctx.token
            assert token is not None
            if not force and token.expires_at - time.time() > REFRESH_LEEWAY_SECONDS:
                return token.access_token
            if not token.refresh_token or not oauth.get("token_endpoint"):
                if force or token.expires_at <= time.time():
                    raise SessionExpired("the access token expired and cannot be refreshed; launch again")
                return token.access_token

            try:
                new_token = smart_auth.refresh(oauth, token, app.config)
            except PermissionError as exc:
                raise SessionExpired(str(exc)) from None
            scopes = frozenset(new_token.scope.split()) if new_token.scope else None
            store.update_token(key, new_token, scopes)
            log.info("access token refreshed for a %s session", ctx.mode)
            return new_token.access_token

    return provide


def server_client(ctx: LaunchContext, token_provider: Callable[..., str] | None = None) -> Any:
    """A client for `ctx`'s FHIR server NOT limited to a patient (FHIR_CLIENT_FACTORY when set).

    Request paths use `fhir_client()`; this is for it and for the open-mode picker before a session exists.
    """
    factory = current_app.config.get("FHIR_CLIENT_FACTORY")
    if factory is not None:
        return factory(ctx)

    return FhirClient(ctx.fhir_base, token_provider=token_provider,
                      timeout=float(current_app.config.get("FHIR_TIMEOUT", 10.0)))


def fhir_client() -> PatientScopedClient:
    """A FHIR client for the current session, limited to its launch patient.

    SMART sessions get a token provider that refreshes before expiry; open mode gets none, so no
    Authorization header is ever sent to an open server.
    """
    ctx = require_context()
    provider: Callable[..., str] | None = None
    if current_app.config.get("FHIR_CLIENT_FACTORY") is None and ctx.mode != "open" and ctx.token is not None:
        if not token_safe(ctx.fhir_base):  # never a bearer token over plain http to another machine
            raise SessionExpired("this session's FHIR server is not https; launch the app again")
        key = _session().key
        assert key is not None
        provider = _token_provider(key, current_app._get_current_object())  # type: ignore[attr-defined]
    return PatientScopedClient(server_client(ctx, provider), ctx.patient_id, refresh=provider)


def _scope_error(exc: PatientScopeError) -> tuple[Any, int]:
    log.warning("refused a FHIR request outside the launch patient: %s", exc.kind)
    if request.accept_mimetypes.best == "application/json" or request.path.startswith("/api/"):
        return {"error": "forbidden", "message": str(exc)}, 403
    return render_template("launch/error.html", title="Not allowed", message=str(exc)), 403


def _expired(exc: SessionExpired) -> tuple[Any, int]:
    log.info("session token could not be renewed")
    if request.accept_mimetypes.best == "application/json":
        return {"error": "session-expired", "message": str(exc)}, 401
    return render_template("launch/no_session.html"), 401


def init_app(app: Flask) -> None:
    """Install the server-side session interface and the patient-scope error page."""
    db = database_for(app.config, "sessions", app.config.get("SESSION_DB"))
    store = SessionStore(db, float(app.config.get("SESSION_IDLE_SECONDS", DEFAULT_IDLE_SECONDS)))
    store.purge_idle()
    app.extensions["ccm_ready_sessions"] = store
    app.session_interface = ServerSessionInterface(store)
    app.register_error_handler(PatientScopeError, _scope_error)
    app.register_error_handler(SessionExpired, _expired)

