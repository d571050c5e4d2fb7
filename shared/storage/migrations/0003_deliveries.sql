-- A notification can go out as several deliveries (one per push device). Each delivery's status
-- moves forward on its own; the notification is sent once any delivery is, failed only once all are.

ALTER TABLE notifications ADD COLUMN deliveries int;

ALTER TABLE notification_events ADD COLUMN delivery_id uuid;

CREATE TABLE deliveries (
    id               uuid PRIMARY KEY,
    notification_id  uuid NOT NULL,
    tenant_id        text NOT NULL,
    channel          text,
    status           text NOT NULL,
    status_rank      smallint NOT NULL,
    attempts         int NOT NULL DEFAULT 0,
    provider         text,
    last_reason      text,
    last_detail      text,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL
);

CREATE INDEX deliveries_notification_idx ON deliveries (notification_id);
