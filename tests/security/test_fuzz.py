"""Hypothesis fuzz suite (issue 12): CLI inputs (evaluate, packet, import-time CSV), the JSON routes and the
form routes. No input may end in a traceback or a 5xx.

Each suite runs CCM_READY_FUZZ_EXAMPLES cases (2,000 by default, as in CI) in process: CLI commands through
`main([...])`, routes through Flask's test client with the in-memory FakeFhir (tests/support/fake_fhir.py);
the CSV import talks HTTP to a local stand-in server.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smart_app.cli.commands import build_parser
from tests.security.support import json_answer, local_server
from tests.support.app import START, launched, make_app, open_launch
from tests.support.fake_fhir import NURSE, PATIENT, one_patient_practice

EXAMPLES = int(os.environ.get("CCM_READY_FUZZ_EXAMPLES", "2000"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
    ],
)

# ------------------------------------------------------------------ strategies

TYPES = [
    "Patient",
    "Condition",
    "Encounter",
    "Task",
    "Consent",
    "CarePlan",
    "Goal",
    "Communication",
    "ChargeItem",
    "Practitioner",
    "Provenance",
    "Bundle",
    "Observation",
    "Foo",
]
# Cheap strategies (drawing is most of a case's cost): odd values picked from lists, shallow containers.
ODD = [
    None,
    True,
    0,
    -1,
    2**63,
    1e308,
    float("nan"),
    "",
    "x",
    "2026-11-05",
    "2026-11-05T10:00:00Z",
    "9999-12-31",
    "9999-12-31T23:59:59",
    "Patient/p1",
    "Patient/../x",
    "active",
    "ccm",
    "finished",
    "\u0000",
    "<script>",
    [],
    {},
    [1],
    {"reference": "Patient/p1"},
    {"coding": [{"system": 5, "code": []}]},
    {"start": "x", "end": 5},
]
scalars = st.one_of(st.sampled_from(ODD), st.text(max_size=6), st.integers(-(10**6), 10**12))
json_values = st.one_of(
    scalars,
    st.lists(scalars, max_size=2),
    st.dictionaries(st.sampled_from(["a", "reference", "value", "code", "start"]), scalars, max_size=2),
)
resource_types = st.sampled_from([*TYPES, [1], [], {}, {"a": 1}, 5, None, ""])
FIELDS = [
    "id",
    "subject",
    "patient",
    "status",
    "code",
    "period",
    "clinicalStatus",
    "category",
    "identifier",
    "onsetDateTime",
    "recordedDate",
    "participant",
    "length",
    "type",
    "entry",
    "provision",
    "for",
]


@st.composite
def resources(draw: Any) -> dict[str, Any]:
    res: dict[str, Any] = {"resourceType": draw(resource_types)}
    for key in draw(st.lists(st.sampled_from(FIELDS), max_size=3, unique=True)):
        res[key] = draw(json_values)
    if draw(st.booleans()):
        res["subject"] = {"reference": "Patient/p1"}
    return res


@st.composite
def fhir_files(draw: Any) -> str:
    items = draw(st.lists(resources(), max_size=4))
    if draw(st.booleans()):
        items.insert(
            0,
            {
                "resourceType": "Patient",
                "id": "p1",
                "birthDate": draw(st.sampled_from(["1950-01-01", "x", "9999-12-31"])),
            },
        )
    kind = draw(st.sampled_from(["bundle", "ndjson", "single", "junk"]))
    if kind == "bundle":
        return json.dumps(
            {
                "resourceType": "Bundle",
                "type": draw(st.sampled_from(["collection", "x"])),
                "entry": [{"resource": r} for r in items] + draw(st.lists(json_values, max_size=2)),
            }
        )
    if kind == "ndjson":
        return "\n".join(json.dumps(r) for r in items)
    if kind == "single":
        return json.dumps(items[0] if items else draw(json_values))
    return draw(
        st.sampled_from(["", "{", "[]", "null", "\ufeff{}", '{"resourceType": "Bundle", "entry": 5}'])
    )


months = st.sampled_from(
    ["2026-11", "2026-11", "2025-03", "2026-13", "1900-01", "9999-12", "x", "", "2026-1"]
)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


PARSER = build_parser()  # what `main()` builds on every call (most of a call's time): built once


def run_cli(argv: list[str]) -> int:
    """`ccm-ready ARGS` in process, as `smart_app.cli.commands.main` runs it: an exit status, never an
    exception (argparse exits 2 on bad arguments)."""
    with quiet():
        try:
            args = PARSER.parse_args(argv)
            return int(args._run(args) or 0)
        except SystemExit as exc:
            return int(exc.code or 0)


@pytest.fixture
def fast_dir(tmp_path: Path) -> Iterator[Path]:
    """A data folder in memory when the machine has one (SQLite commits are the routes' main cost)."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or not os.access(shm, os.W_OK):
        yield tmp_path
        return
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="ccm-fuzz-", dir=shm))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# ------------------------------------------------------------------ CLI: evaluate, packet, import-time


