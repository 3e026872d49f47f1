-- Live video (issue #16): one probe_results row per live-video-to-video
-- probe, with what a live stream's users notice besides one round trip:
-- time to the first transformed segment and frame, frame rates in and out,
-- per-frame in→out latency percentiles, stalls, lost or reordered output,
-- live payments accepted. Every batch row (and every old row) reads 0
-- (DEFAULT): not a live probe. Frame rates are Float64 (18.16 has no
-- Decimal-free fixed point that Grafana reads as a rate).
ALTER TABLE {{.DB}}.{{.Local "probe_results"}} {{.OnCluster}}
  ADD COLUMN live_first_segment_us UInt64 DEFAULT 0 COMMENT 'start POST sent to first output segment read whole (go-livepeer ai_first_segment_delay_ms)',
  ADD COLUMN live_first_frame_us UInt64 DEFAULT 0 COMMENT 'start POST sent to first transformed frame decoded',
  ADD COLUMN live_frames_in UInt32 DEFAULT 0 COMMENT 'frames published',
  ADD COLUMN live_frames_out UInt32 DEFAULT 0 COMMENT 'transformed frames read back and matched to an input frame',
  ADD COLUMN live_in_fps Float64 DEFAULT 0 COMMENT 'input frames per second',
  ADD COLUMN live_out_fps Float64 DEFAULT 0 COMMENT 'matched output frames per second',
  ADD COLUMN live_latency_p50_us UInt64 DEFAULT 0 COMMENT 'per-frame in to out latency, median',
  ADD COLUMN live_latency_p95_us UInt64 DEFAULT 0 COMMENT 'per-frame in to out latency, p95',
  ADD COLUMN live_latency_p99_us UInt64 DEFAULT 0 COMMENT 'per-frame in to out latency, p99',
  ADD COLUMN live_stalls UInt32 DEFAULT 0 COMMENT 'output gaps over the stall bound while input flowed',
  ADD COLUMN live_stall_total_us UInt64 DEFAULT 0 COMMENT 'summed stall length',
  ADD COLUMN live_stall_max_us UInt64 DEFAULT 0 COMMENT 'longest stall',
  ADD COLUMN live_segments_lost UInt32 DEFAULT 0 COMMENT 'output segment numbers skipped',
  ADD COLUMN live_segments_reordered UInt32 DEFAULT 0 COMMENT 'output frames out of order',
  ADD COLUMN live_payments_ok UInt32 DEFAULT 0 COMMENT 'live payments accepted (start and periodic)',
  ADD COLUMN live_payments_refused UInt32 DEFAULT 0 COMMENT 'live payments refused',
  ADD COLUMN live_session_us UInt64 DEFAULT 0 COMMENT 'start POST sent to session end'
--migration:split
-- On a cluster the Distributed table is made again over the altered local
-- table (as in 0006: 18.16 refuses ALTER ON CLUSTER on it).
{{if .Cluster}}DROP TABLE IF EXISTS {{.DB}}.probe_results {{.OnCluster}}{{end}}
--migration:split
{{.Distributed "probe_results"}}
