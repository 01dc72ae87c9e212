"""Resolving FHIR references to "Type/id" keys.

References come as relative ("Patient/1"), versioned ("Patient/1/_history/3"), absolute
("https://ehr.example/fhir/Patient/1") or as a Bundle fullUrl (`urn:uuid:...`, Synthea).
"""

from __future__ import annotations

from typing import Any


class References:
    """Maps every spelling of a reference onto "Type/id" for one set of resources."""

    __slots__ = ("aliases",)

    def __init__(self) -> None:
        self.aliases: dict[str, str] = {}

    def add(self, rtype: str, rid: str) -> None:
        """Record a resource so that `urn:uuid:<id>` references to it resolve."""
        self.aliases[f"urn:uuid:{rid}"] = f"{rtype}/{rid}"

    def key(self, value: Any) -> str | None:
        """The "Type/id" a Reference (dict) or reference string points at; None if unresolvable."""
        ref = value.get("reference") if isinstance(value, dict) else value
        if not isinstance(ref, str) or not ref:
            return None
        if ref.startswith("urn:"):
            return self.aliases.get(ref)
        if ref.startswith("#"):
            return None  # contained resource
        if "://" not in ref and "_history" not in ref and ref.count("/") == 1:
            return ref
        return relative_key(ref)


def relative_key(ref: str) -> str | None:
    """"Type/id" from a relative, versioned or absolute reference."""
    parts = [p for p in ref.split("?", 1)[0].split("/") if p]
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) < 2 or not parts[-2][:1].isupper():
        return None
    return f"{parts[-2]}/{parts[-1]}"
