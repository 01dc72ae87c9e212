"""The case under evaluation: one patient, one calendar month, one billing practitioner, one policy pack."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field
from datetime import UTC, datetime, tzinfo

from rules.month import Month
from rules.packs import PolicyPack
from rules.record_type import record
from rules.records import PatientFacts


@record
class PatientMonth:
    """The case under evaluation: facts, month bounds, practitioner, pack."""

    facts: PatientFacts
    month: Month
    tz: tzinfo
    tz_name: str
    start: datetime  # first instant of the month in the practice's time zone
    end: datetime  # first instant of the next month (exclusive)
    pack: PolicyPack
    practitioner: str | None  # the billing practitioner ("Practitioner/..."), None when unknown
    aliases: Mapping[str, str] = field(default_factory=dict)  # other keys of known people -> person key
    # start and end in UTC: two UTC datetimes compare field by field, while datetimes in different zones
    # (the reader keeps each value's own offset) compare through offset arithmetic, several times slower.
    _start_utc: datetime = field(init=False, repr=False, compare=False)
    _end_utc: datetime = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_start_utc", self.start.astimezone(UTC))
        object.__setattr__(self, "_end_utc", self.end.astimezone(UTC))

    def person(self, key: str | None) -> str | None:
        """The one key of the person `key` names (a role or NPI key becomes the practitioner's)."""
        return self.aliases.get(key, key) if key is not None else None

    def is_practitioner(self, key: str | None) -> bool:
        """True when `key` names the billing practitioner, whatever form the reference took."""
        return self.practitioner is not None and self.person(key) == self.practitioner

    def aware(self, moment: datetime) -> datetime:
        """`moment`, read in the practice's time zone when it carries no offset."""
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=self.tz)

    def in_month(self, moment: datetime | None) -> bool:
        return moment is not None and self.start <= self.aware(moment) < self.end

    def before_end(self, moment: datetime | None) -> bool:
        """True when `moment` is known and falls before the month is over."""
        return moment is not None and self.aware(moment) < self.end

    def _utc(self, moment: datetime) -> datetime:
        """`moment` (read in the practice zone when naive) as the same instant in UTC."""
        try:
            return self.aware(moment).astimezone(UTC)
        except OverflowError:  # within a day of datetime.min/max: compared as it is
            return self.aware(moment)

    def overlaps(self, start: datetime | None, end: datetime | None) -> bool:
        """Does the period [start, end) meet the month? None is unbounded; a point (start == end) counts
        when it lies in the month. Ends are exclusive instants: the reader turns FHIR's inclusive
        `Period.end` (a date end covers its whole day) into the next instant."""
        s = self._utc(start) if start is not None else None
        e = (s if end is start else self._utc(end)) if end is not None else None
        if s is not None and s >= self._end_utc:
            return False
        if e is None:
            return True
        return e > self._start_utc or (s is not None and s == e and s >= self._start_utc)

    def runs_through(self, start: datetime | None, end: datetime | None) -> bool:
        """Did the period begin before the month ended and not end before the month's end?"""
        begun = start is None or self.aware(start) < self.end
        return begun and (end is None or self.aware(end) >= self.end)

    def month_of(self, moment: datetime) -> Month:
        """The calendar month of `moment` in the practice's time zone."""
        return Month.of(self.aware(moment).astimezone(self.tz))
