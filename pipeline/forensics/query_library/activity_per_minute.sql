-- description: Activity per minute from the rollup audit.activity_1m (migration 0003, fed by a
-- materialized view on audit.events): events, distinct principals and distinct source IPs per
-- minute, account, provider, action and outcome, merged with countMerge/uniqMerge.
-- @param from DateTime64(3, 'UTC') -- start (inclusive), UTC; minutes are whole
-- @param to DateTime64(3, 'UTC') -- end (exclusive), UTC
-- @param account String = '' -- one seller account (empty: all)
-- @param provider String = '' -- one provider (empty: all, sellers' own actions included)
-- @param limit UInt32 = 100000 -- at most this many rows
SELECT
    minute,
    account_id,
    provider_id,
    action,
    outcome,
    countMerge(events) AS events,
    uniqMerge(principals) AS principals,
    uniqMerge(source_ips) AS source_ips
FROM audit.activity_1m
WHERE minute >= {from:DateTime64(3, 'UTC')}
  AND minute < {to:DateTime64(3, 'UTC')}
  AND ({account:String} = '' OR account_id = {account:String})
  AND ({provider:String} = '' OR provider_id = {provider:String})
GROUP BY minute, account_id, provider_id, action, outcome
ORDER BY minute, account_id, provider_id, action, outcome
LIMIT {limit:UInt32}
