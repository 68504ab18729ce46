-- +goose Up
-- recipients is this service's own projection of the users e-mails go to, kept from
-- user.registered, so that an order or payment event finds its address and name
-- without calling the users service (which may be down, and must not learn who is
-- being mailed).
CREATE TABLE recipients (
    user_id    uuid PRIMARY KEY,
    email      text NOT NULL,
    name       text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE recipients;
