"""API keys and tenants: keys an admin creates, lists and revokes; what authentication looks keys up in."""
