-- Scopes narrow what an API key may reach below its role (services.gateway.auth): e.g. a billing
-- service's key with 'notifications:write' cannot read recipients. NULL: everything the role allows,
-- which is what every key created before scopes could do.
ALTER TABLE api_keys ADD COLUMN scopes text[];
