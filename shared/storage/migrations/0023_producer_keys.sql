-- Producer keys (shared/producer_keys.py): what an upstream service producing requests straight to Kafka
-- signs them with. No secret is stored: each is derived from HERALD_PRODUCER_SIGNING_KEY, the tenant and
-- the key id. A row says the key exists and whether it is revoked; ingest refuses a revoked key.
CREATE TABLE producer_keys (
    id          text PRIMARY KEY,
    tenant_id   text NOT NULL,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

CREATE INDEX producer_keys_tenant_idx ON producer_keys (tenant_id, created_at DESC);
