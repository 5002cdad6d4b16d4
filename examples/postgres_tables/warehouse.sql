-- A small warehouse: two schemas, keys across them, comments, a view and a materialized view.
CREATE SCHEMA raw;
CREATE SCHEMA marts;

CREATE TABLE raw.customers (
    id integer PRIMARY KEY,
    name varchar(80) NOT NULL,
    email text
);
COMMENT ON TABLE raw.customers IS 'Customers, one row each, from the shop database';
COMMENT ON COLUMN raw.customers.email IS 'Lower-cased at load';

CREATE TABLE raw.orders (
    id bigint PRIMARY KEY,
    customer_id integer NOT NULL REFERENCES raw.customers (id),
    placed_at timestamp NOT NULL,
    amount numeric(10, 2) NOT NULL
);

CREATE TABLE marts.customer_revenue (
    customer_id integer PRIMARY KEY REFERENCES raw.customers (id),
    revenue numeric(12, 2) NOT NULL
);
COMMENT ON TABLE marts.customer_revenue IS 'Revenue per customer, all time';

CREATE VIEW marts.large_orders AS SELECT * FROM raw.orders WHERE amount >= 100;

CREATE MATERIALIZED VIEW marts.daily_revenue AS
    SELECT placed_at::date AS day, sum(amount) AS revenue FROM raw.orders GROUP BY 1;

INSERT INTO raw.customers SELECT g, 'customer ' || g, 'c' || g || '@example.com'
    FROM generate_series(1, 50) g;
INSERT INTO raw.orders SELECT g, 1 + g % 50, timestamp '2024-01-01' + g * interval '1 hour', g % 250
    FROM generate_series(1, 1000) g;
INSERT INTO marts.customer_revenue SELECT customer_id, sum(amount) FROM raw.orders GROUP BY 1;
REFRESH MATERIALIZED VIEW marts.daily_revenue;
-- row-count estimates come from these statistics (defstate never runs count(*))
ANALYZE;
