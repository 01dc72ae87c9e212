"""A population's NDJSON files -> one (facts, verdicts) per patient, with bounded memory.

Bulk export files are per resource type, not per patient, so a patient's resources are spread over
every file. Holding all of them at once would grow with the practice. Instead:

1. Partition: read each NDJSON file line by line, find the patient a resource is about, and append the
   raw line (no re-serialisation) to one of K bucket files on disk, chosen by a stable hash of the
   patient key. K is sized so that a bucket holds about `per_bucket` patients.
2. Evaluate: load one bucket at a time, group its resources by patient, and run the very same
   `read_facts` -> `evaluate` as the single-patient path for each patient, then drop the bucket. The
   months' reach is applied as each resource is parsed (`fhir_mapping.reach.Dropping`, patient by
   patient: out-of-reach time entries and ChargeItems, and the Tasks documenting those entries, which
   read_facts would skip anyway), Encounter lines first; a bucket holds about a fifth of what it did and
   read_facts reads only what it uses.

With `workers` > 1 (the CLI), both steps run in forked worker processes: first each worker routes
byte ranges of the files into per-range bucket files, then each worker evaluates whole buckets and
sends back only what the caller's function returns (a worklist row).

Peak memory is therefore one bucket (about `per_bucket` patients' resources) plus whatever the caller
keeps per patient (the worklist keeps one small row). Small populations (one bucket) skip the disk
round trip entirely. Resources about no patient (Practitioner, Organization, ...) are not needed by
the rules and are dropped, exactly as the reader would ignore them; so are lines of types the reader
never reads (Observation, MedicationRequest, DocumentReference, ...), recognised by their leading
`{"resourceType":"X"` without being parsed. Bulk loads run with the garbage collector paused (parsed
JSON holds no cycles) and the warmed-up packs are frozen before the workers fork.

Why over 400 lines: the three population paths (in memory, bucketed on disk, forked workers) share
one grouping and one evaluation, and are easier to keep identical side by side.
"""

from __future__ import annotations

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
from typing import Any, BinaryIO, TypeVar

import orjson

from fhir_mapping.people import PERSON_TYPES
from fhir_mapping.reach import Dropping, Reach
from fhir_mapping.read_note import merge_captured
from fhir_mapping.reader import SUBJECT_FIELD
from fhir_mapping.stream import READ_TYPES, line_subject_key, paused_gc, subject_key, unread_line
from rules.chronic import classify
from rules.month import Month, zone
from rules.packs import PolicyPack, resolve_pack
from rules.records import Coding, PatientFacts
from rules.verdict import Verdict
from smart_app.readiness.options import EvaluationOptions
from smart_app.readiness.use_case import verdicts_for_months

PER_BUCKET = 200
CHUNK_BYTES = 2 << 20  # partition work unit in parallel mode
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
            for line in fh:
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


def _bucket_of(key: str, buckets: int) -> int:
    return zlib.crc32(key.encode()) % buckets


_PREFIX = b'{"resourceType":"'
_AT = len(_PREFIX)
_READ = frozenset(t.encode() for t in READ_TYPES)
# `"subject":{"reference":"` etc. per type, as compact JSON (what servers and orjson write) spells them.
_REF_AT = {
    t.encode(): (f'"{f}"'.encode(), f'"{f}":{{"reference":"'.encode()) for t, f in SUBJECT_FIELD.items()
}


class LineKeys:
    """The patient key of an NDJSON line, read from its bytes on the common path (no parse, no regex).

    A line spelled `{"resourceType":"X",...` with X's subject element once, compact, first key `reference`,
    and no contained resources gives its reference's bytes; the key for those bytes is computed once by
    `fhir_mapping.stream.line_subject_key` (which depends on the reference only in that case) and
    remembered. Every other line goes to `line_subject_key`. `unread(line)` is True for a type the reader
    never reads (skipped unparsed)."""

    def __init__(self, buckets: int = 1) -> None:
        self.buckets = max(1, buckets)
        self._by_ref: dict[bytes, str | None] = {}
        self._routes: dict[bytes, tuple[bytes, int] | None] = {}

    @staticmethod
    def type_of(line: bytes) -> bytes | None:
        if line.startswith(_PREFIX):
            end = line.find(b'"', _AT)
            if end > _AT:
                return line[_AT:end]
        return None

    def unread(self, line: bytes, rtype: bytes | None) -> bool:
        return rtype not in _READ if rtype is not None else unread_line(line)

    @staticmethod
    def _plain_ref(line: bytes, rtype: bytes) -> bytes | None:
        """The subject reference's bytes when the line spells it the plain way (see the class), else None."""
        spelled = _REF_AT.get(rtype)
        if spelled is None:
            return None
        field, prefix = spelled
        at = line.find(prefix)
        if at > 0 and line.find(field, at + len(field)) < 0 and line.rfind(field, 0, at) < 0:
            start = at + len(prefix)
            end = line.find(b'"', start)
            ref = line[start:end]
            if end > start and b"\\" not in ref and b'"contained"' not in line:
                return ref
        return None

    def key(self, line: bytes, rtype: bytes | None) -> str | None:
        ref = self._plain_ref(line, rtype) if rtype is not None else None
        if ref is None:
            return line_subject_key(line)
        known = self._by_ref.get(ref, "")
        if known == "":
            known = line_subject_key(line)
            if len(self._by_ref) > 200_000:
                self._by_ref.clear()
            self._by_ref[ref] = known
        return known

    def _route_of(self, key: str | None) -> tuple[bytes, int] | None:
        if key is None:
            return None
        raw = key.encode()
        return raw + b"\t", zlib.crc32(raw) % self.buckets

    def route(self, line: bytes) -> tuple[bytes, int] | bool | None:
        """(`key` + tab, bucket) for a line about a patient; None: about no patient; False: skip it (blank,
        or a type the reader never reads). The route is remembered per reference: the partition's hot loop
        (one call per line)."""
        if line.startswith(_PREFIX):
            end = line.find(b'"', _AT)
            rtype = line[_AT:end] if end > _AT else None
        elif not line or line.isspace():
            return False
        else:
            rtype = None
        if rtype is not None:
            if rtype not in _READ:
                return False
            ref = self._plain_ref(line, rtype)
            if ref is not None:
                routes = self._routes
                if ref in routes:
                    return routes[ref]
                if len(routes) > 200_000:
                    routes.clear()
                found = routes[ref] = self._route_of(line_subject_key(line))
                return found
        elif unread_line(line):
            return False
        return self._route_of(line_subject_key(line))


