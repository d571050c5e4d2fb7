-- Sending dead letters again by hand: when each was last requeued, and bulk replays with their progress.

ALTER TABLE dead_letters ADD COLUMN requeued_at timestamptz;

CREATE TABLE dead_letter_replays (
    id            uuid PRIMARY KEY,
    tenant_id     text NOT NULL,
    -- The listing filter it replays (reason, channel, ...), as the API took it.
    filter        jsonb NOT NULL,
    -- Only what was dead-lettered before the replay was asked for: a delivery that fails again is not
    -- replayed again by the same replay.
    up_to         timestamptz NOT NULL,
    status        text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'running', 'done')),
    requeued      int NOT NULL DEFAULT 0,
    skipped       int NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    -- A running replay whose runner stopped beating is taken over by another replica.
    heartbeat_at  timestamptz,
    finished_at   timestamptz
);

CREATE INDEX dead_letter_replays_waiting_idx ON dead_letter_replays (created_at) WHERE status <> 'done';
