-- Measurement truth (issue 13). One row per scheduled round of a region's
-- tester, run or skipped, so a round that did not happen is a row with its
-- reason instead of a silent gap: planned probes, probes started, result
-- rows produced (equal to planned when nothing is lost), excused ones and
-- how many of those were the tester's own health (stall, clock jump, own
-- network down, control failed), whether the round deadline cut it short.
-- Partitioned by month: a few rows per region and period.
CREATE TABLE IF NOT EXISTS {{.DB}}.{{.Local "rounds"}} {{.OnCluster}}
(
    round_id        String  COMMENT 'region/scheduled-slot, as probe_results.round_id',
    region          String,
    tester_id       String,
    slot            DateTime('UTC') COMMENT 'the scheduled tick that names the round',
    started_at      DateTime('UTC') COMMENT 'when probing began (after the region offset); epoch when skipped',
    started_at_ms   UInt16,
    finished_at     DateTime('UTC') COMMENT 'when the last probe of the round ended; epoch when skipped',
    finished_at_ms  UInt16,
    planned         UInt32  COMMENT 'probes planned',
    started         UInt32  COMMENT 'probes that started',
    result_rows     UInt32  COMMENT 'result rows produced (one per planned probe)',
    excused         UInt32  COMMENT 'of those, excused',
    tester_faults   UInt32  COMMENT 'of those, excused for the tester own health: stall, clock_jump, network_down, control_failed',
    overran         UInt8   COMMENT '1 when the round deadline stopped probes',
    skipped         UInt8   COMMENT '1 when the round did not run',
    skip_reason     String  COMMENT 'why it did not run: previous_round_running, tester_late, no_plan',
    inserted_at     DateTime('UTC') DEFAULT now()
)
ENGINE = {{.Engine "rounds" "MergeTree"}}
PARTITION BY toYYYYMM(slot)
ORDER BY (region, slot, round_id)
--migration:split
{{.Distributed "rounds"}}
