"""What each feature must be allowed to write, checked against the granted scopes BEFORE the user types.

SMART v2 scopes carry the permissions (`c`reate, `r`ead, `u`pdate, `d`elete, `s`earch); v1 `.write` and
`.*` allow create and update. Open mode (public test servers, no OAuth) is always allowed.
"""

from __future__ import annotations

from smart_app.context import LaunchContext

# feature -> {resource type: the permissions its save needs}
FEATURES: dict[str, dict[str, str]] = {
    "time": {"Encounter": "c", "Task": "c", "Provenance": "c"},
    "time-correction": {"Encounter": "u", "Task": "u", "Provenance": "c"},
    "consent": {"Consent": "c", "Provenance": "c"},
    "care-plan": {"CarePlan": "cu", "Goal": "cu", "Provenance": "c"},
    "care-plan-share": {"Communication": "c", "Provenance": "c"},
}
WORDS = {"c": "create", "u": "update"}


def permits(ctx: LaunchContext, resource_type: str, perm: str) -> bool:
    """True when a granted scope allows `perm` ("c" or "u") on `resource_type` (open mode: always)."""
    if ctx.mode == "open":
        return True
    for scope in ctx.granted_scopes:
        head, _, perms = scope.partition(".")
        level, _, rtype = head.partition("/")
        if level not in ("patient", "user", "system") or rtype not in (resource_type, "*"):
            continue
        perms = perms.split("?", 1)[0]
        if perms in ("write", "*") or (perms and set(perms) <= set("cruds") and perm in perms):
            return True
    return False


def missing(ctx: LaunchContext, feature: str) -> list[str]:
    """What the launch lacks for `feature`, e.g. ["Goal (update)"] (empty: it can save)."""
    return [
        f"{rtype} ({WORDS[p]})"
        for rtype, perms in FEATURES[feature].items()
        for p in perms
        if not permits(ctx, rtype, p)
    ]


def cannot_save_message(ctx: LaunchContext, feature: str) -> str:
    """The plain sentence shown before the user types ("" when the feature can save)."""
    lacking = missing(ctx, feature)
    if not lacking:
        return ""
    return (
        "This launch cannot save here: it was not granted permission to write "
        f"{', '.join(lacking)}. Ask your administrator to grant the app's write scopes, then launch again."
    )
