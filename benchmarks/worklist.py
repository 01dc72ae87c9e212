"""Benchmark: the practice worklist after the bulk export against the parse-only floor, all processes' memory.

    .venv/bin/python benchmarks/worklist.py [--sizes 2000,10000]

For each size N, a bulk export as a server leaves it is written: one NDJSON file per resource type
(benchmarks/realistic.py patients: 12 months of history, ~160 resources each, so most lines are types the
rules never read). Both measurements start where the export has completed and its files are on disk
(the server's queueing and Retry-After polling are the server's time, not ours), each in a fresh process:

  floor     parse-only: every line of every file parsed with orjson and dropped (one process);
  worklist  what `ccm-ready worklist` runs after the download: program.population.map_population with
            the worklist's row builder, buckets spread over the CPUs in forked workers (as the CLI).

Memory is the peak, sampled every 20 ms, of the PSS summed over the measured process AND its worker
processes (PSS splits the pages forked workers share with their parent, so nothing is counted twice).
Targets: worklist <= 1.3 x floor at every size; peak memory at the largest size <= 1.5 x the smallest.
The LAST line is `ratio_to_parse_floor=X.XX memory_ratio=Y.YY` (the worst size's ratio).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.realistic import patient_history  # noqa: E402
from rules.month import Month  # noqa: E402

MONTH = "2026-10"
ARCHETYPES = 64
PLACEHOLDER = "zzpidzz"
WORKERS = max(1, min(4, os.cpu_count() or 1))  # as `ccm-ready worklist` does


def write_export(folder: Path, patients: int, seed: int) -> list[Path]:
    """Per-type NDJSON files of `patients` realistic patients (like a $export download)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    month = Month.parse(MONTH)
    templates: list[dict[str, bytes]] = []
    for a in range(min(ARCHETYPES, patients)):
        by_type: dict[str, list[bytes]] = {}
        for r in patient_history(f"{PLACEHOLDER}{a}x", rng, month):
            by_type.setdefault(r["resourceType"], []).append(orjson.dumps(r))
        templates.append({t: b"\n".join(lines) + b"\n" for t, lines in by_type.items()})
    types = sorted({t for tpl in templates for t in tpl})
    handles = {t: (folder / f"{i:03d}-{t}.ndjson").open("wb") for i, t in enumerate(types)}
    try:
        for i in range(patients):
            a = i % len(templates)
            old, new = f"{PLACEHOLDER}{a}x".encode(), f"w{i}".encode()
            for t, block in templates[a].items():
                handles[t].write(block.replace(old, new))
    finally:
        for h in handles.values():
            h.close()
    return [folder / f"{i:03d}-{t}.ndjson" for i, t in enumerate(types)]


# ---------------------------------------------------------------------- measured in child processes


def _floor(files: list[Path]) -> dict[str, object]:
    loads = orjson.loads
    started = time.perf_counter()
    n = 0
    for path in files:
        with path.open("rb") as fh:
            for line in fh:
                if line.strip():
                    loads(line)
                    n += 1
    return {"seconds": time.perf_counter() - started, "resources": n}


def _worklist(files: list[Path], patients: int) -> dict[str, object]:
    from smart_app.program.jobs import _rows_of
    from smart_app.program.population import map_population

    fn = functools.partial(_rows_of, today=date(2026, 11, 3), keep_verdict=False)
    started = time.perf_counter()
    rows = seen = 0
    for row, _earlier in map_population(files, [MONTH], fn, patients=patients, workers=WORKERS):
        seen += 1
        rows += row is not None
    return {"seconds": time.perf_counter() - started, "patients": seen, "rows": rows}


def _child(kind: str, folder: str, patients: str) -> int:
    files = sorted(Path(folder).glob("*.ndjson"))
    result = _floor(files) if kind == "floor" else _worklist(files, int(patients))
    print(json.dumps(result))
    return 0


def _pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    except OSError:
        return 0


def tree_pss_mb(root: int) -> float:
    """PSS of `root` and all its descendants, in MB."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += _pss_kb(pid)
        stack.extend(children.get(pid, ()))
    return total / 1024


def measure(kind: str, folder: Path, patients: int) -> dict[str, object]:
    """Run one measurement in a fresh interpreter, sampling the memory of its whole process tree."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", kind, str(folder), str(patients)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    peak = 0.0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_pss_mb(proc.pid))
            done.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = proc.communicate()
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"the {kind} measurement failed")
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_mb"] = peak
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="2000,10000", help="comma-separated patient counts")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--runs", type=int, default=2, help="timings are the best of RUNS")
    parser.add_argument("--child", nargs=3, metavar=("KIND", "FOLDER", "PATIENTS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(*args.child)
    sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    if not sizes or sizes[0] < 1:
        parser.error("--sizes needs positive patient counts")
    ratios, peaks = [], []
    with tempfile.TemporaryDirectory(prefix="ccm-bench-worklist-") as tmp:
        for size in sizes:
            folder = Path(tmp) / f"export-{size}"
            files = write_export(folder, size, args.seed)
            mb = sum(f.stat().st_size for f in files) / 1e6
            print(f"export: {size} patients, {len(files)} NDJSON files, {mb:.0f} MB; {WORKERS} workers")
            floors, lists = [], []
            for _ in range(max(1, args.runs)):  # alternating, best of each
                floors.append(measure("floor", folder, size))
                lists.append(measure("worklist", folder, size))
            floor = min(floors, key=lambda r: float(r["seconds"]))  # type: ignore[arg-type]
            work = min(lists, key=lambda r: float(r["seconds"]))  # type: ignore[arg-type]
            ratio = float(work["seconds"]) / float(floor["seconds"])  # type: ignore[arg-type]
            peak = max(float(r["peak_mb"]) for r in lists)  # type: ignore[arg-type]
            ratios.append(ratio)
            peaks.append(peak)
            print(
                f"  floor (parse-only, orjson): {floor['seconds']:.2f} s, peak {floor['peak_mb']:.0f} MB\n"
                f"  worklist (map_population + rows): {work['seconds']:.2f} s "
                f"for {work['patients']} patients "
                f"({work['rows']} rows), peak {peak:.0f} MB over all its processes; ratio {ratio:.2f}"
            )
            for f in files:
                f.unlink()
    print(
        "targets: ratio_to_parse_floor <= 1.3 at every size; memory_ratio <= 1.5 "
        f"({sizes[0]} -> {sizes[-1]} patients)"
    )
    print(f"ratio_to_parse_floor={max(ratios):.2f} memory_ratio={peaks[-1] / peaks[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
