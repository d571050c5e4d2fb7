"""Tracking: the open pixel and tracked links the router puts in emails, recorded as ``opened`` and ``clicked``."""
