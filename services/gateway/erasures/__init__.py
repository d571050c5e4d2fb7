"""Erasures: erasing a recipient's personal data (GDPR), and the audit of it that outlives the data."""
