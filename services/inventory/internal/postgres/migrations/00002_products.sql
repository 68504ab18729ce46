-- +goose Up
CREATE TABLE products (
    id          uuid PRIMARY KEY,
    -- Case-sensitive and exact: the service trims it and allows only [A-Za-z0-9_-].
    sku         text NOT NULL CONSTRAINT products_sku_key UNIQUE,
    name        text NOT NULL,
    description text NOT NULL DEFAULT '',
    price_cents bigint NOT NULL CHECK (price_cents > 0),
    currency    text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    -- The last line of defence for "stock never goes below zero": reservations
    -- decrement with "WHERE stock >= quantity", and this refuses anything that slips by.
    stock       integer NOT NULL CONSTRAINT products_stock_nonnegative CHECK (stock >= 0),
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);
-- The catalogue's list order, and its keyset cursor (created_at, id).
CREATE INDEX products_list ON products (created_at, id);

-- +goose Down
DROP TABLE products;
