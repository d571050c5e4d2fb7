"""The ingest service: validates requests, drops duplicates, hands the rest to the router."""
