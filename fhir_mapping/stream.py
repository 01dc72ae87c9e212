"""FHIR files read as streams: one resource at a time, so memory stays flat in the file's size.

`iter_resources` yields the resources of an NDJSON file line by line and of a JSON file (Bundle of any
type, resource, array) as `fhir_mapping.sources` flattens them; a JSON document larger than
`LARGE_DOCUMENT` bytes is read entry by entry with ijson instead of being loaded whole.
`select_patient` keeps only one patient's resources while reading (the CLI's `--patient`), and
`patient_runs` cuts a patient-grouped stream (one patient's resources together, as a per-patient export
or a file of per-patient Bundles) into one list per patient. `paused_gc` keeps the garbage collector
out of bulk loads: parsed JSON holds no reference cycles, so the collector would only rescan it.

The reader itself (`read_facts`) is called per patient by the caller, with the same resources the whole
file would have given it for that patient.
"""

from __future__ import annotations

import gc
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import field
from functools import cache
from pathlib import Path
from typing import IO, Any, TypeVar

import orjson

from fhir_mapping.people import PERSON_TYPES
from fhir_mapping.reader import SUBJECT_FIELD, patient_key
from fhir_mapping.references import relative_key
from fhir_mapping.sources import NDJSON_SUFFIXES, SourceError, load_path, resources_from_json
from rules.record_type import record

LARGE_DOCUMENT = 64 << 20  # JSON documents above this size are streamed entry by entry
COLLECT_EVERY = 1000  # patients between garbage collections while the collector is paused
_BLANK = frozenset(b" \t\r\n\x0b\x0c")
# The resource types read_facts reads (it ignores every other type, so a stream may drop them early):
# those about a patient, the Patient, outcomes, and the people (resolving references by role or NPI).
READ_TYPES = frozenset(SUBJECT_FIELD) | {"Patient", "OperationOutcome", "Bundle"} | PERSON_TYPES
# What a verdict reads: READ_TYPES, but of the DocumentReferences only the app's own notes (read back by
# the use case, `fhir_mapping.read_note`); a stream skips the others unparsed (`only=FACT_TYPES`): a line
# of a DocumentReference is parsed only when it may be a note of ours (`_may_be_note`).
FACT_TYPES = READ_TYPES - {"DocumentReference"}
_NOTE_TYPE = b"DocumentReference"
NOTE_MARK = b"note-format"  # in every note of ours: fhir_mapping.write_note.NOTE_FORMAT
T = TypeVar("T")
_KEYS: dict[str, str | None] = {}  # reference string -> patient key (a memo, cleared past 8192)
_TYPE_FIRST_PATTERN = rb'\s*\{\s*"resourceType"\s*:\s*"([A-Za-z]{1,64})"'
_PREFIX = b'{"resourceType":"'
_AT = len(_PREFIX)
_SUBJECT_REF_PATTERN = rb'"(?:subject|patient|for)"\s*:\s*\{\s*"reference"\s*:\s*"([^"\\]{1,512})"'


# The byte-level patterns are compiled on first use: `ccm-ready evaluate` on a file written the usual way
# (`{"resourceType":"X"` first) needs none of them, and compiling a dozen regexes is start-up time.
@cache
def _type_first() -> re.Pattern[bytes]:
    return re.compile(_TYPE_FIRST_PATTERN)


@cache
def _subject_ref() -> re.Pattern[bytes]:
    return re.compile(_SUBJECT_REF_PATTERN)


