-- Hourly rollups of probe_results, one row per (pipeline, model, region,
-- orchestrator, hour) after merges, fed by a materialized view on every
-- insert. The leaderboard's aggregated_stats, top_ai_score and pipelines read
-- them (plus raw rows for the partial hours at a window's edges, so answers
-- equal the raw computation to the microsecond).
--
-- Scored = success or failure; excused probes are counted apart and never
-- scored. RTT columns cover successful probes with a measured total time.
-- rtt_us keeps those total times exactly (microseconds): the network median
-- is interpolated like Postgres percentile_cont(0.5), which needs the two
-- middle values, and no quantile state gives that (see leaderboard/README.md,
-- "Rollups"). Phase quantiles are t-digests: approximate, for percentiles
-- shown to people, never for the score.
--
-- Every AggregateFunction signature matches its source column exactly
-- (18.16 refuses DateTime for DateTime('UTC')). Partitioned by month: a
-- closed hour is rebuilt with ALTER DELETE + INSERT … SELECT (store.Rebuild),
-- old months go by partition drop (store.Retention); 18.16 has no TTL.
CREATE TABLE IF NOT EXISTS {{.DB}}.{{.Local "probe_rollup_hourly"}} {{.OnCluster}}
(
    pipeline         String,
    model            String,
    region           String,
    orchestrator     String,
    hour             DateTime('UTC'),
    probes           AggregateFunction(countIf, UInt8)  COMMENT 'scored probes: success + failure',
    successes        AggregateFunction(countIf, UInt8),
    excused          AggregateFunction(countIf, UInt8),
    rtt_sum_us       AggregateFunction(sumIf, UInt64, UInt8)  COMMENT 'sum of total_us of successful probes with total_us > 0',
    rtt_n            AggregateFunction(countIf, UInt8),
    rtt_us           AggregateFunction(groupArrayIf, UInt64, UInt8)  COMMENT 'every such total_us, for the exact interpolated median',
    server_times     AggregateFunction(groupArrayIf, UInt64, UInt8)  COMMENT 'server_us of successful probes with server_us > 0, exact, for history percentiles',
    last_tested      AggregateFunction(max, DateTime('UTC')),
    warm_probes      AggregateFunction(countIf, UInt8)  COMMENT 'scored probes of a model advertised warm (cold = probes - warm_probes)',
    warm_successes   AggregateFunction(countIf, UInt8),
    warm_rtt_sum_us  AggregateFunction(sumIf, UInt64, UInt8),
    warm_rtt_n       AggregateFunction(countIf, UInt8),
    upload_q         AggregateFunction(quantilesTDigestIf(0.5, 0.9, 0.99), UInt64, UInt8)  COMMENT 'successful probes, microseconds',
    server_q         AggregateFunction(quantilesTDigestIf(0.5, 0.9, 0.99), UInt64, UInt8),
    download_q       AggregateFunction(quantilesTDigestIf(0.5, 0.9, 0.99), UInt64, UInt8),
    total_q          AggregateFunction(quantilesTDigestIf(0.5, 0.9, 0.99), UInt64, UInt8)
)
ENGINE = {{.Engine "probe_rollup_hourly" "AggregatingMergeTree"}}
PARTITION BY toYYYYMM(hour)
ORDER BY (pipeline, model, region, orchestrator, hour)
--migration:split
{{.Distributed "probe_rollup_hourly"}}
--migration:split
-- The view reads the table rows land in (probe_results_local on a cluster)
-- and writes the same server's rollup table, so each shard rolls up its own
-- rows. Keep its SELECT in step with store.rollupSelect (used by Rebuild);
-- TestRebuildMatchesView fails when they drift.
CREATE MATERIALIZED VIEW IF NOT EXISTS {{.DB}}.probe_rollup_hourly_mv {{.OnCluster}}
TO {{.DB}}.{{.Local "probe_rollup_hourly"}}
AS SELECT
    pipeline,
    model,
    region,
    orchestrator,
    toStartOfHour(started_at) AS hour,
    countIfState(outcome != 'excused') AS probes,
    countIfState(outcome = 'success') AS successes,
    countIfState(outcome = 'excused') AS excused,
    sumIfState(total_us, outcome = 'success' AND total_us > 0) AS rtt_sum_us,
    countIfState(outcome = 'success' AND total_us > 0) AS rtt_n,
    groupArrayIfState(total_us, outcome = 'success' AND total_us > 0) AS rtt_us,
    groupArrayIfState(server_us, outcome = 'success' AND server_us > 0) AS server_times,
    maxState(started_at) AS last_tested,
    countIfState(warm = 1 AND outcome != 'excused') AS warm_probes,
    countIfState(warm = 1 AND outcome = 'success') AS warm_successes,
    sumIfState(total_us, warm = 1 AND outcome = 'success' AND total_us > 0) AS warm_rtt_sum_us,
    countIfState(warm = 1 AND outcome = 'success' AND total_us > 0) AS warm_rtt_n,
    quantilesTDigestIfState(0.5, 0.9, 0.99)(upload_us, outcome = 'success') AS upload_q,
    quantilesTDigestIfState(0.5, 0.9, 0.99)(server_us, outcome = 'success') AS server_q,
    quantilesTDigestIfState(0.5, 0.9, 0.99)(download_us, outcome = 'success') AS download_q,
    quantilesTDigestIfState(0.5, 0.9, 0.99)(total_us, outcome = 'success') AS total_q
FROM {{.DB}}.{{.Local "probe_results"}}
GROUP BY pipeline, model, region, orchestrator, hour
