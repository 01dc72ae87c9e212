"""`ccm-ready ledger`: check the app's ledger (verify) or list a patient's records (show)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DESCRIPTION = (
    "The app's ledger (DATA_DIR/ledger.sqlite3, or the shared database when CCM_READY_DATABASE_URL is set):\n"
    "every time entry, consent and correction it captured, append-only and hash-chained.\n"
    "  verify  recompute the chain and name every record whose content or link does not match\n"
    "  show    print one patient's records (JSON lines) with their chain hashes"
)
EPILOG = (
    "examples:\n"
    "  ccm-ready ledger verify --data-dir .ccm-ready\n"
    "  ccm-ready ledger verify --db postgresql://ccm@db.internal/ccm_ready\n"
    "  ccm-ready ledger show --db .ccm-ready/ledger.sqlite3 --fhir-base http://ehr/fhir --patient 123\n"
    "exit status: 0 chain intact, 1 chain broken (the records are named), 2 bad input"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("verify", "show"), help="verify the chain, or show a patient's records")
    p.add_argument(
        "--db",
        help="the ledger: a SQLite file or a postgresql:// URL (default: CCM_READY_LEDGER_DB, else "
        "CCM_READY_DATABASE_URL, else DATA_DIR/ledger.sqlite3)",
    )
    p.add_argument("--data-dir", help="the app's DATA_DIR: use its ledger.sqlite3 file")
    p.add_argument("--fhir-base", help="with show: the FHIR server base the records belong to")
    p.add_argument("--patient", help="with show: the patient id (bare or Patient/ID)")


def _target(args: argparse.Namespace) -> str | Path:
    """--db, else --data-dir's file, else the app's configuration (LEDGER_DB, DATABASE_URL, DATA_DIR)."""
    # lazy: CLI start-up
    from smart_app.config import defaults
    from smart_app.storage import is_postgres_url

    if args.db:
        return args.db if is_postgres_url(args.db) else Path(args.db)
    if args.data_dir:
        return Path(args.data_dir) / "ledger.sqlite3"
    settings = defaults()
    if settings.get("LEDGER_DB"):
        return Path(settings["LEDGER_DB"])
    if settings.get("DATABASE_URL"):
        return str(settings["DATABASE_URL"])
    return Path(settings["DATA_DIR"]) / "ledger.sqlite3"


def run(args: argparse.Namespace) -> int:
    # lazy: CLI start-up
    from psycopg import Error as PostgresError

    # lazy: CLI start-up
    from smart_app.capture.ledger import Ledger

    target = _target(args)
    if isinstance(target, Path) and not target.is_file():
        print(f"ccm-ready ledger: no ledger at {target}", file=sys.stderr)
        return 2
    if args.action == "show" and (not args.fhir_base or not args.patient):
        print("ccm-ready ledger: show needs --fhir-base and --patient", file=sys.stderr)
        return 2
    try:
        ledger = Ledger(target)
        try:
            if args.action == "show":
                patient = args.patient.rstrip("/").rsplit("/", 1)[-1]
                for rec in ledger.records(args.fhir_base, patient):
                    print(json.dumps(rec.to_json(), sort_keys=True, ensure_ascii=False))
                return 0
            check = ledger.verify()
        finally:
            ledger.close()
    except ValueError as exc:  # a URL that is not postgresql://
        print(f"ccm-ready ledger: {exc}", file=sys.stderr)
        return 2
    except PostgresError as exc:  # the pool's timeout included
        print(f"ccm-ready ledger: the database cannot be reached ({type(exc).__name__})", file=sys.stderr)
        return 2
    if check.ok:
        print(f"ledger OK: {check.count} records, chain head {check.head}")
        return 0
    print(f"ledger BROKEN: {len(check.broken)} problem(s) in {check.count} records")
    for b in check.broken:
        print(f"record #{b.seq} id {b.id}: {b.reason}")
    return 1
