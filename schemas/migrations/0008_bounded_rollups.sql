-- Rollups whose state per hour is bounded (issue #15). Until now every
-- rollup row kept every successful total and server time (groupArrayIf in
-- 0003), so the state grew with the probes and a 24 h median merged and
-- sorted as many values as the raw rows hold.
--
-- 1. probe_rollup_model_hourly: one row per (pipeline, model, region, hour),
--    the source of the network median (median_rtt, the latency score's M).
--    rtt_few keeps the first 4096 successful total times of the row exactly
--    (groupArrayIf(4096), at most 32 KiB); rtt_q is a t-digest of all of
--    them. A window whose rows are all complete (length = rtt_n) gets the
--    exact interpolated median of Postgres percentile_cont(0.5), as
--    leaderboard-serverless computes it; a window with a row past 4096
--    successes (more than 341 orchestrators probed every 5 minutes in one
--    region and hour) gets the t-digest's median (see leaderboard/README.md,
--    "Rollups", for the error measured at the fleet size). t-digest alone is
--    not enough: on current releases it answers 2 s, not 5 s, for the golden
--    pair 8 s and 2 s.
-- 2. probe_rollup_hourly gets the same pair for server times (history's
--    p50/p95): the first 64 per row exactly, plus a t-digest. Its view stops
--    filling rtt_us and server_times (written as empty states: 18.16's view
--    needs every column of its target, and has no DROP COLUMN IF EXISTS for a
--    migration that must be safe to run twice); hours written before this
--    migration keep them but nothing reads them.
-- 3. probe_rollup_counts_hourly: the counts of probe_rollup_hourly ordered
--    by hour before region and orchestrator, for aggregated_stats and
--    pipelines over one model (or all): probe_rollup_hourly's order keeps
--    an orchestrator's hours together (history, one orchestrator's
--    aggregates), so a 24 h window of one model read all its retained hours
--    (7 days: 7× the rows); here it reads the window's hours only.
-- 4. probe_results_by_time: the few raw columns the partial edge hours of a
--    window need (aggregated_stats, median_rtt, pipelines), ordered by
--    (pipeline, model, started_at). probe_results is ordered with started_at
--    last, so an edge hour of one model read every row of that model in the
--    window's days: at 1,000 orchestrators × 10 models × 4 regions, 1.1M rows
--    and 100 MB for each 24 h aggregated_stats. Same day partitions and
--    retention as probe_results.
--
-- Hours rolled up before this migration have no rows in the new table and no
-- server_* states: run `leaderboard -rebuild-rollups DURATION` once over the
-- raw rows still retained (it rebuilds the three rollup tables and
-- probe_results_by_time). Probes inserted while
-- the view of step 2 is re-created miss their rollup row: the same rebuild
-- restores them.
CREATE TABLE IF NOT EXISTS {{.DB}}.{{.Local "probe_rollup_model_hourly"}} {{.OnCluster}}
(
    pipeline   String,
    model      String,
    region     String,
    hour       DateTime('UTC'),
    rtt_n      AggregateFunction(countIf, UInt8)  COMMENT 'successful probes with total_us > 0',
    rtt_few    AggregateFunction(groupArrayIf(4096), UInt64, UInt8)  COMMENT 'the first 4096 of their total_us, exact: complete when its length = rtt_n',
    rtt_q      AggregateFunction(quantileTDigestIf(0.5), UInt64, UInt8)  COMMENT 't-digest of every such total_us, for rows past 4096'
)
ENGINE = {{.Engine "probe_rollup_model_hourly" "AggregatingMergeTree"}}
PARTITION BY toYYYYMM(hour)
ORDER BY (pipeline, model, region, hour)
--migration:split
{{.Distributed "probe_rollup_model_hourly"}}
--migration:split
CREATE MATERIALIZED VIEW IF NOT EXISTS {{.DB}}.probe_rollup_model_hourly_mv {{.OnCluster}}
TO {{.DB}}.{{.Local "probe_rollup_model_hourly"}}
AS SELECT
    pipeline,
    model,
    region,
    toStartOfHour(started_at) AS hour,
    countIfState(outcome = 'success' AND total_us > 0) AS rtt_n,
    groupArrayIfState(4096)(total_us, outcome = 'success' AND total_us > 0) AS rtt_few,
    quantileTDigestIfState(0.5)(total_us, outcome = 'success' AND total_us > 0) AS rtt_q
