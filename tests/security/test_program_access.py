"""The practice page behind sign-in, and worklist jobs limited (issue 12, item 12); real oauth2-mock-server
and sekmet-fhir for the sign-in, a local server that holds requests open for the running jobs."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from smart_app.errors import AppError
from tests.security.support import json_answer, launch, local_server, oauth_ready, smart_app
from tests.support import app as support_app
from tests.support.oauth import OAuthServer
from tests.support.oauth import oauth_server as oauth_server  # re-exported fixture
from tests.support.sekmet import SekmetServer

pytestmark = [pytest.mark.integration, pytest.mark.oauth]
LEAD = "Practitioner/program-lead"


def practice_app(tmp: Path, sekmet: SekmetServer, oauth: OAuthServer) -> Any:
    return smart_app(
        tmp,
        {sekmet.base: oauth.smart_configuration()},
        PROGRAM_FHIR_BASE=sekmet.base,
        PROGRAM_LEADS=[LEAD],
        OPEN_SERVERS=[],
    )


@pytest.mark.parametrize("path", ["/program", "/program/status", "/program.csv", "/program/payer"])
def test_anonymous_user_gets_no_practice_data(
    tmp_path: Path, sekmet: SekmetServer, oauth_server: OAuthServer, path: str
) -> None:
    app = practice_app(tmp_path, sekmet, oauth_server)
    resp = app.test_client().get(path, query_string={"month": "2026-11"})
    assert resp.status_code == 401 and "Sign in" in resp.get_data(as_text=True)


def test_signed_in_user_who_is_not_a_program_lead_is_refused(
    tmp_path: Path, sekmet: SekmetServer, oauth_server: OAuthServer
) -> None:
    oauth_ready(oauth_server, patient="any", fhirUser="Practitioner/someone-else")
    app = practice_app(tmp_path, sekmet, oauth_server)
    client = app.test_client()
    assert launch(client, sekmet.base).status_code == 302
    assert client.get("/program", query_string={"month": "2026-11"}).status_code == 403


def test_program_lead_signed_in_sees_the_page(
    tmp_path: Path, sekmet: SekmetServer, oauth_server: OAuthServer
) -> None:
    oauth_ready(oauth_server, patient="any", fhirUser=LEAD)
    app = practice_app(tmp_path, sekmet, oauth_server)
    client = app.test_client()
    assert launch(client, sekmet.base).status_code == 302
    resp = client.get("/program", query_string={"month": "2026-11"})
    assert resp.status_code == 200, resp.get_data(as_text=True)[:300]


def test_anonymous_gets_cannot_start_unbounded_jobs(tmp_path: Path) -> None:
    release = threading.Event()

    def hold(seen: Any) -> tuple[int, dict[str, str], bytes]:
        release.wait(20)  # the FHIR server is slow: every job stays running
        return json_answer({"resourceType": "OperationOutcome", "issue": []}, 404)

    before = set(threading.enumerate())
    with local_server(hold) as slow:
        base = f"{slow.url}/fhir"
        app = smart_app(
            tmp_path,
            {},
            OPEN_SERVERS=[base],
            PROGRAM_JOBS_PER_USER=1,
            PROGRAM_MAX_RUNNING_JOBS=2,
            FHIR_TIMEOUT=30.0,
        )
        client = app.test_client()
        months = [f"{y}-{m:02d}" for y in (2025, 2026) for m in range(1, 13)]
        statuses = [
            client.get("/program", query_string={"iss": base, "month": month}).status_code
            for month in months[:23]
        ]  # 23 GETs used to start 23 concurrent jobs
        other = app.test_client().get(
            "/program",
            query_string={"iss": base, "month": months[23]},
            environ_base={"REMOTE_ADDR": "10.0.0.2"},
        )
        third = app.test_client().get(
            "/program",
            query_string={"iss": base, "month": months[23], "group": "Group/g2"},
            environ_base={"REMOTE_ADDR": "10.0.0.3"},
        )
        running = [t for t in set(threading.enumerate()) - before if t.name == "program-worklist"]
        release.set()
    assert statuses.count(200) == 1 and statuses.count(429) == 22, statuses
    assert other.status_code == 200  # another user still gets one
    assert third.status_code == 429  # ... but the total of running jobs is capped
    assert len(running) <= 2


def test_job_limiter_counts_running_jobs_per_user_and_in_total() -> None:
    from smart_app.auth.program_access import JobLimiter

    limiter = JobLimiter()
    a1 = limiter.admit("a", per_user=1, total=2)
    with pytest.raises(AppError) as caught:
        limiter.admit("a", per_user=1, total=2)
    assert caught.value.status == 429
    b1 = limiter.admit("b", per_user=1, total=2)
    with pytest.raises(AppError):
        limiter.admit("c", per_user=1, total=2)
    a1.release()
    a1.release()  # idempotent
    limiter.admit("c", per_user=1, total=2)
    b1.release()
    assert limiter.running() == 1


def test_practice_page_clients_carry_the_backend_services_token(tmp_path: Path) -> None:
    """Mark-billed and the payer pages read the practice's server with the same system credentials as the
    worklist (PROGRAM_CLIENT_ID + key), never anonymously, when those are configured."""
    from joserfc.jwk import RSAKey

    from smart_app.auth.backend_services import BackendServicesAuth
    from smart_app.program import selection

    key_file = tmp_path / "program-key.json"
    key_file.write_text(json.dumps(RSAKey.generate_key(2048).as_dict(private=True)))
    app = support_app.make_app(
        tmp_path, PROGRAM_CLIENT_ID="ccm-ready-practice", PROGRAM_PRIVATE_KEY=str(key_file)
    )
    with app.test_request_context("/program"):
        client = selection.program_client("https://ehr.example.org/fhir")
        assert isinstance(client.token_provider, BackendServicesAuth)
        plain = support_app.make_app(tmp_path / "b")
    with plain.test_request_context("/program"):
        assert selection.program_client("http://127.0.0.1:9/fhir").token_provider is None
