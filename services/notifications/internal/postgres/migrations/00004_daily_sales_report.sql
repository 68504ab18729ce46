-- +goose Up
-- The daily sales report is e-mailed to the admin: a new kind of notification...
ALTER TABLE notifications DROP CONSTRAINT notifications_kind_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_kind_check
    CHECK (kind IN ('welcome', 'order_confirmed', 'order_cancelled', 'payment_refunded', 'daily_sales_report'));
-- ...whose recipient is found by address (REPORT_EMAIL), not by user id. Addresses
-- are compared case-insensitively, as the users service keeps them unique.
CREATE INDEX recipients_email ON recipients (lower(email));

-- +goose Down
DROP INDEX recipients_email;
ALTER TABLE notifications DROP CONSTRAINT notifications_kind_check;
-- NOT VALID: reports already written stay (the list shows them); only new rows are
-- held to the old kinds.
ALTER TABLE notifications ADD CONSTRAINT notifications_kind_check
    CHECK (kind IN ('welcome', 'order_confirmed', 'order_cancelled', 'payment_refunded')) NOT VALID;
