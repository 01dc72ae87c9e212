"""The launch context a browser session carries (kept server side; the cookie holds only a key)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

LaunchMode = Literal["ehr", "standalone", "open"]


@dataclass(frozen=True)
class Token:
    access_token: str
    expires_at: float  # epoch seconds
    refresh_token: str | None = None
    scope: str = ""
    id_token: str | None = None


@dataclass(frozen=True)
class LaunchContext:
    """What one launch grants: one FHIR server, one patient, one user."""

    mode: LaunchMode
    fhir_base: str
    patient_id: str  # the launch patient (bare id); a session may touch no other patient
    user: str | None = None  # fhirUser, e.g. "Practitioner/123" (None in open mode)
    encounter_id: str | None = None
    need_patient_banner: bool = True
    smart_style_url: str | None = None
    app_context: str | None = None  # e.g. from a CDS Hooks card: carries the month
    granted_scopes: frozenset[str] = field(default_factory=frozenset)
    token: Token | None = None  # never in open mode; never sent to an open server

    @property
    def patient_ref(self) -> str:
        return f"Patient/{self.patient_id}"

    def with_token(self, token: Token) -> LaunchContext:
        return replace(self, token=token)

    def can_write(self, resource_type: str) -> bool:
        """True when the granted scopes allow creating `resource_type` (open mode: always)."""
        if self.mode == "open":
            return True
        for scope in self.granted_scopes:
            head, _, perms = scope.partition(".")
            ctx, _, rtype = head.partition("/")
            if ctx not in ("patient", "user", "system") or rtype not in (resource_type, "*"):
                continue
            perms = perms.split("?", 1)[0]
            if perms in ("write", "*") or (perms and set(perms) <= set("cruds") and "c" in perms):
                return True
        return False
