"""Server-side session store (placeholder until its helper fills it in)."""

from flask import Flask


def init_app(app: Flask) -> None:
    """Install the server-side session interface."""
