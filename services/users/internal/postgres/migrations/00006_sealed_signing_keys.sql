-- +goose Up
-- A signing key's seed may be kept sealed (AES-256-GCM under a key-encryption key that
-- lives outside the database, with the kid as associated data) instead of in plain:
-- exactly one of the two columns is set. The service seals plain rows in place once it
-- is given a key-encryption key.
ALTER TABLE signing_keys ALTER COLUMN seed DROP NOT NULL;
ALTER TABLE signing_keys ADD COLUMN sealed_seed bytea;
ALTER TABLE signing_keys ADD CONSTRAINT signing_keys_one_seed CHECK ((seed IS NULL) <> (sealed_seed IS NULL));

-- +goose Down
-- SQL cannot unseal a key (it has no key-encryption key), and dropping sealed keys would
-- invalidate every access token they signed: refuse rather than do either.
-- +goose StatementBegin
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM signing_keys WHERE seed IS NULL) THEN
        RAISE EXCEPTION 'signing_keys holds sealed keys; they cannot be unsealed in SQL';
    END IF;
END $$;
-- +goose StatementEnd
ALTER TABLE signing_keys DROP CONSTRAINT signing_keys_one_seed;
ALTER TABLE signing_keys DROP COLUMN sealed_seed;
ALTER TABLE signing_keys ALTER COLUMN seed SET NOT NULL;
