-- Retention (services/archiver): notifications leave Postgres, oldest first, once their last update is
-- older than HERALD_RETENTION_DAYS. Each batch reads them in (created_at, id) order from where the last
-- one stopped; without this index every batch would scan and sort the whole table. created_at rather
-- than updated_at: it is written once, where updated_at changes with every status update.
CREATE INDEX notifications_created_id_idx ON notifications (created_at, id);
-- The archiver takes each notification's webhook deliveries with it.
CREATE INDEX webhook_endpoint_deliveries_notification_idx ON webhook_endpoint_deliveries (notification_id);
