"""Care-plan face: editor, drafts, patient copy."""
