"""The one verdict use case every face calls: options, fetch, evaluate."""
