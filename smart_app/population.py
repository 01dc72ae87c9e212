"""A population's NDJSON files -> one (facts, verdicts) per patient, with bounded memory.

Bulk export files are per resource type, not per patient, so a patient's resources are spread over
every file. Holding all of them at once would grow with the practice. Instead:

1. Partition: read each NDJSON file line by line, find the patient a resource is about, and append the
   raw line (no re-serialisation) to one of K bucket files on disk, chosen by a stable hash of the
   patient key. K is sized so that a bucket holds about `per_bucket` patients.
2. Evaluate: load one bucket at a time, group its resources by patient, and run the very same
   `read_facts` -> `evaluate` as the single-patient path for each patient, then drop the bucket.

Peak memory is therefore one bucket (about `per_bucket` patients' resources) plus whatever the caller
keeps per patient (the worklist keeps one small row). Small populations (one bucket) skip the disk
round trip entirely. Resources about no patient (Practitioner, Organization, ...) are not needed by
the rules and are dropped, exactly as the reader would ignore them.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from fhir_mapping.reader import SUBJECT_FIELD, read_facts
from fhir_mapping.references import relative_key
from rules.evaluate import evaluate
from rules.month import Month, zone
from rules.packs import PolicyPack
from rules.records import PatientFacts
from rules.verdict import Verdict

PER_BUCKET = 200
MAX_BUCKETS = 256

ProgressFn = Callable[[int, int], None]  # (patients done, patients expected)


@dataclass(frozen=True)
class PatientResult:
    """One patient's facts and the verdict for each month asked for (in the order asked)."""

    key: str  # "Patient/ID"
    facts: PatientFacts
    verdicts: tuple[Verdict, ...]


def patient_key(resource: Any) -> str | None:
    """ "Patient/ID" for the patient a resource is about (None: about no patient, or unreadable)."""
    if not isinstance(resource, dict):
        return None
    rtype = resource.get("resourceType")
    if rtype == "Patient":
        rid = resource.get("id")
        return f"Patient/{rid}" if isinstance(rid, str) and rid else None
    element = SUBJECT_FIELD.get(rtype) if isinstance(rtype, str) else None
    ref = resource.get(element) if element else None
    if isinstance(ref, list):  # lenient: a repeated element where one is expected
        ref = ref[0] if ref else None
    target = ref.get("reference") if isinstance(ref, dict) else None
    key = relative_key(target) if isinstance(target, str) else None
    return key if key and key.startswith("Patient/") else None


def _lines(paths: Iterable[Path]) -> Iterator[bytes]:
    for path in paths:
        with path.open("rb") as fh:
            for line in fh:
                if line.strip():
                    yield line


def _parse(line: bytes) -> Any:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return None  # an unreadable line is about no patient we can name


def count_lines(path: Path) -> int:
    n = 0
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            n += chunk.count(b"\n")
    return n


def bucket_count(patients: int, per_bucket: int = PER_BUCKET) -> int:
    return max(1, min(MAX_BUCKETS, math.ceil(patients / max(1, per_bucket))))


def _bucket_of(key: str, buckets: int) -> int:
    return zlib.crc32(key.encode()) % buckets


def _group(lines: Iterable[bytes]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        res = _parse(line)
        key = patient_key(res)
        if key is not None:
            groups.setdefault(key, []).append(res)
    return groups


def patient_groups(
    files: Sequence[Path],
    *,
    patients: int | None = None,
    per_bucket: int = PER_BUCKET,
    workdir: Path | None = None,
) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """Each patient's resources (those with a Patient resource), one bucket in memory at a time.

    `patients` is the expected number of patients (e.g. the manifest's Patient count); when None it
    is counted from the files named like Patient NDJSON, else from every line.
    """
    files = list(files)
    if patients is None:
        named = [f for f in files if "patient" in f.name.lower()]
        patients = sum(count_lines(f) for f in (named or files))
    buckets = bucket_count(patients, per_bucket)
    if buckets == 1:
        yield from _with_patient(_group(_lines(files)))
        return
    folder = Path(tempfile.mkdtemp(prefix="ccm-buckets-", dir=workdir))
    try:
        paths = [folder / f"bucket-{i:03d}.ndjson" for i in range(buckets)]
        handles: list[BinaryIO] = [p.open("wb") for p in paths]
        try:
            for line in _lines(files):
                key = patient_key(_parse(line))
                if key is not None:
                    handles[_bucket_of(key, buckets)].write(line if line.endswith(b"\n") else line + b"\n")
        finally:
            for h in handles:
                h.close()
        for path in paths:
            groups = _group(_lines([path]))
            path.unlink()
            yield from _with_patient(groups)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _with_patient(groups: dict[str, list[dict[str, Any]]]) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    for key in sorted(groups):
        resources = groups[key]
        if any(r.get("resourceType") == "Patient" for r in resources):
            yield key, resources


def evaluate_population(
    files: Sequence[Path],
    months: Sequence[Month | str],
    *,
    tz: str = "UTC",
    policy: str | PolicyPack | None = None,
    billing_practitioner: str | None = None,
    patients: int | None = None,
    per_bucket: int = PER_BUCKET,
    workdir: Path | None = None,
    progress: ProgressFn | None = None,
) -> Iterator[PatientResult]:
    """read_facts -> evaluate for every patient in the files, for each of `months` (same as one alone)."""
    zone(tz)
    wanted = [m if isinstance(m, Month) else Month.parse(m) for m in months]
    if not wanted:
        raise ValueError("at least one month is needed")
    files = list(files)
    if patients is None:
        named = [f for f in files if "patient" in f.name.lower()]
        patients = sum(count_lines(f) for f in (named or files))
    groups = patient_groups(files, patients=patients, per_bucket=per_bucket, workdir=workdir)
    for done, (key, resources) in enumerate(groups, start=1):
        facts = read_facts(resources, key.split("/", 1)[1], tz)
        verdicts = tuple(
            evaluate(facts, m, pack=policy, tz=tz, billing_practitioner=billing_practitioner) for m in wanted
        )
        if progress:
            progress(done, max(patients, done))
        yield PatientResult(key, facts, verdicts)