def test_fuzz_evaluate(fast_dir: Path) -> None:
    path = fast_dir / "input.json"

    @FUZZ
    @given(
        text=fhir_files(),
        month=months,
        extra=st.lists(
            st.sampled_from(
                ["--json", "--timezone", "Mars/Base", "--policy", "nope", "--patient", "Patient/p1"]
            ),
            max_size=2,
        ),
    )
    def case(text: str, month: str, extra: list[str]) -> None:
        path.write_text(text, encoding="utf-8")
        assert run_cli(["evaluate", str(path), "--month", month, *extra]) in (0, 1, 2)

    case()


def test_fuzz_packet(fast_dir: Path) -> None:
    path, out = fast_dir / "input.json", fast_dir / "out"

    @FUZZ
    @given(text=fhir_files(), month=months)
    def case(text: str, month: str) -> None:
        path.write_text(text, encoding="utf-8")
        assert run_cli(["packet", str(path), "--month", month, "--out", str(out), "--no-pdf"]) in (0, 1, 2)

    case()


def _fhir_stand_in(seen: Any) -> tuple[int, dict[str, str], bytes]:
    if seen.method == "POST":
        bundle = json.loads(seen.body or b"{}")
        entries = [
            {"response": {"status": "201 Created", "location": f"Encounter/{uuid.uuid4().hex}/_history/1"}}
            for _ in bundle.get("entry") or []
        ]
        return json_answer({"resourceType": "Bundle", "type": "transaction-response", "entry": entries})
    return json_answer({"resourceType": "Bundle", "type": "searchset", "entry": []})


csv_cells = st.one_of(
    st.text(max_size=6),
    st.sampled_from(
        [
            "p1",
            "Patient/p1",
            "Practitioner/rn-1",
            "2026-11-05T14:00",
            "9999-12-31T23:59:59",
            "0001-01-01T00:00",
            "25",
            "-5",
            "99999999999",
            "ccm",
            "patient-call",
            "BP 150s (HTN); raised lisinopril; recheck Fri",
            "",
            str(uuid.uuid4()),
        ]
    ),
)


def test_fuzz_import_csv(fast_dir: Path) -> None:
    path = fast_dir / "time.csv"
    header = "patient,performer,start,minutes,program,activity,note,id"
    with local_server(_fhir_stand_in) as fhir:

        @FUZZ
        @given(
            rows=st.lists(st.lists(csv_cells, min_size=0, max_size=9), max_size=4),
            head=st.sampled_from([header, "patient,start", "", "\ufeff" + header]),
            tz=st.sampled_from(["UTC", "America/Chicago", "Nowhere/Zone"]),
        )
        def case(rows: list[list[str]], head: str, tz: str) -> None:
            import csv as csvmod

            buf = io.StringIO()
            buf.write(head + "\n")
            csvmod.writer(buf).writerows(rows)
            path.write_text(buf.getvalue(), encoding="utf-8")
            argv = ["import-time", str(path), "--fhir-base", f"{fhir.url}/fhir", "--timezone", tz]
            assert run_cli(argv) in (0, 1, 2)

        case()


# ------------------------------------------------------------------ routes


@pytest.fixture
def web(fast_dir: Path) -> tuple[Any, str]:
    fake = one_patient_practice()
    app = make_app(
        fast_dir,
        fhir=fake,
        TIMEZONE="UTC",
        PROGRAM_CLIENT_FACTORY=lambda base: fake,
        CDS_SERVICE_URL="http://localhost/cds-services",
        CDS_ALLOW_UNAUTHENTICATED=True,
        OPEN_SERVERS=[fake.base],
    )
    return launched(app, open_launch(fake.base, PATIENT, NURSE))


