-- description: Provider actions outside any grant, by replaying the grants in SQL: for each
-- provider action, the grants of its provider live at that point of the ledger (granted at an
-- earlier seq, not yet revoked or re-issued, not expired at occurred_at, naming the principal
-- or all principals) and whether one allows the action (scopes: exact, `family.*` or `*`) and
-- the site (marketplaces; events without a site only need the scope). `reason`: "no live
-- grant" (never granted, revoked, expired, principal not named) or "outside scope" (live grants
-- exist, none allows this action on this site). Pure SQL over audit.events, no alerts needed.
-- Not judged here (other detectors; see alerts_with_evidence): IP allowlists, active hours,
-- approvals, price limits.
-- @param from DateTime64(3, 'UTC') -- start of the period (inclusive), UTC
-- @param to DateTime64(3, 'UTC') -- end of the period (exclusive), UTC
-- @param account String = '' -- one seller account (empty: all)
-- @param limit UInt32 = 10000 -- at most this many rows
WITH
    grant_log AS (
        SELECT
            account_id,
            seq,
            action,
            JSONExtractString(payload, 'grant', 'grant_id') AS grant_id,
            JSONExtractString(payload, 'grant', 'provider_id') AS grantee,
            JSONHas(payload, 'grant', 'principals') AS names_principals,
            JSONExtract(payload, 'grant', 'principals', 'Array(String)') AS principals,
            JSONExtract(payload, 'grant', 'scopes', 'Array(String)') AS scopes,
            JSONHas(payload, 'grant', 'marketplaces') AS names_sites,
            JSONExtract(payload, 'grant', 'marketplaces', 'Array(String)') AS sites,
            parseDateTime64BestEffortOrNull(JSONExtractString(payload, 'grant', 'valid_until'), 3, 'UTC') AS valid_until
        FROM audit.events
        WHERE action IN ('permission.grant', 'permission.revoke')
          AND outcome = 'success'
          AND actor_type != 'provider'
          AND ({account:String} = '' OR account_id = {account:String})
    ),
    grant_versions AS (
        SELECT *
        FROM (
            SELECT
                *,
                leadInFrame(seq, 1, toUInt64(18446744073709551615)) OVER (
                    PARTITION BY account_id, grant_id ORDER BY seq
                    ROWS BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING
                ) AS ended_seq
            FROM grant_log
        )
        WHERE action = 'permission.grant'
    ),
    provider_actions AS (
        SELECT account_id, seq, occurred_at, event_id, provider_id, principal_id, action, marketplace, outcome,
               resource_id, source_ip
        FROM audit.events
        WHERE actor_type = 'provider'
          AND ({account:String} = '' OR account_id = {account:String})
          AND occurred_at >= {from:DateTime64(3, 'UTC')}
          AND occurred_at < {to:DateTime64(3, 'UTC')}
    )
SELECT
    a.occurred_at AS occurred_at,
    a.account_id AS account_id,
    a.seq AS seq,
    a.event_id AS event_id,
    a.provider_id AS provider_id,
    a.principal_id AS principal_id,
    a.action AS action,
    a.marketplace AS marketplace,
    a.outcome AS outcome,
    a.resource_id AS resource_id,
    a.source_ip AS source_ip,
    countIf(
        g.grant_id != '' AND g.seq < a.seq AND a.seq < g.ended_seq
        AND (NOT g.names_principals OR has(g.principals, a.principal_id))
        AND (g.valid_until IS NULL OR a.occurred_at < g.valid_until)
    ) AS live_grants,
    countIf(
        g.grant_id != '' AND g.seq < a.seq AND a.seq < g.ended_seq
        AND (NOT g.names_principals OR has(g.principals, a.principal_id))
        AND (g.valid_until IS NULL OR a.occurred_at < g.valid_until)
        AND arrayExists(
            p -> p = '*' OR p = a.action OR (endsWith(p, '.*') AND startsWith(a.action, substring(p, 1, length(p) - 1))),
            g.scopes
        )
        AND (a.marketplace = '' OR NOT g.names_sites OR has(g.sites, a.marketplace))
    ) AS allowing_grants,
    if(live_grants = 0, 'no live grant', 'outside scope') AS reason
FROM provider_actions AS a
LEFT JOIN grant_versions AS g ON g.account_id = a.account_id AND g.grantee = a.provider_id
GROUP BY occurred_at, account_id, seq, event_id, provider_id, principal_id, action, marketplace, outcome,
         resource_id, source_ip
HAVING allowing_grants = 0
ORDER BY occurred_at, account_id, seq
LIMIT {limit:UInt32}
