"""Postgres backups: ``python -m infra.backup dump|verify|restore`` (docs/operations/backups.md).

A dump is pg_dump's custom format plus a manifest written next to it: its SHA-256 and the row count
of every table, counted in the snapshot pg_dump dumps. ``verify`` checks a dump against its manifest
without a database; ``restore`` verifies, restores into an empty database and compares the counts.
"""