def _keyed(key: str, line: bytes) -> bytes:
    """A bucket line: the patient key, a tab, the raw NDJSON line (so grouping needs no second look-up)."""
    return key.encode() + b"\t" + (line if line.endswith(b"\n") else line + b"\n")


_ENCOUNTER = b'{"resourceType":"Encounter"'


def _group_keyed(lines: Iterable[bytes], dropping: Dropping) -> dict[str, list[dict[str, Any]]]:
    """A bucket's keyed lines grouped by patient, less what the months' reach does not read (`dropping`).

    Encounter lines are parsed first, so a Task documenting a dropped one is dropped as soon as it is
    parsed instead of being held to the end of the bucket."""
    first: list[bytes] = []
    rest: list[bytes] = []
    for line in lines:
        (first if line.startswith(_ENCOUNTER, line.find(b"\t") + 1) else rest).append(line)
    groups: dict[str, list[dict[str, Any]]] = {}
    keep = dropping.keep
    with paused_gc():  # a bulk load: parsed JSON has no cycles for the collector to find
        for part in (first, rest):
            for line in part:
                raw, _, body = line.partition(b"\t")
                res = _parse(body)
                if isinstance(res, dict):
                    key = raw.decode()
                    if key == PEOPLE or keep(res, key):
                        groups.setdefault(key, []).append(res)
            part.clear()
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


def _person_line(line: bytes) -> bool:
    """A Practitioner or PractitionerRole line (checked by parsing only lines that could be one)."""
    return b"Practitioner" in line and _is_person(_parse(line))


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
        for path in _partition(files, folder, buckets):
            dropping = Dropping(reach)
            groups = _group_keyed(_keyed_lines([path]), dropping)
            path.unlink()
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
    warm_up(wanted[0], policy)
    gc.freeze()  # packs and value sets: shared with the forked workers, never rescanned or copied
    folder = Path(tempfile.mkdtemp(prefix="ccm-buckets-", dir=workdir))
    try:
        done = 0
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            # Phase 1: the workers partition byte ranges of the files into per-chunk bucket files.
            split = [
                pool.submit(_partition_chunk, path, start, end, folder, job, buckets)
                for job, (path, start, end) in enumerate(_chunks(files, CHUNK_BYTES))
            ]
            for future in split:
                future.result()
            # Phase 2: each bucket (all chunks' files for it) is evaluated by one worker.
            futures = [
                pool.submit(
                    _bucket_job,
                    sorted(folder.glob(f"b{b:03d}-*.ndjson")),
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


def _partition(files: list[Path], folder: Path, buckets: int) -> list[Path]:
    """Append each line to the bucket file of its patient; return the bucket files."""
    paths = [folder / f"bucket-{i:03d}.ndjson" for i in range(buckets)]
    handles: list[BinaryIO] = [p.open("wb") for p in paths]
    keys = LineKeys()
    try:
        for line in _lines(files):
            key = keys.key(line, keys.type_of(line))
            if key is not None:
                handles[_bucket_of(key, buckets)].write(_keyed(key, line))
            elif _person_line(line):
                for h in handles:  # every bucket: people go with every patient
                    h.write(_keyed(PEOPLE, line))
    finally:
        for h in handles:
            h.close()
    return paths


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


def _partition_chunk(path: Path, start: int, end: int, folder: Path, job: int, buckets: int) -> None:
    """In a worker process: route the lines of one byte range to the bucket files of this process.

    The range is read at once and each bucket's lines are appended with one write to
    `b<bucket>-<pid>.ndjson` (one file per bucket and worker process, not per range: creating files is
    what costs on a busy disk). `job` only orders the work."""
    with path.open("rb") as fh:
        fh.seek(start)
        data = fh.read(end - start)
    out: list[list[bytes]] = [[] for _ in range(buckets)]
    people: list[bytes] = []
    route = LineKeys(buckets).route
    with paused_gc():
        for line in data.split(b"\n"):
            to = route(line)
            if to:
                out[to[1]].append(to[0] + line + b"\n")  # type: ignore[index]
            elif to is None and _person_line(line):
                people.append(_keyed(PEOPLE, line))  # people go with every patient
        for b, lines in enumerate(out):
            if lines or people:
                with (folder / f"b{b:03d}-{os.getpid()}.ndjson").open("ab") as fh:
                    fh.write(b"".join(lines))
                    fh.write(b"".join(people))


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
