"""The application's one error type, and its one handler.

A face raises `AppError(status, title, message)`; the handler answers with the shared error page (or
JSON for JSON clients) and the status. No view formats its own error page.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask


class AppError(Exception):
    """A problem shown to the user as a readable page (or JSON) with an HTTP status."""

    def __init__(self, status: int, title: str, message: str, *, template: str = "error.html") -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message
        self.template = template

    def to_json(self) -> dict[str, Any]:
        return {"error": self.title, "message": self.message}


def wants_json() -> bool:
    """True when the client asked for JSON (Accept, a .json route or a JSON body)."""
    # lazy: CLI start-up (Flask loads only when the web app runs; `evaluate` imports this module)
    from flask import request

    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return bool(request.is_json or best == "application/json" or request.path.endswith(".json"))


def render(err: AppError) -> tuple[Any, int]:
    """The response for an AppError: JSON for JSON clients, else the error page."""
    # lazy: CLI start-up
    from flask import jsonify, render_template

    if wants_json():
        return jsonify(err.to_json()), err.status
    return render_template(err.template, title=err.title, message=err.message), err.status


def init_app(app: Flask) -> None:
    """Register the one handler for AppError."""
    app.register_error_handler(AppError, render)
