-- Recipients: a user's contact details and which channels of which categories they want (issue 5).
-- The router fills a request's missing email, phone and locale from the stored profile of its
-- recipient.user_id, and drops the channels the user opted out of. Email and phone are personal
-- data: sealed (shared.crypto), opened only by shared/storage/recipients.py. They have no blind
-- index: a recipient is always found by its user id, never by an address.

CREATE TABLE recipients (
    -- A surrogate key for keyset pages and resealing; the API names a recipient by its user id.
    id            uuid NOT NULL UNIQUE,
    tenant_id     text NOT NULL,
    user_id       text NOT NULL,
    email_sealed  bytea,
    -- E.164.
    phone_sealed  bytea,
    locale        text,
    -- An IANA time zone (Europe/Paris).
    timezone      text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    -- Deleted through the API: hidden, and no longer used for routing.
    deleted_at    timestamptz,
    PRIMARY KEY (tenant_id, user_id)
);

-- The listing's keyset order; deleted rows are filtered out as it walks (they are few).
CREATE INDEX recipients_newest ON recipients (tenant_id, created_at DESC, id DESC);

-- One rule each: the user wants (enabled) or does not want this category on this channel; '*'
-- stands for every category or every channel, and the most specific rule wins (see
-- services/router/preferences.py). Kept while the recipient is deleted, so an opt-out comes back
-- with a recipient created again under the same user id.
CREATE TABLE preferences (
    tenant_id   text NOT NULL,
    user_id     text NOT NULL,
    category    text NOT NULL,
    channel     text NOT NULL CHECK (channel IN ('email', 'sms', 'push', 'webhook', '*')),
    enabled     boolean NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, user_id, category, channel),
    FOREIGN KEY (tenant_id, user_id) REFERENCES recipients (tenant_id, user_id) ON DELETE CASCADE
);
