package store

// Live video (issue #16): what a gateway streaming to an orchestrator
// notices, per (orchestrator, region, live model) over a window, from the
// live_* columns of probe_results (migration 0007). Only rows of the live
// pipeline ever enter these numbers: every query filters on
// pipeline = LivePipeline, so a batch row (whose live_* columns read 0)
// cannot dilute a median or a stall rate. Percentiles are computed on the
// server from sorted arrays (percentileSQL, Postgres percentile_cont), so
// the same SQL runs on ClickHouse 18.16 and current releases: no window
// functions, no JOIN.

import (
	"context"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/lpgauge/lpgauge/capability"
	"github.com/lpgauge/lpgauge/internal/chclient"
	"github.com/lpgauge/lpgauge/internal/results"
	"github.com/lpgauge/lpgauge/regions"
)

// LivePipeline is the pipeline column of a live probe row: the capability
// name of live-video-to-video, as every other row stores its capability name.
var LivePipeline = func() string {
	p, ok := capability.ByName("Live video to video")
	if !ok {
		panic("capability: live-video-to-video is not in the catalogue")
	}
	return p.Name
}()

// LiveStat is one (orchestrator, region, live model) over a window. Times
// are seconds. A session is one live probe; excused sessions (tester-side
// faults, capacity refusals) are counted apart and never enter a number.
type LiveStat struct {
	Orchestrator, Region, Model string
	// Sessions are the scored sessions (success + failure); Successes ran
	// their length with transformed output.
	Sessions, Successes, Excused uint64
	// FirstSegment and FirstFrame: start request sent → first output
	// segment read whole / first transformed frame decoded, over the
	// successful sessions that measured them: median and p95.
	FirstSegmentP50, FirstSegmentP95 float64
	FirstFrameP50, FirstFrameP95     float64
	// LatencyP50 and LatencyP99 are the medians, over successful sessions,
	// of each session's per-frame in→out latency p50 and p99.
	LatencyP50, LatencyP99 float64
	// FPSRatio is the median, over successful sessions with input, of
	// output fps / input fps: the share of the frame rate held.
	FPSRatio float64
	// StallsPerMinute and StallShare are pooled over every scored session
	// with a measured length: stalls / session minutes, and stalled time /
	// session time (a failed session's stalls count: they are what ended
	// it, often).
	StallsPerMinute, StallShare float64
	// StallMax is the longest stall seen.
	StallMax float64
	// SegmentsLost and PaymentsRefused are summed over scored sessions;
	// PaymentsOK too, so a refusal rate can be read.
	SegmentsLost, SegmentsReordered, PaymentsOK, PaymentsRefused uint64
	// Timed is the number of successful sessions behind the medians.
	Timed      uint64
	LastTested time.Time
}

// SuccessRate is successes over scored sessions (0 when none).
func (l LiveStat) SuccessRate() float64 {
	if l.Sessions == 0 {
		return 0
	}
	return float64(l.Successes) / float64(l.Sessions)
}

