-- Sale views with the sale's name and brand: a join with the small reference table `sales`
-- (sql/sales.csv, declared in the job as [[reference]]). mode: rows.
SELECT
    e.uuid,
    e."productId",
    e."saleId",
    s.sale_name,
    s.brand,
    e._event_time,
    e.dt,
    e.hr
FROM events e
JOIN sales s ON e."saleId" = s."saleId"
