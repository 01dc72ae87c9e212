"""GET /packet?month=YYYY-MM[&format=html|json|pdf]: the audit packet of the session's launch patient.

Its own blueprint (`packet`), GET only. The panel links to `/packet?month=<month>`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from fhir_mapping.read_note import merge_captured
from fhir_mapping.write_packet import name_people
from rules.month import BadMonth
from smart_app.errors import AppError
from smart_app.fhir.client import FhirError
from smart_app.packet.document import Packet, PacketError, build_packet
from smart_app.packet.ledger_extract import extract
from smart_app.packet.render import packet_people, render_html, style_csp_source
from smart_app.readiness.captured import captured_pairs, ledger_of
from smart_app.readiness.fetch import fetch_patient_resources
from smart_app.readiness.names import names_in
from smart_app.readiness.options import options_from
from smart_app.readiness.wording import UNNAMED_PERSON
from smart_app.web import people, sessions
from smart_app.web.printing import PdfError, print_pdf
from smart_app.web.security import content_security_policy

log = logging.getLogger(__name__)

bp = Blueprint("packet", __name__)
FORMATS = ("html", "json", "pdf")


def _error(status: int, message: str) -> tuple[Response, int]:
    return jsonify({"error": message}), status


@bp.get("/packet")
def packet() -> Any:
    """The audit packet of the launch patient: HTML (default), `?format=json` or `?format=pdf`."""
    ctx = sessions.require_context()
    fmt = request.args.get("format", "html")
    if fmt not in FORMATS:
        return _error(400, "format must be html, json or pdf")
    try:
        options = options_from(
            current_app.config, raw_month=request.args.get("month"), app_context=ctx.app_context
        )
        month = options.month
        resources = fetch_patient_resources(sessions.fhir_client(), ctx.patient_id, month, options.tz)
        ledger = ledger_of(current_app)  # what the app captured: counted like the panel counts it
        resources = merge_captured(resources, captured_pairs(ledger, ctx.fhir_base, ctx.patient_id))
        built = build_packet(
            resources,
            month,
            tz=options.tz,
            pack=options.policy,
            patient_id=ctx.patient_id,
            fhir_base=ctx.fhir_base,
            billing_practitioner=options.billing_practitioner,
            ledger=extract(ledger, ctx.fhir_base, ctx.patient_id) if ledger is not None else None,
        )
    except BadMonth as exc:
        return _error(400, str(exc))
    except AppError as exc:
        return _error(exc.status, exc.message)
    except FhirError as exc:
        log.warning("packet: FHIR read failed (HTTP %s)", exc.status)
        return _error(502, exc.message)
    except PacketError as exc:
        return _error(422, str(exc))
    names = _names(built, resources)
    data = json.dumps(name_people(built.bundle, names), indent=2, ensure_ascii=False).encode("utf-8")
    name = f"ccm-packet-{month}"
    if fmt == "json":
        return _attachment(Response(data, mimetype="application/fhir+json"), f"{name}.json")
    html = render_html(built, hashlib.sha256(data).hexdigest(), names)
    if fmt == "pdf":
        return _pdf(html, f"{name}.pdf")
    return _html(html)


def _names(built: Packet, resources: list[Any]) -> dict[str, str]:
    """{person reference: name} for everyone the packet shows: names the bundle holds, the session's
    cache, then ONE batch of reads for the rest (smart_app.fhir.people.Directory)."""
    names = names_in(resources)
    wanted = [r for r in packet_people(built) if r not in names]
    if not wanted:
        return names
    directory = people.directory()
    found = directory.resolve(wanted)
    return {**{ref: p.name for ref, p in found.items() if p.name != UNNAMED_PERSON}, **names}


def _attachment(resp: Response, filename: str) -> Response:
    resp.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return resp


def _pdf(html: str, filename: str) -> Any:
    try:
        data = print_pdf(html)
    except PdfError as exc:
        return _error(503, str(exc))
    return _attachment(Response(data, mimetype="application/pdf"), filename)


def _html(html: str) -> Response:
    """The page, with a CSP that allows exactly its own inline stylesheet and nothing else inline."""
    resp = Response(html, mimetype="text/html")
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    resp.headers["Content-Security-Policy"] = content_security_policy(app, style_csp_source())
    return resp
