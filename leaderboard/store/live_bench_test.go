package store

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/lpgauge/lpgauge/internal/chtest"
	"github.com/lpgauge/lpgauge/internal/results"
	"github.com/lpgauge/lpgauge/internal/results/resultsdb"
)

// BenchmarkLiveStats times /api/live_stats' query (every orchestrator,
// region and live model over the last 24 h) on a network of 100
// orchestrators × 4 regions probed live every 5 minutes (115,200 live rows)
// beside as many batch rows, on the ClickHouse server. Cold is the first
// request after the load (ClickHouse's mark and block caches empty of these
// parts); warm is the median and p99 of the next 30. It prints both.
func BenchmarkLiveStats(b *testing.B) {
	db := chtest.NewDB(b)
	st, err := NewClickHouse(db.Conn, db.Name, time.Minute)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Minute)
	regs := []string{"FRA", "LAX", "MDW", "SIN"}
	var batch []results.Result
	flush := func() {
		if err := resultsdb.Insert(ctx, db.Conn, db.Name, batch); err != nil {
			b.Fatal(err)
		}
		batch = batch[:0]
	}
	rows := 0
	for slot := 0; slot < 288; slot++ {
		for o := 0; o < 100; o++ {
			orch := fmt.Sprintf("0x%040x", o+1)
			for ri, reg := range regs {
				at := now.Add(-time.Duration(slot)*5*time.Minute - time.Duration(o*ri)*time.Millisecond)
				l := results.Live{FirstSegment: time.Duration(300+o) * time.Millisecond, FirstFrame: time.Duration(320+o) * time.Millisecond,
					InFPS: 30, OutFPS: float64(30 - o%5), LatencyP50: time.Duration(80+o) * time.Millisecond, LatencyP99: time.Duration(150+o) * time.Millisecond,
					Stalls: uint32(slot % 3), StallTotal: time.Duration(slot%3) * 500 * time.Millisecond, Session: 10 * time.Second}
				r := results.Result{ProbeID: results.ProbeID("bench", orch, reg, fmt.Sprint(slot)), Region: reg, Orchestrator: orch,
					Pipeline: LivePipeline, Model: "noop", StartedAt: at, Outcome: results.Success, Total: l.FirstSegment, Live: l, Source: "tester"}
				bt := r
				bt.ProbeID, bt.Pipeline, bt.Model, bt.Live = results.ProbeID("batch", orch, reg, fmt.Sprint(slot)), t2i, sdxl, results.Live{}
				batch = append(batch, r, bt)
				rows += 2
			}
		}
		if len(batch) >= 20000 {
			flush()
		}
	}
	flush()
	f := Filter{Window: Window{Since: now.Add(-24 * time.Hour), Until: now}}
	timeOne := func() time.Duration {
		start := time.Now()
		got, err := st.LiveStats(ctx, f)
		if err != nil || len(got) != 400 {
			b.Fatalf("live stats: %d groups, %v", len(got), err)
		}
		return time.Since(start)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cold := timeOne()
		var warm []time.Duration
		for k := 0; k < 30; k++ {
			warm = append(warm, timeOne())
		}
		sort.Slice(warm, func(i, j int) bool { return warm[i] < warm[j] })
		b.ReportMetric(float64(cold.Microseconds())/1000, "cold-ms")
		b.ReportMetric(float64(warm[len(warm)/2].Microseconds())/1000, "warm-p50-ms")
		b.ReportMetric(float64(warm[len(warm)*99/100].Microseconds())/1000, "warm-p99-ms")
		fmt.Printf("live_stats 24 h, %d rows (%d live), 400 groups: cold %v, warm p50 %v p99 %v\n", rows, rows/2, cold, warm[len(warm)/2], warm[len(warm)*99/100])
	}
}
