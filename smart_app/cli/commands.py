"""`ccm-ready` command line: each subcommand lives in its own module, imported only when it runs.

Building the parser imports nothing but argparse: the subcommand list is declared here, and only the
module of the subcommand on the command line is imported (for its arguments and its `run`). So
`ccm-ready evaluate` never loads requests, Flask, joserfc or multiprocessing.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from collections.abc import Sequence

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
    "ledger": ("smart_app.capture.ledger_cli", "Verify the app's hash-chained ledger of captured entries."),
}
# Subcommands that only compute and print (no files, threads, servers or child processes): their process
# ends as soon as stdout and stderr are flushed (`run`).
ENDS_AT_ONCE = frozenset({"evaluate"})


def terminal_width() -> int:
    """The terminal's columns as `shutil.get_terminal_size` reads them ($COLUMNS, then stdout; 80)."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


class _WidthFromOs:
    """argparse's formatters import shutil (and bz2, lzma, zlib) to read the width: start-up time."""

    def __init__(
        self, prog: str, indent_increment: int = 2, max_help_position: int = 24, width: int | None = None
    ) -> None:
        columns = terminal_width() if width is None else width
        super().__init__(prog, indent_increment, max_help_position, columns)  # type: ignore[call-arg]


class PlainFormatter(_WidthFromOs, argparse.HelpFormatter):
    """argparse.HelpFormatter, its width read without shutil."""


class RawFormatter(_WidthFromOs, argparse.RawDescriptionHelpFormatter):
    """argparse.RawDescriptionHelpFormatter, its width read without shutil."""


def chosen_command(argv: Sequence[str]) -> str | None:
    """The subcommand named on the command line (the first argument that is not an option), if known."""
    for arg in argv:
        if arg == "--":
            return None
        if not arg.startswith("-"):
            return arg if arg in SUBCOMMANDS else None
    return None


def build_parser(only: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The `ccm-ready` parser; subcommands outside `only` are listed but their modules are not imported.

    `only=None` builds every subcommand fully (imports them all: for tests and documentation).
    """
    parser = argparse.ArgumentParser(
        prog="ccm-ready",
        description="CCM Ready: Medicare Chronic Care Management billing readiness from FHIR R4 data.",
        formatter_class=PlainFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        if only is not None and name not in only:
            sub.add_parser(name, help=help_text, description=help_text, formatter_class=PlainFormatter)
            continue
        module = importlib.import_module(module_name)
        p = sub.add_parser(
            name,
            help=help_text,
            description=getattr(module, "DESCRIPTION", help_text),
            epilog=getattr(module, "EPILOG", None),
            formatter_class=RawFormatter,
        )
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = chosen_command(argv)
    args = build_parser(only=[chosen] if chosen else []).parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as Unix tools do
        return _reader_gone()
    except OSError as exc:  # the output cannot be written (a full disk...): one line, no traceback
        return _cannot_write(exc)


def _reader_gone() -> int:
    _drop_output()
    return 141


def _cannot_write(exc: OSError) -> int:
    _drop_output()
    with contextlib.suppress(OSError):
        print(f"ccm-ready: error: {exc.strerror or exc}", file=sys.stderr, flush=True)
    return 1


def _drop_output() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # Python's own flush at exit would raise again


def run() -> None:
    """The `ccm-ready` entry point: `main`, then exit.

    After a subcommand in ENDS_AT_ONCE, the process exits as soon as its output is flushed, without
    freeing its objects one by one as the interpreter's shutdown does (the value sets alone are some
    200,000 strings): about a tenth of a short `ccm-ready evaluate`, for nothing the OS does not undo."""
    argv = sys.argv[1:]
    code = main(argv)
    if chosen_command(argv) not in ENDS_AT_ONCE:
        sys.exit(code)
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        code = _reader_gone()
    except OSError as exc:
        code = _cannot_write(exc)
    with contextlib.suppress(OSError):  # nobody is reading it
        sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
