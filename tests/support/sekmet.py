"""Test-side access to the local sekmet-fhir server: one implementation, in smart_app.demo.local_fhir."""

from __future__ import annotations

from smart_app.demo.local_fhir import (
    SEKMET_BIN,
    SekmetMissing,
    SekmetServer,
    free_port,
    sekmet_binary,
    start_sekmet,
    wait_ready,
)

__all__ = [
    "SEKMET_BIN", "SekmetMissing", "SekmetServer", "free_port", "sekmet_binary", "start_sekmet", "wait_ready",
]
