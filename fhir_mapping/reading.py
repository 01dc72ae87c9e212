"""What every per-resource reader shares: the time zone, reference resolution, and its error."""

from __future__ import annotations

from datetime import tzinfo
from typing import Any

from fhir_mapping.people import People
from fhir_mapping.references import References
from rules.record_type import record


def as_object(value: Any, default: dict[str, Any] | None = None) -> dict[str, Any]:
    """`value` when it is a JSON object, else `default` (an empty object): lenient reading, typed."""
    if isinstance(value, dict):
        return value
    return {} if default is None else default


class Unreadable(ValueError):
    """A resource the app cannot use. The message is the Skipped reason (never contains PHI)."""


@record(frozen=False)
class ReadContext:
    """The practice time zone, the reference index and the person resolver for one read."""

    tz: tzinfo
    refs: References
    people: People
