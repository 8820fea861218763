-- name: denied_calls
-- title: API calls refused for lack of authorization
-- description: Calls that reached AWS with valid credentials and were refused:
--   AccessDenied, AccessDeniedException, (Client.)UnauthorizedOperation,
--   VpceAccessDenied and the like. Not failures of another kind (throttling,
--   NotFound, NoSuch*). Web-identity and Pod Identity credential requests are
--   left to their own queries.
-- param: since TIMESTAMPTZ = NULL  Start of the window, inclusive (default: the beginning)
-- param: until TIMESTAMPTZ = NULL  End of the window, exclusive (default: now)
SELECT
    event_id,
    event_time,
    aws_region,
    account_id,
    event_source,
    event_name,
    identity_type,
    identity_arn,
    session_issuer_arn,
    access_key_id,
    error_code,
    error_message,
    user_agent
FROM events
WHERE error_code IN (
        'AccessDenied', 'AccessDeniedException', 'Client.UnauthorizedOperation',
        'UnauthorizedOperation', 'Client.UnauthorizedAccess', 'UnauthorizedAccess',
        'VpceAccessDenied', 'AuthorizationError', 'AuthorizationErrorException',
        'AuthorizationFailure', 'UnauthorizedException', 'NotAuthorized',
        'NotAuthorizedException', 'Forbidden', 'ForbiddenException', 'AllAccessDisabled')
  AND NOT (event_source = 'sts.amazonaws.com' AND event_name = 'AssumeRoleWithWebIdentity')
  AND NOT (event_source = 'eks-auth.amazonaws.com' AND event_name = 'AssumeRoleForPodIdentity')
  AND NOT (event_source = 'sts.amazonaws.com' AND event_name IN ('AssumeRole', 'TagSession')
           AND 'pods.eks.amazonaws.com' IN (coalesce(identity_arn, ''),
                                            coalesce((raw -> 'userIdentity' ->> 'invokedBy'), '')))
  AND ($since IS NULL OR event_time >= $since)
  AND ($until IS NULL OR event_time < $until)
ORDER BY event_time DESC
