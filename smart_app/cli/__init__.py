"""Command line: `ccm-ready` and its lazily imported subcommands."""