FROM {{.DB}}.{{.Local "probe_results"}}
GROUP BY pipeline, model, region, hour
--migration:split
CREATE TABLE IF NOT EXISTS {{.DB}}.{{.Local "probe_rollup_counts_hourly"}} {{.OnCluster}}
(
    pipeline       String,
    model          String,
    hour           DateTime('UTC'),
    region         String,
    orchestrator   String,
    probes         AggregateFunction(countIf, UInt8)  COMMENT 'scored probes: success + failure',
    successes      AggregateFunction(countIf, UInt8),
    excused        AggregateFunction(countIf, UInt8),
    rtt_sum_us     AggregateFunction(sumIf, UInt64, UInt8)  COMMENT 'sum of total_us of successful probes with total_us > 0',
    rtt_n          AggregateFunction(countIf, UInt8),
    last_tested    AggregateFunction(max, DateTime('UTC'))
)
ENGINE = {{.Engine "probe_rollup_counts_hourly" "AggregatingMergeTree"}}
PARTITION BY toYYYYMM(hour)
ORDER BY (pipeline, model, hour, region, orchestrator)
--migration:split
{{.Distributed "probe_rollup_counts_hourly"}}
--migration:split
CREATE MATERIALIZED VIEW IF NOT EXISTS {{.DB}}.probe_rollup_counts_hourly_mv {{.OnCluster}}
TO {{.DB}}.{{.Local "probe_rollup_counts_hourly"}}
AS SELECT
    pipeline,
    model,
    toStartOfHour(started_at) AS hour,
    region,
    orchestrator,
    countIfState(outcome != 'excused') AS probes,
    countIfState(outcome = 'success') AS successes,
    countIfState(outcome = 'excused') AS excused,
    sumIfState(total_us, outcome = 'success' AND total_us > 0) AS rtt_sum_us,
    countIfState(outcome = 'success' AND total_us > 0) AS rtt_n,
    maxState(started_at) AS last_tested
FROM {{.DB}}.{{.Local "probe_results"}}
GROUP BY pipeline, model, hour, region, orchestrator
--migration:split
CREATE TABLE IF NOT EXISTS {{.DB}}.{{.Local "probe_results_by_time"}} {{.OnCluster}}
(
    pipeline       String,
    model          String,
    started_at     DateTime('UTC'),
    started_at_ms  UInt16,
    region         String,
    orchestrator   String,
    outcome        Enum8('success' = 1, 'failure' = 2, 'excused' = 3),
    total_us       UInt64
)
ENGINE = {{.Engine "probe_results_by_time" "MergeTree"}}
PARTITION BY toYYYYMMDD(started_at)
ORDER BY (pipeline, model, started_at)
--migration:split
{{.Distributed "probe_results_by_time"}}
--migration:split
CREATE MATERIALIZED VIEW IF NOT EXISTS {{.DB}}.probe_results_by_time_mv {{.OnCluster}}
TO {{.DB}}.{{.Local "probe_results_by_time"}}
AS SELECT pipeline, model, started_at, started_at_ms, region, orchestrator, outcome, total_us
FROM {{.DB}}.{{.Local "probe_results"}}
--migration:split
ALTER TABLE {{.DB}}.{{.Local "probe_rollup_hourly"}} {{.OnCluster}} ADD COLUMN server_n AggregateFunction(countIf, UInt8) COMMENT 'successful probes with server_us > 0'
--migration:split
ALTER TABLE {{.DB}}.{{.Local "probe_rollup_hourly"}} {{.OnCluster}} ADD COLUMN server_few AggregateFunction(groupArrayIf(64), UInt64, UInt8) COMMENT 'the first 64 of their server_us, exact: complete when its length = server_n'
--migration:split
ALTER TABLE {{.DB}}.{{.Local "probe_rollup_hourly"}} {{.OnCluster}} ADD COLUMN server_pq AggregateFunction(quantilesTDigestIf(0.5, 0.95), UInt64, UInt8) COMMENT 't-digest of every such server_us, for rows past 64'
--migration:split
-- On a cluster the Distributed table is made again over the altered local
-- table (as in 0006: 18.16 refuses ALTER … ON CLUSTER on it).
{{if .Cluster}}DROP TABLE IF EXISTS {{.DB}}.probe_rollup_hourly {{.OnCluster}}{{end}}
--migration:split
{{.Distributed "probe_rollup_hourly"}}
--migration:split
DROP TABLE IF EXISTS {{.DB}}.probe_rollup_hourly_mv {{.OnCluster}}
--migration:split
-- The view of 0003 with bounded states; keep its SELECT in step with
-- store.rollupSelect (TestRebuildMatchesView fails when they drift).
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
    groupArrayIfState(total_us, toUInt8(0)) AS rtt_us,
    groupArrayIfState(server_us, toUInt8(0)) AS server_times,
    maxState(started_at) AS last_tested,
    countIfState(warm = 1 AND outcome != 'excused') AS warm_probes,
    countIfState(warm = 1 AND outcome = 'success') AS warm_successes,
    sumIfState(total_us, warm = 1 AND outcome = 'success' AND total_us > 0) AS warm_rtt_sum_us,
    countIfState(warm = 1 AND outcome = 'success' AND total_us > 0) AS warm_rtt_n,
    quantilesTDigestIfState(0.5, 0.9, 0.99)(upload_us, outcome = 'success') AS upload_q,
    quantilesTDigestIfState(0.5, 0.9, 0.99)(server_us, outcome = 'success') AS server_q,
    quantilesTDigestIfState(0.5, 0.9, 0.99)(download_us, outcome = 'success') AS download_q,
    quantilesTDigestIfState(0.5, 0.9, 0.99)(total_us, outcome = 'success') AS total_q,
    countIfState(outcome = 'success' AND server_us > 0) AS server_n,
    groupArrayIfState(64)(server_us, outcome = 'success' AND server_us > 0) AS server_few,
    quantilesTDigestIfState(0.5, 0.95)(server_us, outcome = 'success' AND server_us > 0) AS server_pq
FROM {{.DB}}.{{.Local "probe_results"}}
GROUP BY pipeline, model, region, orchestrator, hour
