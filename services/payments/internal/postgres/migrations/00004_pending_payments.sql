-- +goose Up
-- The sweep looks for payments left pending (a charge whose process died before it
-- recorded the processor's answer) every minute, oldest first. Pending rows are few
-- and short-lived, so a partial index keeps that look-up cheap however many settled
-- payments the table holds.
CREATE INDEX payments_pending ON payments (created_at, id) WHERE status = 'pending';

-- +goose Down
DROP INDEX payments_pending;
