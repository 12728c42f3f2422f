-- The hstore extension is left installed: other schemas may use it.
DROP TABLE subscriptions;
DROP TABLE memberships;
DROP TABLE tasks;
DROP TABLE countries;
DROP TABLE vendor_products;
DROP TABLE products;
DROP TYPE task_status;
