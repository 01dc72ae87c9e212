"""CDS Hooks without prefetch: the service fetches from a REAL sekmet-fhir server (fhirServer + token)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from flask.testing import FlaskClient

from smart_app.fhir.client import FhirClient
from tests.support import app as support_app
from tests.support.ccm_scenarios import hook_request, scenario, transaction
from tests.support.sekmet import SekmetServer

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 12, 16, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def seeded(sekmet: SekmetServer) -> str:
    client = FhirClient(sekmet.base)
    for kind, pid in (("ready", "cdsf-ready"), ("blocked", "cdsf-blocked"), ("not-eligible", "cdsf-none")):
        client.transaction(transaction(scenario(kind, "2026-11", pid)))
    return sekmet.base


@pytest.fixture()
def client(tmp_path: Any, sekmet: SekmetServer) -> FlaskClient:
    app = support_app.make_app(
        tmp_path,
        CDS_SERVICE_URL="http://localhost/cds-services",
        CDS_ALLOW_UNAUTHENTICATED=True,
        CDS_UNAUTHENTICATED_FHIR_SERVERS=[sekmet.base],
        CDS_CLOCK=lambda: NOW,
        TIMEZONE="America/Chicago",
    )
    return app.test_client()


def _call(client: FlaskClient, base: str, pid: str) -> Any:
    body = hook_request(
        pid,
        fhirServer=base,
        fhirAuthorization={
            "access_token": "opaque-ehr-token",
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "patient/*.rs",
            "subject": "ccm-ready",
        },
    )
    return client.post("/cds-services/ccm-readiness", json=body)


def test_ready_card_fetched_from_the_fhir_server(client: FlaskClient, seeded: str) -> None:
    resp = _call(client, seeded, "cdsf-ready")
    assert resp.status_code == 200, resp.get_json()
    (card,) = resp.get_json()["cards"]
    assert card["summary"].startswith("CCM 2026-11: ready to bill 99490 (25 min)")
    assert card["indicator"] == "info"


def test_blocked_card_fetched_from_the_fhir_server(client: FlaskClient, seeded: str) -> None:
    (card,) = _call(client, seeded, "cdsf-blocked").get_json()["cards"]
    assert card["indicator"] == "warning" and "consent missing" in card["summary"]


def test_not_eligible_fetched_gets_no_card(client: FlaskClient, seeded: str) -> None:
    resp = _call(client, seeded, "cdsf-none")
    assert resp.status_code == 200 and resp.get_json() == {"cards": []}


def test_unknown_patient_is_412(client: FlaskClient, seeded: str) -> None:
    resp = _call(client, seeded, "no-such-patient")
    assert resp.status_code == 412
    assert "not found" in resp.get_json()["error"]