@contextmanager
def paused_gc() -> Iterator[None]:
    """The cyclic garbage collector off for a bulk load (restored afterwards, even on error).

    Parsed JSON and the reader's records hold no reference cycles: reference counting frees them, and
    the collector would only rescan every live object again and again.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def collected(items: Iterable[T], every: int = COLLECT_EVERY) -> Iterator[T]:
    """`items` with one garbage collection every `every` items (for loops run under `paused_gc`)."""
    for n, item in enumerate(items, start=1):
        yield item
        if n % every == 0:
            gc.collect()


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _open(p: Path) -> IO[bytes]:
    try:
        return p.open("rb")
    except FileNotFoundError:
        raise SourceError(f"no such file: {p}") from None
    except IsADirectoryError:
        raise SourceError(f"{p} is a directory, not a FHIR JSON or NDJSON file") from None
    except OSError as exc:
        raise SourceError(f"cannot read {p}: {_one_line(exc.strerror or exc)}") from None


def _first_line(p: Path) -> bytes:
    with _open(p) as fh:
        for line in fh:
            if line.strip():
                return line
    raise SourceError(f"{p} is empty")


def iter_resources(
    path: str | Path, *, only: frozenset[str] | None = None, about: str | None = None
) -> Iterator[Any]:
    """Every resource in the file at `path`, one at a time (SourceError for a file that is not FHIR JSON).

    The same resources, in the same order, as `sources.load_path`; an invalid NDJSON line raises
    SourceError when the stream reaches it. With `only` (e.g. FACT_TYPES), an NDJSON line that starts
    with `{"resourceType":"X"` for an X outside `only` is skipped without being parsed (Bundles are
    always unpacked, and a DocumentReference that may be one of the app's notes is always parsed);
    other sources may still yield other types, which the reader ignores. With `about`
    (a patient id), an NDJSON line that does not contain the id but names a patient as its subject is
    skipped unparsed too: it is another patient's (`select_patient` still checks every parsed resource).
    """
    p = Path(path)
    first = _first_line(p)
    size = p.stat().st_size
    if p.name.lower().endswith(NDJSON_SUFFIXES):
        yield from _ndjson(p, only, about)
    elif size <= LARGE_DOCUMENT:
        yield from load_path(p)  # small enough to parse whole (and to tell JSON from suffix-less NDJSON)
    elif _is_json_object(first):
        yield from _ndjson(p, only, about)  # several JSON objects, one per line
    else:
        yield from _large_document(p)


_READ_BYTES = frozenset(t.encode() for t in READ_TYPES)


def unread_line(line: bytes) -> bool:
    """True for an NDJSON line starting `{"resourceType":"X"` with X a type read_facts ignores.

    Such a line can be skipped without parsing it (Bundles are read types: they are always unpacked).
    """
    if line.startswith(_PREFIX):
        end = line.find(b'"', _AT)
        if end > _AT:
            return line[_AT:end] not in _READ_BYTES
    m = _type_first().match(line)
    return m is not None and m.group(1) not in _READ_BYTES


_SUBJECT_NAMES = (b'"subject"', b'"patient"', b'"for"')


def _first_subject_ref(line: bytes) -> re.Match[bytes] | None:
    """`_subject_ref().search(line)`, found faster: the pattern is tried only where an element name starts."""
    pattern = _subject_ref()
    pos = 0
    while True:
        hits = [i for i in (line.find(name, pos) for name in _SUBJECT_NAMES) if i >= 0]
        if not hits:
            return None
        at = min(hits)
        m = pattern.match(line, at)
        if m is not None:
            return m
        pos = at + 1


def _names_another_patient(line: bytes, needle: bytes) -> bool:
    """True when the line's subject reference names a patient and the wanted id is nowhere in the line."""
    if needle in line:
        return False
    m = _first_subject_ref(line)
    if m is None:
        return False
    return _memo_key(m.group(1).decode("utf-8", "replace")) is not None


def _is_json_object(line: bytes) -> bool:
    try:
        return isinstance(orjson.loads(line), dict)
    except orjson.JSONDecodeError:
        return False


def _may_be_note(line: bytes) -> bool:
    """True for a line that could hold one of the app's notes: it spells NOTE_MARK, or it has `\\u`
    escapes (which could spell it otherwise). Never False for a note of ours, however it is serialised."""
    return NOTE_MARK in line or (b"\\" in line and b"\\u" in line)  # one byte first: the faster scan


def _ndjson(p: Path, only: frozenset[str] | None = None, about: str | None = None) -> Iterator[Any]:
    loads = orjson.loads
    name = str(p)
    wanted = {t.encode() for t in only} | {b"Bundle"} if only is not None else None
    needle = patient_key(about).split("/", 1)[1].encode() if about else None
    with _open(p) as fh:
        for lineno, line in enumerate(fh, start=1):
            if line[0] in _BLANK and not line.strip():
                continue
            if wanted is not None:
                if line.startswith(_PREFIX):  # the usual spelling, read without a regex
                    end = line.find(b'"', _AT)
                    rtype = line[_AT:end]
                    if end > _AT and rtype not in wanted and (rtype != _NOTE_TYPE or not _may_be_note(line)):
                        continue  # a type the caller does not read: not even parsed
                else:
                    m = _type_first().match(line)
                    if m is not None and m.group(1) not in wanted and (
                        m.group(1) != _NOTE_TYPE or not _may_be_note(line)
                    ):
                        continue
            if needle is not None and _names_another_patient(line, needle):
                continue
            try:
                obj = loads(line)
            except orjson.JSONDecodeError as exc:
                raise SourceError(f"{name} line {lineno} is not valid JSON: {_one_line(exc.msg)}") from None
            if isinstance(obj, dict) and obj.get("resourceType") not in (None, "Bundle"):
                yield obj  # the common case, kept cheap
                continue
            try:
                yield from resources_from_json(obj)
            except SourceError as exc:
                raise SourceError(f"{name} line {lineno}: {exc}") from None


def _large_document(p: Path) -> Iterator[Any]:
    """A JSON document too large to load whole: a Bundle's entries (or an array's items) one by one."""
    # lazy: CLI start-up (ijson is needed only for very large documents)
    import ijson

    with _open(p) as fh:
        head = fh.read(4096).lstrip()
        fh.seek(0)
        prefix = "item" if head[:1] == b"[" else "entry.item"
        try:
            for item in ijson.items(fh, prefix, use_float=True):
                if prefix == "item":
                    yield from resources_from_json([item])
                else:  # one entry at a time, with the Bundle's entry rules (fullUrl ids, outcomes, nesting)
                    yield from resources_from_json({"resourceType": "Bundle", "entry": [item]})
        except ijson.JSONError as exc:
            raise SourceError(f"{p} is not valid JSON: {_one_line(exc)}") from None


# ------------------------------------------------------------------ which patient a resource is about


def subject_key(resource: Any) -> str | None:
    """ "Patient/ID" for the patient a resource is about (a Patient: itself); None if about no patient.

    `urn:uuid:X` subjects (Synthea-style Bundles) are taken as Patient/X, as the Bundle's Patient
    carries the id X.
    """
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
    target = ref.get("reference") if isinstance(ref, dict) else ref
    if not isinstance(target, str) or not target:
        return None
    return _memo_key(target)


def _memo_key(target: str) -> str | None:
    """_reference_key, memoised (a patient's resources repeat the same reference)."""
    key = _KEYS.get(target, "")
    if key == "":
        if len(_KEYS) > 8192:  # bounded: a patient repeats its own references; memory stays flat
            _KEYS.clear()
        key = _KEYS[target] = _reference_key(target)
    return key


def _reference_key(target: str) -> str | None:
    if target.startswith("urn:uuid:"):
        return f"Patient/{target[9:]}" if target[9:] else None
    key = relative_key(target)
    if not key or not key.startswith("Patient/") or len(key.split()) != 1:
        return None  # a FHIR id never holds white space
    return key


def _unread(res: Any) -> bool:
    """True for a resource of a type read_facts ignores (Observation, MedicationRequest, ...)."""
    if not isinstance(res, dict):
        return False
    rtype = res.get("resourceType")
    return isinstance(rtype, str) and bool(rtype) and rtype not in READ_TYPES


@record(frozen=False)
class Selection:
    """One patient's resources picked from a stream, and every patient the stream named."""

    patient: str | None
    resources: list[Any] = field(default_factory=list)
    patients: list[str] = field(default_factory=list)  # Patient resources seen, in order


def select_patient(resources: Iterable[Any], patient_id: str | None = None) -> Selection:
    """Keep, while reading, the resources of `patient_id` and those about no patient.

    Types read_facts ignores are dropped as they are read, so memory holds one patient's resources.
    Without `patient_id` the file's only patient is meant: resources are kept until a second Patient
    resource appears, after which the stream is only scanned (to list the patients), not kept.
    """
    target = patient_key(patient_id) if patient_id else None
    out = Selection(target)
    seen: set[str] = set()
    kept = out.resources
    keep_all = target is None
    with paused_gc():
        for res in resources:
            if _unread(res):
                continue
            key = subject_key(res)
            is_patient = isinstance(res, dict) and res.get("resourceType") == "Patient"
            if is_patient and key is not None and key not in seen:
                seen.add(key)
                out.patients.append(key)
                if keep_all and len(seen) > 1:
                    keep_all = False
                    kept.clear()  # several patients and none chosen: the caller reports it
                    continue
            if keep_all or (target is not None and (key is None or key == target)):
                kept.append(res)
    if target is None and len(out.patients) == 1:
        out.patient = out.patients[0]
    return out


def patient_runs(resources: Iterable[Any]) -> Iterator[tuple[str, list[Any]]]:
    """(patient key, resources) for each patient of a patient-grouped stream, one patient in memory.

    Resources about no patient go with the patient being read; types read_facts ignores are dropped.
    Practitioners and PractitionerRoles (people named by role or NPI resolve through them) go with
    every patient from the one being read on; one listed after a patient never reaches that patient
    (memory stays flat), so people belong first in such a file. A patient whose resources
    reappear after another patient's raises SourceError (the stream is not grouped by patient: per-type
    bulk export files go through the worklist's bucketed pipeline instead).
    """
    # One pass with _unread and subject_key inlined: this loop runs once per resource of a population.
    done: set[str] = set()
    people: dict[str, Any] = {}
    current: str | None = None
    group: list[Any] = []
    fields = SUBJECT_FIELD
    memo = _KEYS
    for res in resources:
        key: str | None = None
        if isinstance(res, dict):
            rtype = res.get("resourceType")
            if rtype == "Patient":
                rid = res.get("id")
                key = f"Patient/{rid}" if isinstance(rid, str) and rid else None
            else:
                element = fields.get(rtype) if isinstance(rtype, str) else None
                if element is None:
                    if isinstance(rtype, str) and rtype:
                        if rtype in PERSON_TYPES:
                            people[f"{rtype}/{res.get('id')}"] = res
                            continue
                        if rtype not in READ_TYPES:
                            continue  # a type read_facts ignores
                else:
                    ref = res.get(element)
                    if isinstance(ref, list):  # lenient: a repeated element where one is expected
                        ref = ref[0] if ref else None
                    target = ref.get("reference") if isinstance(ref, dict) else ref
                    if isinstance(target, str) and target:
                        key = memo.get(target, "")
                        if key == "":
                            key = _memo_key(target)
        if key is not None and key != current:
            if current is not None:
                done.add(current)
                yield current, [*group, *people.values()]
            if key in done:
                raise SourceError(
                    f"the resources of {key} are not together: the file is not grouped by patient"
                )
            current, group = key, []
        group.append(res)
    if current is not None:
        yield current, [*group, *people.values()]
