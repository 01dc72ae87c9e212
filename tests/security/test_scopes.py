"""Scopes (issue 12): launch.json asks for every scope the app uses, and each feature says before the user
types when it cannot save (never "Saved" beside "not permitted")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from smart_app.config import load_registration
from smart_app.context import LaunchContext
from tests.support.app import launched, make_app
from tests.support.fake_fhir import NURSE, PATIENT, one_patient_practice


def test_launch_json_asks_for_every_write_the_app_makes() -> None:
    from smart_app.auth import scopes

    reg = load_registration()
    v2, v1 = reg["scope"].split(), reg["scope_v1_fallback"].split()
    full = LaunchContext(mode="ehr", fhir_base="https://x", patient_id="p", granted_scopes=frozenset(v2))
    legacy = LaunchContext(mode="ehr", fhir_base="https://x", patient_id="p", granted_scopes=frozenset(v1))
    for feature in scopes.FEATURES:
        assert scopes.missing(full, feature) == [], feature
        assert scopes.missing(legacy, feature) == [], feature
    for needed in (
        "patient/Goal.crus",
        "patient/CarePlan.crus",
        "patient/Communication.crs",
        "patient/ChargeItem.crs",
        "openid",
        "fhirUser",
    ):
        assert needed in v2
    for needed in (
        "patient/Goal.write",
        "patient/CarePlan.write",
        "patient/Communication.write",
        "patient/ChargeItem.write",
    ):
        assert needed in v1


def test_v2_permissions_are_read_letter_by_letter() -> None:
    from smart_app.auth import scopes

    ctx = LaunchContext(
        mode="ehr",
        fhir_base="https://x",
        patient_id="p",
        granted_scopes=frozenset({"patient/CarePlan.rs", "patient/Goal.c", "patient/Provenance.c"}),
    )
    assert scopes.missing(ctx, "care-plan") == ["CarePlan (create)", "CarePlan (update)", "Goal (update)"]
    assert "not granted permission to write CarePlan (create)" in scopes.cannot_save_message(ctx, "care-plan")


@pytest.fixture
def read_only(tmp_path: Path) -> Any:
    fake = one_patient_practice()
    ctx = LaunchContext(
        mode="ehr",
        fhir_base=fake.base,
        patient_id=PATIENT,
        user=NURSE,
        granted_scopes=frozenset({"patient/*.rs", "patient/CarePlan.c"}),
    )
    client, _ = launched(make_app(tmp_path, fhir=fake), ctx)
    return client, fake


def test_care_plan_editor_says_it_cannot_save_and_never_says_saved(read_only: Any) -> None:
    client, fake = read_only
    page = client.get("/care-plan?saved=3").get_data(as_text=True)
    assert "was not granted permission to write care plans" in page
    assert "Saved:" not in page
    before = len(fake.resources)
    with client.session_transaction() as sess:
        csrf = sess["csrf"]
    resp = client.post(
        "/care-plan",
        data={
            "csrf_token": csrf,
            "action": "save",
            "author": NURSE,
            "period_start": "2026-11-01",
            "problems": ["Condition/c1"],
        },
    )
    assert resp.status_code == 403
    assert "cannot save here" in resp.get_data(as_text=True)
    assert len(fake.resources) == before  # nothing sent


def test_care_plan_share_says_it_cannot_save_before_the_click(read_only: Any) -> None:
    """Sharing needs Communication (create): without it the editor says so and the button is disabled."""
    from datetime import UTC, datetime

    from tests.support.ccm_scenarios import care_plan

    client, fake = read_only
    fake.resources.append(care_plan(PATIENT, datetime(2026, 1, 5, tzinfo=UTC)))
    page = client.get("/care-plan").get_data(as_text=True)
    assert 'id="cp-share-refusal"' in page
    assert "Communication (create)" in page
    assert 'id="cp-share-button" disabled' in page
