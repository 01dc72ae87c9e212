"""The readiness panel face."""
