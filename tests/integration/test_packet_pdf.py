"""Audit packet end to end: from a REAL sekmet-fhir server, printed to PDF by headless Debian chromium."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from fhir_mapping.write_packet import recompute_hashes
from smart_app.cli.commands import main
from smart_app.fhir.client import FhirClient
from smart_app.web.printing import PdfError, chromium_path
from tests.support import app as support_app
from tests.support.ccm_scenarios import scenario, transaction
from tests.support.sekmet import SekmetServer

MONTH = "2026-11"
ARTIFACT = Path("/tmp/ccm-ready-packet-page1.png")  # kept for a human look after the run


def _chromium() -> str:
    try:
        return chromium_path()
    except PdfError as exc:
        pytest.skip(str(exc))


@pytest.mark.integration
@pytest.mark.browser
def test_packet_from_fhir_server_renders_to_pdf(
    sekmet: SekmetServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _chromium()
    if not (shutil.which("pdftoppm") and shutil.which("pdftotext")):
        pytest.skip("poppler-utils (pdftoppm, pdftotext) not installed")
    FhirClient(sekmet.base).transaction(transaction(scenario("blocked", MONTH, "pdf-1")))
    out = tmp_path / "packet"
    code = main(
        [
            "packet",
            "--fhir-base",
            sekmet.base,
            "--patient",
            "Patient/pdf-1",
            "--month",
            MONTH,
            "--timezone",
            "America/Chicago",
            "--out",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert "Patient/pdf-1 2026-11: blocked" in capsys.readouterr().out

    bundle = json.loads((out / "packet.json").read_text("utf-8"))
    assert bundle["entry"][1]["fullUrl"].startswith(sekmet.base.rstrip("/") + "/")
    assert all(a == b for a, b in recompute_hashes(bundle).values())

    pdf = out / "packet.pdf"
    assert pdf.read_bytes()[:5] == b"%PDF-"
    text = subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    for wanted in ("CCM audit packet: 2026-11", "blocked", "consent.missing", "Time log 2026-11", "SHA-256"):
        assert wanted in text
    # FHIR text with markup prints as the literal characters: escaped once, never run, never double-escaped.
    assert "<script>x</script>" in text and "&lt;" not in text

    subprocess.run(
        ["pdftoppm", "-png", "-r", "60", "-f", "1", "-l", "1", str(pdf), str(tmp_path / "page")],
        check=True,
        timeout=60,
    )
    (png,) = tmp_path.glob("page*.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    shutil.copyfile(png, ARTIFACT)


@pytest.mark.integration
@pytest.mark.browser
def test_packet_route_pdf_for_an_open_session(sekmet: SekmetServer, tmp_path: Path) -> None:

    _chromium()
    FhirClient(sekmet.base).transaction(transaction(scenario("ready", MONTH, "pdf-2")))
    app = support_app.make_app(tmp_path, OPEN_SERVERS=[sekmet.base], TIMEZONE="America/Chicago")
    client = app.test_client()
    assert client.get("/open", query_string={"iss": sekmet.base, "patient": "pdf-2"}).status_code == 302
    resp = client.get("/packet?month=2026-11&format=pdf")
    assert resp.status_code == 200 and resp.mimetype == "application/pdf"
    assert resp.get_data()[:5] == b"%PDF-"
