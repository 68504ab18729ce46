-- +goose Up
-- The transactional outbox (pkg/outbox): events are written here in the same
-- transaction as the change they describe, and relayed to the service's stream.
CREATE TABLE outbox (
    id           uuid PRIMARY KEY,
    stream       text NOT NULL,
    type         text NOT NULL,
    source       text NOT NULL,
    subject      text NOT NULL,
    time         timestamptz NOT NULL,
    data         jsonb NOT NULL,
    traceparent  text NOT NULL DEFAULT '',
    seq          bigint GENERATED ALWAYS AS IDENTITY,
    published_at timestamptz
);
-- The relay reads unpublished rows in commit-independent order: it selects
-- "published_at IS NULL", never "seq > last seen" (a sequence is handed out before
-- commit, so a late-committing row would be skipped).
CREATE INDEX outbox_unpublished ON outbox (seq) WHERE published_at IS NULL;

-- +goose Down
DROP TABLE outbox;
