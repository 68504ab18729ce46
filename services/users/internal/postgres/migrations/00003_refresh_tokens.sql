-- +goose Up
-- Refresh tokens are opaque; only their SHA-256 is kept, so a copy of this table lets
-- nobody in. Each login starts a family; each refresh marks its token used and adds a
-- child to the family. A used token presented again revokes the whole family.
CREATE TABLE refresh_tokens (
    id         uuid PRIMARY KEY,
    token_hash bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    family_id  uuid NOT NULL,
    parent_id  uuid REFERENCES refresh_tokens (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    revoked_at timestamptz
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);

-- +goose Down
DROP TABLE refresh_tokens;
