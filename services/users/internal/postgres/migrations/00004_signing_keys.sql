-- +goose Up
-- The Ed25519 keys access tokens are signed with. They live here, not in each
-- process, so that every replica signs with the same key and a restart does not
-- invalidate the tokens already out. Only the users database role can read them.
CREATE TABLE signing_keys (
    kid        text PRIMARY KEY,            -- the RFC 7638 thumbprint of the public key
    seed       bytea NOT NULL CHECK (length(seed) = 32), -- the Ed25519 private key seed
    created_at timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE signing_keys;
