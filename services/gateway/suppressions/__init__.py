"""Suppressions: the tenant's addresses no longer sent to (bounced, complained), listed and removed."""
