"""The dead-letters service: stores every DLQ record in Postgres, exports the DLQ's size, expires old entries."""
