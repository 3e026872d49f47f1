-- Queue time and inference time as separate phases of the server phase
-- (issue #19). An orchestrator that reports them (the reference
-- orchestrator's Lpgauge-Job-Timing header and progress stream) lets the
-- tester tell a busy orchestrator (its probes waited in its queue) from a
-- slow one (its inference took long). Both are 0 when the orchestrator did
-- not report them: server_us is then the combined queue + inference, as
-- before. Old rows read 0 (DEFAULT), i.e. not reported.
ALTER TABLE {{.DB}}.{{.Local "probe_results"}} {{.OnCluster}} ADD COLUMN queue_us UInt64 DEFAULT 0 COMMENT 'of server_us, waiting in the orchestrator queue for a runner; 0 when not reported'
--migration:split
ALTER TABLE {{.DB}}.{{.Local "probe_results"}} {{.OnCluster}} ADD COLUMN inference_us UInt64 DEFAULT 0 COMMENT 'of server_us, the runner inferring; 0 when not reported'
--migration:split
-- On a cluster the Distributed table over probe_results_local holds no
-- rows; 18.16 refuses ALTER … ON CLUSTER on it (code 371, its shards are
-- replicated), so it is made again over the altered local table.
{{if .Cluster}}DROP TABLE IF EXISTS {{.DB}}.probe_results {{.OnCluster}}{{end}}
--migration:split
{{.Distributed "probe_results"}}
