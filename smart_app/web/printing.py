"""Printing HTML to PDF with headless Debian chromium, and the CSP hash of an inline stylesheet."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

# Flags for every headless chromium we start (PDF printing here, Playwright in the browser tests).
CHROMIUM_COMMON_FLAGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
CHROMIUM_FLAGS = ("--headless", *CHROMIUM_COMMON_FLAGS, "--no-pdf-header-footer")
class PdfError(RuntimeError):
    """Chromium is missing or could not render the PDF (one-line message)."""


def style_csp_source(css: str) -> str:
    """The CSP source that allows exactly one inline <style> with `css` ."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(css.encode("utf-8")).digest()).decode() + "'"


def chromium_path() -> str:
    """CCM_READY_CHROMIUM, else /usr/bin/chromium, else `chromium` on PATH."""
    for candidate in (os.environ.get("CCM_READY_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise PdfError("chromium not found: install Debian chromium or set CCM_READY_CHROMIUM")


def render_pdf(html_path: Path, pdf_path: Path, *, timeout: float = 90.0) -> None:
    """Print `html_path` to `pdf_path` with headless chromium (a throwaway profile, no network)."""
    with tempfile.TemporaryDirectory(prefix="ccm-ready-chromium-") as profile:
        cmd = [
            chromium_path(),
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--print-to-pdf={pdf_path.resolve()}",
            html_path.resolve().as_uri(),
        ]
        try:
            done = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise PdfError(f"chromium did not finish printing the PDF within {timeout:g} s") from None
    if done.returncode != 0 or not pdf_path.is_file() or pdf_path.stat().st_size == 0:
        tail = " ".join(done.stderr.decode("utf-8", "replace").split())[-200:]
        raise PdfError(f"chromium could not print the PDF (exit {done.returncode}): {tail}")


def print_pdf(html: str, *, timeout: float = 90.0) -> bytes:
    """The PDF of an HTML document (written to a throwaway directory first); PdfError when it fails."""
    with tempfile.TemporaryDirectory(prefix="ccm-ready-pdf-") as tmp:
        page, pdf = Path(tmp) / "page.html", Path(tmp) / "page.pdf"
        page.write_text(html, "utf-8")
        render_pdf(page, pdf, timeout=timeout)
        return pdf.read_bytes()
