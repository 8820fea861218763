-- name: change_events
-- title: Successful changes to what decides a workload's access (IAM, EKS, Organizations, S3, KMS)
-- description: One row per successful call that changed a role (its trust policy, inline
--   and attached policies, boundary), an OIDC provider, a Pod Identity association or an
--   EKS cluster, a managed policy's version, an SCP, a bucket or a key policy. `target`
--   names what changed (role name, provider ARN, cluster, policy ARN or id, bucket, key);
--   `document` is the policy the call set, decoded (CloudTrail holds it URL-encoded or as
--   a JSON string, or as an object for S3), NULL when the call sets none. IAM and
--   Organizations record in us-east-1. Refused calls changed nothing and are left out.
-- param: since TIMESTAMPTZ = NULL  Start of the window, inclusive (default: the beginning)
-- param: until TIMESTAMPTZ = NULL  End of the window, exclusive (default: now)
-- param: role VARCHAR = NULL  Only changes whose role is this one, by name (default: all)
-- One equality pair a branch: DuckDB then filters event_source and event_name in the scan,
-- before it reads any record's JSON (an IN list or an OR became a join or a filter above
-- the JSON: 0.9 s instead of 0.05 s over a million events).
WITH named AS (
    SELECT * FROM events WHERE event_source = 'iam.amazonaws.com' AND event_name = 'CreateRole'
    UNION ALL SELECT * FROM events WHERE event_source = 'iam.amazonaws.com' AND event_name = 'DeleteRole'
    UNION ALL SELECT * FROM events WHERE event_source = 'iam.amazonaws.com' AND event_name = 'UpdateAssumeRolePolicy'
    UNION ALL SELECT * FROM events WHERE event_source = 'iam.amazonaws.com' AND event_name = 'PutRolePolicy'
    UNION ALL SELECT * FROM events WHERE event_source = 'iam.amazonaws.com' AND event_name = 'DeleteRolePolicy'
    UNION ALL SELECT * FROM events WHERE event_source = 'iam.amazonaws.com' AND event_name = 'AttachRolePolicy'
    UNION ALL SELECT * FROM events WHERE event_source = 'iam.amazonaws.com' AND event_name = 'DetachRolePolicy'
    UNION ALL SELECT * FROM events WHERE event_source = 'iam.amazonaws.com' AND event_name = 'PutRolePermissionsBoundary'
    UNION ALL SELECT * FROM events WHERE event_source = 'iam.amazonaws.com' AND event_name = 'DeleteRolePermissionsBoundary'
    UNION ALL SELECT * FROM events WHERE event_source = 'iam.amazonaws.com' AND event_name = 'CreatePolicyVersion'
    UNION ALL SELECT * FROM events WHERE event_source = 'iam.amazonaws.com' AND event_name = 'SetDefaultPolicyVersion'
    UNION ALL SELECT * FROM events WHERE event_source = 'iam.amazonaws.com' AND event_name = 'CreateOpenIDConnectProvider'
    UNION ALL SELECT * FROM events WHERE event_source = 'iam.amazonaws.com' AND event_name = 'DeleteOpenIDConnectProvider'
    UNION ALL SELECT * FROM events WHERE event_source = 'iam.amazonaws.com' AND event_name = 'UpdateOpenIDConnectProviderThumbprint'
    UNION ALL SELECT * FROM events WHERE event_source = 'iam.amazonaws.com' AND event_name = 'AddClientIDToOpenIDConnectProvider'
    UNION ALL SELECT * FROM events WHERE event_source = 'iam.amazonaws.com' AND event_name = 'RemoveClientIDFromOpenIDConnectProvider'
    UNION ALL SELECT * FROM events WHERE event_source = 'eks.amazonaws.com' AND event_name = 'CreatePodIdentityAssociation'
    UNION ALL SELECT * FROM events WHERE event_source = 'eks.amazonaws.com' AND event_name = 'UpdatePodIdentityAssociation'
    UNION ALL SELECT * FROM events WHERE event_source = 'eks.amazonaws.com' AND event_name = 'DeletePodIdentityAssociation'
    UNION ALL SELECT * FROM events WHERE event_source = 'eks.amazonaws.com' AND event_name = 'CreateCluster'
    UNION ALL SELECT * FROM events WHERE event_source = 'eks.amazonaws.com' AND event_name = 'DeleteCluster'
    UNION ALL SELECT * FROM events WHERE event_source = 'organizations.amazonaws.com' AND event_name = 'UpdatePolicy'
    UNION ALL SELECT * FROM events WHERE event_source = 'organizations.amazonaws.com' AND event_name = 'AttachPolicy'
    UNION ALL SELECT * FROM events WHERE event_source = 'organizations.amazonaws.com' AND event_name = 'DetachPolicy'
    UNION ALL SELECT * FROM events WHERE event_source = 's3.amazonaws.com' AND event_name = 'PutBucketPolicy'
    UNION ALL SELECT * FROM events WHERE event_source = 's3.amazonaws.com' AND event_name = 'DeleteBucketPolicy'
    UNION ALL SELECT * FROM events WHERE event_source = 'kms.amazonaws.com' AND event_name = 'PutKeyPolicy'
),
changes AS (
    SELECT
        event_id,
        event_time,
        aws_region,
        account_id,
        event_source,
        event_name,
        coalesce(identity_arn, session_issuer_arn, identity_type) AS actor,
        request_parameters AS rp,
        response_elements AS re
    FROM named
    WHERE error_code IS NULL
      AND ($since IS NULL OR event_time >= $since)
      AND ($until IS NULL OR event_time < $until)
),
fields AS (
    SELECT
        *,
        (rp ->> 'roleName') AS role_name,
        coalesce((rp ->> 'policyArn'), (rp ->> 'permissionsBoundary'), (rp ->> 'policyId')) AS policy_arn,
        (rp ->> 'policyName') AS policy_name,
        coalesce((rp ->> 'openIDConnectProviderArn'), (re ->> 'openIDConnectProviderArn')) AS provider_arn,
        -- A cluster's issuer is in the cluster EKS returns (CreateCluster, DeleteCluster).
        coalesce((rp ->> 'url'), (re -> 'cluster' -> 'identity' -> 'oidc' ->> 'issuer')) AS provider_url,
        coalesce((rp ->> 'clusterName'), CASE WHEN event_source = 'eks.amazonaws.com' THEN (rp ->> 'name') END)
            AS cluster,
        coalesce((rp ->> 'roleArn'), (re -> 'association' ->> 'roleArn')) AS association_role_arn,
        (rp ->> 'bucketName') AS bucket,
        (rp ->> 'keyId') AS key_id,
        (rp ->> 'targetId') AS org_target,
        -- An OIDC provider's audiences: the one added or removed, or the list it was created with.
        (rp ->> 'clientID') AS client_id,
        CAST((rp -> 'clientIDList') AS VARCHAR) AS client_ids,
        -- A Pod Identity association: EKS returns it whole (Create, Update, Delete).
        coalesce((rp ->> 'associationId'), (re -> 'association' ->> 'associationId')) AS association_id,
        coalesce((rp ->> 'namespace'), (re -> 'association' ->> 'namespace')) AS namespace,
        coalesce((rp ->> 'serviceAccount'), (re -> 'association' ->> 'serviceAccount')) AS service_account,
        coalesce((rp ->> 'assumeRolePolicyDocument'), (rp ->> 'policyDocument'), (rp ->> 'content'),
                 (re -> 'policy' ->> 'content'), (rp ->> 'policy'), CAST((rp -> 'bucketPolicy') AS VARCHAR))
            AS raw_document
    FROM changes
)
SELECT
    event_id,
    event_time,
    aws_region,
    account_id,
    event_source,
    event_name,
    actor,
    coalesce(role_name, provider_arn, policy_arn, bucket, key_id, cluster, provider_url) AS target,
    role_name,
    policy_arn,
    policy_name,
    provider_arn,
    provider_url,
    cluster,
    association_role_arn,
    bucket,
    key_id,
    org_target,
    client_id,
    client_ids,
    association_id,
    namespace,
    service_account,
    -- A managed policy's version: the one made default (SetDefaultPolicyVersion), or the one
    -- created (CreatePolicyVersion, with whether it became the default).
    coalesce((rp ->> 'versionId'), (re -> 'policyVersion' ->> 'versionId')) AS version_id,
    (rp ->> 'setAsDefault') AS set_as_default,
    -- UpdatePolicy returns the policy whole, content included, whether or not it set the content.
    ((rp ->> 'content') IS NOT NULL) AS content_set,
    -- A JSON string starts with '{'; IAM writes the document URL-encoded ('%7B…').
    CASE WHEN raw_document IS NULL THEN NULL
         WHEN starts_with(ltrim(raw_document), '{') THEN raw_document
         ELSE url_decode(replace(raw_document, '+', ' ')) END AS document
FROM fields
WHERE $role IS NULL OR role_name = $role
   OR (association_role_arn IS NOT NULL AND regexp_extract(association_role_arn, '[^/]+$') = $role)
ORDER BY event_time, event_id
