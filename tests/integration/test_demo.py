"""The demo population on a real sekmet-fhir server: idempotent seeding, the verdict for every patient,
the demo home page and panels through open-server mode, and the `ccm-ready demo` command itself."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import requests
from markupsafe import escape

from rules.month import Month, zone
from rules.packs import DEFAULT_PACK
from smart_app.demo.local_fhir import free_port
from smart_app.demo.seed import DEMO_SYSTEM, DemoCase, Manifest, demo_cases, seed, write_manifest
from smart_app.fhir.client import FhirClient
from tests.support.sekmet import SekmetServer

pytestmark = pytest.mark.integration

TZ = "America/Chicago"
ROOT = Path(__file__).resolve().parents[2]
# The panel's headline for each status (the words a user sees first).
HEADLINES = {
    "ready": re.compile(r"ready\b", re.I),
    "not-yet": re.compile(r"not\s+yet", re.I),
    "blocked": re.compile(r"blocked", re.I),
    "not-eligible": re.compile(r"not\s+eligible", re.I),
}
# Which search parameter names the patient, per resource type found in the demo bundles.
PATIENT_PARAM = {"Consent": "patient", "Task": "patient"}


@pytest.fixture(scope="module")
def month() -> Month:
    return Month.of(datetime.now(zone(TZ)))


@pytest.fixture(scope="module")
def cases() -> list[DemoCase]:
    return demo_cases(tz=TZ)


@pytest.fixture(scope="module")
def seeded(sekmet: SekmetServer, cases: list[DemoCase]) -> tuple[Manifest, Manifest]:
    """The demo loaded twice into the shared server."""
    return seed(sekmet.base, cases, tz=TZ), seed(sekmet.base, cases, tz=TZ)


def _count(base: str, rtype: str, params: dict[str, str]) -> int:
    r = requests.get(f"{base}/{rtype}", params={**params, "_summary": "count"},
                     headers={"Prefer": "handling=strict", "Accept": "application/fhir+json"}, timeout=10)
    assert r.status_code == 200, (rtype, params, r.text[:300])
    return int(r.json()["total"])


def test_seeding_twice_creates_nothing_new(sekmet: SekmetServer, cases: list[DemoCase],
                                           seeded: tuple[Manifest, Manifest]) -> None:
    first, second = seeded
    assert [p.id for p in first.patients] == [p.id for p in second.patients]
    assert len({p.id for p in first.patients}) == len(cases)
    for case, patient in zip(cases, first.patients, strict=True):
        assert patient.key == case.key
        assert _count(sekmet.base, "Patient", {"identifier": f"{DEMO_SYSTEM}|{case.key}"}) == 1
        kinds = Counter(e["resource"]["resourceType"] for e in case.bundle["entry"])
        for rtype, expected in kinds.items():
            if rtype in ("Patient", "Practitioner", "Organization"):
                continue
            param = PATIENT_PARAM.get(rtype, "patient")
            assert _count(sekmet.base, rtype, {param: f"Patient/{patient.id}"}) == expected, (case.key, rtype)
    for key in ("dr-okafor", "rn-rivera", "dr-chen", "dr-nair"):
        assert _count(sekmet.base, "Practitioner", {"identifier": f"{DEMO_SYSTEM}|practitioner.{key}"}) == 1


def test_every_patient_gets_its_expected_verdict(sekmet: SekmetServer, seeded: tuple[Manifest, Manifest],
                                                 month: Month) -> None:
    from smart_app.readiness.use_case import patient_month

    client = FhirClient(sekmet.base)
    wrong = []
    for p in seeded[0].patients:
        verdict = patient_month(client, p.id, month, tz=TZ, policy=DEFAULT_PACK)
        if verdict.status != p.expected:
            rules = [f"{f.severity}:{f.rule}" for f in verdict.findings]
            wrong.append(f"{p.key}: expected {p.expected}, got {verdict.status} {rules}")
    assert not wrong, "\n".join(wrong)


def test_crafted_ready_cases_get_the_expected_codes(sekmet: SekmetServer, seeded: tuple[Manifest, Manifest],
                                                    month: Month) -> None:
    from smart_app.readiness.use_case import patient_month

    client = FhirClient(sekmet.base)
    ids = {p.key: p.id for p in seeded[0].patients}
    expected = {
        "ready-staff": {("99490", 1)},
        "ready-cap": {("99490", 1), ("99439", 2)},
        "ready-complex": {("99487", 1), ("99489", 1)},
        "ready-practitioner": {("99491", 1), ("99437", 2)},
        "rpm-and-ccm": {("99490", 1)},
        "tcm-and-ccm": {("99490", 1)},
    }
    for key, codes in expected.items():
        verdict = patient_month(client, ids[key], month, tz=TZ, policy=DEFAULT_PACK)
        assert {(c.code, c.units) for c in verdict.codes} == codes, key
    practitioner = patient_month(client, ids["ready-practitioner"], month, tz=TZ, policy=DEFAULT_PACK)
    assert practitioner.minutes.billing_practitioner == 92
    not_yet = patient_month(client, ids["not-yet"], month, tz=TZ, policy=DEFAULT_PACK)
    assert not_yet.next_threshold is not None and not_yet.next_threshold.minutes_needed == 6
    mid = patient_month(client, ids["consent-mid-month"], month, tz=TZ, policy=DEFAULT_PACK)
    assert mid.minutes.clinical_staff == 15
    vague = patient_month(client, ids["vague-notes"], month, tz=TZ, policy=DEFAULT_PACK)
    assert any(f.category == "documentation" for f in vague.findings)
    # Billed as the practitioner who does the work, the other-practitioner consent is the blocker.
    okafor = client.search("Practitioner", {"identifier": f"{DEMO_SYSTEM}|practitioner.dr-okafor"})[0]["id"]
    other = patient_month(client, ids["consent-other"], month, tz=TZ, policy=DEFAULT_PACK,
                          billing_practitioner=f"Practitioner/{okafor}")
    assert other.status == "blocked"
    assert [f.category for f in other.blockers] == ["consent"]
    shared = patient_month(client, ids["ready-staff"], month, tz=TZ, policy=DEFAULT_PACK)
    assert not [f for f in shared.findings if f.category == "care-plan"]


@pytest.fixture(scope="module")
def demo_app(tmp_path_factory: pytest.TempPathFactory, sekmet: SekmetServer,
             seeded: tuple[Manifest, Manifest]) -> Any:
    from smart_app.app import create_app

    path = tmp_path_factory.mktemp("demo") / "manifest.json"
    write_manifest(path, seeded[0])
    return create_app({"TESTING": True, "SECRET_KEY": "test", "DEMO_MANIFEST": str(path),
                       "OPEN_SERVERS": [sekmet.base], "TIMEZONE": TZ})


def test_home_lists_every_seeded_patient_with_its_link(
    demo_app: Any, seeded: tuple[Manifest, Manifest],
) -> None:
    manifest = seeded[0]
    page = demo_app.test_client().get("/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    for p in manifest.patients:
        href = "/open?" + urlencode({"iss": manifest.fhir_base, "patient": p.id})
        assert href.replace("&", "&amp;") in html, p.key
        assert str(escape(p.label)) in html, p.key
    # the program lead's way in: the worklist for the demo's server and month
    program = "/program?" + urlencode({"iss": manifest.fhir_base, "month": str(manifest.month)})
    assert 'id="program-entry"' in html and program.replace("&", "&amp;") in html


def test_home_without_a_manifest_is_a_landing_page() -> None:
    from smart_app.app import create_app

    env = os.environ.pop("CCM_READY_DEMO_MANIFEST", None)
    try:
        html = create_app({"TESTING": True}).test_client().get("/").get_data(as_text=True)
    finally:
        if env is not None:
            os.environ["CCM_READY_DEMO_MANIFEST"] = env
    assert 'href="/open"' in html and 'href="/standalone"' in html


def _headline(html: str) -> tuple[str, str]:
    """The panel's status section class (status-<state>) and its headline title."""
    section = re.search(r'<section[^>]* class="status status-([a-z-]+)"', html)
    title = re.search(r'<span class="status-title">([^<]*)</span>', html)
    assert section and title, html[:2000]
    return section.group(1), title.group(1).strip()


