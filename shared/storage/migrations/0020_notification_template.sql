-- GET /api/v1/notifications?template=<id>: the stored template a notification was sent with (its
-- content.template.id), recorded by the gateway on acceptance like the other listing filters.
ALTER TABLE notifications ADD COLUMN template_id text;

CREATE INDEX notifications_tenant_template_idx ON notifications (tenant_id, template_id, created_at DESC, id DESC)
    WHERE template_id IS NOT NULL;
