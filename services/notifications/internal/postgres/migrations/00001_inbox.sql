-- +goose Up
-- The inbox: each consumed event's id is recorded in the same transaction as its
-- effects, so a redelivered event is a no-op.
CREATE TABLE inbox (
    event_id   uuid PRIMARY KEY,
    stream     text NOT NULL,
    type       text NOT NULL,
    handled_at timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE inbox;
