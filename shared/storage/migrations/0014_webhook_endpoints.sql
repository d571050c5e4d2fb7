-- Webhook endpoints: URLs a tenant registers to be told when its notifications change status, and
-- the log of each event's delivery to each endpoint. Only shared/storage/webhook_endpoints.py reads
-- or writes them.
--
-- An endpoint's URL may carry a token (https://hooks.example.com/in?token=...): it is personal data,
-- stored sealed (url_sealed, AES-GCM, shared.crypto). Its signing secret is not stored at all: it is
-- derived from HERALD_WEBHOOK_SIGNING_KEY, the endpoint and secret_version (shared.webhook_secrets).

CREATE TABLE webhook_endpoints (
    id                          uuid PRIMARY KEY,
    tenant_id                   text NOT NULL,
    url_sealed                  bytea NOT NULL,
    description                 text,
    -- The statuses whose changes are sent (accepted, sent, delivered, failed, ...); empty: all.
    event_types                 text[] NOT NULL DEFAULT '{}',
    secret_version              int NOT NULL DEFAULT 1,
    -- After a rotation, deliveries are signed with the previous secret too until this time.
    previous_secret_version     int,
    previous_secret_expires_at  timestamptz,
    rotated_at                  timestamptz,
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now(),
    deleted_at                  timestamptz
);

-- The API's listing (newest first) and the status service's lookup of a tenant's live endpoints.
CREATE INDEX webhook_endpoints_live ON webhook_endpoints (tenant_id, created_at DESC, id DESC)
    WHERE deleted_at IS NULL;

-- One row per (endpoint, status event): written as 'pending' by the status service in the transaction
-- that stores the event (so a crash before the delivery is produced re-produces it from here), then
-- moved on by sender-webhook's reports: retrying, sent or failed.
CREATE TABLE webhook_endpoint_deliveries (
    -- uuid5 of the endpoint and the event: also the webhook-id header, stable across attempts.
    id               uuid PRIMARY KEY,
    tenant_id        text NOT NULL,
    endpoint_id      uuid NOT NULL REFERENCES webhook_endpoints (id),
    event_id         uuid NOT NULL,
    notification_id  uuid NOT NULL,
    -- The event's type is notification.<status>.
    status           text NOT NULL,
    channel          text,
    reason           text,
    occurred_at      timestamptz NOT NULL,
    attempt          int NOT NULL DEFAULT 0,
    outcome          text NOT NULL DEFAULT 'pending' CHECK (outcome IN ('pending', 'retrying', 'sent', 'failed')),
    -- The endpoint's answer ("200 OK", "503 Service Unavailable") or why it could not be reached.
    detail           text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- The delivery log of one endpoint, newest first (keyset pagination).
CREATE INDEX webhook_endpoint_deliveries_newest
    ON webhook_endpoint_deliveries (tenant_id, endpoint_id, created_at DESC, id DESC);
-- A redelivered batch of status events finds the deliveries it already planned.
CREATE INDEX webhook_endpoint_deliveries_pending ON webhook_endpoint_deliveries (event_id) WHERE outcome = 'pending';
