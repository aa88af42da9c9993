-- Page views per product per hour, with how many were during a sale.
-- mode: partitions (the stream job merges each micro-batch's counts, minimums and maximums
-- into the hours it touched; a backfill recomputes them).
SELECT
    dt,
    hr,
    "productId",
    count(*)                                   AS views,
    count("saleId")                            AS sale_views,
    min(_event_time)                           AS first_view,
    max(_event_time)                           AS last_view
FROM events
GROUP BY dt, hr, "productId"
ORDER BY dt, hr, "productId"
