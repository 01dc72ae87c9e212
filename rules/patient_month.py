"""The case under evaluation: one patient, one calendar month, one billing practitioner, one policy pack."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo

from rules.month import Month
from rules.packs import PolicyPack
from rules.records import PatientFacts


@dataclass(frozen=True, slots=True)
class PatientMonth:
    facts: PatientFacts
    month: Month
    tz: tzinfo
    tz_name: str
    start: datetime  # first instant of the month in the practice's time zone
    end: datetime  # first instant of the next month (exclusive)
    pack: PolicyPack
    practitioner: str | None  # the billing practitioner ("Practitioner/..."), None when unknown

    def aware(self, moment: datetime) -> datetime:
        """`moment`, read in the practice's time zone when it carries no offset."""
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=self.tz)

    def in_month(self, moment: datetime | None) -> bool:
        return moment is not None and self.start <= self.aware(moment) < self.end

    def before_end(self, moment: datetime | None) -> bool:
        """True when `moment` is known and falls before the month is over."""
        return moment is not None and self.aware(moment) < self.end

    def month_of(self, moment: datetime) -> Month:
        """The calendar month of `moment` in the practice's time zone."""
        return Month.of(self.aware(moment).astimezone(self.tz))
