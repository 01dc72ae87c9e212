"""`ccm-ready evaluate PATH --month YYYY-MM`: one patient's CCM month from a Bundle or NDJSON file."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator
from typing import TextIO

from fhir_mapping.reach import Reach, within
from fhir_mapping.reader import patient_key
from fhir_mapping.sources import SourceError
from fhir_mapping.stream import (
    FACT_TYPES,
    READ_TYPES,
    Selection,
    collected,
    iter_resources,
    patient_runs,
    paused_gc,
    select_patient,
)
from rules import rule_ids
from rules.month import BadMonth, BadTimezone, Month, zone
from rules.packs import UnknownPolicy, load_pack
from rules.verdict import Finding, Verdict, to_json
from smart_app.readiness.options import EvaluationOptions
from smart_app.readiness.use_case import ResourceSource, verdict_for

# Patterns, not compiled regexes: they are checked only when the option is given (re caches them then).
_PRACTITIONER = (
    r"^(?:(?:Practitioner|PractitionerRole)/[A-Za-z0-9\-.]{1,64}"
    r"|Practitioner\?identifier=http://hl7\.org/fhir/sid/us-npi\|\d{10})$"
)
_NPI = r"^\d{10}$"
NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
_PATIENT = r"^(Patient/)?[A-Za-z0-9\-.]{1,64}$"

DESCRIPTION = """\
Evaluate one patient's Medicare Chronic Care Management (CCM) month from FHIR R4 JSON.

PATH is a FHIR Bundle of any type (collection, searchset, transaction, batch or their responses),
a single resource, a JSON array of resources, or NDJSON (one resource or Bundle per line). The
FHIR shapes read are described in docs/fhir-conventions.md: time-entry Encounters tagged with
https://ccm-ready.org/fhir/CodeSystem/care-program, Tasks, a CCM Consent, a CCM CarePlan,
initiating-visit Encounters, inpatient Encounters and ChargeItems.

The billing practitioner is --billing-practitioner, else the Consent's PPRF actor, else the
patient's generalPractitioner. Month boundaries are taken in --timezone (default UTC).
Resources that cannot be read are listed under "skipped", never fatal."""

EPILOG = """\
exit status:
  0  a verdict was printed (whatever its status)
  2  bad input: missing file, invalid JSON, bad month, unknown policy or time zone,
     malformed reference, several patients without --patient, a file not grouped by patient
     with --all-patients (one line on stderr; the verdicts printed before it stand)
  1  the output could not be written (a full disk; one line on stderr)

JSON contract (--format json), abridged:
  {
    "patient": "Patient/123",
    "month": "2026-10",
    "policy": "cms-pfs-2026",
    "policy_version": "...",
    "status": "ready",                    # ready | not-yet | blocked | not-eligible
    "codes": [{"code": "99490", "units": 1}, {"code": "99439", "units": 1}],
    "minutes": {"clinical_staff": 45, "billing_practitioner": 0},
    "next_threshold": {"code": "99439", "minutes_needed": 15},   # or null
    "chronic_conditions": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "E11.9",
                            "display": "...", "source": "CCIR", "condition": "diabetes",
                            "evidence": ["Condition/1"]}],
    "findings": [{"rule": "consent.missing", "category": "consent", "severity": "blocker",
                  "message": "...", "citation": "...", "evidence": []}],
    "skipped": [{"resource": "Encounter/9", "reason": "time-entry Encounter has no period.start"}],
    "billing_practitioner": "Practitioner/7",
    "track": "clinical-staff", "track_reason": "...",
    "payment": {"national_non_facility": "...", "lines": [{"code": "99490", "units": 1, "each": "..."}]}
  }

