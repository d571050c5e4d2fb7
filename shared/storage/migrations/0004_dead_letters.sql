-- Every record of the DLQ topic, stored by the dead-letters service, read and purged per tenant
-- through the API, deleted after HERALD_DLQ_RETENTION_DAYS.

CREATE TABLE dead_letters (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- NULL: bytes that named no tenant (undecodable, no tenant header); only operators see those.
    tenant_id           text,
    -- Text, not uuid: an invalid request's id can be anything.
    notification_id     text,
    reason              text NOT NULL,
    detail              text NOT NULL,
    service             text NOT NULL,
    channel             text,
    original_topic      text NOT NULL,
    original_partition  int NOT NULL,
    original_offset     bigint NOT NULL,
    original_key        bytea,
    -- {"name": "<the value, base64>"}: header values are bytes.
    original_headers    jsonb NOT NULL DEFAULT '{}',
    original_payload    bytea NOT NULL,
    -- When the message was dead-lettered (the DLQ record's failed_at).
    created_at          timestamptz NOT NULL,
    stored_at           timestamptz NOT NULL DEFAULT now(),
    dlq_topic           text NOT NULL,
    dlq_partition       int NOT NULL,
    dlq_offset          bigint NOT NULL,
    -- A redelivered DLQ record is stored once. created_at is part of the key because a DLQ topic made
    -- afresh (a new broker, Postgres kept) starts its offsets again at 0.
    CONSTRAINT dead_letters_dlq_record_key UNIQUE (dlq_topic, dlq_partition, dlq_offset, created_at)
);

-- The API's filters, newest first, with the id as the keyset pagination's tie-breaker.
CREATE INDEX dead_letters_tenant_created_idx ON dead_letters (tenant_id, created_at DESC, id DESC);
CREATE INDEX dead_letters_tenant_reason_idx ON dead_letters (tenant_id, reason, created_at DESC, id DESC);
CREATE INDEX dead_letters_tenant_notification_idx ON dead_letters (tenant_id, notification_id)
    WHERE notification_id IS NOT NULL;
-- Retention deletes the oldest first, across tenants.
CREATE INDEX dead_letters_created_idx ON dead_letters (created_at);
