-- +goose Up
-- One payment per order: the order id is the charge's idempotency key, and its unique
-- index is what makes concurrent identical charges insert one row.
CREATE TABLE payments (
    id              uuid PRIMARY KEY,
    order_id        uuid NOT NULL,
    user_id         uuid NOT NULL,
    amount_cents    bigint NOT NULL CHECK (amount_cents > 0),
    currency        text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    method          text NOT NULL,
    -- pending: inserted before the processor is asked; its outcome is not recorded yet
    -- (the next charge, look-up or refund of the order settles it).
    status          text NOT NULL CHECK (status IN ('pending', 'captured', 'declined', 'refunded')),
    decline_code    text CHECK (decline_code IN ('payment_declined', 'insufficient_funds')),
    processor_ref   text,
    -- What the first request sent: its key (the contract makes it the order id) and
    -- the SHA-256 of its parsed content, so a retry can be told from a different
    -- request under the same key.
    idempotency_key text NOT NULL CHECK (idempotency_key = order_id::text),
    request_hash    bytea NOT NULL CHECK (length(request_hash) = 32),
    created_at      timestamptz NOT NULL,
    settled_at      timestamptz,
    refunded_at     timestamptz,
    CONSTRAINT payments_order_id_key UNIQUE (order_id),
    CONSTRAINT payments_declined_has_code CHECK ((status = 'declined') = (decline_code IS NOT NULL)),
    CONSTRAINT payments_settled_has_time CHECK ((status = 'pending') = (settled_at IS NULL)),
    CONSTRAINT payments_refunded_has_time CHECK ((status = 'refunded') = (refunded_at IS NOT NULL))
);
-- The owner's list: GET /api/v1/payments?order_id= filters on both and pages by
-- (created_at, id).
CREATE INDEX payments_user_order ON payments (user_id, order_id, created_at, id);

-- +goose Down
DROP TABLE payments;
