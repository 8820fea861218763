-- name: window_coverage
-- title: What was read for a window
-- description: Every ingest whose coverage overlaps the window, latest first: source,
--   account, region, status (complete, partial, failed), the window it read, events
--   and why anything is missing. Ingests of local files have no window and always
--   count. trailscan merges these rows per source, account and region (a later failed
--   ingest does not erase what an earlier complete one stored) and counts the events
--   the store holds in the window: findings are only as complete as that merge says.
-- param: since TIMESTAMPTZ = NULL  Start of the window, inclusive (default: the beginning)
-- param: until TIMESTAMPTZ = NULL  End of the window, exclusive (default: now)
SELECT
    source,
    coalesce(account, '') AS account,
    coalesce(region, '') AS region,
    status,
    events,
    skipped,
    coalesce(detail, '') AS detail,
    window_start,
    window_end,
    recorded_at
FROM coverage
WHERE (window_start IS NULL OR $until IS NULL OR window_start < $until)
  AND (window_end IS NULL OR $since IS NULL OR window_end > $since)
ORDER BY recorded_at DESC, source, account, region
