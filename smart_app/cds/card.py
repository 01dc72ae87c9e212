"""One Verdict -> at most one CDS Hooks 2.0 card (pure: no Flask, no I/O).

People are shown by name, never as `Practitioner/<id>`: `card_names` finds the names the prefetch or bundle
already holds (Practitioner / PractitionerRole resources, and the `display` of the references that name
them) and, when some are still missing and the service can read the server, asks for them in ONE batch.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import date
from typing import Any

from rules.month import Month
from rules.verdict import Finding, Verdict
from smart_app.fhir.people import person_ref
from smart_app.readiness import wording
from smart_app.readiness.names import names_in

SUMMARY_MAX = 139  # CDS Hooks: summary "<140 characters"
SOURCE_LABEL = "CCM Ready"
WARN_DAYS_LEFT = 7  # a not-yet month this close to its end is a warning: the minutes may be lost
MAX_NAME_READS = 20  # the one extra batch of names: a card names a handful of people, never a directory

_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~&])")  # inline CommonMark/HTML metacharacters


def build_card(
    verdict: Verdict,
    *,
    launch_url: str,
    today: date,
    source_url: str | None = None,
    card_uuid: str | None = None,
    names: Mapping[str, str] | None = None,
) -> dict[str, Any] | None:
    """The card for `verdict`, or None when the patient is not eligible (no card at all).

    `names` ({person reference: name}, from `card_names`) puts names where the rules wrote references."""
    if verdict.status == "not-eligible":
        return None
    source: dict[str, Any] = {"label": SOURCE_LABEL}
    if source_url:
        source["url"] = source_url
    return {
        "uuid": card_uuid or str(uuid.uuid4()),
        "summary": summary(verdict),
        "indicator": indicator(verdict, today),
        "source": source,
        "detail": detail(verdict, names or {}),
        "links": [
            {
                "label": "Open CCM Ready",
                "url": launch_url,
                "type": "smart",
                "appContext": json.dumps({"month": verdict.month}, separators=(",", ":")),
            }
        ],
    }


def indicator(verdict: Verdict, today: date) -> str:
    """info when ready; warning when blocked, or not-yet with the month nearly over.

    Never `critical`: a billing gap is not a patient-safety interruption, and CDS Hooks
    reserves critical for time-sensitive, high-priority guidance.
    """
    if verdict.status == "blocked":
        return "warning"
    if verdict.status == "not-yet" and 0 < Month.parse(verdict.month).days_left(today) <= WARN_DAYS_LEFT:
        return "warning"
    return "info"


def _minutes(verdict: Verdict) -> int:
    if verdict.track == "practitioner":
        return verdict.minutes.billing_practitioner
    return verdict.minutes.clinical_staff


def _phrase(finding: Finding) -> str:
    """A short phrase for a finding, from its stable rule id ("consent.missing" -> "consent missing")."""
    words = re.sub(r"[._-]+", " ", finding.rule).strip()
    return words or finding.message


def _codes(verdict: Verdict) -> str:
    return ", ".join(c.code if c.units == 1 else f"{c.code}x{c.units}" for c in verdict.codes)


def summary(verdict: Verdict) -> str:
    """Status and the most useful next step, under 140 characters."""
    minutes = _minutes(verdict)
    head = f"CCM {verdict.month}: "
    nt = verdict.next_threshold
    if verdict.status == "ready":
        text = f"{head}ready to bill {_codes(verdict) or 'CCM'} ({minutes} min)"
        if nt:
            text += f"; {nt.minutes_needed} min more for {nt.code}"
    elif verdict.status == "not-yet":
        if nt and nt.threshold_total:
            text = f"{head}{minutes} of {nt.threshold_total} min; log {nt.minutes_needed} more for {nt.code}"
        elif nt:
            text = f"{head}{minutes} min; log {nt.minutes_needed} more for {nt.code}"
        else:
            text = f"{head}{minutes} min logged; not yet billable"
        warnings = [f for f in verdict.findings if f.severity == "warning"]
        if warnings:
            text += f"; {_phrase(warnings[0])}"
    else:
        blockers = verdict.blockers or verdict.findings
        text = f"{head}{minutes} min; blocked: "
        text += _phrase(blockers[0]) if blockers else "see details"
        if len(blockers) > 1:
            text += f" (+{len(blockers) - 1} more)"
    return text if len(text) <= SUMMARY_MAX else text[: SUMMARY_MAX - 1].rstrip() + "…"


def md(text: object) -> str:
    """Escape text for CommonMark so FHIR-sourced strings cannot inject links, HTML or formatting."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def detail(verdict: Verdict, names: Mapping[str, str] | None = None) -> str:
    """Markdown detail: minutes, codes with payments, next step, findings with rule ids and citations;
    people by name (`names`), never by id."""
    names = names or {}
    lines = [
        f"**Status for {md(verdict.month)}: {md(wording.status_words(verdict.status))}**",
        "",
    ]
    if verdict.billing_practitioner:
        who = wording.person_label(verdict.billing_practitioner, names)
        lines.append(f"- Billing practitioner: {md(who)}")
    lines += [
        f"- Clinical staff minutes counted: {verdict.minutes.clinical_staff}",
        f"- Billing practitioner minutes: {verdict.minutes.billing_practitioner}",
    ]
    if verdict.minutes.not_counted:
        lines.append(f"- Minutes logged but not counted: {verdict.minutes.not_counted}")
    if verdict.track:
        lines.append(f"- Track: {md(verdict.track)}")
    if verdict.codes:
        lines += ["", "**Codes**", ""]
        for c in verdict.codes:
            pay = f", ${c.payment_each} each" if c.payment_each is not None else ""
            lines.append(f"- {md(c.code)} x{c.units}" + (f" ({md(c.label)}{pay})" if c.label else pay))
        lines.append(f"- National non-facility total: ${verdict.payment_total}")
    if verdict.next_threshold:
        nt = verdict.next_threshold
        lines += ["", f"**Next:** {nt.minutes_needed} more minutes for {md(nt.code)}"]
    if verdict.findings:
        lines += ["", "**Findings**", ""]
        for f in verdict.findings:
            rule = f.rule.replace("`", "")
            message = wording.with_names(f.message, names)
            lines.append(f"- {md(f.severity)} `{rule}`: {md(message)} _({md(f.citation)})_")
    if verdict.chronic_conditions:
        names = sorted({c.condition_label or c.display for c in verdict.chronic_conditions})
        lines += ["", "**Chronic conditions:** " + md("; ".join(names))]
    lines += [
        "",
        f"Policy: {md(verdict.policy)} {md(verdict.policy_version)}. Estimates, not billing advice.",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------ names of the people a card mentions


def card_people(verdict: Verdict) -> list[str]:
    """The person references the card would show: the billing practitioner and those in the findings."""
    refs = [verdict.billing_practitioner] if verdict.billing_practitioner else []
    refs += [r for f in verdict.findings for r in wording.person_refs(f.message)]
    return list(dict.fromkeys(refs))


def card_names(
    verdict: Verdict,
    resources: Iterable[Any],
    batch: Callable[[list[str]], Iterable[Any]] | None = None,
) -> dict[str, str]:
    """Names for the people the card shows: those in `resources` (prefetch or bundle) first; the rest read
    with `batch` (a FhirClient's `batch`: ONE request of reads) when given. Never fails: a card without a
    name says "Unnamed practitioner"."""
    names = names_in(resources)
    missing = [r for r in card_people(verdict) if r not in names and person_ref(r) == r]
    if not missing or batch is None:
        return names
    try:
        answers = batch(missing[:MAX_NAME_READS])
        found = [r for a in answers if getattr(a, "ok", False) for r in getattr(a, "resources", ())]
    except Exception:  # names are a courtesy: the card is still right without them
        return names
    return {**names_in(found), **names}
