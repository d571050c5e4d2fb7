-- Personal data encrypted at rest (shared.crypto): device tokens, suppressed addresses, and dead
-- letters' original keys and payloads move to *_sealed columns (AES-GCM), with a keyed blind index
-- where rows are looked up by value. SQL has no key, so this migration cannot encrypt: existing
-- values stay in their old columns (now nullable) and `python -m shared.storage.reseal` (run by
-- `python -m shared.storage.migrate` whenever HERALD_ENCRYPTION_KEYS is set) seals them and clears
-- the old column. Until then the repositories still read them, but lookups by value miss them.

ALTER TABLE devices
    ALTER COLUMN token DROP NOT NULL,
    ADD COLUMN token_sealed bytea,
    ADD COLUMN token_index bytea,
    ADD CONSTRAINT devices_tenant_token_index_key UNIQUE (tenant_id, token_index);

-- A surrogate key: the address was the primary key, and is now NULL once sealed.
ALTER TABLE suppressions
    ADD COLUMN id bigint GENERATED ALWAYS AS IDENTITY,
    ADD COLUMN address_sealed bytea,
    ADD COLUMN address_index bytea,
    DROP CONSTRAINT suppressions_pkey,
    ALTER COLUMN address DROP NOT NULL,
    ADD PRIMARY KEY (id),
    ADD CONSTRAINT suppressions_tenant_address_key UNIQUE (tenant_id, channel, address),
    ADD CONSTRAINT suppressions_tenant_address_index_key UNIQUE (tenant_id, channel, address_index);

ALTER TABLE dead_letters
    ALTER COLUMN original_payload DROP NOT NULL,
    ADD COLUMN original_key_sealed bytea,
    ADD COLUMN original_payload_sealed bytea;
