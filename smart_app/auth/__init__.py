"""SMART App Launch (EHR, standalone, open servers) and SMART Backend Services."""
