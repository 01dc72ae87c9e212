"""`python -m smart_app.cli`."""

import sys

from smart_app.cli.commands import main

sys.exit(main())
