"""Resolving FHIR references to "Type/id" keys.

References come as relative ("Patient/1"), versioned ("Patient/1/_history/3"), absolute
("https://ehr.example/fhir/Patient/1") or as a Bundle fullUrl (`urn:uuid:...`, Synthea).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

_MISSING = object()


class References:
    """Maps every spelling of a reference onto "Type/id" for one set of resources.

    `urn:uuid:<id>` aliases are built from `resources` on the first such reference only, so data
    without them pays nothing; every answer is memoised.
    """

    __slots__ = ("_cache", "_pending", "aliases")

    def __init__(self, resources: Sequence[Any] = ()) -> None:
        self.aliases: dict[str, str] = {}
        self._pending: Sequence[Any] | None = resources
        self._cache: dict[str, str | None] = {}

    def _build_aliases(self) -> None:
        aliases = self.aliases
        for res in self._pending or ():
            if isinstance(res, dict):
                rid = res.get("id")
                if isinstance(rid, str) and rid:
                    key = f"{res.get('resourceType')}/{rid}"
                    aliases.setdefault(f"urn:uuid:{rid}", key)
                    full_url = res.get("_fullUrl")
                    if isinstance(full_url, str):
                        aliases.setdefault(full_url, key)
        self._pending = None

    def key(self, value: Any) -> str | None:
        """The "Type/id" a Reference (dict) or reference string points at; None if unresolvable."""
        ref = value.get("reference") if isinstance(value, dict) else value
        if not isinstance(ref, str):
            return None
        hit = self._cache.get(ref, _MISSING)
        if hit is not _MISSING:
            return hit  # type: ignore[return-value]
        if ref.startswith("urn:"):
            if self._pending is not None:
                self._build_aliases()
            result = self.aliases.get(ref)
        elif not ref or ref.startswith("#"):
            result = None  # empty, or a contained resource
        elif "://" not in ref and "_history" not in ref and ref.count("/") == 1:
            result = ref
        else:
            result = relative_key(ref)
        self._cache[ref] = result
        return result


def relative_key(ref: str) -> str | None:
    """"Type/id" from a relative, versioned or absolute reference."""
    parts = [p for p in ref.split("?", 1)[0].split("/") if p]
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) < 2 or not parts[-2][:1].isupper():
        return None
    return f"{parts[-2]}/{parts[-1]}"


def conditional_identifier(ref: str) -> tuple[str, str, str] | None:
    """(type, system, value) of a conditional reference `Type?identifier=system|value`; None for any other."""
    rtype, _, query = ref.partition("?")
    if not query.startswith("identifier="):
        return None
    system, _, value = query[len("identifier=") :].partition("|")
    return rtype.rsplit("/", 1)[-1], system, value
