-- Raw probe results: one row per probe (one timed test job against one
-- orchestrator for one pipeline and model from one region's tester).
-- Durations are integer microseconds measured on the tester's monotonic clock;
-- 0 means the phase did not happen (e.g. no TLS on h2c, connection reused).
-- Partitioned by day so retention is a partition drop (no TTL on 18.16).
-- On a cluster the rows live in probe_results_local (replicated) and
-- probe_results is the Distributed table over it; see schemas.Options.Cluster.
CREATE TABLE IF NOT EXISTS {{.DB}}.{{.Local "probe_results"}} {{.OnCluster}}
(
    probe_id            String  COMMENT 'deterministic id: hex sha256 of region, tester, round slot, orchestrator, pipeline, model, attempt',
    batch_id            String  COMMENT 'deterministic id of the insert batch this row arrived in',
    round_id            String  COMMENT 'region/scheduled-slot of the round that ran the probe',
    region              String  COMMENT 'tester region code, e.g. FRA',
    tester_id           String  COMMENT 'tester identity (lower-case 0x address)',
    source              String  COMMENT 'who wrote the row: tester, or post_stats:<key id> for third-party posts',
    orchestrator        String  COMMENT 'orchestrator ETH address, lower-case 0x hex',
    service_uri         String,
    pipeline            String  COMMENT 'capability name as go-livepeer names it, e.g. Text to image',
    model               String,
    warm                UInt8   COMMENT '1 when the orchestrator advertised the model warm',
    started_at          DateTime('UTC'),
    started_at_ms       UInt16  COMMENT 'millisecond part of the start time',
    outcome             Enum8('success' = 1, 'failure' = 2, 'excused' = 3) COMMENT 'excused = tester-side fault, never scored',
    error_class         String  COMMENT 'empty on success; one of the tester taxonomy classes',
    error_code          String,
    error_message       String  COMMENT 'bounded to 512 bytes by the writer',
    http_status         UInt16,
    discovery_us        UInt64  COMMENT 'GetOrchestrator round trip',
    connect_us          UInt64,
    tls_us              UInt64,
    upload_us           UInt64  COMMENT 'first request byte written to last request byte written',
    server_us           UInt64  COMMENT 'request written to first response byte: queue + inference',
    download_us         UInt64  COMMENT 'first response byte to end of body',
    media_us            UInt64  COMMENT 'fetching result media URLs',
    total_us            UInt64  COMMENT 'probe start to output validated',
    orch_processing_us  UInt64  COMMENT 'processing time the orchestrator reported, 0 if none',
    conn_reused         UInt8,
    request_bytes       UInt64,
    response_bytes      UInt64,
    ttft_us             UInt64  COMMENT 'LLM time to first token, 0 for other pipelines',
    output_units        Float64 COMMENT 'pipeline units produced (pixels, tokens, audio seconds)',
    input_parameters    String  COMMENT 'JSON of the request parameters',
    inserted_at         DateTime('UTC') DEFAULT now()
)
ENGINE = {{.Engine "probe_results" "MergeTree"}}
PARTITION BY toYYYYMMDD(started_at)
ORDER BY (pipeline, model, region, orchestrator, started_at, probe_id)
--migration:split
{{.Distributed "probe_results"}}
