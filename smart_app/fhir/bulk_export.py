"""FHIR Bulk Data `$export` client (kick-off, polling with Retry-After, streaming NDJSON download, resume)
and the paged-search fallback that writes the same NDJSON files.

An export runs in a work folder holding `export-state.json` (the request, the status URL, the manifest
and which files are complete). Running again with the same folder and request picks up where it
stopped: no new kick-off while the status URL still answers, no polling once the manifest is known,
and no second download of a complete file (a partial `.part` file is resumed with an HTTP Range
request when the server honours it, else downloaded again).

Logging names the step and the HTTP status only: never URLs with ids, tokens or file contents.

Why over 400 lines: the $export protocol (kick-off, polling, download, resume, SMART Backend Services
tokens) is one state machine; splitting it would scatter its states.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import orjson
import requests

from smart_app.fhir.client import (
    FhirClient,
    FhirError,
    bearer,
    checked_base,
    outcome_text,
    retry_after_seconds,
)

log = logging.getLogger(__name__)

Level = Literal["system", "patient", "group"]
STATE_FILE = "export-state.json"
# What the CCM rules read (see fhir_mapping.reader): everything else is left on the server.
CCM_TYPES: tuple[str, ...] = (
    "Patient",
    "Condition",
    "CarePlan",
    "Consent",
    "Encounter",
    "Task",
    "Communication",
    "ChargeItem",
    "DocumentReference",  # the app's clinical notes (write profile "note"): time and consent read back
)
NOT_SUPPORTED = frozenset({404, 405, 501})
CHUNK = 1 << 20  # download reads (large reads: fewer Python-level iterations per file)
RETRY_AFTER_CAP = 300.0  # a server's Retry-After is honoured up to five minutes a poll
SEARCH_PAGE = 1000
GROUP_CHUNK = 50  # patient ids per search in the Group fallback


class BulkExportError(Exception):
    """The export failed (the message is readable and carries no patient data)."""


class ExportNotSupported(BulkExportError):
    """The server has no `$export` at this level: use the paged-search fallback."""


@dataclass(frozen=True)
class ExportRequest:
    """What to export: system, all patients, or one Group's members; `_type` and `_since` filters."""

    level: Level = "patient"
    group: str | None = None  # Group id (bare) when level == "group"
    types: tuple[str, ...] = CCM_TYPES
    since: str | None = None

    def __post_init__(self) -> None:
        if self.level not in ("system", "patient", "group"):
            raise ValueError(f"export level must be system, patient or group, got {self.level!r}")
        if self.level == "group" and not self.group:
            raise ValueError("a Group-level export needs a Group id")
        if self.group and ("/" in self.group.strip().removeprefix("Group/") or not self.group.strip()):
            raise ValueError("the Group must be given as Group/ID or ID")

    @property
    def group_id(self) -> str | None:
        return self.group.strip().removeprefix("Group/") if self.group else None

    def path(self) -> str:
        """The kick-off path relative to the FHIR base."""
        if self.level == "system":
            return "$export"
        if self.level == "patient":
            return "Patient/$export"
        return f"Group/{self.group_id}/$export"

    def params(self) -> list[tuple[str, str]]:
        out = [("_outputFormat", "application/fhir+ndjson")]
        if self.types:
            out.append(("_type", ",".join(self.types)))
        if self.since:
            out.append(("_since", self.since))
        return out


@dataclass
class ExportState:
    """What `export-state.json` remembers between runs."""

    request: dict[str, Any]
    status_url: str | None = None
    manifest: dict[str, Any] | None = None
    complete: dict[str, str] = field(default_factory=dict)  # file URL -> local file name

    @classmethod
    def load(cls, path: Path) -> ExportState | None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(
                data["request"],
                data.get("status_url"),
                data.get("manifest"),
                dict(data.get("complete") or {}),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self)), encoding="utf-8")
        os.replace(tmp, path)


@dataclass(frozen=True)
class ExportResult:
    """The downloaded NDJSON files (resource type, local path) and how the data was obtained."""

    files: tuple[tuple[str, Path], ...]
    method: Literal["bulk", "search"]
    resumed: bool = False
    counts: tuple[tuple[str, int], ...] = ()

    def count(self, resource_type: str) -> int | None:
        """The server's count for a type when the manifest gives one."""
        for rtype, n in self.counts:
            if rtype == resource_type:
                return n
        return None


