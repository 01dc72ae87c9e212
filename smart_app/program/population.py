"""A population's NDJSON files -> one (facts, verdicts) per patient, with bounded memory.

Bulk export files are per resource type, not per patient, so a patient's resources are spread over
every file. Holding all of them at once would grow with the practice. Instead:

1. Partition: read each NDJSON file in byte ranges, parse each line once to find the patient it is
   about, and append the raw line (no re-serialisation) to one of K bucket files on disk, chosen by a
   stable hash of the patient key. K is sized so that a bucket holds about `per_bucket` patients. The
   months' reach is applied here (`_sort_line`): an out-of-reach time entry or stay leaves only a `#`
   line naming it, an out-of-reach ChargeItem nothing, and a Task documenting an Encounter is marked
   with that Encounter's reference, so the bucket can drop it unparsed. read_facts would skip all of
   them anyway: a bucket holds about a third of the export's bytes.
2. Evaluate: load one bucket at a time, group its resources by patient (`fhir_mapping.reach.Dropping`
   finishes the reach's work patient by patient), and run the very same `read_facts` -> `evaluate` as
   the single-patient path for each patient, then drop the bucket.

With `workers` > 1 (the CLI), both steps run in forked worker processes: first each worker routes
byte ranges of the files into per-range bucket files, then each worker evaluates whole buckets and
sends back only what the caller's function returns (a worklist row).

Peak memory is therefore one bucket (about `per_bucket` patients' resources) plus whatever the caller
keeps per patient (the worklist keeps one small row). Small populations (one bucket) skip the disk
round trip entirely (one parse, the reach applied as each line is parsed, Encounter files first).
Resources about no patient (Practitioner, Organization, ...) are not needed by
the rules and are dropped, exactly as the reader would ignore them; so are lines of types the reader
never reads (Observation, MedicationRequest, DocumentReference, ...), recognised by their leading
`{"resourceType":"X"` without being parsed. Bulk loads run with the garbage collector paused (parsed
JSON holds no cycles) and the warmed-up packs are frozen before the workers fork.

Why over 400 lines: the three population paths (in memory, bucketed on disk, forked workers) share
one grouping and one evaluation, and are easier to keep identical side by side.
"""

from __future__ import annotations

import codecs
import gc
import math
import multiprocessing
import os
import shutil
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import orjson

from fhir_mapping.people import PERSON_TYPES
from fhir_mapping.reach import Dropping, Reach, attestation_coded, charge_outside, outside
from fhir_mapping.read_note import merge_captured
from fhir_mapping.stream import READ_TYPES, paused_gc, subject_key, unread_line
from rules.chronic import classify
from rules.month import Month, zone
from rules.packs import PolicyPack, resolve_pack
from rules.records import Coding, PatientFacts
from rules.verdict import Verdict
from smart_app.readiness.options import EvaluationOptions
from smart_app.readiness.use_case import verdicts_for_months

PER_BUCKET = 200
CHUNK_BYTES = 2 << 20  # partition work unit in parallel mode
UTF8_BOM = codecs.BOM_UTF8  # a byte-order mark some tools write first: never part of the JSON
T = TypeVar("T")
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
    return subject_key(resource)


def _lines(paths: Iterable[Path]) -> Iterator[bytes]:
    """The non-blank lines of the files, except those of types the reader ignores (never parsed)."""
    for path in paths:
        with path.open("rb") as fh:
            for number, line in enumerate(fh):
                if number == 0 and line.startswith(UTF8_BOM):
                    line = line[len(UTF8_BOM) :]
                if line and not line.isspace() and not unread_line(line):
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


_PREFIX = b'{"resourceType":"'
_AT = len(_PREFIX)
_READ = frozenset(t.encode() for t in READ_TYPES)
# A bucket line is `<patient key>\t<body>`, the body one of:
#   `{...}`                 a resource's NDJSON line, as the server wrote it;
#   `#Encounter/<id>`       the patient's Encounter out of the months' reach (dropped by the partition);
#   `@<reference>\t{...}`   a Task documenting the Encounter <reference> (no attestation): dropped
#                           unparsed when that Encounter was.
_DROPPED = b"#"
_DOCUMENTS = b"@"


def _field(text: object) -> bytes | None:
    """`text` as a bucket-line field (None when it is no string or could break the line apart)."""
    if type(text) is not str or "\t" in text or "\n" in text or "\r" in text:
        return None
    try:
        return text.encode()
    except UnicodeEncodeError:  # a lone surrogate
        return None


