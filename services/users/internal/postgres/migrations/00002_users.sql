-- +goose Up
CREATE TABLE users (
    id            uuid PRIMARY KEY,
    -- Stored lower-cased (the service folds case before it stores or looks up), and
    -- unique whatever the case, so "Ann@x.com" and "ann@x.com" are one account even if
    -- a row ever arrives by another path.
    email         text NOT NULL CHECK (email = lower(email)),
    name          text NOT NULL,
    role          text NOT NULL CHECK (role IN ('customer', 'admin')),
    -- argon2id in PHC string format: the parameters travel with each hash, so they can
    -- be raised later without breaking existing passwords.
    password_hash text NOT NULL,
    created_at    timestamptz NOT NULL
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

-- +goose Down
DROP TABLE users;
