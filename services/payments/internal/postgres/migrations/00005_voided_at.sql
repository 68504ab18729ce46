-- +goose Up
-- The daily payments:voids-cleanup deletes the voids older than VOID_RETENTION, the
-- oldest, by this index.
CREATE INDEX voided_orders_voided_at ON voided_orders (voided_at);

-- +goose Down
DROP INDEX voided_orders_voided_at;
