-- name: web_identity_sessions
-- title: Service accounts that obtained credentials by web identity (IRSA)
-- description: Each service account (web-identity subject) that STS accepted in the
--   window, with the token's issuer (identityProvider) and the role it assumed. It is
--   evidence of which cluster a list of service accounts describes: a list saved from a
--   cluster holds the service accounts its issuer's tokens named, annotated with the
--   roles they assumed.
-- param: since TIMESTAMPTZ = NULL  Start of the window, inclusive (default: the beginning)
-- param: until TIMESTAMPTZ = NULL  End of the window, exclusive (default: now)
SELECT
    identity_provider,
    principal_id,
    user_name AS subject,
    request_parameters ->> 'roleArn' AS role_arn,
    count(*) AS sessions,
    max(event_time) AS last_seen
FROM events
WHERE event_name = 'AssumeRoleWithWebIdentity'
  AND event_source = 'sts.amazonaws.com'
  AND error_code IS NULL
  AND ($since IS NULL OR event_time >= $since)
  AND ($until IS NULL OR event_time < $until)
GROUP BY ALL
ORDER BY subject, role_arn
