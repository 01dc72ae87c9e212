"""`ccm-ready serve`: run the web app under gunicorn (production) or the development server (`--dev`).

gunicorn runs WORKERS processes with THREADS threads each (config / CCM_READY_* env, or the flags). The
master names a lock file for this instance, so exactly one worker process runs the outbox worker (see
smart_app.web.lifecycle); on SIGTERM each worker stops taking requests, finishes those in flight (up to
GRACEFUL_TIMEOUT seconds), lets the send in flight finish and hands its outbox leases back.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger

DESCRIPTION = "Run the CCM Ready web app (gunicorn; --dev for the development server)."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--dev", action="store_true", help="the Flask development server (one process)")
    p.add_argument("--workers", type=int, default=None, help="gunicorn worker processes (WORKERS)")
    p.add_argument("--threads", type=int, default=None, help="threads per worker process (THREADS)")


def run(args: argparse.Namespace) -> int:
    if args.dev:
        # lazy: CLI start-up
        from smart_app.app import create_app
        from smart_app.web.request_log import configure_logging

        app = create_app()
        configure_logging(app.config.get("LOG_FORMAT") or "text", str(app.config.get("LOG_LEVEL") or "INFO"))
        app.run(host=args.host, port=args.port, debug=False, threaded=True)
        return 0
    # lazy: CLI start-up
    from smart_app import config

    settings = config.defaults()
    workers = args.workers if args.workers is not None else int(settings["WORKERS"])
    threads = args.threads if args.threads is not None else int(settings["THREADS"])
    if workers < 1 or threads < 1:
        print("workers and threads must be at least 1", file=sys.stderr)
        return 2
    if workers > 1 and not os.environ.get("CCM_READY_SECRET_KEY"):
        # Each process would draw its own random key; the processes of an instance (and all instances)
        # must share one.
        os.environ["CCM_READY_SECRET_KEY"] = str(settings["SECRET_KEY"])
    lock = Path(tempfile.gettempdir()) / f"ccm-ready-outbox-{os.getpid()}.lock"
    os.environ["CCM_READY_OUTBOX_WORKER_LOCK"] = str(lock)
    os.environ.setdefault("CCM_READY_LOG_FORMAT", str(settings["LOG_FORMAT"] or "json"))
    options = gunicorn_options(args.host, args.port, workers, threads, settings, lock)
    _preload_modules()
    try:
        ProductionServer(options).run()
    finally:
        lock.unlink(missing_ok=True)
    return 0


def gunicorn_options(
    host: str, port: int, workers: int, threads: int, settings: dict[str, Any], lock: Path
) -> dict[str, Any]:
    """gunicorn's settings for one instance."""
    options: dict[str, Any] = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread",
        "graceful_timeout": int(settings["GRACEFUL_TIMEOUT"]),
        "timeout": 120,
        "keepalive": 5,
        "accesslog": None,  # the app writes its own access line (route pattern, no query string)
        "errorlog": "-",
        "loglevel": str(settings["LOG_LEVEL"]).lower(),
        # gunicorn itself trusts no X-Forwarded-* header: ProxyFix (PROXIES) alone decides what is trusted.
        "forwarded_allow_ips": "",
        "secure_scheme_headers": {},
        "worker_exit": _worker_exit,
        "on_exit": lambda _arbiter: lock.unlink(missing_ok=True),
    }
    if os.environ.get("CCM_READY_LOG_FORMAT", "json") == "json":
        options["logger_class"] = JsonGunicornLogger
    return options


_app: Any = None
# Imported once in the master so each forked worker starts fast; the app itself (and its database
# connections) is built in each worker, after the fork.
PRELOAD = (
    "smart_app.app",
    "smart_app.auth.views",
    "smart_app.capture.blueprint",
    "smart_app.capture.consent_views",
    "smart_app.capture.time_views",
    "smart_app.careplan.views",
    "smart_app.cds.service",
    "smart_app.packet.views",
    "smart_app.panel.views",
    "smart_app.program.views",
    "smart_app.web.home",
    "smart_app.web.health",
    "psycopg",
    "psycopg_pool",
)


def _preload_modules() -> None:
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:  # a renamed module must not stop the server; the worker imports what it needs
            continue


def _load_app() -> Any:
    global _app
    # lazy: CLI start-up
    from smart_app.app import create_app
    from smart_app.web.request_log import configure_logging

    configure_logging(os.environ.get("CCM_READY_LOG_FORMAT") or "json",
                      os.environ.get("CCM_READY_LOG_LEVEL") or "INFO")
    _app = create_app()
    return _app


def _worker_exit(_server: Any, _worker: Any) -> None:
    """A worker process stops (SIGTERM, after in-flight requests): stop its background work cleanly."""
    if _app is not None:
        # lazy: CLI start-up
        from smart_app.web import lifecycle

        lifecycle.stop(_app)


class JsonGunicornLogger(Logger):  # type: ignore[misc]
    """gunicorn's own messages (booting, signals, worker timeouts) as JSON lines too."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        # lazy: CLI start-up
        from smart_app.web.request_log import JsonFormatter, RequestIdFilter

        for handler in self.error_log.handlers:
            handler.setFormatter(JsonFormatter())
            handler.addFilter(RequestIdFilter())


class ProductionServer(BaseApplication):  # type: ignore[misc]
    """gunicorn's embedding API: our options, our app factory (loaded in each worker, after the fork)."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            if key in self.cfg.settings and value is not None:
                self.cfg.set(key, value)
        self.cfg.set("accesslog", None)

    def load(self) -> Any:
        return _load_app()