def test_panel_shows_each_state_through_open_mode(demo_app: Any, seeded: tuple[Manifest, Manifest]) -> None:
    manifest = seeded[0]
    one_per_state = {}
    for p in manifest.patients:
        one_per_state.setdefault(p.expected, p)
    assert set(one_per_state) == set(HEADLINES)
    for state, p in one_per_state.items():
        client = demo_app.test_client()
        opened = client.get("/open?" + urlencode({"iss": manifest.fhir_base, "patient": p.id}))
        assert opened.status_code in (302, 303), (p.key, opened.status_code)
        panel = client.get(opened.headers["Location"])
        assert panel.status_code == 200, (p.key, panel.get_data(as_text=True)[:500])
        shown, title = _headline(panel.get_data(as_text=True))
        assert shown == state, (p.key, shown)
        assert HEADLINES[state].match(title), (p.key, title)


# ------------------------------------------------------------------ the command itself


@pytest.fixture
def demo_process(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int, list[str]]]:
    """`ccm-ready demo` on free ports; its output lines are collected by a reader thread."""
    port, fhir_port = free_port(), free_port()
    env = {**os.environ, "CCM_READY_DATA_DIR": str(tmp_path), "CCM_READY_SECRET_KEY": "demo-test"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "smart_app.cli", "demo", "--port", str(port), "--fhir-port", str(fhir_port),
         "--timezone", TZ],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        yield proc, port, lines
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        reader.join(timeout=5)


