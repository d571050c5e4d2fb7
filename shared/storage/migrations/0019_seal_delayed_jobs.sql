-- Delayed jobs' Kafka key (tenant:recipient, an address or phone number) and payload (the whole
-- request or delivery, with addresses and contents) move to *_sealed columns (AES-GCM), as 0011 did
-- for dead letters. SQL has no key, so jobs already waiting keep their values in the old columns (now
-- nullable); the retry service still reads and fires them, and `python -m shared.storage.reseal`
-- (run by `python -m shared.storage.migrate` whenever HERALD_ENCRYPTION_KEYS is set) seals them and
-- clears the old columns.

ALTER TABLE delayed_jobs
    ALTER COLUMN payload DROP NOT NULL,
    ADD COLUMN key_sealed bytea,
    ADD COLUMN payload_sealed bytea;
