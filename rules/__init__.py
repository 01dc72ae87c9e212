"""Pure CCM rules: records in, one Verdict out. No Flask, HTTP or FHIR-library imports."""
