-- description: Fund moves in a period (funds.*: bank account changes, disbursement requests,
-- refunds, transfer schedule changes) on all accounts or one, with who, from where, the amount
-- and the approval they named.
-- @param from DateTime64(3, 'UTC') -- start of the period (inclusive), UTC
-- @param to DateTime64(3, 'UTC') -- end of the period (exclusive), UTC
-- @param account String = '' -- one seller account (empty: all)
SELECT
    occurred_at,
    account_id,
    seq,
    event_id,
    action,
    outcome,
    actor_type,
    provider_id,
    principal_id,
    marketplace,
    amount_value,
    amount_currency,
    approval_id,
    source_ip,
    changes
FROM audit.events
WHERE startsWith(action, 'funds.')
  AND ({account:String} = '' OR account_id = {account:String})
  AND occurred_at >= {from:DateTime64(3, 'UTC')}
  AND occurred_at < {to:DateTime64(3, 'UTC')}
ORDER BY occurred_at, account_id, seq
