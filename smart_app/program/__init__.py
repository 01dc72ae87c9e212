"""Program face: the month-end worklist, metrics, charts, mark as billed."""
