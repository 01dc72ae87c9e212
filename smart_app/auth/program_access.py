"""Who may see the practice page (/program), and how many worklist jobs may run.

The practice page shows every patient of a practice, so it needs a signed-in user (a SMART launch with
`openid fhirUser`) who is one of the configured program leads (`PROGRAM_LEADS`, fhirUser references such as
"Practitioner/123"), on the configured server (`PROGRAM_FHIR_BASE`). Anonymous access remains only for
open servers (public test data): when `PROGRAM_FHIR_BASE` is unset (the page then only reads open servers)
or is itself on the open-server list.

Worklist jobs are limited per user (`PROGRAM_JOBS_PER_USER`) and in total (`PROGRAM_MAX_RUNNING_JOBS`),
counting the jobs still running; a request over the limit gets 429 and starts nothing.
Population data comes from backend-services credentials held server side (`PROGRAM_CLIENT_ID` and
`PROGRAM_PRIVATE_KEY`), never from the browser.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from flask import Flask, current_app, request

from smart_app.auth.backend_services import BackendServicesAuth, load_key
from smart_app.auth.smart import normalize_base, open_servers, token_safe
from smart_app.errors import AppError
from smart_app.web import sessions

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
_EXT = "ccm_ready_program_jobs"
_ext_lock = threading.Lock()


def _relative(user: str | None) -> str | None:
    if not user:
        return None
    parts = [p for p in user.rstrip("/").split("/") if p]
    return f"{parts[-2]}/{parts[-1]}" if len(parts) >= 2 else None


def program_leads(config: Mapping[str, Any]) -> set[str]:
    """The configured program leads as relative references ("Practitioner/123")."""
    raw = config.get("PROGRAM_LEADS") or []
    items = raw.split() if isinstance(raw, str) else [str(x) for x in raw]
    return {r for r in (_relative(i) for i in items) if r}


def anonymous_allowed(config: Mapping[str, Any]) -> bool:
    """True when the page can only show open (public test) servers, as in open-server mode."""
    configured = config.get("PROGRAM_FHIR_BASE")
    if not configured:
        return True  # the page then reads only open servers (?iss= on the list, or the open-mode session)
    servers = open_servers(config)
    return "*" in servers or normalize_base(str(configured)) in servers


def check_access() -> str:
    """The user allowed to use the practice page now ("anonymous" on open servers); AppError otherwise."""
    config = current_app.config
    ctx = sessions.current_context()
    if anonymous_allowed(config):
        return _relative(ctx.user) if ctx is not None and ctx.user else "anonymous"
    if ctx is None or ctx.mode == "open" or _relative(ctx.user) is None:
        raise AppError(
            401,
            "Sign in to see the practice page",
            "The practice page lists every patient of the practice: sign in first (a SMART launch with "
            "your own user, e.g. the standalone launch), then open it again.",
        )
    if _relative(ctx.user) not in program_leads(config):
        log.warning("practice page refused: the signed-in user is not a program lead")
        raise AppError(403, "Not a program lead",
                       "Your user is not one of the practice's program leads (PROGRAM_LEADS).")
    if normalize_base(ctx.fhir_base) != normalize_base(str(config.get("PROGRAM_FHIR_BASE"))):
        raise AppError(403, "Signed in to another server",
                       "You are signed in to a different FHIR server than the practice page reads.")
    return str(_relative(ctx.user))


def guard() -> None:
    """`Blueprint.before_request` hook: every route of the program blueprint (present and future)."""
    check_access()


def lead_required(view: F) -> F:
    """Decorator for the practice page and its actions (see check_access)."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        check_access()
        return view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]


class JobTicket:
    """One admitted worklist job; `release()` when it ends (from any thread; idempotent)."""

    def __init__(self, limiter: JobLimiter, owner: str) -> None:
        self._limiter = limiter
        self.owner = owner
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._limiter.release(self.owner)


class JobLimiter:
    """Counts running worklist jobs per owner and in total (thread-safe)."""

    def __init__(self) -> None:
        self._running: dict[str, int] = {}
        self._lock = threading.Lock()

    def running(self, owner: str | None = None) -> int:
        with self._lock:
            return self._running.get(owner, 0) if owner is not None else sum(self._running.values())

    def admit(self, owner: str, per_user: int, total: int) -> JobTicket:
        with self._lock:
            if sum(self._running.values()) >= total:
                raise AppError(429, "The practice page is busy",
                               "Other worklists are being prepared; try again in a minute.")
            if self._running.get(owner, 0) >= per_user:
                raise AppError(429, "A worklist of yours is still being prepared",
                               "Wait until it is ready (the page refreshes itself), then ask for another.")
            self._running[owner] = self._running.get(owner, 0) + 1
        return JobTicket(self, owner)

    def release(self, owner: str) -> None:
        with self._lock:
            left = self._running.get(owner, 0) - 1
            if left > 0:
                self._running[owner] = left
            else:
                self._running.pop(owner, None)


def limiter(app: Flask) -> JobLimiter:
    with _ext_lock:
        return app.extensions.setdefault(_EXT, JobLimiter())


def start_job() -> JobTicket:
    """Admit one more worklist job for this request's user; AppError(429) when over a limit."""
    user = check_access()
    owner = user if user != "anonymous" else f"anonymous:{request.remote_addr or '-'}"
    config = current_app.config
    return limiter(current_app._get_current_object()).admit(  # type: ignore[attr-defined]
        owner,
        per_user=int(config.get("PROGRAM_JOBS_PER_USER") or 1),
        total=int(config.get("PROGRAM_MAX_RUNNING_JOBS") or 2),
    )


def population_token_provider(base: str) -> Callable[[], str | None] | None:
    """Backend-services credentials for the practice's server (None: open server, no token)."""
    config = current_app.config
    client_id, key_path = config.get("PROGRAM_CLIENT_ID"), config.get("PROGRAM_PRIVATE_KEY")
    if not client_id or not key_path:
        return None

    if not token_safe(base):
        raise AppError(403, "Not https", "The practice's FHIR server must use https for a system token.")
    return BackendServicesAuth(base, str(client_id), load_key(str(key_path)))
