package store

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lpgauge/lpgauge/internal/chtest"
)

// BenchmarkReads loads a fleet-shaped probe_results (4 regions × 100
// orchestrators × 30 models, one probe each every 10 minutes, newest now;
// rollups filled by the view on insert) and times aggregated_stats (Aggregates
// + MedianRTTs for one pipeline/model, last 24 h) and an orchestrator's
// hourly history over 7 days, from rollups and from raw rows, in the same run.
// It prints a markdown table with p50/p99 latency and requests per second.
//
// Rows: 1M by default; LPGAUGE_BENCH_ROWS takes a comma list
// (LPGAUGE_BENCH_ROWS=1000000,10000000 for `make bench`).
func BenchmarkReads(b *testing.B) {
	sizes := []int{1_000_000}
	if v := os.Getenv("LPGAUGE_BENCH_ROWS"); v != "" {
		sizes = nil
		for _, s := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || n <= 0 {
				b.Fatalf("LPGAUGE_BENCH_ROWS=%q: want a comma list of positive row counts", v)
			}
			sizes = append(sizes, n)
		}
	}
	var table []string
	for _, n := range sizes {
		b.Run(fmt.Sprintf("rows=%d", n), func(b *testing.B) {
			table = append(table, benchReads(b, n)...)
		})
	}
	fmt.Println("\n| rows | query | source | p50 ms | p99 ms | req/s |\n|---:|---|---|---:|---:|---:|")
	for _, l := range table {
		fmt.Println(l)
	}
}

const (
	benchRegions = 4
	benchOrchs   = 100
	benchModels  = 30
	benchCombos  = benchRegions * benchOrchs * benchModels
)

func benchReads(b *testing.B, n int) []string {
	db := chtest.NewDB(b)
	ctx := context.Background()
	now := time.Now().UTC()
	start := time.Now()
	// Row i: combo i % 12000 (region, orchestrator, model), slot i / 12000
	// ten-minute rounds back from now, each combo at its own offset in the
	// round. 90 % success, 8 % failure, 2 % excused; times 0.5–20 s.
	load := fmt.Sprintf("INSERT INTO %[1]s.probe_results"+
		" (probe_id, region, orchestrator, pipeline, model, warm, started_at, started_at_ms, outcome, total_us, server_us, upload_us, download_us, source)"+
		" SELECT toString(number), ['FRA', 'LAX', 'MDW', 'SIN'][combo %% 4 + 1], concat('0xbench', toString(intDiv(combo, 4) %% 100)),"+
		" concat('pipeline-', toString(intDiv(combo, 400) %% 5)), concat('model-', toString(intDiv(combo, 400))), toUInt8(h %% 3 != 0),"+
		" toDateTime(%[2]d - intDiv(number, %[3]d) * 600 - combo %% 600), toUInt16(h %% 1000),"+
		" CAST(multiIf(h %% 100 < 90, 'success', h %% 100 < 98, 'failure', 'excused') AS Enum8('success' = 1, 'failure' = 2, 'excused' = 3)),"+
		" 500000 + h %% 19500000, intDiv(500000 + h %% 19500000, 2), h %% 300000, h %% 200000, 'bench'"+
		" FROM (SELECT number, number %% %[3]d AS combo, intHash64(number) AS h FROM system.numbers LIMIT %[4]d)",
		db.Name, now.Unix(), benchCombos, n)
	lctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	if err := db.Conn.Exec(lctx, load); err != nil {
		b.Fatalf("load %d rows: %v", n, err)
	}
	_ = db.Conn.Exec(lctx, "OPTIMIZE TABLE "+db.Name+".probe_rollup_hourly FINAL")
	b.Logf("loaded %d rows (rollups by the view) in %s", n, time.Since(start).Round(time.Millisecond))

	st, err := NewClickHouse(db.Conn, db.Name, time.Minute)
	if err != nil {
		b.Fatal(err)
	}
	day := Filter{Window: Window{now.Add(-24 * time.Hour), now}, Pipeline: "pipeline-2", Model: "model-7"}
	week := Filter{Window: Window{now.Add(-7 * 24 * time.Hour), now}, Pipeline: "pipeline-2", Model: "model-7", Orchestrator: "0xbench42"}
	type query struct {
		name, source string
		run          func() error
	}
	queries := []query{
		{"aggregated_stats 24h", "rollups", func() error {
			if _, err := st.Aggregates(ctx, day); err != nil {
				return err
			}
			_, err := st.MedianRTTs(ctx, day)
			return err
		}},
		{"aggregated_stats 24h", "raw", func() error {
			if _, err := st.aggregatesRaw(ctx, day); err != nil {
				return err
			}
			_, err := st.medianRTTsRaw(ctx, day)
			return err
		}},
		{"history 7d hourly", "rollups", func() error { _, err := st.historyRollups(ctx, week, Hour); return err }},
		{"history 7d hourly", "raw", func() error { _, err := st.historyRaw(ctx, week, Hour); return err }},
	}
	var lines []string
	for _, q := range queries {
		if err := q.run(); err != nil { // warm-up, and a failing query fails the benchmark
			b.Fatalf("%s from %s: %v", q.name, q.source, err)
		}
		const iters = 60
		lat := make([]time.Duration, 0, iters)
		t0 := time.Now()
		for i := 0; i < iters; i++ {
			s := time.Now()
			if err := q.run(); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(s))
		}
		total := time.Since(t0)
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		p := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))].Microseconds()) / 1000 }
		lines = append(lines, fmt.Sprintf("| %d | %s | %s | %.1f | %.1f | %.0f |", n, q.name, q.source, p(0.5), p(0.99), float64(iters)/total.Seconds()))
		b.ReportMetric(p(0.99), strings.ReplaceAll(q.name+"/"+q.source, " ", "_")+"_p99_ms")
	}
	return lines
}
