-- audit.chain_digests: signed digests of each account's hash chain, one per account and closed
-- period (PW_DIGEST_PERIOD), like CloudTrail's digest files. A digest covers the entries
-- first_seq..last_seq (contiguous, following the previous digest), names the chain head
-- (head_hash = hash of entry last_seq) and the previous digest's hash, so digests chain too.
-- `signature` (hex) is Ed25519 or HMAC-SHA256 over the digest's canonical JSON
-- (pipeline.digests.Digest.message); `partnerwatch digest verify` checks it and that the events
-- still match. ReplacingMergeTree keeps one row per (account, first_seq) if a run is repeated.
CREATE TABLE IF NOT EXISTS audit.chain_digests
(
    account_id       LowCardinality(String),
    period_start     DateTime64(3, 'UTC'),
    period_end       DateTime64(3, 'UTC'),
    first_seq        UInt64,
    last_seq         UInt64,
    event_count      UInt64,
    head_hash        FixedString(64),
    prev_digest_hash FixedString(64),
    digest_hash      FixedString(64),
    signed_at        DateTime64(3, 'UTC'),
    key_id           LowCardinality(String),
    algorithm        LowCardinality(String),
    signature        String
)
ENGINE = ReplacingMergeTree
ORDER BY (account_id, first_seq);
