"""Load remittance files (X12 835 or FHIR EOB / ClaimResponse JSON) into the store: all or nothing.

Every file is read and checked before anything is stored; the first bad file stops the load with one
RemittanceError naming the file and the segment (or element), and the store is left unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from fhir_mapping.read_remittance import (
    RemittanceResourceError,
    read_remittance_resource,
    remittance_resources,
)
from rules.remittance import Remittance
from smart_app.program.remittance import RemittanceError, is_x12, read_835
from smart_app.program.remittance_store import LoadCounts, RemittanceStore

MAX_FILE_BYTES = 20 * 1024 * 1024


def parse_file(name: str, data: bytes, claim_codes: dict[str, list[str]] | None = None) -> list[Remittance]:
    """The remittances of one file; RemittanceError when it cannot be read completely."""
    if len(data) > MAX_FILE_BYTES:
        raise RemittanceError(f"{name}: larger than {MAX_FILE_BYTES // (1024 * 1024)} MB")
    if is_x12(data):
        return read_835(data, name)
    if data.lstrip()[:1] == b"{":
        try:
            doc = json.loads(data)
            return [read_remittance_resource(r, claim_codes) for r in remittance_resources(doc)]
        except json.JSONDecodeError as exc:
            raise RemittanceError(f"{name}: not valid JSON (line {exc.lineno})") from None
        except RemittanceResourceError as exc:
            raise RemittanceError(f"{name}: {exc}") from None
    raise RemittanceError(f"{name}: segment ISA: neither an X12 835 file (ISA...) nor FHIR JSON")


def load_files(store: RemittanceStore, files: Sequence[tuple[str, bytes]]) -> LoadCounts:
    """Parse every file first, then store them in one transaction."""
    codes = {c.claim_id: [code for code, _u in c.codes] for c in store.claims()}
    parsed = [(name, parse_file(name, data, codes)) for name, data in files]
    return store.load(parsed)
