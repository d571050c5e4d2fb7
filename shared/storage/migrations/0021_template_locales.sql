-- Localised templates: a version may hold, per BCP 47 tag ("fr", "pt-BR"; stored in canonical case),
-- variants of its per-channel content, each shaped like `channels`: {"fr": {"email": {...}, "sms": {...}}}.
-- The router renders the variant that best matches the recipient's locale (fr-CA, then fr, then the
-- default `channels`). A constant default adds the column without touching the rows, so the trigger
-- refusing UPDATEs of versions is not involved; versions written before hold no variants.
ALTER TABLE template_versions
    ADD COLUMN locales jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(locales) = 'object');
