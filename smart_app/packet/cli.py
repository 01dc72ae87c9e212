"""`ccm-ready packet`: write the audit packet (FHIR document, HTML, PDF) for one patient-month."""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any

DESCRIPTION = (
    "Write an audit packet for one patient-month: packet.json (a FHIR document Bundle with every resource\n"
    "the verdict used and their SHA-256 hashes), packet.html (printable) and packet.pdf (headless chromium)."
)
EPILOG = (
    "examples:\n"
    "  ccm-ready packet patient.json --month 2026-11 --out packet/\n"
    "  ccm-ready packet --fhir-base http://127.0.0.1:8090/fhir --patient Patient/123 \\\n"
    "      --month 2026-11 --out p/\n"
    "re-check a packet:\n"
    "  ccm-ready evaluate packet/packet.json --month 2026-11 --format json\n"
    "exit status: 0 written, 2 bad input, 1 the PDF could not be rendered"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of `ccm-ready packet`."""
    p.add_argument("path", nargs="?", help="FHIR Bundle / resource / NDJSON file for one patient")
    p.add_argument("--fhir-base", help="read the patient from this (open) FHIR server instead of a file")
    p.add_argument("--patient", help="Patient/ID (with --fhir-base; picks the patient in a file)")
    p.add_argument("--month", required=True, help="the service month, YYYY-MM")
    p.add_argument("--out", required=True, help="directory to write packet.json, packet.html, packet.pdf")
    p.add_argument(
        "--timezone",
        default="UTC",
        help="the practice's IANA time zone for month boundaries (default %(default)s)",
    )
    p.add_argument("--policy", help="policy pack id (default: the pack in effect for the month)")
    p.add_argument("--billing-practitioner", help="Practitioner/ID who bills (default: consent, then PCP)")
    p.add_argument("--no-pdf", action="store_true", help="skip packet.pdf (no chromium needed)")


def _fail(message: str, code: int = 2) -> int:
    print(f"ccm-ready packet: {' '.join(message.split())}", file=sys.stderr)
    return code


def _resources(args: argparse.Namespace, month: Any) -> tuple[list[Any], str | None, str | None]:
    """(resources, patient id, fhir base) from the file or the FHIR server."""
    patient = args.patient.rstrip("/").rsplit("/", 1)[-1] if args.patient else None
    if args.fhir_base:
        # lazy: CLI start-up
        from smart_app.fhir.client import FhirClient
        from smart_app.readiness.fetch import fetch_patient_resources

        if args.path or not patient:
            raise ValueError("use either PATH or --fhir-base with --patient Patient/ID")
        client = FhirClient(args.fhir_base)
        return fetch_patient_resources(client, patient, month, args.timezone), patient, args.fhir_base
    if not args.path:
        raise ValueError("give a FHIR file PATH, or --fhir-base URL --patient Patient/ID")
    # lazy: CLI start-up
    from fhir_mapping.sources import load_path

    return load_path(args.path), patient, None


def run(args: argparse.Namespace) -> int:
    """Build and write the packet; 2 with a one-line message on bad input."""
    # lazy: CLI start-up
    from fhir_mapping.write_packet import name_people
    from rules.month import Month, zone
    from smart_app.fhir.client import FhirError
    from smart_app.packet.document import PacketError, build_packet
    from smart_app.packet.render import render_html
    from smart_app.readiness.names import names_in
    from smart_app.web.printing import PdfError, render_pdf

    try:
        month = Month.parse(args.month)
        zone(args.timezone)
        bp = args.billing_practitioner
        if bp is not None and not re.fullmatch(r"(Practitioner|PractitionerRole)/[A-Za-z0-9\-.]{1,64}", bp):
            raise ValueError(f"--billing-practitioner must look like Practitioner/ID, got {bp!r}")
        if args.patient is not None and not re.fullmatch(r"(Patient/)?[A-Za-z0-9\-.]{1,64}", args.patient):
            raise ValueError(f"--patient must look like Patient/ID, got {args.patient!r}")
        if args.policy:
            # lazy: CLI start-up
            from rules.packs import load_pack

            load_pack(args.policy)
        resources, patient, base = _resources(args, month)
        packet = build_packet(
            resources,
            month,
            tz=args.timezone,
            pack=args.policy,
            patient_id=patient,
            fhir_base=base,
            billing_practitioner=args.billing_practitioner,
        )
    except FhirError as exc:
        return _fail(exc.message)
    except (
        ValueError,
        PacketError,
    ) as exc:  # BadMonth, BadTimezone, UnknownPolicy, SourceError are ValueErrors
        return _fail(str(exc))
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        names = names_in(resources)  # the people the input itself names (a file has no server to ask)
        data = json.dumps(name_people(packet.bundle, names), indent=2, ensure_ascii=False).encode("utf-8")
        (out / "packet.json").write_bytes(data)
        html = render_html(packet, hashlib.sha256(data).hexdigest(), names)
        (out / "packet.html").write_text(html, "utf-8")
    except OSError as exc:
        return _fail(f"cannot write to {out}: {exc.strerror or exc}")
    written = ["packet.json", "packet.html"]
    if not args.no_pdf:
        try:
            render_pdf(out / "packet.html", out / "packet.pdf")
            written.append("packet.pdf")
        except PdfError as exc:
            return _fail(str(exc), 1)
    print(f"{packet.verdict.patient} {packet.verdict.month}: {packet.verdict.status}")
    for name in written:
        print(out / name)
    return 0
