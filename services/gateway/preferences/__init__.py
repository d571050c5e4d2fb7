"""Preferences: which categories of notifications a recipient wants on which channel; the router applies them
(see services/router/preferences.py)."""
