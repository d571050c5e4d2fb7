-- Addresses Herald must not send to again: a hard bounce or a spam complaint reported by a provider
-- (or an SMS recipient's STOP). The router fails a notification to one of them (recipient_suppressed);
-- the API lists them and removes one. The address is personal data: only shared/storage/suppressions.py
-- reads or writes it, so encrypting it (issue 5) changes that one module.

CREATE TABLE suppressions (
    tenant_id   text NOT NULL,
    channel     text NOT NULL CHECK (channel IN ('email', 'sms')),
    -- Normalised: an email address lower-cased, a phone number in E.164.
    address     text NOT NULL,
    reason      text NOT NULL,
    detail      text,
    provider    text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, channel, address)
);

CREATE INDEX suppressions_newest ON suppressions (tenant_id, created_at DESC);
