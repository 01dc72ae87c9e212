"""`ccm-ready remit FILE...`: load X12 835 remittances (or FHIR EOB / ClaimResponse JSON)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DESCRIPTION = """\
Load electronic remittance advice: X12 835 (005010X221A1) files, validated with pyx12 before anything
is read, or FHIR ExplanationOfBenefit / ClaimResponse JSON (one resource or a Bundle). Each service
line is matched to its patient-month and code (by our claim id in CLP01, else by Medicare id and
service month). Loading the same remittance again changes nothing (it counts as a duplicate).
A bad file stops the load with one error naming the file and segment; nothing is stored then.
Remittances are kept with the app's state: the shared database when CCM_READY_DATABASE_URL is set,
else DATA_DIR/remittance.sqlite3 (--data-dir: that folder's file)."""

EPILOG = """\
The last line is: files=F claims=C lines=L paid=P denied=D adjusted=A duplicates=K
(reversal lines count as adjusted; a duplicate is a remittance already loaded.)

exit status: 0 loaded (or all duplicates); 2 a bad file, bad arguments or no database (nothing loaded).

examples:
  ccm-ready remit era-2026-11-30.835
  ccm-ready remit --data-dir /srv/ccm downloads/*.835 eob-bundle.json"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", metavar="FILE", help="835 or FHIR JSON files")
    p.add_argument(
        "--data-dir",
        help="keep claims and remittances in this folder's remittance.sqlite3 (default: the app's "
        "CCM_READY_DATABASE_URL, else CCM_READY_DATA_DIR)",
    )


def run(args: argparse.Namespace) -> int:
    # lazy: CLI start-up
    from psycopg import Error as PostgresError

    # lazy: CLI start-up
    from smart_app.program.remit_load import load_files
    from smart_app.program.remittance import RemittanceError
    from smart_app.program.remittance_store import RemittanceStore

    files = []
    for name in args.files:
        try:
            files.append((Path(name).name, Path(name).read_bytes()))
        except OSError as exc:
            sys.stderr.write(f"ccm-ready remit: {name}: {exc.strerror or exc}\n")
            return 2
    try:
        store = RemittanceStore.for_cli(args.data_dir)
        try:
            counts = load_files(store, files)
        finally:
            store.close()
    except RemittanceError as exc:
        sys.stderr.write(f"ccm-ready remit: {exc}\nNothing was loaded.\n")
        return 2
    except ValueError as exc:  # a database URL that is not postgresql://
        sys.stderr.write(f"ccm-ready remit: {exc}\n")
        return 2
    except PostgresError as exc:  # the pool's timeout included
        sys.stderr.write(f"ccm-ready remit: the database cannot be reached ({type(exc).__name__})\n")
        return 2
    sys.stdout.write(counts.summary() + "\n")
    return 0
