ALTER TABLE products RESET (fillfactor);
CREATE INDEX products_low_stock_idx ON products (stock, id) WHERE active;
