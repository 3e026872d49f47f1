-- The partial edge hours of a window read in 1,024-row granules (issue #15).
-- aggregated_stats, median_rtt and pipelines read a window's whole hours
-- from the rollups and its two partial edge hours from raw rows
-- (probe_results_by_time, 0008). That table's granules are 8,192 rows, so
-- each edge range of one model was rounded up to whole granules, once per
-- day partition it touched: at 1,000 orchestrators × 10 models × 4 regions
-- the edges of a 24 h window were ~48k rows of the model but read as ~65k.
-- probe_results_by_time_fine keeps the same columns, order and partitions
-- with index_granularity = 1024 (18.16 cannot change a table's granularity
-- in place), so an edge reads its own minutes to within 1,024 rows.
--
-- probe_results_by_time is no longer fed (its view is dropped) nor read;
-- retention drops its days as they age, as before.
--
-- Probes stored before this migration are not in the new table: run
-- `leaderboard -rebuild-rollups DURATION` once over the raw rows still
-- retained (it rebuilds the rollups and this copy; see leaderboard/README.md,
-- "Rollups"). Until then a window's edge hours older than the migration
-- count no raw rows.
CREATE TABLE IF NOT EXISTS {{.DB}}.{{.Local "probe_results_by_time_fine"}} {{.OnCluster}}
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
ENGINE = {{.Engine "probe_results_by_time_fine" "MergeTree"}}
PARTITION BY toYYYYMMDD(started_at)
ORDER BY (pipeline, model, started_at)
SETTINGS index_granularity = 1024
--migration:split
{{.Distributed "probe_results_by_time_fine"}}
--migration:split
CREATE MATERIALIZED VIEW IF NOT EXISTS {{.DB}}.probe_results_by_time_fine_mv {{.OnCluster}}
TO {{.DB}}.{{.Local "probe_results_by_time_fine"}}
AS SELECT pipeline, model, started_at, started_at_ms, region, orchestrator, outcome, total_us
FROM {{.DB}}.{{.Local "probe_results"}}
--migration:split
DROP TABLE IF EXISTS {{.DB}}.probe_results_by_time_mv {{.OnCluster}}
