"""Audit-packet face: FHIR document, HTML and PDF."""
