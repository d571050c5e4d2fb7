-- Devices that receive push notifications. A token belongs to one user of one tenant; a token the
-- provider reports as unregistered (or the API removes) is disabled, never used again, and kept
-- with the reason so the history stays explainable.

CREATE TABLE devices (
    id               uuid PRIMARY KEY,
    tenant_id        text NOT NULL,
    user_id          text NOT NULL,
    platform         text NOT NULL CHECK (platform IN ('android', 'ios', 'web')),
    token            text NOT NULL,
    disabled_at      timestamptz,
    disabled_reason  text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, token)
);

CREATE INDEX devices_active_by_user ON devices (tenant_id, user_id) WHERE disabled_at IS NULL;
