-- description: Top principals by writes in a period. A write is an action of the families that
-- change the seller's account (listing, inventory, ads, funds, tax, account: the contract's
-- WRITE_PREFIXES), whatever its outcome; with how many failed or were denied, distinct
-- resources and accounts touched, source IPs, and first and last write.
-- @param from DateTime64(3, 'UTC') -- start of the period (inclusive), UTC
-- @param to DateTime64(3, 'UTC') -- end of the period (exclusive), UTC
-- @param account String = '' -- one seller account (empty: all)
-- @param limit UInt32 = 20 -- how many principals
SELECT
    actor_type,
    provider_id,
    principal_id,
    count() AS writes,
    countIf(outcome != 'success') AS failed_or_denied,
    uniqExact(resource_id) AS resources,
    uniqExact(account_id) AS accounts,
    uniqExactIf(source_ip, source_ip != '') AS source_ips,
    min(occurred_at) AS first_write,
    max(occurred_at) AS last_write
FROM audit.events
WHERE splitByChar('.', action)[1] IN ('listing', 'inventory', 'ads', 'funds', 'tax', 'account')
  AND ({account:String} = '' OR account_id = {account:String})
  AND occurred_at >= {from:DateTime64(3, 'UTC')}
  AND occurred_at < {to:DateTime64(3, 'UTC')}
GROUP BY actor_type, provider_id, principal_id
ORDER BY writes DESC, principal_id
LIMIT {limit:UInt32}
