"""CCM Ready SMART-on-FHIR app: Flask factory, launch/auth, FHIR client, use cases, CLI."""
