"""`ccm-ready demo`: a local FHIR server seeded with synthetic patients, and the app pointed at it."""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from rules.month import BadTimezone, Month, zone
from smart_app.readiness.options import practice_now

DESCRIPTION = (
    "Start a local sekmet-fhir FHIR server on 127.0.0.1, load synthetic demo patients for the current\n"
    "month, and run the app against it (open-server mode, no login).\n"
    "Stop with Ctrl-C; the FHIR server stops too."
)
EPILOG = (
    "The FHIR data and the list of demo patients are kept under the app's data folder\n"
    "(CCM_READY_DATA_DIR, default .ccm-ready/demo). They are rebuilt when the month or time zone changes.\n"
    "Needs sekmet-fhir in .venv-sekmet (scripts/demo.sh installs it) or CCM_READY_SEKMET."
)
# Bump when the demo population changes shape: stored demo data from an older version is rebuilt.
SEED_VERSION = "1"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=int, default=5000, help="port of the app on 127.0.0.1 (default 5000)")
    p.add_argument("--fhir-port", type=int, default=8090, help="port of the FHIR server (default 8090)")
    p.add_argument("--no-seed", action="store_true", help="start with the stored data; do not load patients")
    p.add_argument("--timezone", default=None, metavar="ZONE",
                   help="the practice's IANA time zone for month boundaries "
                        "(default: CCM_READY_TIMEZONE or UTC)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="where the demo keeps its FHIR database and manifest (default <DATA_DIR>/demo)")


def _stamp_matches(stamp: Path, wanted: str) -> bool:
    return stamp.is_file() and stamp.read_text(encoding="utf-8").strip() == wanted


def _raise_exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def run(args: argparse.Namespace) -> int:
    # lazy: CLI start-up
    from smart_app import config
    from smart_app.demo.local_fhir import SekmetMissing, port_in_use, start_sekmet
    from smart_app.demo.seed import SeedError, read_manifest, seed_demo, write_manifest

    settings = config.defaults()
    tz = args.timezone or settings["TIMEZONE"]
    try:
        zone(tz)
    except BadTimezone as exc:
        print(f"ccm-ready demo: {exc}", file=sys.stderr)
        return 2
    if args.port == args.fhir_port:
        print("ccm-ready demo: --port and --fhir-port must differ", file=sys.stderr)
        return 2
    if port_in_use(args.port):
        print(f"ccm-ready demo: port {args.port} is in use; pick another with --port", file=sys.stderr)
        return 2

    demo_dir = (args.data_dir or Path(settings["DATA_DIR"]) / "demo").resolve()
    fhir_dir, fhir_data = demo_dir / "fhir", demo_dir / "fhir" / "data"
    manifest_path, stamp = demo_dir / "manifest.json", demo_dir / "fhir" / "seeded-for"
    month = str(Month.of(practice_now(tz)))
    wanted = f"{SEED_VERSION} {month} {tz}"
    if not args.no_seed and not _stamp_matches(stamp, wanted):
        # Demo dates are relative to the month: data seeded for another month (or zone) is stale.
        shutil.rmtree(fhir_data, ignore_errors=True)
        manifest_path.unlink(missing_ok=True)
    fhir_dir.mkdir(parents=True, exist_ok=True)

    try:
        server = start_sekmet(port=args.fhir_port, workdir=fhir_dir, data_dir=fhir_data)
    except SekmetMissing as exc:
        print(f"ccm-ready demo: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(f"ccm-ready demo: could not start the FHIR server: {exc}", file=sys.stderr)
        return 1

    previous = signal.signal(signal.SIGTERM, _raise_exit)
    # Ctrl-C must stop us (and so the FHIR server) even if SIGINT was inherited as ignored.
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        if args.no_seed:
            count = len(read_manifest(manifest_path).patients) if manifest_path.is_file() else 0
        else:
            print(f"Loading demo patients for {month} ({tz}) ...", flush=True)
            manifest = seed_demo(server.base, tz=tz)
            write_manifest(manifest_path, manifest)
            stamp.write_text(wanted, encoding="utf-8")
            count = len(manifest.patients)
        app = _build_app(server.base, tz, manifest_path)
        url = f"http://127.0.0.1:{args.port}/"
        print(f"CCM Ready demo\n  app:  {url}\n  FHIR: {server.base}\n"
              f"  {count} demo patients for {month} ({tz})\nPress Ctrl-C to stop.", flush=True)
        app.run(host="127.0.0.1", port=args.port, debug=False, use_reloader=False)
    except SeedError as exc:
        print(f"ccm-ready demo: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
        server.stop()
        print("Stopped the FHIR server.", flush=True)
    return 0


def _build_app(base: str, tz: str, manifest_path: Path) -> Any:
    # lazy: CLI start-up
    from smart_app import config
    from smart_app.app import create_app

    allowed = list(config.defaults()["OPEN_SERVERS"])
    if base not in allowed:
        allowed.append(base)
    return create_app({"DEMO_MANIFEST": str(manifest_path), "OPEN_SERVERS": allowed, "TIMEZONE": tz})
