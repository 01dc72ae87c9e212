"""What every per-resource reader shares: the time zone, reference resolution, and its error."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import tzinfo

from fhir_mapping.people import People
from fhir_mapping.references import References


class Unreadable(ValueError):
    """A resource the app cannot use. The message is the Skipped reason (never contains PHI)."""


@dataclass(slots=True)
class ReadContext:
    tz: tzinfo
    refs: References
    people: People
