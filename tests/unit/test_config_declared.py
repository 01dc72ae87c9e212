"""Every configuration key the app reads is declared once, with its default, in smart_app/config.py."""

from __future__ import annotations

import re
from pathlib import Path

from smart_app.config import ENVIRONMENT_ONLY, SETTINGS, defaults

ROOT = Path(__file__).resolve().parents[2]
# current_app.config.get("KEY"), config["KEY"], cfg.get("KEY"), app.config.setdefault("KEY", ...)
READ = re.compile(r"""\b(?:config|cfg)(?:\.get|\.setdefault)?\(?\[?\s*["']([A-Z][A-Z0-9_]+)["']""")
# Flask's own keys, set by Flask itself
FLASK = {"TESTING", "DEBUG", "SERVER_NAME", "PREFERRED_URL_SCHEME", "MAX_CONTENT_LENGTH", "APPLICATION_ROOT"}


def _keys_read() -> dict[str, str]:
    found: dict[str, str] = {}
    for path in (ROOT / "smart_app").rglob("*.py"):
        for key in READ.findall(path.read_text("utf-8")):
            found.setdefault(key, str(path.relative_to(ROOT)))
    return found


def test_every_key_read_is_declared() -> None:
    declared = {s.key for s in SETTINGS}
    missing = {k: where for k, where in _keys_read().items() if k not in declared | FLASK}
    assert not missing, f"declare these in smart_app/config.py SETTINGS: {missing}"


def test_each_key_is_declared_once_and_documented_env_is_prefixed() -> None:
    keys = [s.key for s in SETTINGS]
    assert len(keys) == len(set(keys))
    assert all(s.env is None or s.env.startswith("CCM_READY_") for s in SETTINGS)
    assert all(name.startswith("CCM_READY_") for name in ENVIRONMENT_ONLY)


def test_no_module_reads_the_environment_for_app_settings() -> None:
    allowed = {
        "smart_app/config.py",
        "smart_app/web/printing.py",  # CCM_READY_CHROMIUM: the CLI prints PDFs without an app
        "smart_app/demo/local_fhir.py",  # CCM_READY_SEKMET: the demo starts a server before any app
        "smart_app/web/serve.py",  # the gunicorn master hands settings to its workers through the env
    }
    readers = {
        str(p.relative_to(ROOT))
        for p in (ROOT / "smart_app").rglob("*.py")
        if re.search(r"os\.environ(\.get)?\(?\[?\s*[\"']CCM_READY_", p.read_text("utf-8"))
    }
    assert readers <= allowed, readers - allowed


def test_defaults_take_the_environment() -> None:
    got = defaults({"CCM_READY_TIMEZONE": "America/Chicago", "CCM_READY_OPEN_SERVERS": "a b"})
    assert got["TIMEZONE"] == "America/Chicago" and got["OPEN_SERVERS"] == ["a", "b"]
    assert defaults({})["TIMEZONE"] == "UTC"