JSON_ROUTES = [
    "/time",
    "/consent",
    "/time/note-check",
    "/time/enc-1/correct",
    "/cds-services/ccm-readiness",
    "/care-plan/retry",
    "/time/x/retry",
]
TIME_KEYS = [
    "id",
    "date",
    "start",
    "end",
    "minutes",
    "program",
    "activity",
    "note",
    "performer",
    "conditions",
    "decision",
    "method",
    "disclosures",
    "obtained_by",
    "billing_practitioner",
    "consent_id",
    "reason",
    "hook",
    "hookInstance",
    "context",
    "prefetch",
    "fhirServer",
    "fhirAuthorization",
]
plausible = st.one_of(
    json_values,
    st.sampled_from(
        [
            "2026-11-05",
            "10:00",
            "15",
            "ccm",
            "patient-call",
            "given",
            "stopped",
            "verbal",
            NURSE,
            "patient-view",
            {"patientId": PATIENT},
            ["ccm-available", {}],
            "Reviewed glucose log (diabetes); recheck Friday.",
        ]
    ),
)


def test_fuzz_json_routes(web: tuple[Any, str]) -> None:
    client, csrf = web

    @FUZZ
    @given(
        route=st.sampled_from(JSON_ROUTES),
        body=st.one_of(st.dictionaries(st.sampled_from(TIME_KEYS), plausible, max_size=8), json_values),
        raw=st.one_of(st.none(), st.binary(max_size=30)),
    )
    def case(route: str, body: Any, raw: bytes | None) -> None:
        headers = {"X-CSRF-Token": csrf, "Accept": "application/json"}
        if raw is not None:
            resp = client.post(route, data=raw, content_type="application/json", headers=headers)
        else:
            resp = client.post(route, json=body, headers=headers)
        assert resp.status_code < 500, (route, body, resp.get_data(as_text=True)[:300])

    case()


FORM_ROUTES = [
    "/time",
    "/consent",
    "/care-plan",
    "/care-plan/share",
    "/time/enc-1/correct",
    "/open",
    "/standalone",
    "/logout",
    "/program/run",
    "/program/mark-billed",
]
FORM_KEYS = [
    *TIME_KEYS,
    "action",
    "plan_key",
    "plan_id",
    "version",
    "author",
    "period_start",
    "problems",
    "goal_count",
    "goal-1-description",
    "goal-1-measure",
    "goal-1-target",
    "goal-1-due",
    "activity_count",
    "activity-1-description",
    "activity-1-performer",
    "sec-review",
    "accept",
    "recipient",
    "caregiver_name",
    "sent",
    "share_key",
    "iss",
    "patient",
    "month",
    "filter",
    "n",
    "group",
    "current_version",
    "current_plan_id",
]
form_values = st.one_of(
    st.text(max_size=6),
    st.sampled_from(
        [
            "save",
            "add",
            "overwrite",
            "discard",
            "paper",
            "caregiver",
            "2026-11-05",
            "9999-12-31",
            "1",
            "0",
            "-1",
            "99999",
            NURSE,
            "Condition/c1",
            "Patient/fuzz-p1",
            "http://fuzz.test/fhir",
            "2026-11",
            "all",
            "Group/g",
        ]
    ),
)


def test_fuzz_form_routes(web: tuple[Any, str]) -> None:
    client, csrf = web

    @FUZZ
    @given(
        route=st.sampled_from(FORM_ROUTES),
        form=st.dictionaries(
            st.sampled_from(FORM_KEYS), st.one_of(form_values, st.lists(form_values, max_size=3)), max_size=10
        ),
        with_token=st.booleans(),
    )
    def case(route: str, form: dict[str, Any], with_token: bool) -> None:
        data = dict(form)
        if with_token:
            data["csrf_token"] = csrf
        resp = client.post(route, data=data)
        assert resp.status_code < 500, (route, form, resp.get_data(as_text=True)[:300])
        if route in ("/open", "/logout") and resp.status_code in (200, 302):
            client.get(START)  # keep the session for the next case

    case()
