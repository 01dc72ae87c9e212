"""What the program pages are about: the practice's FHIR server, the page's parameters, and its client.

Shared by the program page (views.py) and the payer page (payer_views.py). Which FHIR server:
`PROGRAM_FHIR_BASE` from the config, else `?iss=` when open mode allows that base, else the current
open-mode session's server.
"""

from __future__ import annotations

from typing import Any

from flask import current_app, request

from smart_app.auth import program_access
from smart_app.auth.smart import SmartAuthError, check_open_server
from smart_app.context import LaunchContext
from smart_app.errors import AppError
from smart_app.program.worklist import DEFAULT_CLOSE_MINUTES, FILTERS
from smart_app.readiness.options import options_from
from smart_app.web import sessions


class ProgramError(AppError):
    """A program-page problem (the one application error type, shown on the program's error page)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(status, "The worklist cannot be shown", message, template="program/error.html")


class NoServerChosen(ProgramError):
    """No FHIR server configured, given (?iss=) or in the open-mode session."""

    def __init__(self) -> None:
        super().__init__("Choose a FHIR server first.")


def chosen_base() -> str | None:
    """The configured program server, else an allowed `?iss=`, else the open-mode session's server."""
    configured = current_app.config.get("PROGRAM_FHIR_BASE")
    if configured:
        return str(configured).rstrip("/")
    iss = request.values.get("iss")
    if iss:
        try:
            return check_open_server(iss, current_app.config)
        except SmartAuthError as exc:
            raise ProgramError(str(exc), 403) from None
    ctx = sessions.current_context()
    if ctx is not None and ctx.mode == "open":
        return ctx.fhir_base
    return None


def chosen() -> tuple[str, dict[str, Any]]:
    """The FHIR base and the request's parameters; NoServerChosen / ProgramError when missing or bad."""
    base = chosen_base()
    if base is None:
        raise NoServerChosen()
    return base, page_params()


def page_params() -> dict[str, Any]:
    """The page's month, filter, n, reason, group, zone, policy and billing practitioner (validated)."""
    try:
        options = options_from(current_app.config, raw_month=request.values.get("month"))
    except AppError as exc:
        raise ProgramError(exc.message, exc.status) from None
    which = request.values.get("filter") or "all"
    if which not in FILTERS:
        raise ProgramError(f"Unknown filter; use one of: {', '.join(FILTERS)}.")
    try:
        n = int(request.values.get("n") or DEFAULT_CLOSE_MINUTES)
    except ValueError:
        raise ProgramError("n must be a whole number of minutes.") from None
    if not 0 <= n <= 120:
        raise ProgramError("n must be between 0 and 120 minutes.")
    group = (request.values.get("group") or "").strip() or None
    if group and ("/" in group.removeprefix("Group/") or not group.removeprefix("Group/")):
        raise ProgramError("group must be Group/ID.")
    return {
        "month": options.month,
        "filter": which,
        "n": n,
        "reason": request.values.get("reason") or None,
        "group": group,
        "tz": options.tz,
        "policy": options.policy,
        "billing_practitioner": options.billing_practitioner,
    }


def program_client(base: str) -> Any:
    """PROGRAM_CLIENT_FACTORY(base) when set, else a client for the practice's server (any patient) that
    carries the backend-services token when PROGRAM_CLIENT_ID is configured (no token: open servers)."""
    factory = current_app.config.get("PROGRAM_CLIENT_FACTORY")
    if factory is not None:
        return factory(base)
    provider = program_access.population_token_provider(base)
    return sessions.server_client(LaunchContext(mode="open", fhir_base=base, patient_id=""), provider)
