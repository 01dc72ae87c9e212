"""Security headers and CSRF (placeholder until its helper fills it in)."""

from flask import Flask


def init_app(app: Flask) -> None:
    """Install security headers and CSRF checks."""
