-- +goose Up
-- The trace of the event that queued a notification (W3C traceparent, '' when none),
-- so that the e-mail task enqueued later, by the dispatcher, joins that trace: an
-- order's trace reaches the e-mail it caused.
ALTER TABLE notifications ADD COLUMN traceparent text NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE notifications DROP COLUMN traceparent;
