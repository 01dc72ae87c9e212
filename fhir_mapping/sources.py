"""Where FHIR JSON comes from: a Bundle file, an NDJSON export, a single resource or a list.

`load_path` and `resources_from_json` flatten every Bundle type (collection, searchset, transaction,
batch, their responses, document, message, nested Bundles) into a flat list of resources. Entries
that are not JSON objects are passed through so the reader can report them; OperationOutcomes
(search outcomes, response outcomes) are kept so the reader can report what the server said.
Structural problems with the input itself raise `SourceError` with a one-line message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

FULL_URL = "_fullUrl"  # kept on a resource whose `urn:` fullUrl differs from its id (never a FHIR element)
NDJSON_SUFFIXES = (".ndjson", ".jsonl", ".ndjson.txt")
_BLANK = frozenset(b" \t\r\n\x0b\x0c")


class SourceError(ValueError):
    """The input cannot be read as FHIR JSON. The message is one line, fit for a CLI."""


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def load_path(path: str | Path) -> list[Any]:
    """Every resource in the Bundle / resource / NDJSON file at `path`."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise SourceError(f"no such file: {p}") from None
    except IsADirectoryError:
        raise SourceError(f"{p} is a directory, not a FHIR JSON or NDJSON file") from None
    except OSError as exc:
        raise SourceError(f"cannot read {p}: {_one_line(exc.strerror or str(exc))}") from None
    if not data.strip():
        raise SourceError(f"{p} is empty")
    if p.name.lower().endswith(NDJSON_SUFFIXES):
        return resources_from_ndjson(data, name=str(p))
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        # Several JSON objects one per line is NDJSON even without the suffix.
        first = data.lstrip().split(b"\n", 1)[0]
        if _is_json_object(first):
            return resources_from_ndjson(data, name=str(p))
        raise SourceError(f"{p} is not valid JSON: {_describe(exc)}") from None
    try:
        return resources_from_json(obj)
    except SourceError as exc:
        raise SourceError(f"{p}: {exc}") from None


def _is_json_object(line: bytes) -> bool:
    try:
        return isinstance(orjson.loads(line), dict)
    except orjson.JSONDecodeError:
        return False


def _describe(exc: orjson.JSONDecodeError) -> str:
    msg = _one_line(exc.msg)
    return f"{msg} (line {exc.lineno}, column {exc.colno})"


def resources_from_ndjson(data: bytes | str, *, name: str = "input") -> list[Any]:
    """Resources from newline-delimited JSON; each line a resource or a Bundle."""
    raw = data.encode() if isinstance(data, str) else data
    out: list[Any] = []
    loads = orjson.loads
    for lineno, line in enumerate(raw.split(b"\n"), start=1):
        if not line or (line[0] in _BLANK and not line.strip()):
            continue
        try:
            obj = loads(line)
        except orjson.JSONDecodeError as exc:
            raise SourceError(f"{name} line {lineno} is not valid JSON: {_one_line(exc.msg)}") from None
        if isinstance(obj, dict) and obj.get("resourceType") not in (None, "Bundle"):
            out.append(obj)  # the common case, kept cheap
            continue
        try:
            out.extend(resources_from_json(obj))
        except SourceError as exc:
            raise SourceError(f"{name} line {lineno}: {exc}") from None
    return out


def resources_from_json(obj: Any) -> list[Any]:
    """Flatten a resource, a Bundle of any type (nested too) or a list of them into resources."""
    if isinstance(obj, list):
        out: list[Any] = []
        for item in obj:
            if isinstance(item, dict) and "resourceType" in item:
                out.extend(_flatten(item))
            else:
                out.append(item)  # reported by the reader
        return out
    if not isinstance(obj, dict):
        raise SourceError(f"not FHIR: expected a JSON object or array, got {type(obj).__name__}")
    rtype = obj.get("resourceType")
    if not isinstance(rtype, str) or not rtype:
        raise SourceError("not FHIR: the JSON object has no resourceType")
    return _flatten(obj)


def _flatten(resource: dict[str, Any], depth: int = 0) -> list[Any]:
    if resource.get("resourceType") != "Bundle":
        return [resource]
    if depth > 8:
        return [resource]  # absurdly nested; the reader skips it
    out: list[Any] = []
    entries = resource.get("entry")
    if entries is None:
        return out
    if not isinstance(entries, list):
        return [resource]  # the reader reports a Bundle it cannot unpack
    for entry in entries:
        if not isinstance(entry, dict):
            out.append(entry)
            continue
        res = entry.get("resource")
        if res is None:
            # transaction-response / batch-response: the outcome says what happened
            response = entry.get("response")
            outcome = response.get("outcome") if isinstance(response, dict) else None
            if isinstance(outcome, dict):
                out.append(outcome)
            continue
        if not isinstance(res, dict):
            out.append(res)
            continue
        search = entry.get("search")
        if isinstance(search, dict) and search.get("mode") == "outcome":
            if res.get("resourceType") == "OperationOutcome":
                out.append(res)
            continue
        if res.get("resourceType") == "Bundle":
            out.extend(_flatten(res, depth + 1))
            continue
        full_url = entry.get("fullUrl")
        if "id" not in res:
            res = _with_id_from_full_url(res, full_url)
        elif isinstance(full_url, str) and full_url.startswith("urn:") and full_url[9:] != res["id"]:
            res = {**res, FULL_URL: full_url}  # a transaction may reference it by its urn only
        out.append(res)
    return out


def _with_id_from_full_url(res: dict[str, Any], full_url: Any) -> dict[str, Any]:
    """A resource without `id` takes it from its fullUrl (`urn:uuid:X` or `.../Type/X`)."""
    if not isinstance(full_url, str) or not full_url:
        return res
    if full_url.startswith(("urn:uuid:", "urn:oid:")):
        rid = full_url[9:]
    else:
        rid = full_url.rstrip("/").rsplit("/", 1)[-1]
    return {**res, "id": rid} if rid else res