// liveWhere is the WHERE clause of a live query: f's window at millisecond
// precision (as where does), the live pipeline whatever f.Pipeline says,
// and f's model, region (GLOBAL = all) and orchestrator.
func liveWhere(f Filter) (string, []any) {
	conds := []string{
		"started_at >= toDateTime(?)", "started_at <= toDateTime(?)",
		"(toUInt64(started_at) * 1000 + started_at_ms) >= ?", "(toUInt64(started_at) * 1000 + started_at_ms) <= ?",
		"pipeline = ?",
	}
	args := []any{unixSec(f.Since), unixSec(f.Until), unixMilli(f.Since), unixMilli(f.Until), LivePipeline}
	if f.Model != "" {
		conds = append(conds, "model = ?")
		args = append(args, f.Model)
	}
	if f.Region != "" && f.Region != regions.Global {
		conds = append(conds, "region = ?")
		args = append(args, f.Region)
	}
	if f.Orchestrator != "" {
		conds = append(conds, "orchestrator = ?")
		args = append(args, f.Orchestrator)
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

// liveArray is the sorted array, in seconds, of a µs column over the
// successful sessions that measured it (> 0).
func liveArray(col string) string {
	return "arraySort(groupArrayIf(toFloat64(" + col + ") / 1000000, outcome = 'success' AND " + col + " > 0))"
}

// LiveStats implements Store: one LiveStat per (orchestrator, region,
// model) of the live pipeline matching f (f.Pipeline is ignored). Region
// GLOBAL pools every region per orchestrator and model. Groups with only
// excused sessions are left out. Sorted by orchestrator, region, model.
func (c *ClickHouse) LiveStats(ctx context.Context, f Filter) ([]LiveStat, error) {
	regionCol := "region"
	if f.Region == regions.Global {
		regionCol = chclient.Quote(regions.Global)
	}
	w, args := liveWhere(f)
	scored := "outcome != 'excused'"
	timedSession := scored + " AND live_session_us > 0"
	inner := "SELECT orchestrator, " + regionCol + " AS reg, model," +
		" countIf(" + scored + ") AS sessions, countIf(outcome = 'success') AS ok, countIf(outcome = 'excused') AS excused," +
		" countIf(outcome = 'success' AND live_first_segment_us > 0) AS timed," +
		" " + liveArray("live_first_segment_us") + " AS fseg," +
		" " + liveArray("live_first_frame_us") + " AS ffr," +
		" " + liveArray("live_latency_p50_us") + " AS l50," +
		" " + liveArray("live_latency_p99_us") + " AS l99," +
		" arraySort(groupArrayIf(live_out_fps / live_in_fps, outcome = 'success' AND live_in_fps > 0)) AS fps," +
		" sumIf(toUInt64(live_stalls), " + timedSession + ") AS stalls," +
		" sumIf(live_stall_total_us, " + timedSession + ") AS stall_us," +
		" sumIf(live_session_us, " + timedSession + ") AS session_us," +
		" maxIf(live_stall_max_us, " + scored + ") AS stall_max," +
		" sumIf(toUInt64(live_segments_lost), " + scored + ") AS lost," +
		" sumIf(toUInt64(live_segments_reordered), " + scored + ") AS reordered," +
		" sumIf(toUInt64(live_payments_ok), " + scored + ") AS pay_ok," +
		" sumIf(toUInt64(live_payments_refused), " + scored + ") AS pay_refused," +
		" max(started_at) AS last_tested" +
		" FROM " + c.table() + w +
		" GROUP BY orchestrator, reg, model HAVING sessions > 0"
	q := "SELECT orchestrator, reg, model, sessions, ok, excused, timed," +
		" " + percentileSQL("fseg", 0.5) + ", " + percentileSQL("fseg", 0.95) + "," +
		" " + percentileSQL("ffr", 0.5) + ", " + percentileSQL("ffr", 0.95) + "," +
		" " + percentileSQL("l50", 0.5) + ", " + percentileSQL("l99", 0.5) + ", " + percentileSQL("fps", 0.5) + "," +
		" if(session_us > 0, stalls * 60000000 / session_us, 0.), if(session_us > 0, stall_us / session_us, 0.)," +
		" toFloat64(stall_max) / 1000000, lost, reordered, pay_ok, pay_refused, last_tested" +
		" FROM (" + inner + ") ORDER BY orchestrator, reg, model"
	return queryRows(ctx, c, "live stats", q, args, func(rows driver.Rows) (LiveStat, error) {
		var l LiveStat
		err := rows.Scan(&l.Orchestrator, &l.Region, &l.Model, &l.Sessions, &l.Successes, &l.Excused, &l.Timed,
			&l.FirstSegmentP50, &l.FirstSegmentP95, &l.FirstFrameP50, &l.FirstFrameP95,
			&l.LatencyP50, &l.LatencyP99, &l.FPSRatio, &l.StallsPerMinute, &l.StallShare,
			&l.StallMax, &l.SegmentsLost, &l.SegmentsReordered, &l.PaymentsOK, &l.PaymentsRefused, &l.LastTested)
		l.LastTested = l.LastTested.UTC()
		return l, err
	})
}

// LiveRaw returns the live measures of the given probes that are live rows
// (others are absent from the map): raw_stats adds them to its live rows
// without widening the batch read.
func (c *ClickHouse) LiveRaw(ctx context.Context, probeIDs []string) (map[string]results.Live, error) {
	out := map[string]results.Live{}
	if len(probeIDs) == 0 {
		return out, nil
	}
	marks := make([]string, len(probeIDs))
	args := []any{LivePipeline}
	for i, id := range probeIDs {
		marks[i] = "?"
		args = append(args, id)
	}
	q := "SELECT probe_id, live_first_segment_us, live_first_frame_us, live_frames_in, live_frames_out, live_in_fps, live_out_fps," +
		" live_latency_p50_us, live_latency_p95_us, live_latency_p99_us, live_stalls, live_stall_total_us, live_stall_max_us," +
		" live_segments_lost, live_segments_reordered, live_payments_ok, live_payments_refused, live_session_us" +
		" FROM " + c.table() + " WHERE pipeline = ? AND probe_id IN (" + strings.Join(marks, ", ") + ")"
	err := queryEach(ctx, c, "live raw", q, args, func(rows driver.Rows) error {
		var id string
		var l results.Live
		var fseg, ffr, l50, l95, l99, stallTot, stallMax, sess uint64
		if err := rows.Scan(&id, &fseg, &ffr, &l.FramesIn, &l.FramesOut, &l.InFPS, &l.OutFPS, &l50, &l95, &l99,
			&l.Stalls, &stallTot, &stallMax, &l.SegmentsLost, &l.SegmentsReorder, &l.PaymentsOK, &l.PaymentsRefused, &sess); err != nil {
			return err
		}
		d := func(us uint64) time.Duration { return time.Duration(us) * time.Microsecond }
		l.FirstSegment, l.FirstFrame, l.LatencyP50, l.LatencyP95, l.LatencyP99 = d(fseg), d(ffr), d(l50), d(l95), d(l99)
		l.StallTotal, l.StallMax, l.Session = d(stallTot), d(stallMax), d(sess)
		out[id] = l
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
