"""Benchmark: the practice worklist for 2,000 patients against the bulk-export floor.

Starts sekmet-fhir on loopback, seeds N patients (the demo's crafted cases, repeated) and a Group of
them, then times
(a) the floor: Group-level $export (kick-off, polling, NDJSON download) plus parsing every NDJSON line
    with orjson, and
(b) the worklist: `build_worklist` as `ccm-ready worklist` runs it (the same export, then bucketed
    grouping, read_facts, evaluate and one row per patient, buckets spread over the CPUs),
each three times, alternating (the fastest run of each counts). Peak memory is measured with
tracemalloc on separate runs of the evaluation pipeline over the downloaded files: for all N
patients and for a quarter of them without keeping rows (the pipeline's memory does not grow with
N), and for N with the rows kept.

The last line printed is `ratio_to_export_floor=X.XX` (target <= 1.5).

Run: .venv/bin/python benchmarks/worklist.py [--patients 2000] [--data-dir DIR]
(`--data-dir` keeps the server's database so a second run skips the seeding.)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
import tracemalloc
import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rules.month import Month  # noqa: E402
from smart_app.fhir.bulk_export import BulkExporter, ExportRequest  # noqa: E402
from smart_app.fhir.client import FhirClient  # noqa: E402
from smart_app.program.jobs import build_worklist  # noqa: E402
from smart_app.program.population import evaluate_population, patient_key  # noqa: E402
from tests.support.population import seed_population  # noqa: E402
from tests.support.sekmet import start_sekmet  # noqa: E402

WORKERS = max(1, min(4, os.cpu_count() or 1))  # as `ccm-ready worklist` does
RUNS = 3  # each timing is the best of RUNS (the floor too)


def floor(base: str, group: str, folder: Path) -> tuple[float, list[Path], int]:
    """Seconds for $export + download + orjson parse of every line; the files; the line count."""
    t = time.perf_counter()
    result = BulkExporter(base).run(ExportRequest(level="group", group=group), folder)
    n = 0
    for _rtype, path in result.files:
        with path.open("rb") as fh:
            for line in fh:
                orjson.loads(line)
                n += 1
    return time.perf_counter() - t, [p for _t, p in result.files], n


def subset(files: list[Path], keep: set[str], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for path in files:
        target = folder / path.name
        with path.open("rb") as src, target.open("wb") as dst:
            for line in src:
                if patient_key(orjson.loads(line)) in keep:
                    dst.write(line)
        out.append(target)
    return out


def pipeline_peak(files: list[Path], month: Month, workdir: Path) -> tuple[float, int]:
    """Peak traced MB of evaluating every patient while keeping nothing, and the patient count."""
    tracemalloc.start()
    count = sum(1 for _r in evaluate_population(files, [month], workdir=workdir))
    _now, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 1e6, count


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", type=int, default=2000)
    ap.add_argument("--data-dir", help="keep sekmet's database here (reused when it holds a seeded Group)")
    args = ap.parse_args()
    month = Month.of(datetime.now(UTC))
    data_dir = Path(args.data_dir) if args.data_dir else None
    server = start_sekmet(data_dir=data_dir)
    tmp = Path(tempfile.mkdtemp(prefix="ccm-bench-worklist-"))
    try:
        client = FhirClient(server.base, timeout=120.0)
        marker = data_dir / "worklist-bench.json" if data_dir else None
        if marker and marker.is_file() and json.loads(marker.read_text())["patients"] == args.patients:
            group = json.loads(marker.read_text())["group"]
            print(f"reusing {args.patients} seeded patients (Group/{group})")
        else:
            t = time.perf_counter()

            def tick(done: int) -> None:
                if done % 250 == 0:
                    print(f"  seeded {done}/{args.patients}", flush=True)

            pop = seed_population(
                client, args.patients, f"bench-{uuid.uuid4().hex[:8]}", workers=8, progress=tick
            )
            group = pop.group_id
            print(f"seeded {args.patients} patients in {time.perf_counter() - t:.1f} s")
            if marker:
                marker.write_text(json.dumps({"patients": args.patients, "group": group}))

        floors, runs = [], []
        files: list[Path] = []
        lines = 0
        for i in range(RUNS):
            secs, files, lines = floor(server.base, group, tmp / f"floor-{i}")
            floors.append(secs)
            t = time.perf_counter()
            # As `ccm-ready worklist` (CSV) runs it: buckets over the CPUs, rows without the verdict JSON.
            result = build_worklist(
                server.base, month, group=f"Group/{group}", workers=WORKERS, keep_verdict=False
            )
            runs.append(time.perf_counter() - t)
            print(
                f"run {i + 1}: floor {secs:.2f} s ({lines} resources); worklist {runs[-1]:.2f} s "
                f"(export {result.export_seconds:.2f} s + evaluate {result.evaluate_seconds:.2f} s, "
                f"{len(result.rows)} rows)"
            )
        best_floor, best_run = min(floors), min(runs)
        print(f"patients_per_second={result.patients / best_run:.1f} (worklist, end to end)")
        print(f"evaluate_patients_per_second={result.patients / max(result.evaluate_seconds, 1e-9):.1f}")

        peak_all, n_all = pipeline_peak(files, month, tmp)
        ids = sorted({patient_key(orjson.loads(line)) for line in files_lines(files, "Patient")} - {None})
        quarter = subset(files, set(ids[: max(1, len(ids) // 4)]), tmp / "quarter")  # type: ignore[arg-type]
        peak_quarter, n_quarter = pipeline_peak(quarter, month, tmp)
        tracemalloc.start()
        kept = build_worklist(server.base, month, group=f"Group/{group}")
        _now, peak_rows = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(
            f"peak_memory_pipeline_mb={peak_all:.1f} for {n_all} patients; "
            f"{peak_quarter:.1f} for {n_quarter} patients (rows not kept)"
        )
        print(f"peak_memory_worklist_mb={peak_rows / 1e6:.1f} with {len(kept.rows)} verdict rows kept")
        print(f"max_rss_mb={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f}")
        print(f"ratio_to_export_floor={best_run / best_floor:.2f}")
        return 0
    finally:
        server.stop() if data_dir else server.cleanup()
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


def files_lines(files: list[Path], rtype: str) -> list[bytes]:
    out: list[bytes] = []
    for path in files:
        if rtype.lower() in path.name.lower():
            out.extend(line for line in path.read_bytes().splitlines() if line.strip())
    return out


if __name__ == "__main__":
    sys.exit(main())
