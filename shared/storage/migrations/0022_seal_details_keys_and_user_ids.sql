-- The personal data 0011 left in clear is sealed too (shared.crypto, shared/storage/sealed.py):
--
-- * free text from providers and services, which can quote an address, a phone number, a token or a
--   URL: status events' details and the last one kept on deliveries and notifications (one context,
--   `status.detail`, as the status service copies an event's sealed detail to both), dead letters'
--   details, suppressions' details, webhook endpoint deliveries' details (an unreachable endpoint's
--   error names its URL) and the reason a device was disabled (the provider's answer);
-- * the caller's idempotency key of a notification (only ever shown, never looked up in Postgres);
-- * user ids: recipients keep theirs sealed (the listing shows them) and all three tables keep a keyed
--   blind index (`user_id_index`, one context for every table, so preferences' foreign key can compare
--   them), by which the API's paths and the router find the rows.
--
-- SQL has no key, so this migration cannot seal: existing values stay in their old columns (now
-- nullable) and `python -m shared.storage.reseal` (run by `python -m shared.storage.migrate` whenever
-- HERALD_ENCRYPTION_KEYS is set) seals and indexes them and clears the old columns. Until then the
-- repositories still show them, but lookups by user id miss them. The old unique constraints stay (as
-- 0011 kept them) so that replicas of the previous release can still write during a rolling upgrade.

ALTER TABLE notifications
    ADD COLUMN last_detail_sealed bytea,
    ADD COLUMN idempotency_key_sealed bytea;

ALTER TABLE notification_events ADD COLUMN detail_sealed bytea;

ALTER TABLE deliveries ADD COLUMN last_detail_sealed bytea;

ALTER TABLE dead_letters
    ALTER COLUMN detail DROP NOT NULL,
    ADD COLUMN detail_sealed bytea;

ALTER TABLE suppressions ADD COLUMN detail_sealed bytea;

ALTER TABLE webhook_endpoint_deliveries ADD COLUMN detail_sealed bytea;

-- Preferences point at their recipient by the user id's index from now on.
ALTER TABLE preferences DROP CONSTRAINT preferences_tenant_id_user_id_fkey;

-- The surrogate key becomes the primary key: the user id was, and is NULL once sealed.
ALTER TABLE recipients
    DROP CONSTRAINT recipients_pkey,
    DROP CONSTRAINT recipients_id_key,
    ADD PRIMARY KEY (id),
    ALTER COLUMN user_id DROP NOT NULL,
    ADD COLUMN user_id_sealed bytea,
    ADD COLUMN user_id_index bytea,
    ADD CONSTRAINT recipients_tenant_user_key UNIQUE (tenant_id, user_id),
    ADD CONSTRAINT recipients_tenant_user_index_key UNIQUE (tenant_id, user_id_index);

-- A surrogate key, as suppressions got in 0011: the user id was part of the primary key.
ALTER TABLE preferences
    DROP CONSTRAINT preferences_pkey,
    ADD COLUMN id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ALTER COLUMN user_id DROP NOT NULL,
    ADD COLUMN user_id_index bytea,
    ADD CONSTRAINT preferences_rule_key UNIQUE (tenant_id, user_id, category, channel),
    ADD CONSTRAINT preferences_rule_index_key UNIQUE (tenant_id, user_id_index, category, channel),
    ADD CONSTRAINT preferences_recipient_fkey FOREIGN KEY (tenant_id, user_id_index)
        REFERENCES recipients (tenant_id, user_id_index) ON DELETE CASCADE;

-- Every device of a user, disabled ones too: the API's listing with include_disabled and erasure need them.
ALTER TABLE devices
    ALTER COLUMN user_id DROP NOT NULL,
    ADD COLUMN user_id_index bytea,
    ADD COLUMN disabled_reason_sealed bytea;
DROP INDEX devices_active_by_user;
CREATE INDEX devices_by_user ON devices (tenant_id, user_id_index);
