-- Requests ingest dropped as duplicates of a notification (its idempotency key repeated within the
-- dedup window). One row per dropped request, keyed by the event's deterministic id so a redelivered
-- event counts once; a table of its own, so counting never touches the notification's status.

CREATE TABLE notification_duplicates (
    event_id         uuid PRIMARY KEY,
    notification_id  uuid NOT NULL,
    tenant_id        text NOT NULL,
    occurred_at      timestamptz NOT NULL
);

CREATE INDEX notification_duplicates_notification_idx ON notification_duplicates (notification_id);
