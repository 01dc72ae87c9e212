"""`ccm-ready claims --month YYYY-MM`: claim hand-off (CSV or draft FHIR Claims) for ready patient-months."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DESCRIPTION = """\
The claim hand-off for the billing team: one claim per ready patient-month (one CSV row per CPT line)
with patient and Medicare id, date of service (the last day of the month), place of service, CPT codes
and units, the chronic ICD-10-CM codes from the verdict's evidence, rendering and billing practitioner
with NPI and the verdict id. --format fhir writes a Bundle of draft FHIR R4 Claims instead.

The ready patient-months come from a FHIR server (--fhir-base, the same pipeline as `ccm-ready
worklist`) or from a worklist already written with `ccm-ready worklist --format json` (--worklist).
Medicare ids and NPIs are read from Patient and Practitioner identifiers when --fhir-base is given.
Each claim is remembered in the data folder so that remittances (`ccm-ready remit`) can be matched."""

EPILOG = """\
exit status: 0 hand-off written; 1 the server failed; 2 bad arguments.

examples:
  ccm-ready claims --fhir-base http://127.0.0.1:8080/fhir --month 2026-10 --out claims.csv
  ccm-ready claims --worklist rows.json --month 2026-10 --format fhir --billing-npi 1234567893"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--month", required=True, help="YYYY-MM")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--fhir-base", help="FHIR R4 base URL (evaluate the population)")
    src.add_argument("--worklist", help="a JSON worklist from `ccm-ready worklist --format json`")
    p.add_argument("--group", help="Group/ID: only this Group's members")
    p.add_argument("--timezone", default="UTC", help="the practice's IANA time zone (default UTC)")
    p.add_argument("--policy", help="policy pack id (default: the pack in effect for the month)")
    p.add_argument("--no-bulk", action="store_true", help="skip $export; use paged searches")
    p.add_argument("--format", choices=("csv", "fhir"), default="csv")
    p.add_argument("--out", help="write to this file instead of standard output")
    p.add_argument("--place-of-service", default="11", help="CMS place-of-service code (default 11, office)")
    p.add_argument(
        "--billing-npi", default="", help="billing (group) NPI; default: the rendering practitioner's"
    )
    p.add_argument("--billing-name", default="", help="billing provider name")
    p.add_argument("--data-dir", help="keep claims in this folder (default: the app's database or DATA_DIR)")
    p.add_argument("--no-record", action="store_true", help="do not remember the claims for matching")


def run(args: argparse.Namespace) -> int:
    # lazy: CLI start-up
    from datetime import UTC, datetime

    # lazy: CLI start-up
    from fhir_mapping.write_provenance import WriteError
    from rules.month import BadMonth, Month
    from smart_app.program import claims

    err = sys.stderr
    try:
        month = str(Month.parse(args.month))
        if not args.place_of_service.isdigit() or len(args.place_of_service) != 2:
            raise ValueError("--place-of-service must be a two-digit CMS place-of-service code")
        if args.billing_npi and (not args.billing_npi.isdigit() or len(args.billing_npi) != 10):
            raise ValueError("--billing-npi must be 10 digits")
        practice = claims.Practice(args.place_of_service, args.billing_name, args.billing_npi)
        directory: claims.Directory = claims.NoDirectory()
        if args.worklist:
            items = _from_worklist(Path(args.worklist), month)
        else:
            items, directory = _from_server(args, month)
            if items is None:
                return 1
    except (BadMonth, ValueError, OSError) as exc:
        err.write(f"ccm-ready claims: {exc}\n")
        return 2
    drafts = claims.drafts(items, directory, practice)
    try:
        if args.format == "fhir":
            text = (
                json.dumps(claims.to_bundle(drafts, datetime.now(UTC).replace(microsecond=0)), indent=2)
                + "\n"
            )
        else:
            text = claims.to_csv(drafts)
    except WriteError as exc:
        err.write(f"ccm-ready claims: {exc}\n")
        return 2
    if not args.no_record and drafts:
        # lazy: CLI start-up
        from smart_app.program.remittance_store import RemittanceStore

        store = RemittanceStore.for_cli(args.data_dir)
        store.record_claims(claims.handed_off(drafts))
        store.close()
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    flagged = sum(1 for d in drafts if d.problems)
    err.write(f"{len(drafts)} claims for {month} ({flagged} with problems to fix before sending).\n")
    return 0


def _from_worklist(path: Path, month: str) -> list[tuple[str, dict]]:
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON (line {exc.lineno})") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "patient" in r for r in rows):
        raise ValueError(f"{path}: expected the list written by `ccm-ready worklist --format json`")
    return [(str(r.get("name") or ""), r) for r in rows if r.get("month") == month]


def _from_server(args: argparse.Namespace, month: str):  # type: ignore[no-untyped-def]
    # lazy: CLI start-up
    from smart_app.fhir.bulk_export import BulkExportError
    from smart_app.fhir.client import FhirClient, FhirError
    from smart_app.program import claims
    from smart_app.program.jobs import build_worklist

    try:
        result = build_worklist(
            args.fhir_base,
            month,
            group=args.group,
            tz=args.timezone,
            policy=args.policy,
            prefer_bulk=not args.no_bulk,
            keep_verdict=True,
        )
    except (BulkExportError, FhirError) as exc:
        sys.stderr.write(f"ccm-ready claims: {exc}\n")
        return None, None
    return claims.ready_items(result.rows), claims.FhirDirectory(FhirClient(args.fhir_base))
