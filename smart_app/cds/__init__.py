"""CDS Hooks face: the patient-view service and its card."""