ProgressFn = Callable[[str], None]


class BulkExporter:
    """One FHIR server's `$export`; `token_provider` (SMART Backend Services) adds a Bearer token."""

    def __init__(
        self,
        base: str,
        *,
        token_provider: Callable[[], str | None] | None = None,
        session: requests.Session | None = None,
        timeout: float = 30.0,
        max_wait: float = 3600.0,
        default_interval: float = 0.5,
        max_interval: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base = checked_base(base)
        self.token_provider = token_provider
        self.session = session or requests.Session()
        self.timeout = timeout
        self.max_wait = max_wait
        self.default_interval = default_interval
        self.max_interval = max_interval
        self._sleep = sleep
        self._clock = clock
        self.requests_made = 0

    # ------------------------------------------------------------------ protocol steps

    def kickoff(self, req: ExportRequest) -> str:
        """Start the export; return the status URL (Content-Location)."""
        response = self._send(
            "GET", f"{self.base}/{req.path()}", params=req.params(), headers={"Prefer": "respond-async"}
        )
        if response.status_code in NOT_SUPPORTED or (
            response.status_code == 400 and _says_not_supported(response)
        ):
            raise ExportNotSupported(
                f"the server does not support {req.level}-level $export (HTTP {response.status_code})"
            )
        if response.status_code != 202:
            raise BulkExportError(f"$export kick-off failed: {_problem(response)}")
        location = response.headers.get("Content-Location")
        if not location:
            raise BulkExportError("$export kick-off answered 202 without a Content-Location")
        return self._same_origin(location)

    def poll(self, status_url: str, progress: ProgressFn | None = None) -> dict[str, Any]:
        """Poll the status URL until the manifest is ready (honouring Retry-After); return it."""
        started = self._clock()
        interval = self.default_interval
        while True:
            response = self._send("GET", status_url)
            if response.status_code == 200:
                manifest = _json(response)
                if not isinstance(manifest, dict) or not isinstance(manifest.get("output"), list):
                    raise BulkExportError("the export status answered 200 without a manifest")
                return manifest
            busy = response.status_code == 503 and response.headers.get("Retry-After")
            if response.status_code in (202, 429) or busy:
                if progress:
                    progress(f"export in progress: {response.headers.get('X-Progress') or 'waiting'}")
                # The server's Retry-After is honoured as given (no backoff added on top); without one,
                # poll promptly at first (`default_interval`) and back off gently up to `max_interval`.
                wait = retry_after_seconds(response.headers.get("Retry-After"))
                if wait is None:
                    wait, interval = interval, min(interval * 1.5, self.max_interval)
                wait = min(max(wait, 0.0), max(RETRY_AFTER_CAP, self.max_interval))
                if self._clock() - started + wait > self.max_wait:
                    raise BulkExportError(f"the export did not finish within {self.max_wait:g} s")
                self._sleep(wait)
                continue
            if response.status_code in (404, 410):
                raise ExportGone(f"the export is gone (HTTP {response.status_code})")
            raise BulkExportError(f"the export failed: {_problem(response)}")

    def download(
        self,
        manifest: dict[str, Any],
        folder: Path,
        state: ExportState | None = None,
        state_path: Path | None = None,
        progress: ProgressFn | None = None,
    ) -> list[tuple[str, Path]]:
        """Stream every output file to `folder` (skipping complete ones); return (type, path) pairs."""
        folder.mkdir(parents=True, exist_ok=True)
        with_token = bool(manifest.get("requiresAccessToken", True))
        out: list[tuple[str, Path]] = []
        outputs = [o for o in manifest.get("output", []) if isinstance(o, dict) and o.get("url")]
        for index, item in enumerate(outputs):
            rtype = str(item.get("type") or "Resource")
            url = self._same_origin(str(item["url"]))
            name = f"{index:03d}-{_safe(rtype)}.ndjson"
            target = folder / name
            if state is not None and state.complete.get(url) == name and target.is_file():
                out.append((rtype, target))
                continue
            if progress:
                progress(f"downloading {rtype} ({index + 1}/{len(outputs)})")
            self._fetch_file(url, target, with_token)
            if state is not None:
                state.complete[url] = name
                if state_path is not None:
                    state.save(state_path)
            out.append((rtype, target))
        return out

    def cancel(self, status_url: str) -> None:
        """DELETE the export (best effort)."""
        with contextlib.suppress(BulkExportError):
            self._send("DELETE", status_url)

    # ------------------------------------------------------------------ whole run

    def run(self, req: ExportRequest, folder: Path, progress: ProgressFn | None = None) -> ExportResult:
        """Kick off (or resume), poll, download; the state file in `folder` makes a rerun resume."""
        folder.mkdir(parents=True, exist_ok=True)
        state_path = folder / STATE_FILE
        wanted = asdict(req)
        wanted["types"] = list(req.types)
        wanted["base"] = self.base
        state = ExportState.load(state_path)
        resumed = state is not None and state.request == wanted
        if not resumed:
            state = ExportState(wanted)
        assert state is not None
        for _attempt in range(2):
            if state.manifest is None:
                if state.status_url is None:
                    state.status_url = self.kickoff(req)
                    state.save(state_path)
                try:
                    state.manifest = self.poll(state.status_url, progress)
                except ExportGone:
                    if not resumed:
                        raise
                    log.info("the export to resume is gone; starting a new one")
                    state = ExportState(wanted)
                    resumed = False
                    continue
                state.save(state_path)
            try:
                files = self.download(state.manifest, folder, state, state_path, progress)
            except ExportGone:
                if not resumed:
                    raise
                state = ExportState(wanted)
                resumed = False
                continue
            counts = tuple(
                (str(o.get("type")), int(o["count"]))
                for o in state.manifest.get("output", [])
                if isinstance(o, dict) and isinstance(o.get("count"), int)
            )
            return ExportResult(tuple(files), "bulk", resumed, counts)
        raise BulkExportError("the export could not be completed")

    # ------------------------------------------------------------------ internals

    def _headers(self, extra: dict[str, str] | None = None, with_token: bool = True) -> dict[str, str]:
        token = bearer(self.token_provider) if with_token else {}
        return {"Accept": "application/fhir+json", **token, **(extra or {})}

    def _send(
        self,
        method: str,
        url: str,
        *,
        params: Sequence[tuple[str, str]] | None = None,
        headers: dict[str, str] | None = None,
        with_token: bool = True,
        stream: bool = False,
    ) -> requests.Response:
        self.requests_made += 1
        try:
            response = self.session.request(
                method,
                url,
                params=params or None,
                headers=self._headers(headers, with_token),
                timeout=self.timeout,
                stream=stream,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise BulkExportError(f"bulk export request failed: {type(exc).__name__}") from None
        log.info("bulk %s -> %d", method, response.status_code)
        return response

    def _fetch_file(self, url: str, target: Path, with_token: bool) -> None:
        part = target.with_name(target.name + ".part")
        have = part.stat().st_size if part.is_file() else 0
        headers = {"Accept": "application/fhir+ndjson"}
        if have:
            headers["Range"] = f"bytes={have}-"
        response = self._send("GET", url, headers=headers, with_token=with_token, stream=True)
        try:
            if response.status_code in (404, 410):
                raise ExportGone(f"an export file is gone (HTTP {response.status_code})")
            if response.status_code not in (200, 206):
                raise BulkExportError(f"downloading an export file failed: {_problem(response)}")
            mode = "ab" if response.status_code == 206 and have else "wb"
            with part.open(mode) as fh:
                for chunk in response.iter_content(CHUNK):
                    fh.write(chunk)
        except requests.RequestException as exc:
            raise BulkExportError(f"downloading an export file failed: {type(exc).__name__}") from None
        finally:
            response.close()
        os.replace(part, target)

    def _same_origin(self, url: str) -> str:
        """Only follow status and file URLs on the FHIR server's own origin (tokens stay there)."""
        a, b = urlsplit(url), urlsplit(self.base)
        if (a.scheme, a.hostname, a.port) != (b.scheme, b.hostname, b.port):
            raise BulkExportError("the server pointed the export at another origin; refusing to follow")
        return url


class ExportGone(BulkExportError):
    """The status URL or a file answered 404/410 (expired or cancelled)."""


# ---------------------------------------------------------------------- fallback: paged searches


def search_to_ndjson(
    client: FhirClient,
    req: ExportRequest,
    folder: Path,
    progress: ProgressFn | None = None,
) -> ExportResult:
    """The same NDJSON files from paged searches (for servers without `$export`), page by page."""
    folder.mkdir(parents=True, exist_ok=True)
    members: list[str] | None = None
    if req.level == "group":
        group = client.read("Group", req.group_id or "")
        members = []
        for member in group.get("member") or ():
            ref = ((member or {}).get("entity") or {}).get("reference", "")
            if isinstance(ref, str) and "Patient/" in ref:
                members.append(ref.rsplit("Patient/", 1)[1].split("/", 1)[0])
    files: list[tuple[str, Path]] = []
    counts: list[tuple[str, int]] = []
    for index, rtype in enumerate(req.types or CCM_TYPES):
        if progress:
            progress(f"searching {rtype} ({index + 1}/{len(req.types or CCM_TYPES)})")
        target = folder / f"{index:03d}-{_safe(rtype)}.ndjson"
        n = 0
        with target.open("wb") as fh:
            for params in _search_params(rtype, members, req.since):
                for bundle in client.search_bundles(rtype, params, max_pages=1_000_000):
                    for entry in bundle.get("entry") or ():
                        res = (entry or {}).get("resource")
                        mode = ((entry or {}).get("search") or {}).get("mode", "match")
                        if isinstance(res, dict) and res.get("resourceType") == rtype and mode == "match":
                            fh.write(orjson.dumps(res) + b"\n")
                            n += 1
        files.append((rtype, target))
        counts.append((rtype, n))
    return ExportResult(tuple(files), "search", False, tuple(counts))


_PATIENT_SEARCH = {"Patient": "_id", "Consent": "patient", "Task": "patient"}


def _search_params(
    rtype: str, members: list[str] | None, since: str | None
) -> Iterable[list[tuple[str, str]]]:
    base = [("_count", str(SEARCH_PAGE))]
    if since:
        base.append(("_lastUpdated", f"ge{since}"))
    if members is None:
        yield base
        return
    param = _PATIENT_SEARCH.get(rtype, "patient")
    for i in range(0, len(members), GROUP_CHUNK):
        chunk = members[i : i + GROUP_CHUNK]
        yield [*base, (param, ",".join(chunk))]


def export_population(
    base: str,
    req: ExportRequest,
    folder: Path,
    *,
    token_provider: Callable[[], str | None] | None = None,
    client: FhirClient | None = None,
    exporter: BulkExporter | None = None,
    progress: ProgressFn | None = None,
    prefer_bulk: bool = True,
) -> ExportResult:
    """`$export` when the server supports it, else paged searches; NDJSON files in `folder` either way."""
    if prefer_bulk:
        exporter = exporter or BulkExporter(base, token_provider=token_provider)
        try:
            return exporter.run(req, folder, progress)
        except ExportNotSupported as exc:
            log.info("%s; using paged searches", exc)
    client = client or FhirClient(base, token_provider=token_provider, timeout=60.0)
    try:
        return search_to_ndjson(client, req, folder, progress)
    except FhirError as exc:
        raise BulkExportError(f"paged searches failed: {exc.message}") from None


# ---------------------------------------------------------------------- helpers


def _safe(rtype: str) -> str:
    return "".join(ch for ch in rtype if ch.isalnum())[:64] or "Resource"


def _json(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _says_not_supported(response: requests.Response) -> bool:
    data = _json(response)
    if isinstance(data, dict) and data.get("resourceType") == "OperationOutcome":
        codes = {i.get("code") for i in data.get("issue") or () if isinstance(i, dict)}
        text = outcome_text(data).lower()
        return "not-supported" in codes and "export" in text and "parameter" not in text
    return False


def _problem(response: requests.Response) -> str:
    data = _json(response)
    detail = outcome_text(data) if isinstance(data, dict) else ""
    return f"HTTP {response.status_code}" + (f": {detail}" if detail else "")
