-- What the admin dashboard reads, each figure from an index alone (docs/dashboard-queries.md).

-- Sales by window and the best sellers: the orders that were not cancelled, by creation time,
-- carrying what the sums and the join to their lines need, so that a window is one range of this
-- index and never a visit to the table.
CREATE INDEX orders_sales_created_at_idx ON orders (created_at)
    INCLUDE (id, currency, total_minor)
    WHERE status <> 'cancelled';

-- The best sellers join each order to its lines' products and units. The (order_id, product_id)
-- uniqueness index already leads with order_id and holds product_id; carrying quantity too makes
-- the join index-only, for the price of 4 bytes per line instead of a second index on order_id.
ALTER TABLE order_items
    DROP CONSTRAINT order_items_order_id_product_id_key,
    ADD CONSTRAINT order_items_order_id_product_id_key UNIQUE (order_id, product_id)
        INCLUDE (quantity);

-- Active products running low, lowest stock first, for any threshold: the first page is a walk
-- of this index and the count an index-only scan of its start.
CREATE INDEX products_low_stock_idx ON products (stock, id) WHERE active;

-- Active subscriptions are counted from subscriptions_renewal_due_idx (WHERE status = 'active').
