-- Where each page view came from: campaign parameters and search keywords, for streams whose
-- events carry the page "url" and its "referrer". mode: rows. What used to be a wall of nested
-- split_part/substring calls is one function call per field.
SELECT
    uuid,
    url_host(url)                     AS host,
    url_path(url)                     AS path,
    url_param(url, 'utm_source')      AS utm_source,
    url_param(url, 'utm_medium')      AS utm_medium,
    url_param(url, 'utm_campaign')    AS utm_campaign,
    url_param(url, 'utm_term')        AS utm_term,
    search_engine(referrer)           AS search_engine,
    search_keyword(referrer)          AS search_keyword,
    dt,
    hr
FROM events
