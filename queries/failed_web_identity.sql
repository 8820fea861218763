-- name: failed_web_identity
-- title: Failed AssumeRoleWithWebIdentity (IRSA) calls
-- description: Every refused sts:AssumeRoleWithWebIdentity: the pod's projected
--   service-account token was presented for a role and STS said no. The subject
--   (system:serviceaccount:NAMESPACE:NAME) is in user_name, the role in roleArn.
--   CloudTrail's message is often just "An unknown error occurred": the cause is
--   found by comparing with the service account and the role's trust policy.
-- param: since TIMESTAMPTZ = NULL  Start of the window, inclusive (default: the beginning)
-- param: until TIMESTAMPTZ = NULL  End of the window, exclusive (default: now)
SELECT
    event_id,
    event_time,
    aws_region,
    account_id,
    user_name AS subject,
    identity_provider,
    request_parameters ->> 'roleArn' AS role_arn,
    request_parameters ->> 'roleSessionName' AS session_name,
    error_code,
    error_message,
    user_agent,
    source_ip
FROM events
WHERE event_name = 'AssumeRoleWithWebIdentity'
  AND event_source = 'sts.amazonaws.com'
  AND error_code IS NOT NULL
  AND ($since IS NULL OR event_time >= $since)
  AND ($until IS NULL OR event_time < $until)
ORDER BY event_time DESC
