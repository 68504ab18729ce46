-- +goose Up
-- An order shows `cancelling` while its compensation runs (release and refund, each
-- retried on its own), and may be cancelled because its prices changed between the
-- quote and the reservation.
ALTER TABLE orders DROP CONSTRAINT orders_status_check,
    ADD CONSTRAINT orders_status_check
        CHECK (status IN ('pending', 'reserved', 'paid', 'confirmed', 'cancelling', 'cancelled'));
ALTER TABLE orders DROP CONSTRAINT orders_cancel_reason_check,
    ADD CONSTRAINT orders_cancel_reason_check
        CHECK (cancel_reason IN ('out_of_stock', 'payment_declined', 'insufficient_funds', 'customer_request', 'timeout',
                                 'price_changed'));
-- A running saga whose step keeps failing is `stuck`, for operators to see. How long
-- it has been failing is what marks it, not how many attempts it took.
ALTER TABLE sagas DROP CONSTRAINT sagas_state_check,
    ADD CONSTRAINT sagas_state_check
        CHECK (state IN ('running', 'stuck', 'compensating', 'compensation_failed', 'done'));
ALTER TABLE sagas ADD COLUMN failing_since timestamptz;
-- A charge whose answer was lost is no longer waited for: a refund voids the order.
ALTER TABLE sagas DROP COLUMN charge_sent_at;

-- +goose Down
ALTER TABLE sagas ADD COLUMN charge_sent_at timestamptz;
ALTER TABLE sagas DROP COLUMN failing_since;
ALTER TABLE sagas DROP CONSTRAINT sagas_state_check,
    ADD CONSTRAINT sagas_state_check CHECK (state IN ('running', 'compensating', 'compensation_failed', 'done'));
ALTER TABLE orders DROP CONSTRAINT orders_cancel_reason_check,
    ADD CONSTRAINT orders_cancel_reason_check
        CHECK (cancel_reason IN ('out_of_stock', 'payment_declined', 'insufficient_funds', 'customer_request', 'timeout'));
ALTER TABLE orders DROP CONSTRAINT orders_status_check,
    ADD CONSTRAINT orders_status_check CHECK (status IN ('pending', 'reserved', 'paid', 'confirmed', 'cancelled'));
