-- name: minted_sessions
-- title: Temporary credentials minted for pods (IRSA and EKS Pod Identity)
-- description: Successful sts:AssumeRoleWithWebIdentity calls (a pod's service-account
--   token exchanged for a role session) and the sts:AssumeRole that EKS Pod Identity
--   (pods.eks.amazonaws.com) makes on behalf of a pod, with the access key id of the
--   credentials they returned. A later call signed with that key
--   (userIdentity.accessKeyId) came from that pod: the web-identity subject or the Pod
--   Identity session tags name its service account. Sessions live up to 12 hours, so
--   read from well before the window whose calls you want to attribute. The session
--   token itself is redacted in the store; an access key id is not a secret.
-- param: since TIMESTAMPTZ = NULL  Start of the window, inclusive (default: the beginning)
-- param: until TIMESTAMPTZ = NULL  End of the window, exclusive (default: now)
-- param: access_keys VARCHAR[] = NULL  Only sessions with these access key ids (default: all)
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
    request_parameters -> 'tags' AS session_tags
FROM events
WHERE error_code IS NULL
  AND event_source = 'sts.amazonaws.com'
  AND (
        event_name = 'AssumeRoleWithWebIdentity'
     OR (event_name = 'AssumeRole'
         AND (source_ip = 'pods.eks.amazonaws.com'
              OR raw -> 'userIdentity' ->> 'invokedBy' = 'pods.eks.amazonaws.com'))
  )
  AND response_elements -> 'credentials' ->> 'accessKeyId' IS NOT NULL
  AND ($access_keys IS NULL
       OR list_contains($access_keys, (response_elements -> 'credentials' ->> 'accessKeyId')))
  AND ($since IS NULL OR event_time >= $since)
  AND ($until IS NULL OR event_time < $until)
ORDER BY event_time
