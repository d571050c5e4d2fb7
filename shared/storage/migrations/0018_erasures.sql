-- GDPR erasure (shared/storage/erasure.py): a recipient's personal data is removed or anonymised
-- everywhere Herald stores it, and this audit of each erasure is kept. It names the user only by a
-- keyed blind index: whoever knows the user id can show the erasure happened, nobody can read the id
-- back from it.
CREATE TABLE erasures (
    id             uuid PRIMARY KEY,
    tenant_id      text NOT NULL,
    subject_index  bytea NOT NULL,
    -- Who asked: "api_key:<key id>" or "jwt:<subject>".
    requested_by   text NOT NULL,
    requested_at   timestamptz NOT NULL DEFAULT now(),
    -- What was removed or anonymised, by kind: {"notifications": 3, "devices": 1, ...}.
    counts         jsonb NOT NULL
);

CREATE INDEX erasures_tenant_subject_idx ON erasures (tenant_id, subject_index, requested_at DESC);
