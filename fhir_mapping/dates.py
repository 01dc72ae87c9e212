"""FHIR date, dateTime and instant values as aware datetimes.

Partial dates (YYYY, YYYY-MM, YYYY-MM-DD) and dateTimes without an offset are read in the
practice's time zone. With `end=True` a partial date means the end of the period it names
(`2026-10` ends at 2026-11-01T00:00), which is what a `period.end` of a date means.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any


class BadDate(ValueError):
    """A value that is not a FHIR date/dateTime. The message never repeats the value (it may be PHI)."""


def parse_when(value: Any, tz: tzinfo, *, end: bool = False, field: str = "date") -> datetime | None:
    """`value` as an aware datetime; None when absent; BadDate when present but unreadable."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BadDate(f"{field} is not a FHIR date/dateTime string")
    n = len(value)
    if n > 10:  # a dateTime or instant, the common form: checked first
        try:
            if value[4] != "-":
                raise ValueError
            moment = _from_iso(value)
        except ValueError:
            raise BadDate(f"{field} is not a valid FHIR date/dateTime") from None
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=tz)
    try:
        if n == 4:
            year = int(value)
            start = datetime(year, 1, 1, tzinfo=tz)
            return _after(year + 1, 1, tz) if end else start
        if n == 7 and value[4] == "-":
            year, month = int(value[:4]), int(value[5:])
            start = datetime(year, month, 1, tzinfo=tz)
            return _after(year + month // 12, month % 12 + 1, tz) if end else start
        if n == 10 and value[4] == "-":
            day = datetime(int(value[:4]), int(value[5:7]), int(value[8:]), tzinfo=tz)
            if not end:
                return day
            try:
                return day + timedelta(days=1)
            except OverflowError:  # 9999-12-31
                return _after(10000, 1, tz)
        raise ValueError(value)  # shorter than a date, or not one
    except (ValueError, IndexError):
        raise BadDate(f"{field} is not a valid FHIR date/dateTime") from None


def _after(year: int, month: int, tz: tzinfo) -> datetime:
    """The first instant of `year`-`month`; past year 9999 (an open end spelled `9999-12-31`, as EHRs
    write "no end"), the start of 9999-12-31: far in the future, and still convertible to any zone."""
    if year > 9999:
        return datetime(9999, 12, 31, tzinfo=tz)
    return datetime(year, month, 1, tzinfo=tz)


_from_iso = datetime.fromisoformat


def is_date_only(value: Any) -> bool:
    """True for a partial date or a date without a time (no minutes can be derived from it)."""
    return isinstance(value, str) and len(value) <= 10


def parse_birth_date(value: Any) -> date | None:
    """A birthDate (YYYY, YYYY-MM or YYYY-MM-DD) as a date (first day of a partial one)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        if len(value) == 4:
            return date(int(value), 1, 1)
        if len(value) == 7:
            return date(int(value[:4]), int(value[5:]), 1)
        return date.fromisoformat(value[:10])
    except ValueError:
        raise BadDate("birthDate is not a valid FHIR date") from None


_MINUTES_PER_UNIT = {
    "min": 1.0, "minute": 1.0, "minutes": 1.0, "mins": 1.0,
    "h": 60.0, "hr": 60.0, "hour": 60.0, "hours": 60.0,
    "s": 1 / 60, "sec": 1 / 60, "second": 1 / 60, "seconds": 1 / 60,
}


def duration_minutes(quantity: Any) -> float | None:
    """Minutes in a Duration (`Encounter.length`); None when absent; BadDate when unusable."""
    if quantity is None:
        return None
    if not isinstance(quantity, dict):
        raise BadDate("length is not a Duration")
    value = quantity.get("value")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):  # a tuple: faster than int | float
        raise BadDate("length.value is not a number")
    unit = quantity.get("code") or quantity.get("unit") or "min"
    factor = _MINUTES_PER_UNIT.get(unit) if type(unit) is str else None  # "min": already canonical
    if factor is None:
        factor = _MINUTES_PER_UNIT.get(str(unit).strip().lower())
    if factor is None:
        raise BadDate("length has a unit that is not a time unit (use UCUM min)")
    if value < 0:
        raise BadDate("length is negative")
    return float(value) * factor


def elapsed_minutes(start: datetime, end: datetime) -> float:
    """Real minutes between two instants (UTC), never a wall-clock difference across a DST change."""
    return (end.astimezone(UTC) - start.astimezone(UTC)).total_seconds() / 60


def plus_minutes(start: datetime, minutes: float) -> datetime:
    """The instant `minutes` of real time after `start`, in `start`'s zone."""
    return (start.astimezone(UTC) + timedelta(minutes=minutes)).astimezone(start.tzinfo)
