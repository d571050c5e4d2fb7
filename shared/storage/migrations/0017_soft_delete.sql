-- Deleting through the API is a soft delete: the row is hidden from the API and from routing, and kept
-- for the record until retention removes it (dead letters: HERALD_DLQ_RETENTION_DAYS; a suppression
-- stays until the address bounces again, which revives it).
ALTER TABLE dead_letters ADD COLUMN deleted_at timestamptz;
ALTER TABLE suppressions ADD COLUMN deleted_at timestamptz;
