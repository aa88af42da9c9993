-- Used by sql/tests/sale_views.slt to show that a rows transform may not aggregate
-- (mode: rows).
SELECT dt, hr, count(*) AS views FROM events GROUP BY dt, hr
