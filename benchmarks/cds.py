"""CDS Hooks latency: 200 signed patient-view calls with a full prefetch through the Flask test client.

Prints p50/p95 and, as its LAST line, `p95_ms=N` (target < 100 ms; CDS Hooks asks for about 500 ms).
Run: .venv/bin/python benchmarks/cds.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from joserfc import jwt
from joserfc.jwk import ECKey, KeySet

from smart_app.app import create_app
from tests.support.ccm_scenarios import hook_request, prefetch, scenario

ISS = "https://ehr.bench.example"
REQUESTS = 200


def main() -> int:
    key = ECKey.generate_key("P-384", parameters={"kid": "bench", "alg": "ES384"}, private=True)
    app = create_app(
        {
            "TESTING": True,
            "DATA_DIR": tempfile.mkdtemp(prefix="ccm-bench-"),
            "CDS_CLIENTS": {ISS: {"jwks": KeySet([key]).as_dict(private=False)}},
            "CDS_SERVICE_URL": "http://localhost/cds-services",
        }
    )
    client = app.test_client()
    month = time.strftime("%Y-%m", time.gmtime())
    body = hook_request("bench-1", prefetch=prefetch(scenario("ready", month, "bench-1"), "bench-1"))

    def signed() -> str:
        now = int(time.time())
        claims = {
            "iss": ISS,
            "sub": "bench",
            "aud": "http://localhost/cds-services/ccm-readiness",
            "iat": now,
            "exp": now + 300,
            "jti": str(uuid.uuid4()),
        }
        return jwt.encode({"alg": "ES384", "kid": "bench"}, claims, key, algorithms=["ES384"])

    for _ in range(5):  # warm-up: imports, packs, value sets
        client.post("/cds-services/ccm-readiness", json=body, headers={"Authorization": f"Bearer {signed()}"})
    times: list[float] = []
    for _ in range(REQUESTS):
        headers = {"Authorization": f"Bearer {signed()}"}  # signing is the EHR's cost, not timed
        start = time.perf_counter()
        resp = client.post("/cds-services/ccm-readiness", json=body, headers=headers)
        times.append((time.perf_counter() - start) * 1000)
        if resp.status_code != 200 or len(resp.get_json()["cards"]) != 1:
            print(
                f"unexpected answer {resp.status_code}: {resp.get_data(as_text=True)[:200]}", file=sys.stderr
            )
            return 1
    times.sort()
    p50 = statistics.median(times)
    p95 = times[int(0.95 * len(times)) - 1]
    print(f"requests={REQUESTS} p50_ms={p50:.1f} p95_ms_exact={p95:.2f} max_ms={times[-1]:.1f}")
    print(f"p95_ms={round(p95)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