def _sort_line(line: bytes, reach: Reach | None) -> tuple[str, bytes] | None:
    """What the partition does with one NDJSON line: (patient key, bucket-line body), the key PEOPLE for
    a Practitioner or PractitionerRole (it goes with every patient), None to leave it out (blank, a type
    the reader never reads, skipped unparsed; unreadable; about no patient).

    Each line is parsed once here; with `reach`, an out-of-reach Encounter becomes a `#` line and an
    out-of-reach ChargeItem is left out (read_facts would not read either), and a Task documenting an
    Encounter becomes an `@` line, so the bucket drops it unparsed if that Encounter was dropped."""
    if line.startswith(_PREFIX):
        if line[_AT : line.find(b'"', _AT)] not in _READ:
            return None
    elif not line or line.isspace() or unread_line(line):
        return None
    res = _parse(line)
    key = subject_key(res)
    if key is None:
        return (PEOPLE, line) if _is_person(res) else None
    if reach is not None:
        rtype = res.get("resourceType")
        if rtype == "Encounter":
            if outside(res, reach):
                dropped = _field(f"Encounter/{res.get('id')}")
                if dropped is not None:
                    return key, _DROPPED + dropped
        elif rtype == "Task":
            ref = res.get("encounter")
            documents = _field(ref.get("reference")) if type(ref) is dict else None
            if documents is not None and not attestation_coded(res):
                return key, _DOCUMENTS + documents + b"\t" + line
        elif rtype == "ChargeItem" and charge_outside(res, reach):
            return None
    return key, line


_ENCOUNTER = b'{"resourceType":"Encounter"'


def _group_keyed(lines: Iterable[bytes], dropping: Dropping) -> dict[str, list[dict[str, Any]]]:
    """A bucket's lines grouped by patient, less what the months' reach does not read (`dropping`).

    The partition's `#` lines (dropped Encounters) are taken first, so a Task documenting one (an `@`
    line) is dropped without being parsed."""
    rest: list[bytes] = []
    for line in lines:
        tab = line.find(b"\t")
        if line.startswith(_DROPPED, tab + 1):
            dropping.mark(line[:tab].decode(), line[tab + 2 :].decode())
        else:
            rest.append(line)
    groups: dict[str, list[dict[str, Any]]] = {}
    keep, dropped = dropping.keep, dropping.dropped
    with paused_gc():  # a bulk load: parsed JSON has no cycles for the collector to find
        for line in rest:
            raw, _, body = line.partition(b"\t")
            key = raw.decode()
            if body.startswith(_DOCUMENTS):
                documents, _, body = body.partition(b"\t")
                if (key, documents[1:].decode()) in dropped:
                    continue
            res = _parse(body)
            if isinstance(res, dict) and (key == PEOPLE or keep(res, key)):
                groups.setdefault(key, []).append(res)
        rest.clear()
    return groups


def _group(lines: Iterable[bytes], dropping: Dropping) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    keep = dropping.keep
    with paused_gc():
        for line in lines:
            res = _parse(line)
            key = patient_key(res)
            if key is None and _is_person(res):
                key = PEOPLE
            if key is not None and (key == PEOPLE or keep(res, key)):
                groups.setdefault(key, []).append(res)
    return groups


def _encounters_first(files: Sequence[Path]) -> list[Path]:
    """The files, those starting with an Encounter first (a bulk export's Encounter file), so a Task
    documenting an out-of-reach Encounter is dropped when it is parsed."""

    def starts_with_encounter(path: Path) -> bool:
        with path.open("rb") as fh:
            return fh.read(len(_ENCOUNTER)) == _ENCOUNTER

    return sorted(files, key=lambda path: not starts_with_encounter(path))


# People (Practitioners, PractitionerRoles) are about no patient, yet a time entry by a role or a consent
# naming an NPI resolves only through them: they travel with every patient's group under this key.
PEOPLE = ""


def _is_person(res: Any) -> bool:
    return isinstance(res, dict) and res.get("resourceType") in PERSON_TYPES


