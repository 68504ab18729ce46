-- +goose Up
-- Orders and their lines. Prices are inventory's at the time of the order.
CREATE TABLE orders (
    id             uuid PRIMARY KEY,
    user_id        uuid NOT NULL,
    status         text NOT NULL CHECK (status IN ('pending', 'reserved', 'paid', 'confirmed', 'cancelled')),
    total_cents    bigint NOT NULL CHECK (total_cents >= 0),
    currency       text NOT NULL,
    payment_method text NOT NULL,
    cancel_reason  text CHECK (cancel_reason IN
                       ('out_of_stock', 'payment_declined', 'insufficient_funds', 'customer_request', 'timeout')),
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    -- A reason exactly when cancelled.
    CHECK ((status = 'cancelled') = (cancel_reason IS NOT NULL))
);
-- A customer's orders, newest first (the list's keyset order).
CREATE INDEX orders_by_user ON orders (user_id, created_at DESC, id DESC);
-- Sales reports select by creation time.
CREATE INDEX orders_by_created ON orders (created_at);

CREATE TABLE order_lines (
    order_id         uuid NOT NULL REFERENCES orders ON DELETE CASCADE,
    line             int NOT NULL,
    product_id       uuid NOT NULL,
    quantity         int NOT NULL CHECK (quantity BETWEEN 1 AND 100),
    unit_price_cents bigint NOT NULL CHECK (unit_price_cents >= 0),
    PRIMARY KEY (order_id, line),
    UNIQUE (order_id, product_id)
);

-- Each order's saga: its state, what it knows about the reservation and the charge,
-- and the lease that lets one worker at a time drive it. The next step is derived
-- from the order's status and these columns (internal/order/saga.go).
CREATE TABLE sagas (
    order_id       uuid PRIMARY KEY REFERENCES orders ON DELETE CASCADE,
    state          text NOT NULL CHECK (state IN ('running', 'compensating', 'compensation_failed', 'done')),
    cancel_reason  text,
    charge         text NOT NULL CHECK (charge IN ('none', 'unknown', 'captured', 'declined', 'refunded')),
    charge_sent_at timestamptz,
    reserved       boolean NOT NULL DEFAULT false,
    attempts       int NOT NULL DEFAULT 0,
    failures       int NOT NULL DEFAULT 0,
    last_error     text NOT NULL DEFAULT '',
    -- The lease: a worker claims the saga with a conditional UPDATE that bumps the
    -- token; every change it stores is conditional on the token, so a worker whose
    -- lease ran out and was taken over can no longer write.
    lease_token    bigint NOT NULL DEFAULT 0,
    locked_by      text,
    locked_until   timestamptz,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    finished_at    timestamptz
);
-- Recovery and the operators' view look only at unfinished sagas.
CREATE INDEX sagas_unfinished ON sagas (updated_at) WHERE state <> 'done';

-- The step log: every attempt of every step, for operators.
CREATE TABLE saga_steps (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id uuid NOT NULL REFERENCES sagas ON DELETE CASCADE,
    step     text NOT NULL,
    attempt  int NOT NULL,
    outcome  text NOT NULL CHECK (outcome IN ('ok', 'refused', 'failed')),
    error    text NOT NULL DEFAULT '',
    at       timestamptz NOT NULL
);
CREATE INDEX saga_steps_by_order ON saga_steps (order_id, id);

-- Idempotency-Key claims of POST /orders: the first request with a key claims it
-- (locked_until keeps others waiting), and its response is stored for replays.
CREATE TABLE idempotency_keys (
    user_id      uuid NOT NULL,
    key          text NOT NULL,
    fingerprint  text NOT NULL,
    status       int,
    body         bytea,
    location     text NOT NULL DEFAULT '',
    locked_until timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key)
);
CREATE INDEX idempotency_keys_by_created ON idempotency_keys (created_at);

-- +goose Down
DROP TABLE idempotency_keys;
DROP TABLE saga_steps;
DROP TABLE sagas;
DROP TABLE order_lines;
DROP TABLE orders;