examples:
  ccm-ready evaluate patient.json --month 2026-10
  ccm-ready evaluate export.ndjson --month 2026-10 --patient Patient/123 --timezone America/Chicago
  ccm-ready evaluate export.ndjson --month 2026-10 --all-patients > verdicts.jsonl
  ccm-ready evaluate patient.json --month 2026-10 --billing-practitioner Practitioner/7 --format text"""

STATUS_LINES = {
    "ready": "READY: the month can be billed",
    "not-yet": "NOT YET: eligible, but the month is not billable yet",
    "blocked": "BLOCKED: something must be fixed before this month can be billed",
    "not-eligible": "NOT ELIGIBLE for CCM this month",
}


WIDTH = 100


class InputError(ValueError):
    """Bad command-line input; the message is printed as one line."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of `ccm-ready evaluate`."""
    p.add_argument("path", metavar="PATH", help="FHIR Bundle / resource JSON file, or NDJSON file")
    p.add_argument("--month", metavar="YYYY-MM", help="calendar month to evaluate (required)")
    p.add_argument(
        "--billing-practitioner", metavar="Practitioner/ID|NPI",
        help="who bills (default: the consent's PPRF actor, else the patient's generalPractitioner)",
    )
    p.add_argument("--patient", metavar="Patient/ID", help="which patient, when the file holds several")
    p.add_argument(
        "--all-patients", action="store_true",
        help="every patient of a patient-grouped file (a per-patient NDJSON export or per-patient Bundles), "
        "streamed one patient at a time: one verdict per line (JSON Lines) or per paragraph (text)",
    )
    p.add_argument("--timezone", metavar="IANA", default="UTC", help="practice time zone (default UTC)")
    p.add_argument(
        "--policy", metavar="PACK", default=None,
        help="policy pack id, e.g. cms-pfs-2026 (default: the pack in effect for the month)",
    )
    p.add_argument("--format", choices=("json", "text"), default="json", help="output format (default json)")


def _validate(args: argparse.Namespace) -> Month:
    if not args.month:
        raise InputError("--month YYYY-MM is required")
    month = Month.parse(args.month)
    zone(args.timezone)
    if args.policy is not None:
        load_pack(args.policy)
    if args.billing_practitioner is not None and re.match(_NPI, args.billing_practitioner):
        args.billing_practitioner = f"Practitioner?identifier={NPI_SYSTEM}|{args.billing_practitioner}"
    if args.billing_practitioner is not None and not re.match(_PRACTITIONER, args.billing_practitioner):
        raise InputError(
            "--billing-practitioner must be Practitioner/ID, PractitionerRole/ID or a 10-digit NPI, "
            f"got {args.billing_practitioner!r}"
        )
    if args.patient is not None and not re.match(_PATIENT, args.patient):
        raise InputError(f"--patient must look like Patient/ID, got {args.patient!r}")
    return month


def _choose_patient(selection: Selection, path: str, wanted: str | None) -> str | None:
    found = selection.patients
    if wanted is not None:
        key = patient_key(wanted)
        if found and key not in found:
            raise InputError(f"{key} is not in {path} (it holds {_list(found)})")
        return key
    if len(found) > 1:
        raise InputError(
            f"{path} holds {len(found)} patients ({_list(found)}); choose one with --patient Patient/ID"
        )
    return found[0] if found else None


def _list(keys: list[str], limit: int = 5) -> str:
    shown = ", ".join(keys[:limit])
    return f"{shown}, ... {len(keys) - limit} more" if len(keys) > limit else shown


def evaluate_path(args: argparse.Namespace) -> Verdict:
    """Read the file and evaluate the month. Raises InputError/SourceError/ValueError for bad input.

    The file is streamed: only the chosen patient's resources (and those about no patient) are kept.
    """
    month = _validate(args)
    # The app's notes (DocumentReferences) are not read by the verdict of a known patient: skipped unparsed.
    selection = select_patient(iter_resources(args.path, only=FACT_TYPES, about=args.patient), args.patient)
    if args.patient is None and not selection.patients:  # no Patient resource: the most referenced is meant,
        selection = select_patient(iter_resources(args.path, only=READ_TYPES), None)  # notes count there
    chosen = _choose_patient(selection, args.path, args.patient)
    options = EvaluationOptions(month, args.timezone, args.policy or "", args.billing_practitioner)
    return verdict_for(ResourceSource(selection.resources), chosen, options).verdict


def evaluate_all(args: argparse.Namespace) -> Iterator[Verdict]:
    """The verdict of every patient of a patient-grouped file, in file order, one patient in memory at a time.

    The month's reach drops the time history the verdicts do not read as soon as it is parsed; the garbage
    collector is paused (parsed JSON holds no cycles) and runs once every thousand patients. A file that is
    not grouped by patient raises SourceError when the stream finds a patient's resources apart.
    """
    month = _validate(args)
    options = EvaluationOptions(month, args.timezone, args.policy or "", args.billing_practitioner)
    stream = within(iter_resources(args.path, only=FACT_TYPES), Reach.of(month))
    with paused_gc():
        for key, group in collected(patient_runs(stream)):
            yield verdict_for(ResourceSource(group), key, options).verdict


