-- Views during a sale: a filter and a projection (mode: rows, runs on each micro-batch).
SELECT
    uuid,
    "productId",
    "saleId",
    coalesce(channel, 'unknown') AS channel,
    _event_time,
    dt,
    hr
FROM events
WHERE "saleId" IS NOT NULL
