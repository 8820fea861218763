-- name: failed_pod_identity
-- title: Failed EKS Pod Identity credential requests
-- description: Refused eks-auth:AssumeRoleForPodIdentity calls (made by the node's
--   Pod Identity agent with the node role, so the caller is the node, not the pod),
--   and refused sts:AssumeRole calls made by the EKS service principal
--   pods.eks.amazonaws.com on behalf of a pod.
-- param: since TIMESTAMPTZ = NULL  Start of the window, inclusive (default: the beginning)
-- param: until TIMESTAMPTZ = NULL  End of the window, exclusive (default: now)
SELECT
    event_id,
    event_time,
    aws_region,
    account_id,
    event_source,
    event_name,
    identity_arn AS caller_arn,
    session_issuer_arn AS caller_role_arn,
    request_parameters ->> 'clusterName' AS cluster,
    request_parameters ->> 'roleArn' AS role_arn,
    error_code,
    error_message
FROM events
WHERE error_code IS NOT NULL
  AND (
        (event_source = 'eks-auth.amazonaws.com' AND event_name = 'AssumeRoleForPodIdentity')
     OR (event_source = 'sts.amazonaws.com' AND event_name IN ('AssumeRole', 'TagSession')
         AND (identity_arn = 'pods.eks.amazonaws.com'
              OR raw -> 'userIdentity' ->> 'invokedBy' = 'pods.eks.amazonaws.com'))
  )
  AND ($since IS NULL OR event_time >= $since)
  AND ($until IS NULL OR event_time < $until)
ORDER BY event_time DESC
