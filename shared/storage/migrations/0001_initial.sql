-- Herald's initial schema. Every row carries its tenant so each query can be scoped to one.

CREATE TABLE tenants (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id          uuid PRIMARY KEY,
    tenant_id   text NOT NULL REFERENCES tenants,
    name        text NOT NULL,
    prefix      text NOT NULL,
    key_hash    bytea NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

CREATE TABLE notifications (
    id               uuid PRIMARY KEY,
    tenant_id        text NOT NULL,
    status           text NOT NULL,
    status_rank      smallint NOT NULL,
    channel          text,
    attempts         int NOT NULL DEFAULT 0,
    last_reason      text,
    last_detail      text,
    idempotency_key  text,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL
);

CREATE INDEX notifications_tenant_created_idx ON notifications (tenant_id, created_at DESC);

CREATE TABLE notification_events (
    id               bigserial PRIMARY KEY,
    event_id         uuid NOT NULL UNIQUE,
    notification_id  uuid NOT NULL,
    tenant_id        text NOT NULL,
    status           text NOT NULL,
    occurred_at      timestamptz NOT NULL,
    service          text NOT NULL,
    channel          text,
    attempt          int,
    provider         text,
    reason           text,
    detail           text
);

CREATE INDEX notification_events_notification_idx ON notification_events (notification_id, occurred_at);

CREATE TABLE delayed_jobs (
    job_id           uuid PRIMARY KEY,
    tenant_id        text NOT NULL,
    notification_id  uuid,
    due_at           timestamptz NOT NULL,
    target_topic     text NOT NULL,
    key              bytea,
    payload          bytea NOT NULL,
    headers          jsonb NOT NULL DEFAULT '{}',
    reason           text,
    created_at       timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX delayed_jobs_due_idx ON delayed_jobs (due_at);
