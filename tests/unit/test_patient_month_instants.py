"""PatientMonth compares instants in UTC (for speed): its answers are those of comparing in each zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from itertools import product

from rules.month import Month, zone
from rules.packs import resolve_pack
from rules.patient_month import PatientMonth
from rules.records import PatientFacts, PatientRecord


def _as_written(pm: PatientMonth, start: datetime | None, end: datetime | None) -> bool:
    """overlaps() as first written: every comparison in the values' own zones."""
    s = pm.aware(start) if start is not None else None
    e = pm.aware(end) if end is not None else None
    if s is not None and s >= pm.end:
        return False
    if e is None:
        return True
    return e > pm.start or (s is not None and s == e and s >= pm.start)


def test_overlaps_in_utc_agrees_with_comparing_in_each_zone() -> None:
    tz = zone("America/New_York")
    month = Month.parse("2026-03")  # the DST change is inside the month
    start, end = month.bounds(tz)
    pm = PatientMonth(PatientFacts(PatientRecord("Patient/p")), month, tz, "America/New_York", start, end,
                      resolve_pack(None, month), None)
    offsets = [timezone(timedelta(hours=h)) for h in (-5, -4, 0, 9)]
    edges = [start, end, datetime(2026, 3, 8, 7, tzinfo=UTC), datetime(2026, 2, 14, 12)]
    moments: list[datetime | None] = [None]
    for edge, delta, tzinfo in product(edges, (-1, 0, 1), offsets):
        moments.append((edge + timedelta(microseconds=delta)).astimezone(tzinfo))
    moments += [datetime(2026, 3, 31, 23, 59), datetime(2026, 4, 1), datetime(1, 1, 1, tzinfo=offsets[-1])]
    for s, e in product(moments, repeat=2):
        assert pm.overlaps(s, e) == _as_written(pm, s, e), (s, e)
        assert pm.overlaps(s, s) == _as_written(pm, s, s), s
