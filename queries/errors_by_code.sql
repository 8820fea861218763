-- name: errors_by_code
-- title: Failed calls by error code
-- description: How many calls failed with each error code, and since when: the
--   first look at a store, to see authorization failures beside throttling and
--   not-found noise.
-- param: since TIMESTAMPTZ = NULL  Start of the window, inclusive (default: the beginning)
-- param: until TIMESTAMPTZ = NULL  End of the window, exclusive (default: now)
SELECT
    error_code,
    count(*) AS events,
    count(DISTINCT coalesce(session_issuer_arn, identity_arn)) AS principals,
    min(event_time) AS first_seen,
    max(event_time) AS last_seen
FROM events
WHERE error_code IS NOT NULL
  AND ($since IS NULL OR event_time >= $since)
  AND ($until IS NULL OR event_time < $until)
GROUP BY error_code
ORDER BY events DESC, error_code
