"""Dead letters: the tenant's failed messages, listed, read, purged, and sent again one by one or in a replay."""
