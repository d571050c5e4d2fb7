-- Listing a tenant's notifications (GET /api/v1/notifications) and its filters.
--
-- recipient_hash: SHA-256 of the routing key (tenant:user id, else email, else phone), never the
-- address itself (PII); the API hashes its `recipient` filter the same way. message_type: the request's
-- metadata.type (the type dedup windows and retry policies use). The gateway fills both when it records
-- an accepted notification; rows the status service creates alone (Kafka client requests) have neither.
ALTER TABLE notifications
    ADD COLUMN recipient_hash bytea,
    ADD COLUMN message_type text;

-- Newest first with the id as the keyset pagination's tie-breaker, tenant first in every index.
CREATE INDEX notifications_tenant_created_id_idx ON notifications (tenant_id, created_at DESC, id DESC);
-- The index above serves everything this one did.
DROP INDEX notifications_tenant_created_idx;
CREATE INDEX notifications_tenant_status_idx ON notifications (tenant_id, status, created_at DESC, id DESC);
CREATE INDEX notifications_tenant_channel_idx ON notifications (tenant_id, channel, created_at DESC, id DESC)
    WHERE channel IS NOT NULL;
CREATE INDEX notifications_tenant_recipient_idx ON notifications (tenant_id, recipient_hash, created_at DESC, id DESC)
    WHERE recipient_hash IS NOT NULL;
CREATE INDEX notifications_tenant_type_idx ON notifications (tenant_id, message_type, created_at DESC, id DESC)
    WHERE message_type IS NOT NULL;
