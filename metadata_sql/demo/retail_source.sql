-- Demo retail source (SQLite): customers, products and sales. `dms demo` recreates it.
DROP TABLE IF EXISTS SALES;
DROP TABLE IF EXISTS PRODUCTS;
DROP TABLE IF EXISTS CUSTOMERS;

CREATE TABLE CUSTOMERS (
    CUST_ID      INTEGER PRIMARY KEY,
    CUST_NAME    VARCHAR(100) NOT NULL,
    EMAIL        VARCHAR(200),
    CITY         VARCHAR(100),
    SEGMENT      VARCHAR(20),
    CREDIT_LIMIT NUMERIC(12,2),
    BIRTH_DATE   DATE,
    STATUS       CHAR(1),
    UPDATED_AT   TIMESTAMP NOT NULL
);

CREATE TABLE PRODUCTS (
    PROD_ID    INTEGER PRIMARY KEY,
    PROD_NAME  VARCHAR(100) NOT NULL,
    CATEGORY   VARCHAR(50),
    UNIT_PRICE NUMERIC(10,2),
    UPDATED_AT TIMESTAMP NOT NULL
);

CREATE TABLE SALES (
    SALE_ID INTEGER PRIMARY KEY,
    SALE_TS TIMESTAMP NOT NULL,
    CUST_ID INTEGER NOT NULL REFERENCES CUSTOMERS (CUST_ID),
    PROD_ID INTEGER NOT NULL REFERENCES PRODUCTS (PROD_ID),
    QTY     INTEGER NOT NULL,
    AMOUNT  NUMERIC(12,2) NOT NULL
);

INSERT INTO CUSTOMERS VALUES
 (1, 'Ada Lovelace',     'ada@example.com',     'London',     'RETAIL',    5000.00, '1815-12-10', 'A', '2026-11-01 08:00:00'),
 (2, 'Alan Turing',      'alan@example.com',    'Manchester', 'RETAIL',    3000.00, '1912-06-23', 'A', '2026-11-01 08:00:00'),
 (3, 'Grace Hopper',     'grace@example.com',   'New York',   'CORPORATE', 25000.00, '1906-12-09', 'A', '2026-11-01 08:00:00'),
 (4, 'Edsger Dijkstra',  'edsger@example.com',  'Rotterdam',  'RETAIL',    1500.00, '1930-05-11', 'A', '2026-11-01 08:00:00'),
 (5, 'Barbara Liskov',   'barbara@example.com', 'Boston',     'CORPORATE', 40000.00, '1939-11-07', 'A', '2026-11-01 08:00:00'),
 (6, 'Donald Knuth',     NULL,                  'Stanford',   'RETAIL',    2500.00, '1938-01-10', 'A', '2026-11-01 08:00:00'),
 (7, 'Margaret Hamilton','margaret@example.com','Boston',     'GOVERNMENT', 60000.00, '1936-08-17', 'A', '2026-11-01 08:00:00'),
 (8, 'Ken Thompson',     'ken@example.com',     'Berkeley',   'RETAIL',    NULL,    '1943-02-04', 'I', '2026-11-01 08:00:00');

INSERT INTO PRODUCTS VALUES
 (10, 'Keyboard',      'PERIPHERALS',  49.90, '2026-11-01 08:00:00'),
 (11, 'Mouse',         'PERIPHERALS',  19.90, '2026-11-01 08:00:00'),
 (12, 'Monitor 27in',  'DISPLAYS',    289.00, '2026-11-01 08:00:00'),
 (13, 'Laptop 14in',   'COMPUTERS',  1199.00, '2026-11-01 08:00:00'),
 (14, 'USB-C Dock',    'PERIPHERALS', 149.00, '2026-11-01 08:00:00'),
 (15, 'Desk Lamp',     'OFFICE',       39.00, '2026-11-01 08:00:00');

INSERT INTO SALES VALUES
 (1001, '2026-11-02 09:15:00', 1, 10, 1,   49.90),
 (1002, '2026-11-02 10:02:00', 1, 11, 2,   39.80),
 (1003, '2026-11-02 11:30:00', 3, 13, 5, 5995.00),
 (1004, '2026-11-02 14:45:00', 5, 12, 3,  867.00),
 (1005, '2026-11-02 16:20:00', 2, 15, 1,   39.00),
 (1006, '2026-11-03 09:05:00', 1, 10, 1,   49.90),
 (1007, '2026-11-03 09:40:00', 4, 14, 1,  149.00),
 (1008, '2026-11-03 12:10:00', 3, 12, 2,  578.00),
 (1009, '2026-11-03 13:55:00', 7, 13, 2, 2398.00),
 (1010, '2026-11-03 17:30:00', 6, 11, 1,   19.90),
 (1011, '2026-11-04 08:50:00', 5, 13, 1, 1199.00),
 (1012, '2026-11-04 10:25:00', 5, 14, 4,  596.00),
 (1013, '2026-11-04 11:00:00', 2, 10, 1,   49.90),
 (1014, '2026-11-04 15:35:00', 8, 15, 2,   78.00),
 (1015, '2026-11-04 18:05:00', 1, 12, 1,  289.00);
