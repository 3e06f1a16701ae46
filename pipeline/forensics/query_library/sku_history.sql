-- description: Who touched one SKU (listing and inventory events on resource_id = the SKU), with
-- its price history from `changes` (field "price": old, new and the move in percent; empty on
-- events that did not change the price).
-- @param sku String -- the SKU (resource.id of listing events)
-- @param account String = '' -- one seller account (empty: all)
-- @param from DateTime64(3, 'UTC') = 1970-01-01 00:00:00.000 -- start (inclusive), UTC
-- @param to DateTime64(3, 'UTC') = 2299-12-31 23:59:59.999 -- end (exclusive), UTC
SELECT
    occurred_at,
    account_id,
    seq,
    event_id,
    actor_type,
    provider_id,
    principal_id,
    action,
    outcome,
    marketplace,
    source_ip,
    approval_id,
    arrayFirst(c -> JSONExtractString(c, 'field') = 'price', JSONExtractArrayRaw(changes)) AS price_change,
    trim(BOTH '"' FROM JSONExtractRaw(price_change, 'old')) AS price_old,
    trim(BOTH '"' FROM JSONExtractRaw(price_change, 'new')) AS price_new,
    if(
        toFloat64OrZero(price_old) > 0 AND isNotNull(toFloat64OrNull(price_new)),
        round((toFloat64OrZero(price_new) - toFloat64OrZero(price_old)) * 100 / toFloat64OrZero(price_old), 2),
        NULL
    ) AS price_change_pct,
    changes
FROM audit.events
WHERE resource_id = {sku:String}
  AND (startsWith(action, 'listing.') OR startsWith(action, 'inventory.'))
  AND ({account:String} = '' OR account_id = {account:String})
  AND occurred_at >= {from:DateTime64(3, 'UTC')}
  AND occurred_at < {to:DateTime64(3, 'UTC')}
ORDER BY occurred_at, account_id, seq
