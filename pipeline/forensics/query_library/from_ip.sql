-- description: Every event from one IP address or network (CIDR), IPv4 or IPv6, on all accounts
-- or one; an IPv4-mapped IPv6 source (::ffff:a.b.c.d) matches its IPv4 network. The network
-- is compared as an IPv6 range (an IPv4 a.b.c.d/n is ::ffff:a.b.c.d/(96+n)).
-- @param network String -- an address (203.0.113.7, 2001:db8::1) or a CIDR (203.0.113.0/24, 2001:db8::/32)
-- @param account String = '' -- one seller account (empty: all)
-- @param from DateTime64(3, 'UTC') = 1970-01-01 00:00:00.000 -- start (inclusive), UTC
-- @param to DateTime64(3, 'UTC') = 2299-12-31 23:59:59.999 -- end (exclusive), UTC
-- @param limit UInt32 = 10000 -- at most this many rows
WITH
    splitByChar('/', trimBoth({network:String})) AS net_parts,
    isIPv4String(net_parts[1]) AS net_v4,
    toUInt16OrNull(if(length(net_parts) = 2, net_parts[2], if(net_v4, '32', '128'))) AS net_bits,
    throwIf(
        length(net_parts) > 2 OR net_bits IS NULL OR net_bits > if(net_v4, 32, 128)
            OR toIPv6OrNull(net_parts[1]) IS NULL,
        'network must be an IP address or a CIDR: a.b.c.d, a.b.c.d/0-32, an IPv6 address or IPv6/0-128'
    ) AS net_invalid,
    -- net_invalid (0 unless it throws) is part of the range, so a bad network fails the query
    -- even where no row is compared with it.
    IPv6CIDRToRange(
        toIPv6OrDefault(net_parts[1]), toUInt8(assumeNotNull(net_bits) + if(net_v4, 96, 0) + net_invalid)
    ) AS net_range
SELECT
    occurred_at,
    account_id,
    seq,
    event_id,
    source_ip,
    actor_type,
    provider_id,
    principal_id,
    action,
    outcome,
    marketplace,
    resource_id,
    user_agent
FROM audit.events
WHERE ({account:String} = '' OR account_id = {account:String})
  AND occurred_at >= {from:DateTime64(3, 'UTC')}
  AND occurred_at < {to:DateTime64(3, 'UTC')}
  AND source_ip != ''
  AND toIPv6OrNull(source_ip) BETWEEN net_range.1 AND net_range.2
ORDER BY occurred_at, account_id, seq
LIMIT {limit:UInt32}
