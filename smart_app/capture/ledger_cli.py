"""`ccm-ready ledger`: check the app's ledger (verify) or list a patient's records (show)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DESCRIPTION = (
    "The app's ledger (DATA_DIR/ledger.sqlite3): every time entry, consent and correction it captured,\n"
    "append-only and hash-chained.\n"
    "  verify  recompute the chain and name every record whose content or link does not match\n"
    "  show    print one patient's records (JSON lines) with their chain hashes"
)
EPILOG = (
    "examples:\n"
    "  ccm-ready ledger verify --data-dir .ccm-ready\n"
    "  ccm-ready ledger show --db .ccm-ready/ledger.sqlite3 --fhir-base http://ehr/fhir --patient 123\n"
    "exit status: 0 chain intact, 1 chain broken (the records are named), 2 bad input"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("verify", "show"), help="verify the chain, or show a patient's records")
    p.add_argument("--db", help="the ledger file (default: DATA_DIR/ledger.sqlite3)")
    p.add_argument("--data-dir", help="the app's DATA_DIR (default: CCM_READY_DATA_DIR or .ccm-ready)")
    p.add_argument("--fhir-base", help="with show: the FHIR server base the records belong to")
    p.add_argument("--patient", help="with show: the patient id (bare or Patient/ID)")


def _path(args: argparse.Namespace) -> Path:
    if args.db:
        return Path(args.db)
    # lazy: CLI start-up
    from smart_app.config import defaults

    data_dir = args.data_dir or defaults()["DATA_DIR"]
    return Path(data_dir) / "ledger.sqlite3"


def run(args: argparse.Namespace) -> int:
    # lazy: CLI start-up
    from smart_app.capture.ledger import Ledger

    path = _path(args)
    if not path.is_file():
        print(f"ccm-ready ledger: no ledger at {path}", file=sys.stderr)
        return 2
    ledger = Ledger(path)
    try:
        if args.action == "show":
            if not args.fhir_base or not args.patient:
                print("ccm-ready ledger: show needs --fhir-base and --patient", file=sys.stderr)
                return 2
            patient = args.patient.rstrip("/").rsplit("/", 1)[-1]
            for rec in ledger.records(args.fhir_base, patient):
                print(json.dumps(rec.to_json(), sort_keys=True, ensure_ascii=False))
            return 0
        check = ledger.verify()
    finally:
        ledger.close()
    if check.ok:
        print(f"ledger OK: {check.count} records, chain head {check.head}")
        return 0
    print(f"ledger BROKEN: {len(check.broken)} problem(s) in {check.count} records")
    for b in check.broken:
        print(f"record #{b.seq} id {b.id}: {b.reason}")
    return 1
