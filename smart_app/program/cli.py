"""`ccm-ready worklist --fhir-base URL --month YYYY-MM`: the practice's CCM worklist for one month."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import TextIO

from rules.month import BadMonth, BadTimezone, Month, zone
from rules.packs import UnknownPolicy, load_pack
from smart_app.auth.backend_services import BackendAuthError, BackendServicesAuth, load_key
from smart_app.fhir.bulk_export import BulkExportError
from smart_app.fhir.client import FhirError
from smart_app.program.jobs import build_worklist
from smart_app.program.worklist import row_json, sort_rows, to_csv

DESCRIPTION = """\
The CCM worklist of a practice for one month: one row per patient who has any CCM data or is
eligible, with status, codes and units, minutes by role, minutes to the next threshold (and days
left), blockers and the national non-facility payment.

The population comes from FHIR Bulk Data $export (Patient level, or Group level with --group) when
the server supports it, else from paged searches. Each patient is then evaluated exactly as
`ccm-ready evaluate` would evaluate it alone. Authenticate as a SMART Backend Services client with
--client-id and --private-key (private_key_jwt, client_credentials), or use an open server."""

EPILOG = """\
exit status: 0 worklist written; 1 the server failed; 2 bad arguments.

--format json prints a list of objects: the verdict JSON of `ccm-ready evaluate --format json`
(patient "Patient/ID", status, codes, minutes, next_threshold, findings, payment, ...) plus name,
next_code, minutes_to_next, days_left, blockers, national_payment, eligible, consented,
enrollment_opportunity and already_billed.

examples:
  ccm-ready worklist --fhir-base http://127.0.0.1:8080/fhir --month 2026-10
  ccm-ready worklist --fhir-base URL --month 2026-10 --group Group/42 --format json --out rows.json
  ccm-ready worklist --fhir-base URL --month 2026-10 --client-id app --private-key key.jwk.json"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fhir-base", required=True, help="FHIR R4 base URL")
    p.add_argument("--month", required=True, help="YYYY-MM")
    p.add_argument("--group", help="Group/ID: only this Group's members (Group-level $export)")
    p.add_argument("--timezone", default="UTC", help="the practice's IANA time zone (default UTC)")
    p.add_argument("--policy", help="policy pack id (default: the pack in effect for the month)")
    p.add_argument("--billing-practitioner", help="Practitioner/ID billing for every patient")
    p.add_argument("--format", choices=("csv", "json"), default="csv")
    p.add_argument("--out", help="write to this file instead of standard output")
    p.add_argument("--system", action="store_true", help="system-level $export instead of Patient level")
    p.add_argument("--no-bulk", action="store_true", help="skip $export; use paged searches")
    p.add_argument("--workdir", help="keep the export here so an interrupted run can resume")
    p.add_argument("--client-id", help="SMART Backend Services client id")
    p.add_argument("--private-key", help="the client's private key (JWK JSON or PEM)")
    p.add_argument("--scope", help="scopes to ask for (default: system read scopes for CCM)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


class Progress:
    """A one-line progress bar on a terminal (silent when stderr is not a terminal)."""

    def __init__(self, stream: TextIO, enabled: bool) -> None:
        self.stream = stream
        self.enabled = enabled and stream.isatty()
        self.last = 0.0

    def stage(self, text: str) -> None:
        if self.enabled:
            self.stream.write(f"\r\033[K{text}")
            self.stream.flush()

    def count(self, done: int, total: int) -> None:
        now = time.monotonic()
        if not self.enabled or (now - self.last < 0.1 and done < total):
            return
        self.last = now
        width = 30
        filled = int(width * done / max(total, 1))
        self.stream.write(f"\r\033[Kpatients [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
        self.stream.flush()

    def done(self) -> None:
        if self.enabled:
            self.stream.write("\r\033[K")
            self.stream.flush()


def run(args: argparse.Namespace) -> int:
    err = sys.stderr
    try:
        month = Month.parse(args.month)
        zone(args.timezone)
        if args.policy:
            load_pack(args.policy)
        group = args.group.strip() if args.group else None
        if group is not None and (not group.removeprefix("Group/") or "/" in group.removeprefix("Group/")):
            raise ValueError("--group must be Group/ID")
        if group and args.system:
            raise ValueError("--group and --system exclude each other")
        if bool(args.client_id) != bool(args.private_key):
            raise ValueError("--client-id and --private-key go together")
        provider = None
        if args.client_id:
            auth = BackendServicesAuth(
                args.fhir_base,
                args.client_id,
                load_key(args.private_key),
                **({"scope": args.scope} if args.scope else {}),
            )
            provider = auth
    except (BadMonth, BadTimezone, UnknownPolicy, ValueError, OSError) as exc:
        err.write(f"ccm-ready worklist: {exc}\n")
        return 2
    bar = Progress(err, not args.quiet)
    try:
        result = build_worklist(
            args.fhir_base,
            month,
            group=group,
            system_level=args.system,
            tz=args.timezone,
            policy=args.policy,
            billing_practitioner=args.billing_practitioner,
            token_provider=provider,
            workdir=Path(args.workdir) if args.workdir else None,
            prefer_bulk=not args.no_bulk,
            on_stage=bar.stage,
            on_patient=bar.count,
            workers=max(1, min(4, os.cpu_count() or 1)),
            keep_verdict=args.format == "json",  # CSV needs only the row
        )
    except (BulkExportError, FhirError, BackendAuthError) as exc:
        bar.done()
        err.write(f"ccm-ready worklist: {exc}\n")
        return 1
    except ValueError as exc:
        bar.done()
        err.write(f"ccm-ready worklist: {exc}\n")
        return 2
    bar.done()
    rows = sort_rows(result.rows)
    text = json.dumps([row_json(r) for r in rows], indent=2) + "\n" if args.format == "json" else to_csv(rows)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    if not args.quiet:
        err.write(f"{len(rows)} rows from {result.patients} patients ({result.method}).\n")
    return 0
