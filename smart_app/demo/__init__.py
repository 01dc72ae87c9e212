"""The demo: a local FHIR server seeded with synthetic patients."""
