-- Stored notification templates (issue 5). A template is a tenant's named slot (template_id, chosen
-- by the caller); its content lives in immutable versions, 1, 2, 3...: updating a template adds a
-- version, and a request gets the latest one unless it pins one. Deleting is soft (deleted_at): the
-- API and the router treat the template as gone, the versions stay for the record, and creating the
-- same id again continues its version numbers, so a version number never names two contents.

CREATE TABLE templates (
    tenant_id       text NOT NULL,
    template_id     text NOT NULL CHECK (template_id ~ '^[A-Za-z0-9_-]{1,64}$'),
    -- The keyset of newest-first pages (shared/storage/pagination.py); the API names a template by template_id.
    id              uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    name            text NOT NULL,
    description     text,
    latest_version  int NOT NULL CHECK (latest_version >= 1),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz,
    PRIMARY KEY (tenant_id, template_id)
);

CREATE INDEX templates_newest ON templates (tenant_id, created_at DESC, id DESC);

CREATE TABLE template_versions (
    tenant_id    text NOT NULL,
    template_id  text NOT NULL,
    version      int NOT NULL CHECK (version >= 1),
    -- Per channel, the Jinja2 sources of the fields the router renders for it, as a request's inline
    -- content has them: {"email": {"subject", "text", "html"}, "sms": {"text"},
    -- "push": {"subject" (the title), "text" (the body)}, "webhook": {"subject", "text", "html"}}.
    channels     jsonb NOT NULL,
    -- The variables the sources use, by name: {"name": {"description": ..., "sample": ...}}; a preview
    -- renders with the samples where the caller gives no value.
    variables    jsonb NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now(),
    -- Who made the version: "api_key:<key id>" or "jwt:<sub>".
    created_by   text NOT NULL,
    PRIMARY KEY (tenant_id, template_id, version),
    FOREIGN KEY (tenant_id, template_id) REFERENCES templates (tenant_id, template_id)
);

-- A pinned version must always render the same: versions are never changed once written.
CREATE FUNCTION template_versions_are_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'template versions are immutable: add a version instead';
END
$$;

CREATE TRIGGER template_versions_immutable BEFORE UPDATE ON template_versions
    FOR EACH ROW EXECUTE FUNCTION template_versions_are_immutable();
