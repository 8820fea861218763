-- name: window_coverage
-- title: What was read for a window
-- description: The coverage recorded by the ingests that overlap the window: source,
--   account, region, status (complete, partial, failed), events read and why anything
--   is missing — the latest ingest for each source, account and region. Findings are
--   only as complete as this: a region that was not read is never "no findings".
--   Ingests of local files have no window and always count.
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
QUALIFY row_number() OVER (
    PARTITION BY source, coalesce(account, ''), coalesce(region, '')
    ORDER BY recorded_at DESC) = 1
ORDER BY source, account, region
