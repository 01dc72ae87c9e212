"""EvaluationOptions: the one value every face passes to the verdict use case, built in one place.

Month, practice time zone, policy pack and billing practitioner come from configuration and the
request (query string or the launch's appContext) here and nowhere else, so the panel, CLI, worklist,
CDS card and audit packet evaluate a patient-month with the same options.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import parse_qs

from rules.month import BadMonth, BadTimezone, Month, zone
from rules.packs import PolicyPack, UnknownPolicy, load_pack, pack_for_month
from rules.record_type import record
from smart_app.errors import AppError
from smart_app.readiness.wording import month_label

Clock = Callable[[], datetime]
_MONTH_IN_TEXT = re.compile(r"\b(\d{4}-(?:0[1-9]|1[0-2]))\b")


def system_clock() -> datetime:
    """Now, as an aware UTC datetime."""
    return datetime.now(UTC)


@record
class EvaluationOptions:
    """Everything evaluation needs besides the patient's data."""

    month: Month
    tz: str = "UTC"
    policy: str | PolicyPack = ""  # pack id (or a pack); "" = the pack in effect for the month
    billing_practitioner: str | None = None
    today: date | None = None  # the practice's today (next-step wording for a closed month)

    def for_month(self, month: Month) -> EvaluationOptions:
        """The same options for another month (its own policy pack when none was configured)."""
        if isinstance(self.policy, PolicyPack):
            return replace(self, month=month)
        return replace(self, month=month, policy=policy_for(month, self.policy or None))


def practice_now(tz: str, clock: Clock = system_clock) -> datetime:
    """Now in the practice's time zone."""
    return clock().astimezone(zone(tz))


def month_from_app_context(app_context: str | None) -> str | None:
    """The month a launch's appContext carries: JSON {"month": ...}, "month=YYYY-MM" or a bare YYYY-MM."""
    if not app_context:
        return None
    text = app_context.strip()
    try:
        obj = json.loads(text)
    except ValueError:
        obj = None
    if isinstance(obj, dict) and isinstance(obj.get("month"), str):
        return str(obj["month"])
    values = parse_qs(text).get("month")
    if values:
        return values[0]
    m = _MONTH_IN_TEXT.search(text)
    return m.group(1) if m else None


def requested_month(raw: str | None, app_context: str | None, today: date) -> Month:
    """?month=, else the launch's appContext month, else this month in the practice's time zone."""
    raw = (raw or "").strip()
    if raw:
        try:
            return Month.parse(raw)
        except BadMonth as exc:
            raise AppError(400, "Month not understood", f"{exc}. Example: ?month={Month.of(today)}") from exc
    carried = month_from_app_context(app_context)
    if carried:
        try:
            return Month.parse(carried)
        except BadMonth:
            pass  # an appContext that is not YYYY-MM is ignored
    return Month.of(today)


def policy_for(month: Month, configured: str | None) -> str:
    """The configured pack when it covers `month`, else the pack in effect for it (AppError 400: none)."""
    try:
        if configured and load_pack(configured).covers(month):
            return configured
        return pack_for_month(month).id
    except UnknownPolicy as exc:
        raise AppError(400, f"No billing rules for {month_label(month)}", str(exc)) from exc


def options_from(
    config: Mapping[str, Any],
    *,
    month: Month | None = None,
    raw_month: str | None = None,
    app_context: str | None = None,
    billing_practitioner: str | None = None,
    tz: str | None = None,
    policy: str | None = None,
    clock: Clock = system_clock,
) -> EvaluationOptions:
    """Build the options from configuration and request: the one place faces get them from.

    Explicit arguments (a CLI flag, a CDS request) win over configuration; the month defaults to the
    request's, then the appContext's, then this month in the practice's time zone.
    """
    tz_name = tz or str(config.get("TIMEZONE") or "UTC")
    try:
        today = practice_now(tz_name, clock).date()
    except BadTimezone as exc:
        raise AppError(500, "Configuration problem", str(exc)) from exc
    chosen = month or requested_month(raw_month, app_context, today)
    return EvaluationOptions(
        month=chosen,
        tz=tz_name,
        policy=policy_for(chosen, policy if policy is not None else config.get("POLICY")),
        billing_practitioner=billing_practitioner or config.get("BILLING_PRACTITIONER") or None,
        today=today,
    )
