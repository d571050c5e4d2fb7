-- Roles on API keys (services.gateway.auth): admin, sender, viewer, service (a service account).
-- Existing keys could do everything, so they become admin keys: nothing they did stops working.
ALTER TABLE api_keys
    ADD COLUMN role text NOT NULL DEFAULT 'admin' CHECK (role IN ('admin', 'sender', 'viewer', 'service')),
    -- Set when a lookup misses the gateway's auth cache: accurate to HERALD_AUTH_CACHE_TTL_S.
    ADD COLUMN last_used_at timestamptz;

-- GET /api/v1/api-keys lists a tenant's keys.
CREATE INDEX api_keys_tenant_created_idx ON api_keys (tenant_id, created_at DESC);
