"""`ccm-ready serve`: run the web app (development server, loopback by default)."""

from __future__ import annotations

import argparse

DESCRIPTION = "Run the CCM Ready web app."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5000)


def run(args: argparse.Namespace) -> int:
    from smart_app.app import create_app

    create_app().run(host=args.host, port=args.port, debug=False)
    return 0
