"""Choosing people without typing ids: find a practitioner by name or NPI, choose the billing practitioner."""

from __future__ import annotations

from typing import Any

from flask import jsonify, redirect, render_template, request, url_for

from smart_app.errors import AppError
from smart_app.fhir.people import person_ref
from smart_app.panel.views import bp
from smart_app.web import people, sessions


def _local(target: str | None, fallback: str) -> str:
    """`target` when it is a path on this app (never another site), else `fallback`."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return fallback


@bp.get("/people")
def people_search() -> Any:
    """Find a practitioner by name (or NPI); each match can be chosen, then the form comes back."""
    sessions.require_context()
    name = (request.args.get("name") or "").strip()[:80]
    back = _local(request.args.get("next"), url_for("panel.panel"))
    found = people.directory().search(name) if name else []
    return render_template("panel/people.html", name=name, found=found, back=back, searched=bool(name))


@bp.get("/people/names")
def people_names() -> Any:
    """{reference: name} for ?ref=Practitioner/x&ref=... (the panel fills in names it did not know yet)."""
    sessions.require_context()
    refs = [r for r in (person_ref(x) for x in request.args.getlist("ref")) if r]
    return jsonify(people.names_json(refs))


@bp.post("/people/choose")
def people_choose() -> Any:
    """Remember a person for this session: they are offered (and preselected) on every form."""
    sessions.require_context()
    ref = person_ref(request.form.get("person"))
    if ref is None:
        raise AppError(400, "No person chosen", "Choose a person from the list.")
    people.remember_choice(ref)
    return redirect(_local(request.form.get("next"), url_for("panel.panel")), code=303)


@bp.post("/panel/billing-practitioner")
def choose_billing_practitioner() -> Any:
    """The billing practitioner for this session's evaluations (EvaluationOptions.billing_practitioner)."""
    sessions.require_context()
    ref = person_ref(request.form.get("billing_practitioner"))
    if ref is None:
        raise AppError(400, "No billing practitioner chosen", "Choose one from the list.")
    people.choose_billing_practitioner(ref)
    month = (request.form.get("month") or "").strip()
    target = url_for("panel.panel", month=month) if month else url_for("panel.panel")
    return redirect(target + "#prereq-heading", code=303)
