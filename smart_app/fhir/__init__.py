"""One FHIR HTTP client: retries, paging, batches, bulk export, and the patient scope."""
