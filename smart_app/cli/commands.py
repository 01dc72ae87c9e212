"""`ccm-ready` command line: each subcommand lives in its own module."""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> module with `add_arguments(parser)` and `run(args) -> int`
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "evaluate": ("smart_app.cli.evaluate", "Evaluate one patient's CCM month from a Bundle or NDJSON file."),
    "demo": ("smart_app.demo.cli", "Start a local FHIR server seeded with synthetic patients, and the app."),
    "serve": ("smart_app.web.serve", "Run the web app."),
    "worklist": ("smart_app.program.cli", "The CCM worklist for one month (bulk export or searches)."),
    "packet": ("smart_app.packet.cli", "Write an audit packet (FHIR document, HTML, PDF)."),
    "import-time": ("smart_app.capture.import_csv", "Import logged care-management time from a CSV."),
    "claims": ("smart_app.program.claims_cli", "Claim hand-off (CSV or draft FHIR Claims) for ready months."),
    "remit": ("smart_app.program.remit_cli", "Load X12 835 remittances or FHIR EOB / ClaimResponse files."),
    "what-if": ("smart_app.program.what_if_cli", "Revenue what-if: the worth of a lower denial rate."),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ccm-ready",
        description="CCM Ready: Medicare Chronic Care Management billing readiness from FHIR R4 data.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(
            name,
            help=help_text,
            description=getattr(module, "DESCRIPTION", help_text),
            epilog=getattr(module, "EPILOG", None),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
