-- +goose Up
-- Orders refunded before any charge arrived: a saga that gave up on charging (its
-- budget ran out, or payments did not answer) compensates with a refund; if its charge
-- request was still on its way, this row makes that charge fail instead of taking money
-- for a cancelled order.
CREATE TABLE voided_orders (
    order_id  uuid PRIMARY KEY,
    voided_at timestamptz NOT NULL
);

-- +goose Down
DROP TABLE voided_orders;
