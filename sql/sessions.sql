-- Sessions per user: a new session starts after 30 minutes without an event of that user.
-- For streams whose events carry a "userId". mode: partitions (a window over whole days;
-- partitioned by dt, so a session that crosses midnight is split there).
WITH gaps AS (
    SELECT
        "userId",
        _event_time,
        dt,
        CASE
            WHEN lag(_event_time) OVER (PARTITION BY "userId", dt ORDER BY _event_time) IS NULL THEN 1
            WHEN _event_time - lag(_event_time) OVER (PARTITION BY "userId", dt ORDER BY _event_time)
                 > INTERVAL '30 minutes' THEN 1
            ELSE 0
        END AS starts
    FROM events
),
numbered AS (
    SELECT *, sum(starts) OVER (PARTITION BY "userId", dt ORDER BY _event_time ROWS UNBOUNDED PRECEDING) AS session
    FROM gaps
)
SELECT
    dt,
    "userId",
    session,
    min(_event_time) AS started,
    max(_event_time) AS ended,
    count(*)         AS events
FROM numbered
GROUP BY dt, "userId", session
ORDER BY dt, "userId", session
