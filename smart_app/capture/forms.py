"""Reading the time form: practice time zone, form fields, moments, the proposed entry."""

from __future__ import annotations

import logging
from datetime import date, datetime, time, tzinfo
from typing import Any

from flask import current_app, request

from rules.entry_validation import (
    Problem,
    ProposedEntry,
)
from rules.month import BadTimezone, zone
from smart_app.capture.entries import performer_ref
from smart_app.context import LaunchContext

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- request parsing


def _practice_tz() -> tuple[str, tzinfo]:
    name = str(current_app.config.get("TIMEZONE", "UTC"))
    try:
        return name, zone(name)
    except BadTimezone:
        return "UTC", zone("UTC")


def _data() -> dict[str, Any]:
    if request.is_json:
        body = request.get_json(silent=True)
        return body if isinstance(body, dict) else {}
    data: dict[str, Any] = {k: v for k, v in request.form.items()}
    data["conditions"] = request.form.getlist("conditions")
    return data


def _text(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    return value.strip() if isinstance(value, str) else ("" if value is None else str(value).strip())


def parse_moment(day: str, clock: str, tz: tzinfo) -> datetime | None:
    """A local date + HH:MM (or a full ISO dateTime in `clock`) -> aware datetime; None when unreadable."""
    try:
        if "T" in clock:
            moment = datetime.fromisoformat(clock)
            return moment if moment.tzinfo else moment.replace(tzinfo=tz)
        return datetime.combine(date.fromisoformat(day), time.fromisoformat(clock)).replace(tzinfo=tz)
    except (TypeError, ValueError):
        return None


def proposed_from(
    data: dict[str, Any], ctx: LaunchContext, tz: tzinfo
) -> tuple[ProposedEntry, list[Problem]]:
    """The entry a form/JSON body describes, plus parse problems (unreadable numbers and times)."""
    problems: list[Problem] = []
    day = _text(data, "date")
    clock = _text(data, "start")
    start = parse_moment(day, clock, tz)
    if start is None and day and not clock:
        problems.append(Problem("start", "start-missing", "Enter the start time as HH:MM."))
    elif start is None and clock and not day and "T" not in clock:
        problems.append(Problem("date", "date-missing", "Enter the date as YYYY-MM-DD."))
    elif start is None and (day or clock):
        try:
            date.fromisoformat(day)
        except ValueError:
            problems.append(Problem("date", "date-unreadable", "Enter the date as YYYY-MM-DD."))
        else:
            problems.append(Problem("start", "start-unreadable", "Enter the start time as HH:MM."))
    end = None
    if _text(data, "end"):
        end = parse_moment(day or (start.date().isoformat() if start else ""), _text(data, "end"), tz)
        if end is None:
            problems.append(Problem("end", "end-unreadable", "Enter the end time as HH:MM."))
    minutes = None
    if _text(data, "minutes"):
        try:
            minutes = int(_text(data, "minutes"))
        except ValueError:
            problems.append(Problem("minutes", "minutes-unreadable", "Minutes must be a whole number."))
    # Who did the work: the person chosen on the form, else the signed-in user (never a typed id).
    typed = _text(data, "performer")
    performer = performer_ref(typed) or performer_ref(ctx.user)
    if typed and performer_ref(typed) is None:
        problems.append(
            Problem("performer", "performer-unknown", "Choose who did the work from the list.")
        )
    conditions = data.get("conditions") or []
    if isinstance(conditions, str):
        conditions = [conditions]
    if not isinstance(conditions, (list, tuple)):  # e.g. "conditions": 5 in a JSON body
        conditions = []
    conditions = tuple(c.strip() for c in conditions if isinstance(c, str) and c.strip())
    proposed = ProposedEntry(
        start=start,
        minutes=minutes,
        end=end,
        performer=performer,
        program=_text(data, "program") or "ccm",
        activity=_text(data, "activity") or "care-coordination",
        note=str(data.get("note") or ""),
        conditions=conditions,
    )
    return proposed, problems


