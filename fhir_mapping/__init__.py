"""FHIR R4 JSON <-> rules records: lenient readers, strict writers."""