def _wait_for(proc: subprocess.Popen[str], pattern: re.Pattern[str], lines: list[str],
              timeout: float) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = pattern.search("\n".join(lines))
        if match:
            return match
        if proc.poll() is not None:
            time.sleep(0.2)  # let the reader drain the pipe
            match = pattern.search("\n".join(lines))
            if match:
                return match
            break
        time.sleep(0.1)
    output = "\n".join(lines)
    raise AssertionError(f"no {pattern.pattern!r} in the demo's output:\n{output}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); check its state.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def test_demo_command_serves_and_stops_its_fhir_server(
    demo_process: tuple[subprocess.Popen[str], int, list[str]],
) -> None:
    proc, port, lines = demo_process
    match = _wait_for(proc, re.compile(r"FHIR: (http://127\.0\.0\.1:\d+/fhir)"), lines, timeout=120)
    base = match.group(1)
    app_url = f"http://127.0.0.1:{port}/"
    _wait_for(proc, re.compile(re.escape(app_url)), lines, timeout=5)
    fhir_pids = [int(x) for x in subprocess.run(
        ["pgrep", "-P", str(proc.pid)], capture_output=True, text=True, check=False).stdout.split()]
    assert fhir_pids, "the demo started no child process"

    deadline = time.monotonic() + 30
    while True:
        try:
            home = requests.get(app_url, timeout=5)
            break
        except requests.ConnectionError:
            assert time.monotonic() < deadline, "the app never answered"
            time.sleep(0.2)
    assert home.status_code == 200
    links = re.findall(r'href="(/open\?[^"]+)"', home.text)
    assert len(links) >= 20
    with requests.Session() as browser:
        panel = browser.get(app_url.rstrip("/") + links[0].replace("&amp;", "&"), timeout=30)
        assert panel.status_code == 200 and "/panel" in panel.url
    assert requests.get(f"{base}/metadata", timeout=5).status_code == 200

    proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
    proc.wait(timeout=30)
    assert proc.returncode == 0
    for pid in fhir_pids:
        deadline = time.monotonic() + 10
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _pid_alive(pid), f"FHIR server process {pid} still running"
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{base}/metadata", timeout=2)


def test_demo_command_explains_a_missing_fhir_server(tmp_path: Path) -> None:
    env = {**os.environ, "CCM_READY_DATA_DIR": str(tmp_path), "CCM_READY_SEKMET": str(tmp_path / "nope")}
    done = subprocess.run(
        [sys.executable, "-m", "smart_app.cli", "demo", "--port", str(free_port()),
         "--fhir-port", str(free_port())],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2
    assert "scripts/demo.sh" in done.stderr
