-- name: minted_sessions
-- title: Temporary credentials STS minted, who asked for them, and the role chains behind them
-- description: Successful sts:AssumeRoleWithWebIdentity (a pod's service-account token
--   exchanged for a role session), sts:AssumeRole (by EKS Pod Identity,
--   pods.eks.amazonaws.com, on behalf of a pod, or by any other caller: a role chain)
--   and sts:AssumeRoleWithSAML (a person signing in), with the access key id of the
--   credentials they returned and the caller's identity and access key. A later call
--   signed with that key (userIdentity.accessKeyId) was made with that session: the
--   web-identity subject or the Pod Identity session tags name its service account, and
--   an AssumeRole's caller key leads to the session it was made with: asked again for
--   the caller keys, the query walks a role chain one hop at a time. Sessions live
--   up to 12 hours (a chained one up to 1 hour), so read from well before the window whose
--   calls you want to attribute. The session token itself is redacted in the store; an
--   access key id is not a secret.
-- param: since TIMESTAMPTZ = NULL  Start of the window, inclusive (default: the beginning)
-- param: until TIMESTAMPTZ = NULL  End of the window, exclusive (default: now)
-- param: access_keys VARCHAR[] = NULL  Only the sessions of these access key ids (default: all)
SELECT
    response_elements -> 'credentials' ->> 'accessKeyId' AS access_key_id,
    event_id,
    event_time,
    aws_region,
    account_id,
    event_name,
    request_parameters ->> 'roleArn' AS role_arn,
    response_elements -> 'assumedRoleUser' ->> 'arn' AS session_arn,
    user_name AS subject,
    principal_id,
    identity_provider,
    request_parameters -> 'tags' AS session_tags,
    identity_type AS caller_type,
    identity_arn AS caller_arn,
    session_issuer_arn AS caller_issuer_arn,
    access_key_id AS caller_access_key_id,
    -- The record's JSON is read only for the callers these fields describe.
    CASE WHEN identity_type = 'AWSService'
         THEN coalesce((raw -> 'userIdentity' ->> 'invokedBy'),
                       CASE WHEN source_ip LIKE '%.amazonaws.com' THEN source_ip END)
    END AS caller_invoked_by,
    CASE WHEN identity_type = 'AssumedRole'
         THEN raw -> 'userIdentity' -> 'sessionContext' ->> 'ec2RoleDelivery'
    END AS caller_ec2_role_delivery
FROM events
WHERE error_code IS NULL
  AND event_source = 'sts.amazonaws.com'
  AND event_name IN ('AssumeRoleWithWebIdentity', 'AssumeRole', 'AssumeRoleWithSAML')
  AND response_elements -> 'credentials' ->> 'accessKeyId' IS NOT NULL
  AND ($access_keys IS NULL
       OR list_contains($access_keys, (response_elements -> 'credentials' ->> 'accessKeyId')))
  AND ($since IS NULL OR event_time >= $since)
  AND ($until IS NULL OR event_time < $until)
ORDER BY event_time