def patient_groups(
    files: Sequence[Path],
    *,
    patients: int | None = None,
    per_bucket: int = PER_BUCKET,
    workdir: Path | None = None,
    reach: Reach | None = None,
) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """Each patient's resources (those with a Patient resource), one bucket in memory at a time.

    `patients` is the expected number of patients (e.g. the manifest's Patient count); when None it
    is counted from the files named like Patient NDJSON, else from every line. With `reach` (the
    months' reach), what read_facts would not read with it is dropped as soon as it is parsed, patient
    by patient (`fhir_mapping.reach.Dropping`): the verdicts are the same, the bucket much smaller.
    """
    files = list(files)
    if patients is None:
        named = [f for f in files if "patient" in f.name.lower()]
        patients = sum(count_lines(f) for f in (named or files))
    buckets = bucket_count(patients, per_bucket)
    if buckets == 1:
        dropping = Dropping(reach)
        yield from _with_patient(_group(_lines(_encounters_first(files)), dropping), dropping)
        return
    folder = Path(tempfile.mkdtemp(prefix="ccm-buckets-", dir=workdir))
    try:
        for job, (path, start, end) in enumerate(_chunks(files, CHUNK_BYTES)):
            _partition_chunk(path, start, end, folder, job, buckets, reach)
        for b in range(buckets):
            paths = _bucket_files(folder, b)
            dropping = Dropping(reach)
            groups = _group_keyed(_keyed_lines(paths), dropping)
            for used in paths:
                used.unlink()
            yield from _with_patient(groups, dropping)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _with_patient(
    groups: dict[str, list[dict[str, Any]]], dropping: Dropping
) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    people = groups.pop(PEOPLE, [])
    for key in sorted(groups):
        resources = dropping.sweep(key, groups[key])
        if any(r.get("resourceType") == "Patient" for r in resources):
            yield key, [*resources, *people] if people else resources


def _evaluate_group(
    key: str,
    resources: list[dict[str, Any]],
    months: Sequence[Month],
    tz: str,
    policy: str | PolicyPack | None,
    billing_practitioner: str | None,
    captured: Mapping[str, Sequence[tuple[str, dict[str, Any]]]] | None = None,
) -> PatientResult:
    options = EvaluationOptions(months[0], tz, policy or "", billing_practitioner)
    pid = key.split("/", 1)[1]
    if captured:  # the app's own notes and ledger entries count too (each entry once)
        resources = merge_captured(resources, captured.get(pid, ()))
    facts, verdicts = verdicts_for_months(resources, pid, options, months)
    return PatientResult(key, facts, tuple(verdicts))


def _months(months: Sequence[Month | str]) -> list[Month]:
    wanted = [m if isinstance(m, Month) else Month.parse(m) for m in months]
    if not wanted:
        raise ValueError("at least one month is needed")
    return wanted


def _expected_patients(files: list[Path], patients: int | None) -> int:
    if patients is not None:
        return patients
    named = [f for f in files if "patient" in f.name.lower()]
    return sum(count_lines(f) for f in (named or files))


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
    captured: Mapping[str, Sequence[tuple[str, dict[str, Any]]]] | None = None,
) -> Iterator[PatientResult]:
    """read_facts -> evaluate for every patient in the files, for each of `months` (same as one alone).

    `captured`: the app's ledger entries by bare patient id, merged in (see readiness.captured)."""
    zone(tz)
    wanted = _months(months)
    files = list(files)
    expected = _expected_patients(files, patients)
    reach = Reach.of(min(wanted), max(wanted))
    groups = patient_groups(files, patients=expected, per_bucket=per_bucket, workdir=workdir, reach=reach)
    for done, (key, resources) in enumerate(groups, start=1):
        result = _evaluate_group(key, resources, wanted, tz, policy, billing_practitioner, captured)
        if progress:
            progress(done, max(expected, done))
        yield result


def _bucket_job(
    paths: list[Path],
    months: Sequence[Month],
    tz: str,
    policy: str | PolicyPack | None,
    billing_practitioner: str | None,
    fn: Callable[[PatientResult], T],
    captured: Mapping[str, Sequence[tuple[str, dict[str, Any]]]] | None = None,
) -> list[T]:
    """In a worker process: evaluate one bucket (its files) and map each patient through `fn`.

    The whole job runs with the garbage collector paused (parsed JSON and records hold no cycles; a
    collection would rescan the bucket's resources again and again); one collection ends it."""
    with paused_gc():
        dropping = Dropping(Reach.of(min(months), max(months)))
        groups = _group_keyed(_keyed_lines(paths), dropping)
        out = [
            fn(_evaluate_group(key, res, months, tz, policy, billing_practitioner, captured))
            for key, res in _with_patient(groups, dropping)
        ]
        del groups
    gc.collect()
    return out


