-- +goose Up
-- One reservation per order: the primary key is what makes a reserve idempotent, and
-- concurrent reserves of one order wait on each other's key instead of both reserving.
CREATE TABLE reservations (
    order_id   uuid PRIMARY KEY,
    -- rejected: a reserve that found too little stock. Nothing is held, but the outcome
    -- is kept so that a repeat of that order's reserve is refused again rather than
    -- reserving stock for an order the saga has already cancelled.
    status     text NOT NULL CHECK (status IN ('reserved', 'committed', 'released', 'rejected')),
    -- '' for a reservation that holds nothing (rejected, or released before it was made).
    currency   text NOT NULL,
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
-- What reservations:expire looks for.
CREATE INDEX reservations_expiring ON reservations (expires_at) WHERE status = 'reserved';

CREATE TABLE reservation_lines (
    order_id         uuid NOT NULL REFERENCES reservations ON DELETE CASCADE,
    -- The line's place in the request, so the reservation answers its items in order.
    position         smallint NOT NULL,
    product_id       uuid NOT NULL REFERENCES products,
    quantity         integer NOT NULL CHECK (quantity > 0),
    -- The price when reserved: the order is charged this, whatever the catalogue
    -- says later.
    unit_price_cents bigint NOT NULL CHECK (unit_price_cents > 0),
    PRIMARY KEY (order_id, position),
    UNIQUE (order_id, product_id)
);

-- +goose Down
DROP TABLE reservation_lines;
DROP TABLE reservations;
