-- description: Alerts that were open in a period (first_seen before its end, last_seen after its
-- start), one row per piece of evidence, joined with the evidence event (`found` = 0 when the
-- event is missing from audit.events). Reads the latest version of each alert (FINAL).
-- @param from DateTime64(3, 'UTC') -- start of the period (inclusive), UTC
-- @param to DateTime64(3, 'UTC') -- end of the period (exclusive), UTC
-- @param account String = '' -- one seller account (empty: all)
-- @param detector String = '' -- one detector (empty: all)
-- @param limit UInt32 = 10000 -- at most this many rows
WITH
    alerts AS (
        SELECT alert_id, detector, severity, account_id, provider_id, principal_id, title, first_seen, last_seen,
               count, evidence_event_ids
        FROM audit.alerts FINAL
        WHERE ({account:String} = '' OR account_id = {account:String})
          AND ({detector:String} = '' OR detector = {detector:String})
          AND first_seen < {to:DateTime64(3, 'UTC')}
          AND last_seen >= {from:DateTime64(3, 'UTC')}
    ),
    evidence AS (
        SELECT account_id, event_id, seq, occurred_at, principal_id, action, outcome, source_ip, resource_id
        FROM audit.events
        WHERE event_id IN (SELECT arrayJoin(evidence_event_ids) FROM alerts)
    )
SELECT
    a.alert_id AS alert_id,
    a.detector AS detector,
    a.severity AS severity,
    a.account_id AS account_id,
    a.provider_id AS provider_id,
    a.title AS title,
    a.first_seen AS first_seen,
    a.last_seen AS last_seen,
    a.count AS count,
    a.evidence_event_id AS evidence_event_id,
    e.event_id != '' AS found,
    e.seq AS evidence_seq,
    e.occurred_at AS evidence_occurred_at,
    e.principal_id AS evidence_principal_id,
    e.action AS evidence_action,
    e.outcome AS evidence_outcome,
    e.source_ip AS evidence_source_ip,
    e.resource_id AS evidence_resource_id
FROM (SELECT *, arrayJoin(evidence_event_ids) AS evidence_event_id FROM alerts) AS a
LEFT JOIN evidence AS e ON e.account_id = a.account_id AND e.event_id = a.evidence_event_id
ORDER BY first_seen, alert_id, evidence_seq
LIMIT {limit:UInt32}
