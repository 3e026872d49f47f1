package store

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lpgauge/lpgauge/internal/chtest"
	"github.com/lpgauge/lpgauge/internal/results"
)

// BenchmarkPostIngest measures post_stats ingest with de-duplication on
// (claims, the row lookup, batched inserts) against a probe_results of
// LPGAUGE_BENCH_POST_ROWS rows (default 10M) and a post_claims of as many:
// 2,000 posters each post distinct results back to back; posts/s is what
// was accepted over the wall time of a run of 10,000 posts. The first run is
// cold (fresh store, caches and parts); the warm figure is the median of
// three more.
//
//	go test -run '^$' -bench PostIngest -benchtime 1x -timeout 30m ./leaderboard/store
func BenchmarkPostIngest(b *testing.B) {
	rows := 10_000_000
	if v := os.Getenv("LPGAUGE_BENCH_POST_ROWS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			b.Fatalf("LPGAUGE_BENCH_POST_ROWS=%q: want a positive row count", v)
		}
		rows = n
	}
	db := chtest.NewDB(b)
	ctx := context.Background()
	now := time.Now().UTC()
	lctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	start := time.Now()
	// A fleet's week: 4 regions × 100 orchestrators × 30 models, one probe
	// each every 10 minutes back from now.
	load := fmt.Sprintf("INSERT INTO %[1]s.probe_results"+
		" (probe_id, region, orchestrator, pipeline, model, warm, started_at, started_at_ms, outcome, total_us, source)"+
		" SELECT toString(number), ['FRA', 'LAX', 'MDW', 'SIN'][combo %% 4 + 1], concat('0xbench', toString(intDiv(combo, 4) %% 100)),"+
		" 'Text to image', concat('model-', toString(intDiv(combo, 400))), 1,"+
		" toDateTime(%[2]d - intDiv(number, 12000) * 600 - combo %% 600), 0,"+
		" CAST('success' AS Enum8('success' = 1, 'failure' = 2, 'excused' = 3)), 1500000, 'bench'"+
		" FROM (SELECT number, number %% 12000 AS combo FROM system.numbers LIMIT %[3]d)", db.Name, now.Unix(), rows)
	if err := db.Conn.Exec(lctx, load); err != nil {
		b.Fatalf("load %d probe rows: %v", rows, err)
	}
	claims := fmt.Sprintf("INSERT INTO %[1]s.post_claims (post_id, token, claimed_ns, claimed_at)"+
		" SELECT toString(intHash64(number)), toString(number), %[2]d - number * 1000000, toDateTime(%[3]d - intDiv(number, 1000))"+
		" FROM system.numbers LIMIT %[4]d", db.Name, now.UnixNano(), now.Unix(), rows)
	if err := db.Conn.Exec(lctx, claims); err != nil {
		b.Fatalf("load %d claims: %v", rows, err)
	}
	b.Logf("loaded %d probe rows and %d claims in %s", rows, rows, time.Since(start).Round(time.Second))

	const posters, perRun, runs = 2000, 10000, 4
	seq := int64(0)
	var rates []float64
	var p50s, p99s []time.Duration
	for run := 0; run < runs; run++ {
		st, err := NewClickHouse(db.Conn, db.Name, time.Minute)
		if err != nil {
			b.Fatal(err)
		}
		if run == 0 {
			b.ResetTimer()
		}
		var next, accepted int64
		lat := make([]time.Duration, perRun)
		var wg sync.WaitGroup
		t0 := time.Now()
		for p := 0; p < posters; p++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := atomic.AddInt64(&next, 1) - 1
					if i >= perRun {
						return
					}
					n := atomic.AddInt64(&seq, 1)
					r := results.Result{
						ProbeID: results.ProbeID("bench-post", strconv.FormatInt(n, 10)), Source: "post_stats",
						Region: []string{"FRA", "LAX", "MDW", "SIN"}[n%4], Orchestrator: fmt.Sprintf("0xbench%d", n%100),
						Pipeline: "Text to image", Model: fmt.Sprintf("model-%d", n%30), StartedAt: now.Add(-time.Duration(n%3600) * time.Second),
						Outcome: results.Success, Total: 1500 * time.Millisecond,
					}
					s := time.Now()
					isNew, err := st.Ingest(ctx, r, Posted{Errors: `[]`, ResponsePayload: `"{}"`})
					lat[i] = time.Since(s)
					if err != nil {
						b.Errorf("post %d: %v", n, err)
						return
					}
					if isNew {
						atomic.AddInt64(&accepted, 1)
					}
				}
			}()
		}
		wg.Wait()
		took := time.Since(t0)
		if accepted != perRun {
			b.Fatalf("run %d: %d of %d distinct posts accepted", run, accepted, perRun)
		}
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		rate := float64(perRun) / took.Seconds()
		b.Logf("run %d (%s): %d posts in %s = %.0f posts/s, latency p50 %s p99 %s", run, map[bool]string{true: "cold", false: "warm"}[run == 0],
			perRun, took.Round(time.Millisecond), rate, lat[perRun/2].Round(time.Millisecond), lat[perRun*99/100].Round(time.Millisecond))
		rates, p50s, p99s = append(rates, rate), append(p50s, lat[perRun/2]), append(p99s, lat[perRun*99/100])
	}
	warm := append([]float64(nil), rates[1:]...)
	sort.Float64s(warm)
	b.ReportMetric(rates[0], "cold-posts/s")
	b.ReportMetric(warm[len(warm)/2], "warm-posts/s")
	b.ReportMetric(float64(p50s[len(p50s)-1].Milliseconds()), "last-p50-ms")
	b.ReportMetric(float64(p99s[len(p99s)-1].Milliseconds()), "last-p99-ms")
	var n uint64
	if err := db.Conn.QueryRow(ctx, "SELECT count() FROM "+db.Name+".probe_results WHERE source = 'post_stats'").Scan(&n); err != nil {
		b.Fatal(err)
	}
	if n != runs*perRun {
		b.Fatalf("%d posted rows stored, want %d", n, runs*perRun)
	}
}
