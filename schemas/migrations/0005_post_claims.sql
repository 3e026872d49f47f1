-- De-duplication of post_stats across leaderboard replicas, and what a post
-- carries beyond the probe row (leaderboard/README.md, "De-duplication").
--
-- post_claims: every replica that receives a post (or a signed post's nonce)
-- appends a claim (id, random token, its clock in ns) and, after a settle
-- time, reads the claims of that id: the smallest (claimed_ns, token) wins
-- and only the winner stores the row. Ordered by the claimed id, so a lookup
-- reads one granule per part whatever the table's size; partitioned by day
-- so old claims go by partition drop (no TTL on 18.16).
CREATE TABLE IF NOT EXISTS {{.DB}}.{{.Local "post_claims"}} {{.OnCluster}}
(
    post_id     String  COMMENT 'probe id of a post, or nonce/<key id>/<nonce>',
    token       String  COMMENT 'random per claim: ties of claimed_ns break on it',
    claimed_ns  UInt64  COMMENT 'claimant clock, unix ns, read before the claim insert',
    claimed_at  DateTime('UTC')
)
ENGINE = {{.Engine "post_claims" "MergeTree"}}
PARTITION BY toYYYYMMDD(claimed_at)
ORDER BY (post_id, claimed_ns, token)
--migration:split
{{.Distributed "post_claims"}}
--migration:split
-- post_payloads: the parts of a posted Stats object probe_results has no
-- column for, kept as posted (JSON text): every error and response_payload.
-- One row per stored post (probe id); partitioned like probe_results.
CREATE TABLE IF NOT EXISTS {{.DB}}.{{.Local "post_payloads"}} {{.OnCluster}}
(
    probe_id          String,
    started_at        DateTime('UTC'),
    errors            String  COMMENT 'the posted errors array, JSON as posted',
    response_payload  String  COMMENT 'the posted response_payload value, JSON as posted'
)
ENGINE = {{.Engine "post_payloads" "ReplacingMergeTree"}}
PARTITION BY toYYYYMMDD(started_at)
ORDER BY probe_id
--migration:split
{{.Distributed "post_payloads"}}
