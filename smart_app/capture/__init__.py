"""Capture face: time entries and consent, the durable outbox, CSV import."""
