"""The Medplum validator (`@medplum/core` validateResource, installed in tests/fhir_validate by bootstrap).

`medplum_errors(shapes)` validates many resources in ONE node process (starting node and indexing the R4
definitions costs about a second; do it once per test module or session, never per resource).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parents[1] / "fhir_validate"
SCRIPT = HERE / "validate.mjs"


class MedplumMissing(RuntimeError):
    """node or the npm package is not installed (run scripts/bootstrap.sh test)."""


def medplum_errors(shapes: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """{name: [error, ...]} for each named resource (an empty list: valid)."""
    node = shutil.which("node")
    if node is None or not (HERE / "node_modules" / "@medplum" / "core").is_dir():
        raise MedplumMissing("@medplum/core is not installed: run scripts/bootstrap.sh test")
    payload = json.dumps([{"name": k, "resource": v} for k, v in shapes.items()])
    done = subprocess.run(
        [node, str(SCRIPT)], input=payload, capture_output=True, text=True, cwd=HERE, timeout=120, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"the Medplum validator failed: {done.stderr[-500:]}")
    return {r["name"]: r["errors"] for r in json.loads(done.stdout)}


def resources_of(shape: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A Bundle's entry resources by position (and the Bundle itself), for validating one by one."""
    out = {"Bundle": shape} if shape.get("resourceType") == "Bundle" else {shape["resourceType"]: shape}
    for i, entry in enumerate(shape.get("entry") or []):
        res = entry.get("resource")
        if isinstance(res, dict):
            out[f"entry[{i}] {res.get('resourceType')}"] = res
    return out
