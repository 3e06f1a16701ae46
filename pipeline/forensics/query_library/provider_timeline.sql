-- description: Everything one provider did on one seller account in a period, in ledger order
-- (seq): who (principal), what (action, resource, changes), from where (IP, user agent) and
-- with which outcome.
-- @param account String -- seller account id
-- @param provider String -- provider id (actor.provider_id)
-- @param from DateTime64(3, 'UTC') -- start of the period (inclusive), UTC
-- @param to DateTime64(3, 'UTC') -- end of the period (exclusive), UTC
-- @param limit UInt32 = 10000 -- at most this many rows
SELECT
    seq,
    occurred_at,
    event_id,
    principal_id,
    action,
    outcome,
    marketplace,
    resource_type,
    resource_id,
    operation,
    source_ip,
    user_agent,
    approval_id,
    changes
FROM audit.events
WHERE account_id = {account:String}
  AND provider_id = {provider:String}
  AND actor_type = 'provider'
  AND occurred_at >= {from:DateTime64(3, 'UTC')}
  AND occurred_at < {to:DateTime64(3, 'UTC')}
ORDER BY seq
LIMIT {limit:UInt32}
