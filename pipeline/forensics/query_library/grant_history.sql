-- description: Permission history of one account: every permission.grant and permission.revoke
-- in ledger order, with the grant's terms read from the stored event (provider, principals,
-- scopes, marketplaces, IP allowlist, expiry) and whether it took effect (`effective`: a
-- successful change by the seller or Amazon; a provider cannot widen its own access).
-- @param account String -- seller account id
-- @param from DateTime64(3, 'UTC') = 1970-01-01 00:00:00.000 -- start (inclusive), UTC
-- @param to DateTime64(3, 'UTC') = 2299-12-31 23:59:59.999 -- end (exclusive), UTC
SELECT
    seq,
    occurred_at,
    event_id,
    action,
    outcome,
    actor_type,
    principal_id AS changed_by,
    outcome = 'success' AND actor_type != 'provider' AS effective,
    JSONExtractString(payload, 'grant', 'grant_id') AS grant_id,
    JSONExtractString(payload, 'grant', 'provider_id') AS grantee,
    JSONExtract(payload, 'grant', 'principals', 'Array(String)') AS principals,
    JSONExtract(payload, 'grant', 'scopes', 'Array(String)') AS scopes,
    JSONExtract(payload, 'grant', 'marketplaces', 'Array(String)') AS marketplaces,
    JSONExtract(payload, 'grant', 'ip_allowlist', 'Array(String)') AS ip_allowlist,
    JSONExtractString(payload, 'grant', 'valid_until') AS valid_until
FROM audit.events
WHERE account_id = {account:String}
  AND action IN ('permission.grant', 'permission.revoke')
  AND occurred_at >= {from:DateTime64(3, 'UTC')}
  AND occurred_at < {to:DateTime64(3, 'UTC')}
ORDER BY seq
