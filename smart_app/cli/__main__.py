"""`python -m smart_app.cli`."""

from smart_app.cli.commands import run

run()