def _run_all(args: argparse.Namespace, out: TextIO) -> None:
    for verdict in evaluate_all(args):
        if args.format == "text":
            out.write(render_text(verdict) + "\n")
        else:
            out.write(json.dumps(to_json(verdict), ensure_ascii=False) + "\n")


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Evaluate and print; exit status 2 with one line on stderr for bad input."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        if getattr(args, "all_patients", False):
            if args.patient is not None:
                raise InputError("--all-patients and --patient exclude each other")
            _run_all(args, out)
            return 0
        verdict = evaluate_path(args)
    except (InputError, SourceError, BadMonth, BadTimezone, UnknownPolicy) as exc:
        print(f"ccm-ready: error: {_one_line(exc)}", file=err)
        return 2
    if args.format == "text":
        out.write(render_text(verdict))
    else:
        out.write(json.dumps(to_json(verdict), indent=2, ensure_ascii=False) + "\n")
    return 0


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _money(value: object) -> str:
    return f"${value:,.2f}" if value is not None else "payment unknown"


def render_text(v: Verdict) -> str:
    """A human summary of a Verdict."""
    lines = [
        f"CCM Ready: {v.patient}, {v.month} (policy {v.policy} {v.policy_version}, time zone {v.timezone})",
        f"Status: {STATUS_LINES.get(v.status, v.status)}",
        f"Billing practitioner: {v.billing_practitioner or 'unknown'}",
    ]
    if v.track:
        lines.append(f"Track: {v.track}")
        if v.track_reason and not any(f.rule == rule_ids.TIME_TRACK_CHOICE for f in v.findings):
            lines.extend(_wrap(v.track_reason, "  "))
    lines.append("")
    if v.codes:
        lines.append(f"Codes (national non-facility total {_money(v.payment_total)}):")
        for c in v.codes:
            lines.append(f"  {c.code} x{c.units}  {c.label or ''}  {_money(c.payment_each)} each".rstrip())
    else:
        lines.append("Codes: none this month")
    m = v.minutes
    lines += [
        "Minutes counted this month:",
        f"  clinical staff (incl. the practitioner's own time): {m.clinical_staff}",
        f"  billing practitioner personally: {m.billing_practitioner}",
    ]
    if m.not_counted:
        lines.append(f"  logged but not counted: {m.not_counted}")
    if m.by_program:
        lines.append("  logged by program: " + ", ".join(f"{p} {n}" for p, n in m.by_program))
    if v.next_threshold:
        t = v.next_threshold
        extra = f" (total {t.threshold_total}, {t.track} track)" if t.threshold_total else ""
        lines.append(f"Next threshold: {t.code} needs {t.minutes_needed} more minutes{extra}")
    lines.append("")
    keys = {c.condition_key for c in v.chronic_conditions}
    lines.append(f"Chronic conditions: {len(keys)} distinct")
    for cc in v.chronic_conditions:
        label = cc.condition_label or cc.condition_key
        lines.append(f"  {cc.code} {cc.display} -> {label} [{cc.source}] {', '.join(cc.evidence)}")
    lines.append("")
    if v.findings:
        lines.append(f"Findings ({len(v.findings)}):")
        for category in dict.fromkeys(f.category for f in v.findings):
            lines.append(f"  {category}:")
            for f in v.by_category(category):
                lines.extend(_finding_lines(f))
    else:
        lines.append("Findings: none")
    if v.skipped:
        lines.append("")
        lines.append(f"Skipped resources ({len(v.skipped)}):")
        for s in v.skipped:
            lines.append(f"  {s.resource}: {s.reason}")
    return "\n".join(lines) + "\n"


def _wrap(text: str, indent: str, first: str | None = None) -> list[str]:
    import textwrap  # lazy: CLI start-up (only --format text wraps; measured ~1 ms of `ccm-ready evaluate`)

    return textwrap.wrap(
        text, width=WIDTH, initial_indent=first if first is not None else indent, subsequent_indent=indent
    ) or [indent.rstrip()]


def _finding_lines(f: Finding) -> list[str]:
    lines = _wrap(f"{f.severity.upper()} {f.rule}: {f.message}", "      ", "    ")
    lines += _wrap(f"source: {f.citation}", "        ", "      ")
    if f.evidence:
        lines += _wrap(f"evidence: {', '.join(f.evidence)}", "        ", "      ")
    return lines
