"""Calendar months in the practice's time zone: the CCM service period."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rules.record_type import record

_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


class BadMonth(ValueError):
    """A month that is not YYYY-MM."""


class BadTimezone(ValueError):
    """A time zone that is not a known IANA name."""


def zone(name: str) -> tzinfo:
    """The IANA zone `name`, or BadTimezone."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise BadTimezone(f"unknown time zone {name!r} (use an IANA name such as America/Chicago)") from exc


@record(order=True)
class Month:
    """A calendar month (YYYY-MM)."""

    year: int
    month: int

    @classmethod
    def parse(cls, text: str) -> Month:
        m = _MONTH.match(text.strip()) if isinstance(text, str) else None
        if not m:
            raise BadMonth(f"month must be YYYY-MM, got {text!r}")
        if not 1900 <= int(m.group(1)) <= 9998:  # the months around it must exist too (no year 10000)
            raise BadMonth(f"month must be between 1900-01 and 9998-12, got {text!r}")
        return cls(int(m.group(1)), int(m.group(2)))

    @classmethod
    def of(cls, d: date | datetime) -> Month:
        return cls(d.year, d.month)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def first_day(self) -> date:
        return date(self.year, self.month, 1)

    @property
    def last_day(self) -> date:
        nxt = self.next()
        return date(nxt.year, nxt.month, 1) - timedelta(days=1)

    def next(self) -> Month:
        return Month(self.year + self.month // 12, self.month % 12 + 1)

    def previous(self) -> Month:
        return Month(self.year - (self.month == 1), (self.month - 2) % 12 + 1)

    def bounds(self, tz: tzinfo) -> tuple[datetime, datetime]:
        """[start, end) of the month as aware datetimes in `tz`."""
        start = datetime(self.year, self.month, 1, tzinfo=tz)
        nxt = self.next()
        return start, datetime(nxt.year, nxt.month, 1, tzinfo=tz)

    def contains(self, moment: datetime, tz: tzinfo) -> bool:
        start, end = self.bounds(tz)
        return start <= moment < end

    def days_left(self, today: date) -> int:
        """Days remaining in the month counting `today` (0 once the month is over)."""
        if today > self.last_day:
            return 0
        if today < self.first_day:
            return self.last_day.day
        return (self.last_day - today).days + 1

    def shift(self, months: int) -> Month:
        index = self.year * 12 + (self.month - 1) + months
        return Month(index // 12, index % 12 + 1)


def one_year_before(moment: datetime) -> datetime:
    """The same instant twelve months earlier (Feb 29 falls back to Feb 28)."""
    if moment.year == 1:  # a placeholder date such as 0001-01-01: there is no earlier year
        return moment.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)
    try:
        return moment.replace(year=moment.year - 1)
    except ValueError:
        return moment.replace(year=moment.year - 1, day=28) - timedelta(0)
