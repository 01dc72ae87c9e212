"""Local state on disk (SQLite by default): one opener and one transaction helper."""
