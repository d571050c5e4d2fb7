"""Postgres access shared by every service: the connection pool and versioned migrations."""
