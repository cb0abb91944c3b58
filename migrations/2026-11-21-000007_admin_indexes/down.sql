DROP INDEX products_low_stock_idx;

ALTER TABLE order_items
    DROP CONSTRAINT order_items_order_id_product_id_key,
    ADD CONSTRAINT order_items_order_id_product_id_key UNIQUE (order_id, product_id);

DROP INDEX orders_sales_created_at_idx;
