-- Nonces of signed post_stats requests (per-tester key mode): a nonce seen
-- once is refused again, so a captured post cannot be replayed. Only the
-- accepted clock-skew window needs keeping; partitioned by day so old nonces
-- go by partition drop (no TTL on 18.16).
CREATE TABLE IF NOT EXISTS {{.DB}}.{{.Local "post_nonces"}} {{.OnCluster}}
(
    key_id   String COMMENT 'tester key id from X-Lpgauge-Key',
    nonce    String COMMENT 'X-Lpgauge-Nonce as sent',
    seen_at  DateTime('UTC')
)
ENGINE = {{.Engine "post_nonces" "MergeTree"}}
PARTITION BY toYYYYMMDD(seen_at)
ORDER BY (key_id, nonce)
--migration:split
{{.Distributed "post_nonces"}}
