"""The archiver: moves notifications past their retention out of Postgres into gzip JSON-lines archives."""
