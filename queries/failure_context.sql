-- name: failure_context
-- title: Who exactly made each refused call
-- description: For failed calls, the identity details the detection queries leave
--   out: the web-identity principalId (PROVIDER:AUDIENCE:SUBJECT, which carries the
--   token's audience), whether the instance metadata service delivered the
--   credentials (sessionContext.ec2RoleDelivery: the node's own role), the service
--   that invoked the call (invokedBy, e.g. pods.eks.amazonaws.com), the session tags
--   of an AssumeRole (EKS Pod Identity names the pod's cluster, namespace and service
--   account there), the resources the record names, and what the request context of
--   a policy evaluation reads from the record: the source IP, the VPC endpoint, whether
--   TLS was used (tlsDetails), the request parameters and when the credentials were issued.
-- param: since TIMESTAMPTZ = NULL  Start of the window, inclusive (default: the beginning)
-- param: until TIMESTAMPTZ = NULL  End of the window, exclusive (default: now)
-- param: event_ids VARCHAR[] = NULL  Only these events (default: every failed event)
SELECT
    event_id,
    principal_id,
    raw -> 'userIdentity' -> 'sessionContext' ->> 'ec2RoleDelivery' AS ec2_role_delivery,
    raw -> 'userIdentity' ->> 'invokedBy' AS invoked_by,
    request_parameters -> 'tags' AS session_tags,
    resources,
    source_ip,
    raw ->> 'vpcEndpointId' AS vpc_endpoint_id,
    json_type((raw -> 'tlsDetails')) = 'OBJECT' AS tls,
    CAST(request_parameters AS VARCHAR) AS request_text,
    raw -> 'userIdentity' -> 'sessionContext' -> 'attributes' ->> 'creationDate' AS token_issued
FROM events
WHERE error_code IS NOT NULL
  AND ($event_ids IS NULL OR event_id IN (SELECT unnest($event_ids)))
  AND ($since IS NULL OR event_time >= $since)
  AND ($until IS NULL OR event_time < $until)
ORDER BY event_time DESC
