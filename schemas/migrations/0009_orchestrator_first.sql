-- One orchestrator's reads ordered orchestrator first (issue #15). raw_stats
-- (the Explorer's call: one orchestrator, one pipeline/model, the last hour)
-- and history (one orchestrator's hourly series) read a handful of rows, but
-- probe_results and probe_rollup_hourly are ordered (pipeline, model,
-- region, orchestrator, …): at 100 orchestrators × 30 models × 4 regions one
-- (pipeline, model, region) slice of a day is about one 8,192-row granule
-- holding every orchestrator, so raw_stats read 4 × 8,192 rows for ~24, and
-- history at 1,000 × 10 × 4 read 213k rows / 42 MB of neighbours' states.
--
-- 1. probe_results_by_orchestrator: a copy of the raw columns raw_stats and
--    raw history read (every column but inserted_at), ordered (orchestrator,
--    pipeline, model, region, started_at) in granules of 1,024 rows. Same
--    day partitions and retention as probe_results.
-- 2. probe_rollup_orchestrator_hourly: the columns of probe_rollup_hourly
--    that history and one orchestrator's aggregates read (counts, RTT sum,
--    last tested, the bounded server times of 0008), ordered (orchestrator,
--    pipeline, model, region, hour) in granules of 256 rows: a week of one
--    orchestrator's model in 4 regions is 672 rows.
--
-- Hours and days stored before this migration have no rows in the new
-- tables: run `leaderboard -rebuild-rollups DURATION` once over the raw rows
-- still retained, after the hour the migration ran in has closed (it
-- rebuilds every rollup table and both raw copies). Until then one
-- orchestrator's reads of those hours come back empty.
CREATE TABLE IF NOT EXISTS {{.DB}}.{{.Local "probe_results_by_orchestrator"}} {{.OnCluster}}
(
    orchestrator        String,
    pipeline            String,
    model               String,
    region              String,
    started_at          DateTime('UTC'),
    started_at_ms       UInt16,
    probe_id            String,
    batch_id            String,
    round_id            String,
    tester_id           String,
    source              String,
    service_uri         String,
    warm                UInt8,
    outcome             Enum8('success' = 1, 'failure' = 2, 'excused' = 3),
    error_class         String,
    error_code          String,
    error_message       String,
    http_status         UInt16,
    discovery_us        UInt64,
    connect_us          UInt64,
    tls_us              UInt64,
    upload_us           UInt64,
    server_us           UInt64,
    download_us         UInt64,
    media_us            UInt64,
    total_us            UInt64,
    orch_processing_us  UInt64,
    conn_reused         UInt8,
    request_bytes       UInt64,
    response_bytes      UInt64,
    ttft_us             UInt64,
    output_units        Float64,
    input_parameters    String,
    queue_us            UInt64,
    inference_us        UInt64
)
ENGINE = {{.Engine "probe_results_by_orchestrator" "MergeTree"}}
PARTITION BY toYYYYMMDD(started_at)
ORDER BY (orchestrator, pipeline, model, region, started_at)
SETTINGS index_granularity = 1024
--migration:split
{{.Distributed "probe_results_by_orchestrator"}}
--migration:split
-- Keep its column list in step with store.byOrchestratorColumns
-- (TestRebuildMatchesView compares the rebuilt copy with the view's).
CREATE MATERIALIZED VIEW IF NOT EXISTS {{.DB}}.probe_results_by_orchestrator_mv {{.OnCluster}}
TO {{.DB}}.{{.Local "probe_results_by_orchestrator"}}
AS SELECT orchestrator, pipeline, model, region, started_at, started_at_ms, probe_id, batch_id, round_id, tester_id, source,
    service_uri, warm, outcome, error_class, error_code, error_message, http_status, discovery_us, connect_us, tls_us,
    upload_us, server_us, download_us, media_us, total_us, orch_processing_us, conn_reused, request_bytes, response_bytes,
    ttft_us, output_units, input_parameters, queue_us, inference_us
FROM {{.DB}}.{{.Local "probe_results"}}
--migration:split
CREATE TABLE IF NOT EXISTS {{.DB}}.{{.Local "probe_rollup_orchestrator_hourly"}} {{.OnCluster}}
(
    orchestrator   String,
    pipeline       String,
    model          String,
    region         String,
    hour           DateTime('UTC'),
    probes         AggregateFunction(countIf, UInt8)  COMMENT 'scored probes: success + failure',
    successes      AggregateFunction(countIf, UInt8),
    excused        AggregateFunction(countIf, UInt8),
    rtt_sum_us     AggregateFunction(sumIf, UInt64, UInt8)  COMMENT 'sum of total_us of successful probes with total_us > 0',
    rtt_n          AggregateFunction(countIf, UInt8),
    last_tested    AggregateFunction(max, DateTime('UTC')),
    server_n       AggregateFunction(countIf, UInt8)  COMMENT 'successful probes with server_us > 0',
    server_few     AggregateFunction(groupArrayIf(64), UInt64, UInt8)  COMMENT 'the first 64 of their server_us, exact: complete when its length = server_n',
    server_pq      AggregateFunction(quantilesTDigestIf(0.5, 0.95), UInt64, UInt8)  COMMENT 't-digest of every such server_us, for rows past 64'
)
ENGINE = {{.Engine "probe_rollup_orchestrator_hourly" "AggregatingMergeTree"}}
PARTITION BY toYYYYMM(hour)
ORDER BY (orchestrator, pipeline, model, region, hour)
SETTINGS index_granularity = 256
--migration:split
{{.Distributed "probe_rollup_orchestrator_hourly"}}
--migration:split
-- Keep its SELECT in step with store.orchestratorSelect.
CREATE MATERIALIZED VIEW IF NOT EXISTS {{.DB}}.probe_rollup_orchestrator_hourly_mv {{.OnCluster}}
TO {{.DB}}.{{.Local "probe_rollup_orchestrator_hourly"}}
AS SELECT
    orchestrator,
    pipeline,
    model,
    region,
    toStartOfHour(started_at) AS hour,
    countIfState(outcome != 'excused') AS probes,
    countIfState(outcome = 'success') AS successes,
    countIfState(outcome = 'excused') AS excused,
    sumIfState(total_us, outcome = 'success' AND total_us > 0) AS rtt_sum_us,
    countIfState(outcome = 'success' AND total_us > 0) AS rtt_n,
    maxState(started_at) AS last_tested,
    countIfState(outcome = 'success' AND server_us > 0) AS server_n,
    groupArrayIfState(64)(server_us, outcome = 'success' AND server_us > 0) AS server_few,
    quantilesTDigestIfState(0.5, 0.95)(server_us, outcome = 'success' AND server_us > 0) AS server_pq
FROM {{.DB}}.{{.Local "probe_results"}}
GROUP BY orchestrator, pipeline, model, region, hour
