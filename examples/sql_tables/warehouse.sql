-- A small shop warehouse: four tables linked by foreign keys, and one view.
-- `python make_db.py` turns this script into warehouse.db (which is not committed).

CREATE TABLE customers (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    email       TEXT UNIQUE,
    created_at  TEXT NOT NULL
);

CREATE TABLE products (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    price_cents INTEGER NOT NULL
);

CREATE TABLE orders (
    id          INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers (id),
    ordered_at  TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'placed'
);

CREATE TABLE order_items (
    order_id    INTEGER NOT NULL REFERENCES orders (id),
    product_id  INTEGER NOT NULL REFERENCES products (id),
    quantity    INTEGER NOT NULL,
    PRIMARY KEY (order_id, product_id)
);

CREATE VIEW customer_revenue AS
SELECT c.id AS customer_id,
       c.name AS customer_name,
       SUM(i.quantity * p.price_cents) AS revenue_cents
FROM customers AS c
JOIN orders AS o ON o.customer_id = c.id
JOIN order_items AS i ON i.order_id = o.id
JOIN products AS p ON p.id = i.product_id
GROUP BY c.id, c.name;

INSERT INTO customers (id, name, email, created_at) VALUES
    (1, 'Ada', 'ada@example.com', '2024-01-02'),
    (2, 'Grace', 'grace@example.com', '2024-01-05'),
    (3, 'Edsger', NULL, '2024-02-11');

INSERT INTO products (id, name, price_cents) VALUES
    (1, 'Notebook', 450),
    (2, 'Pencil', 120);

INSERT INTO orders (id, customer_id, ordered_at, status) VALUES
    (1, 1, '2024-03-01', 'shipped'),
    (2, 1, '2024-03-04', 'placed'),
    (3, 2, '2024-03-05', 'shipped'),
    (4, 3, '2024-03-09', 'cancelled');

INSERT INTO order_items (order_id, product_id, quantity) VALUES
    (1, 1, 2),
    (1, 2, 5),
    (2, 2, 1),
    (3, 1, 1),
    (4, 2, 3);
