"""Benchmark: `ccm-ready import-time` of a 5,000-row CSV over a distant FHIR server.

Starts sekmet-fhir on loopback, seeds the 250 patients and 40 performers the rows name, and puts
benchmarks/latency_proxy.py (TCP_NODELAY, one write per response, a fixed delay per request) in front.
Then imports the CSV through the proxy, counting the requests the proxy forwards:

  first run   every row new: one batch of look-ups per 50 patients, 50 rows per transaction;
  rerun       the same file again: the look-ups find every row, nothing is written;
  baseline    the same code with one row per transaction and one search per patient (how the import
              worked before batching), on the first `--baseline-rows` rows of a second file (fewer rows,
              as it is slow by construction), reported per row.

Targets: requests_per_row <= 0.05 on the first run and <= 0.02 on the rerun. The LAST line is
`requests_per_row=X rerun_requests_per_row=Y ratio_to_baseline=Z` (Z = wall per row, batched / baseline).

Run: .venv/bin/python benchmarks/import_time.py [--rows 5000] [--latency-ms 50]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.latency_proxy import LatencyProxy  # noqa: E402
from smart_app.capture import import_csv  # noqa: E402
from smart_app.fhir.client import FhirClient  # noqa: E402

NOTE = "Reviewed BP log (hypertension); raised lisinopril to 20 mg; recheck readings Friday."
PATIENTS = 250
PERFORMERS = 40


def csv_text(rows: int, tag: str, month: str = "2026-10") -> str:
    """`rows` valid rows: PATIENTS patients, PERFORMERS performers, no performer overlapping itself."""
    lines = ["patient,performer,start,minutes,program,activity,note"]
    for i in range(rows):
        performer = i % PERFORMERS
        slot = i // PERFORMERS  # each performer's rows are 30 minutes apart, 9 a day
        day, hour = 1 + slot // 18, 8 + (slot % 18) // 2
        minute = 30 * (slot % 2)
        lines.append(
            f"{tag}p{i % PATIENTS},Practitioner/{tag}rn{performer},{month}-{day:02d}T{hour:02d}:{minute:02d},"
            f'20,ccm,patient-call,"{NOTE} ({i})"'
        )
    return "\n".join(lines) + "\n"


def seed(base: str, tag: str) -> None:
    client = FhirClient(base, timeout=120)
    entries = [
        {"resource": {"resourceType": "Patient", "id": f"{tag}p{i}", "name": [{"family": f"Import{i}"}]},
         "request": {"method": "PUT", "url": f"Patient/{tag}p{i}"}}
        for i in range(PATIENTS)
    ] + [
        {"resource": {"resourceType": "Practitioner", "id": f"{tag}rn{i}", "name": [{"family": f"Nurse{i}"}]},
         "request": {"method": "PUT", "url": f"Practitioner/{tag}rn{i}"}}
        for i in range(PERFORMERS)
    ]
    client.transaction({"resourceType": "Bundle", "type": "transaction", "entry": entries})


def run_import(path: Path, base: str) -> tuple[float, str]:
    ledger = str(path.with_suffix(".ledger.sqlite3"))  # beside the rows, never the app's DATA_DIR
    args = argparse.Namespace(file=str(path), fhir_base=base, token_file=None, timezone="America/Chicago",
                              ledger=ledger)
    out, err = io.StringIO(), io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        import_csv.run(args)
    seconds = time.perf_counter() - started
    summary = out.getvalue().strip().splitlines()[-1]
    if not summary.endswith("errors=0"):
        print("  " + "\n  ".join(err.getvalue().strip().splitlines()[:3]))
    return seconds, summary


@contextlib.contextmanager
def unbatched() -> object:
    """The import as it was: one search per patient, one transaction per row."""
    saved = import_csv.write_rows.__kwdefaults__
    import_csv.write_rows.__kwdefaults__ = {"per_transaction": 1}
    original = import_csv._encounters

    def one_by_one(client, lookups):  # type: ignore[no-untyped-def]
        for patient, url in lookups:
            rtype, _, qs = url.partition("?")
            from urllib.parse import parse_qsl

            yield patient, client.search(rtype, parse_qsl(qs))

    import_csv._encounters = one_by_one  # type: ignore[assignment]
    try:
        yield
    finally:
        import_csv._encounters = original
        import_csv.write_rows.__kwdefaults__ = saved


def main(argv: list[str] | None = None) -> int:
    from tests.support.sekmet import start_sekmet

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--baseline-rows", type=int, default=250)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    args = parser.parse_args(argv)
    if not 1 <= args.rows <= import_csv.MAX_ROWS or args.baseline_rows < 1:
        parser.error(f"--rows must be 1..{import_csv.MAX_ROWS}")
    server = start_sekmet()
    try:
        with tempfile.TemporaryDirectory(prefix="ccm-bench-import-") as tmp:
            seed(server.base, "a")
            seed(server.base, "b")
            origin = server.base.rsplit("/fhir", 1)[0]
            with LatencyProxy(origin, args.latency_ms / 1000) as proxy:
                base = f"{proxy.origin}/fhir"
                path = Path(tmp) / "rows.csv"
                path.write_text(csv_text(args.rows, "a"), encoding="utf-8")
                before = proxy.requests
                first, summary = run_import(path, base)
                first_requests = proxy.requests - before
                print(f"first run: {args.rows} rows, {first_requests} requests, {first:.1f} s  [{summary}]")
                before = proxy.requests
                rerun, summary = run_import(path, base)
                rerun_requests = proxy.requests - before
                print(f"rerun:     {args.rows} rows, {rerun_requests} requests, {rerun:.1f} s  [{summary}]")
                base_path = Path(tmp) / "baseline.csv"
                base_path.write_text(csv_text(args.baseline_rows, "b"), encoding="utf-8")
                before = proxy.requests
                with unbatched():
                    baseline, summary = run_import(base_path, base)
                baseline_requests = proxy.requests - before
                print(
                    f"baseline (one row per transaction, one search per patient): {args.baseline_rows} rows, "
                    f"{baseline_requests} requests, {baseline:.1f} s  [{summary}]"
                )
    finally:
        server.cleanup()
    per_row = first_requests / args.rows
    rerun_per_row = rerun_requests / args.rows
    ratio = (first / args.rows) / (baseline / args.baseline_rows)
    print(
        f"latency {args.latency_ms:.0f} ms per request; "
        f"wall per row: batched {first / args.rows * 1000:.1f} ms, "
        f"baseline {baseline / args.baseline_rows * 1000:.1f} ms; targets: requests_per_row <= 0.05, "
        "rerun <= 0.02"
    )
    print(
        f"requests_per_row={per_row:.4f} rerun_requests_per_row={rerun_per_row:.4f} "
        f"ratio_to_baseline={ratio:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
