"""The shared wording every face uses: status labels, the next-step sentence, money, months.

Pure: no Flask, no I/O. The panel, worklist, CDS card, audit packet and CLI all speak with these words,
so a status reads the same everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from rules.month import Month
from rules.verdict import Verdict

STATUS_LABELS: dict[str, str] = {
    "ready": "Ready to bill",
    "not-yet": "Not yet",
    "blocked": "Blocked",
    "not-eligible": "Not eligible",
}
STATUS_ORDER: tuple[str, ...] = tuple(STATUS_LABELS)
# The lower-case phrase ("Status for 2026-10: ready to bill").
STATUS_WORDS: dict[str, str] = {
    "ready": "ready to bill",
    "not-yet": "not yet billable",
    "blocked": "blocked",
    "not-eligible": "not eligible",
}


# A month that is over is never "not yet": it closed without a billable code.
CLOSED_NOT_YET_LABEL = "Not billed (month closed)"


def status_label(status: str, month_closed: bool = False) -> str:
    if month_closed and status == "not-yet":
        return CLOSED_NOT_YET_LABEL
    return STATUS_LABELS.get(status, status)


def status_words(status: str) -> str:
    return STATUS_WORDS.get(status, status)


def format_money(amount: Decimal | float | int | None) -> str:
    """US dollars with cents ("$1,234.50"); "n/a" when there is no amount."""
    if amount is None:
        return "n/a"
    q = Decimal(str(amount)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    sign = "-" if q < 0 else ""
    return f"{sign}${abs(q):,.2f}"


def month_label(month: Month) -> str:
    """"October 2026"."""
    return date(month.year, month.month, 1).strftime("%B %Y")


def codes_text(verdict: Verdict) -> str:
    """"99490 + 2 × 99439", or "none"."""
    parts = [c.code if c.units == 1 else f"{c.units} × {c.code}" for c in verdict.codes]
    return " + ".join(parts) or "none"


def next_step(verdict: Verdict) -> str:
    """The single next step, in words that match the status (from the Verdict, computed in rules/)."""
    carried = getattr(verdict, "next_step", "")
    if carried:
        return str(carried)
    if verdict.status == "ready":
        return f"Bill {codes_text(verdict)}."
    if verdict.status in ("blocked", "not-eligible"):
        first = verdict.blockers[0] if verdict.blockers else None
        return first.message if first else "Nothing is billable this month."
    nt = verdict.next_threshold
    if nt:
        return f"Log {nt.minutes_needed} more minutes to reach {nt.code}."
    return "Log care-management time."


# ------------------------------------------------------------------ people named in text

UNNAMED_PERSON = "Unnamed practitioner"
# A person reference as the rules write it into a message: "Practitioner/8a74...", "PractitionerRole/r1",
# or a practitioner known only by NPI ("Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|123").
PERSON_REF = re.compile(
    r"\b(?:Practitioner|PractitionerRole)"
    r"(?:/[A-Za-z0-9\-.]{1,64}|\?identifier=[^\s|,;()]*\|[A-Za-z0-9\-.]{1,64})"
)


def person_refs(text: str) -> list[str]:
    """The person references written in `text`, in order, each once."""
    return list(dict.fromkeys(m.group(0).rstrip(".") for m in PERSON_REF.finditer(text or "")))


def person_label(ref: str, names: Mapping[str, str]) -> str:
    """The name for a person reference: known name; "the practitioner with NPI n"; else "Unnamed
    practitioner" (never the raw id: people read names, the id stays in the record)."""
    name = names.get(ref)
    if name and name != UNNAMED_PERSON:
        return name
    if "?identifier=" in ref:
        return f"the practitioner with NPI {ref.rsplit('|', 1)[-1]}"
    return UNNAMED_PERSON


def with_names(text: str, names: Mapping[str, str]) -> str:
    """`text` with every person reference replaced by the person's name (see `person_label`)."""
    if not text:
        return text
    return PERSON_REF.sub(lambda m: person_label(m.group(0).rstrip("."), names) + m.group(0)[
        len(m.group(0).rstrip(".")):], text)