def map_population(
    files: Sequence[Path],
    months: Sequence[Month | str],
    fn: Callable[[PatientResult], T],
    *,
    tz: str = "UTC",
    policy: str | PolicyPack | None = None,
    billing_practitioner: str | None = None,
    patients: int | None = None,
    per_bucket: int = PER_BUCKET,
    workdir: Path | None = None,
    progress: ProgressFn | None = None,
    workers: int = 1,
    captured: Mapping[str, Sequence[tuple[str, dict[str, Any]]]] | None = None,
) -> Iterator[T]:
    """`fn(result)` for every patient; with workers > 1 the buckets are evaluated in forked processes.

    `fn` must be picklable (a module-level function or a functools.partial of one) and its results
    small (they travel back from the workers). Forking is only safe from a single-threaded caller
    (the CLI); a web request thread should keep workers=1.
    """
    zone(tz)
    wanted = _months(months)
    files = list(files)
    expected = _expected_patients(files, patients)
    if workers <= 1 or expected < 2 * per_bucket:
        for result in evaluate_population(
            files,
            wanted,
            tz=tz,
            policy=policy,
            billing_practitioner=billing_practitioner,
            patients=expected,
            per_bucket=per_bucket,
            workdir=workdir,
            progress=progress,
            captured=captured,
        ):
            yield fn(result)
        return
    buckets = max(bucket_count(expected, per_bucket), 2 * workers)
    reach = Reach.of(min(wanted), max(wanted))
    warm_up(wanted[0], policy)
    gc.freeze()  # packs and value sets: shared with the forked workers, never rescanned or copied
    folder = Path(tempfile.mkdtemp(prefix="ccm-buckets-", dir=workdir))
    try:
        done = 0
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            # Phase 1: the workers partition byte ranges of the files into per-chunk bucket files.
            split = [
                pool.submit(_partition_chunk, path, start, end, folder, job, buckets, reach)
                for job, (path, start, end) in enumerate(_chunks(files, CHUNK_BYTES))
            ]
            for future in split:
                future.result()
            # Phase 2: each bucket (all chunks' files for it) is evaluated by one worker.
            futures = [
                pool.submit(
                    _bucket_job,
                    _bucket_files(folder, b),
                    wanted,
                    tz,
                    policy,
                    billing_practitioner,
                    fn,
                    captured,
                )
                for b in range(buckets)
            ]
            for future in as_completed(futures):
                out = future.result()
                done += len(out)
                if progress:
                    progress(done, max(expected, done))
                yield from out
    finally:
        gc.unfreeze()
        shutil.rmtree(folder, ignore_errors=True)


def _chunks(files: Sequence[Path], size: int) -> list[tuple[Path, int, int]]:
    """Byte ranges of about `size` bytes, each ending at a line end."""
    out: list[tuple[Path, int, int]] = []
    for path in files:
        total = path.stat().st_size
        start = 0
        with path.open("rb") as fh:
            while start < total:
                end = min(total, start + size)
                if end < total:
                    fh.seek(end)
                    fh.readline()
                    end = fh.tell()
                out.append((path, start, end))
                start = end
    return out


def _partition_chunk(
    path: Path, start: int, end: int, folder: Path, job: int, buckets: int, reach: Reach | None
) -> None:
    """Route the lines of one byte range to the bucket files of this process (`_sort_line`).

    The range is read at once and each bucket's lines are appended with one write to
    `b<bucket>-<pid>.ndjson` (one file per bucket and worker process, not per range: creating files is
    what costs on a busy disk). `job` only orders the work."""
    with path.open("rb") as fh:
        fh.seek(start)
        data = fh.read(end - start)
    if start == 0 and data.startswith(UTF8_BOM):  # written by some Windows tools: not part of the JSON
        data = data[len(UTF8_BOM) :]
    out: list[list[bytes]] = [[] for _ in range(buckets)]
    people: list[bytes] = []
    routes: dict[str, tuple[bytes, int]] = {}
    with paused_gc():
        for line in data.split(b"\n"):
            sorted_line = _sort_line(line, reach)
            if sorted_line is None:
                continue
            key, body = sorted_line
            if key == PEOPLE:
                people.append(b"\t" + body + b"\n")  # people go with every patient
                continue
            route = routes.get(key)
            if route is None:
                raw = key.encode()
                route = routes[key] = (raw + b"\t", zlib.crc32(raw) % buckets)
            out[route[1]].append(route[0] + body + b"\n")
        for b, lines in enumerate(out):
            if lines or people:
                with (folder / f"b{b:03d}-{os.getpid()}.ndjson").open("ab") as fh:
                    fh.write(b"".join(lines))
                    fh.write(b"".join(people))


def _bucket_files(folder: Path, bucket: int) -> list[Path]:
    return sorted(folder.glob(f"b{bucket:03d}-*.ndjson"))


def _keyed_lines(paths: Iterable[Path]) -> Iterator[bytes]:
    """The lines of bucket files (written by the partition: already filtered, one per line)."""
    for path in paths:
        for line in path.read_bytes().split(b"\n"):
            if line:
                yield line


def warm_up(month: Month, policy: str | PolicyPack | None) -> None:
    """Load the value sets and the pack once in the parent, so forked workers share them."""
    classify(Coding("http://hl7.org/fhir/sid/icd-10-cm", "E11.9"))
    resolve_pack(policy, month)
