-- Scheduling: a delayed job may be a recurring series (its payload the recurring request), which
-- moves to its next time after each occurrence instead of being deleted.

ALTER TABLE delayed_jobs ADD COLUMN recurring boolean NOT NULL DEFAULT false;

-- Cancelling looks up a notification's waiting jobs.
CREATE INDEX delayed_jobs_notification_idx ON delayed_jobs (notification_id);
