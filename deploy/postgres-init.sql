-- Runs once when the compose Postgres volume is first created: one role and one
-- database per service, each role able to reach only its own database. The passwords
-- are for a local demo only; a real deployment takes them from its secret store.
CREATE ROLE bazaar_users LOGIN PASSWORD 'bazaar_users';
CREATE ROLE bazaar_inventory LOGIN PASSWORD 'bazaar_inventory';
CREATE ROLE bazaar_payments LOGIN PASSWORD 'bazaar_payments';
CREATE ROLE bazaar_orders LOGIN PASSWORD 'bazaar_orders';
CREATE ROLE bazaar_notifications LOGIN PASSWORD 'bazaar_notifications';
CREATE DATABASE bazaar_users OWNER bazaar_users;
CREATE DATABASE bazaar_inventory OWNER bazaar_inventory;
CREATE DATABASE bazaar_payments OWNER bazaar_payments;
CREATE DATABASE bazaar_orders OWNER bazaar_orders;
CREATE DATABASE bazaar_notifications OWNER bazaar_notifications;
REVOKE CONNECT ON DATABASE bazaar_users, bazaar_inventory, bazaar_payments, bazaar_orders, bazaar_notifications FROM PUBLIC;
