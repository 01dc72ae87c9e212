"""Request size and depth limits (issue 12, item 11) and the security headers (CSP form-action, HSTS)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from tests.support.app import make_app, open_launch, start_session

BASE = "http://fhir.test/fhir"


@pytest.fixture
def app(tmp_path: Path) -> Any:
    return make_app(tmp_path, CDS_SERVICE_URL="http://localhost/cds-services", CDS_ALLOW_UNAUTHENTICATED=True)


def test_a_200_mb_body_is_refused_before_it_is_read(app: Any) -> None:
    client = app.test_client()
    csrf = start_session(client, open_launch(BASE, "p1"))
    stream = io.BytesIO(b"{" * 1024)  # the claimed length is what matters: nothing is read
    huge = {"CONTENT_LENGTH": str(200 * 1024 * 1024)}
    resp = client.post("/time", input_stream=stream, content_type="application/json",
                       headers={"X-CSRF-Token": csrf}, environ_overrides=huge)
    assert resp.status_code == 413
    assert stream.tell() == 0
    cds = client.post("/cds-services/ccm-readiness", input_stream=io.BytesIO(b"{}"),
                      content_type="application/json", environ_overrides=huge)
    assert cds.status_code == 413


def test_the_cds_route_accepts_a_large_prefetch_the_form_routes_do_not(app: Any) -> None:
    client = app.test_client()
    csrf = start_session(client, open_launch(BASE, "p1"))
    big = {"note": "x" * (1024 * 1024)}
    assert client.post("/time", json=big, headers={"X-CSRF-Token": csrf}).status_code == 413
    assert client.post("/cds-services/ccm-readiness", json=big).status_code == 400  # parsed, then refused


@pytest.mark.parametrize("depth", [100, 100_000])
def test_deeply_nested_json_is_a_400_not_a_500(app: Any, depth: int) -> None:
    client = app.test_client()
    csrf = start_session(client, open_launch(BASE, "p1"))
    deep = "[" * depth + "]" * depth
    for url, headers in (("/time", {"X-CSRF-Token": csrf}), ("/consent", {"X-CSRF-Token": csrf}),
                         ("/cds-services/ccm-readiness", {})):
        resp = client.post(url, data=deep, content_type="application/json", headers=headers)
        assert 400 <= resp.status_code < 500, (url, resp.status_code)


def test_cds_deep_body_within_the_route_limit(app: Any) -> None:
    deep = '{"a":' * 200_000 + "1" + "}" * 200_000  # 1.2 MB: under the CDS limit, far too deep
    resp = app.test_client().post("/cds-services/ccm-readiness", data=deep, content_type="application/json")
    assert resp.status_code == 400


def test_json_depth_check_is_iterative() -> None:
    from smart_app.web.security import json_depth_ok

    value: Any = 1
    for _ in range(50_000):
        value = [value]
    assert not json_depth_ok(value, 64)
    assert json_depth_ok({"a": [{"b": 1}]}, 3) and not json_depth_ok({"a": [{"b": [1]}]}, 3)


def test_csp_form_action_and_hsts_over_https(app: Any) -> None:
    client = app.test_client()
    plain = client.get("/")
    assert "form-action 'self'" in plain.headers["Content-Security-Policy"]
    assert "Strict-Transport-Security" not in plain.headers
    secure = client.get("/", base_url="https://ccm.example.org")
    assert secure.headers["Strict-Transport-Security"].startswith("max-age=31536000")
