package store

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// BenchmarkReads loads a fleet-shaped probe_results (regions × orchestrators
// × models, one probe each per round, newest now; rollups filled by the view
// on insert) and times, in the same run, aggregated_stats (Aggregates and
// MedianRTTs for one pipeline/model, last 24 h, in one read as the API asks
// them: ScoreInputs) from rollups and from raw
// rows, an orchestrator's hourly history over 7 days from rollups and from
// raw rows, and raw_stats (one orchestrator, one pipeline/model, last hour).
//
// Each read is timed cold and warm, with 1 client (60 sequential requests)
// and with 8 concurrent clients (15 requests each):
//   - cold: the store's in-process whole-hour cache off, so every request
//     reads the rollups (ClickHouse's own caches — marks, uncompressed
//     blocks, the page cache — stay as they are; one request runs first);
//   - warm: the cache on and filled by that first request, so the whole
//     hours of aggregated_stats come from memory and only the partial edge
//     hours are read. Only aggregated_stats from rollups uses the cache:
//     the other reads have no warm variant and are reported once, as cold.
//
// It prints a markdown table: rows, query, source (path/cache/clients),
// p50/p99 latency per request and requests per second.
//
// Rows: 1M by default; LPGAUGE_BENCH_ROWS takes a comma list;
// LPGAUGE_BENCH_DB keeps the loaded rows for the next run (benchDB), and
// LPGAUGE_BENCH_QUERIES=TEXT times only the reads whose "query/source"
// contains TEXT. Fleet:
// LPGAUGE_BENCH_SHAPE=ORCHSxMODELSxREGIONS (default 100x30x4) and
// LPGAUGE_BENCH_ROUND seconds between one combo's probes (default 600);
// `BENCH_LARGE=1 scripts/bench.sh` runs the network's future size,
// 1000x10x4 every 300 s at 11.52M rows (24 h) and 80.64M rows (7 days).
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
	sh := fleetShape{orchs: 100, models: 30, regions: 4, round: 600}
	if v := os.Getenv("LPGAUGE_BENCH_SHAPE"); v != "" {
		if _, err := fmt.Sscanf(v, "%dx%dx%d", &sh.orchs, &sh.models, &sh.regions); err != nil || sh.orchs < 43 || sh.models < 8 || sh.regions < 1 || sh.regions > 4 {
			b.Fatalf("LPGAUGE_BENCH_SHAPE=%q: want ORCHSxMODELSxREGIONS, at least 43 orchestrators and 8 models, 1–4 regions", v)
		}
	}
	if v := os.Getenv("LPGAUGE_BENCH_ROUND"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 60 {
			b.Fatalf("LPGAUGE_BENCH_ROUND=%q: want seconds, at least 60", v)
		}
		sh.round = n
	}
	var table []string
	reads, medianGaps, loads, parts = nil, nil, nil, nil
	for _, n := range sizes {
		b.Run(fmt.Sprintf("rows=%d", n), func(b *testing.B) {
			table = append(table, benchReads(b, n, sh)...)
		})
	}
	fmt.Printf("\nfleet %d orchestrators × %d models × %d regions, one probe per combo every %d s\n", sh.orchs, sh.models, sh.regions, sh.round)
	fmt.Println("\n| rows | query | source | p50 ms | p99 ms | req/s |\n|---:|---|---|---:|---:|---:|")
	for _, l := range table {
		fmt.Println(l)
	}
	fmt.Println("\nread by one request (ClickHouse progress packets)\n\n| rows | query | source | read rows | read MB |\n|---:|---|---|---:|---:|")
	for _, l := range reads {
		fmt.Println(l)
	}
	fmt.Println("\nload (first run of each size; 2 × GOMAXPROCS chunks inserted at once)\n\n| rows | load s | insert s | OPTIMIZE FINAL s | chunks × rows | parallel |\n|---:|---:|---:|---:|---:|---:|")
	for _, l := range loads {
		fmt.Println(l)
	}
	fmt.Println("\ntables after the load (system.parts, active parts)\n\n| rows | table | parts | table rows | MiB on disk |\n|---:|---|---:|---:|---:|")
	for _, l := range parts {
		fmt.Println(l)
	}
	fmt.Println("\nmedian_rtt of the benchmark's model over 24 h, exact (raw rows) vs from the rollups\n\n| rows | exact ms | rollups ms | rollups − exact ms |\n|---:|---:|---:|---:|")
	for _, l := range medianGaps {
		fmt.Println(l)
	}
}

// reads and medianGaps collect the other tables BenchmarkReads prints.
var reads, medianGaps []string

type fleetShape struct {
	orchs, models, regions, round int
}

func (s fleetShape) combos() int { return s.orchs * s.models * s.regions }

func benchReads(b *testing.B, n int, sh fleetShape) []string {
	tbl := benchTableFor(b, n, sh)
	db, now := tbl.db, tbl.now
	ctx := context.Background()

	warm, err := NewClickHouse(db.Conn, db.Name, time.Minute)
	if err != nil {
		b.Fatal(err)
	}
	cold, _ := NewClickHouse(db.Conn, db.Name, time.Minute)
	cold.cache.checked, cold.cache.enabled = true, false // the whole-hour cache off

	day := Filter{Window: Window{now.Add(-24 * time.Hour), now}, Pipeline: "pipeline-2", Model: "model-7"}
	week := Filter{Window: Window{now.Add(-7 * 24 * time.Hour), now}, Pipeline: "pipeline-2", Model: "model-7", Orchestrator: "0xbench42"}
	hour := Filter{Window: Window{now.Add(-time.Hour), now}, Pipeline: "pipeline-2", Model: "model-7", Orchestrator: "0xbench42"}
	// What the API's aggregated_stats asks: aggregates and medians in one
	// read (ScoreInputs).
	aggregated := func(st *ClickHouse) func(context.Context) error {
		return func(ctx context.Context) error {
			_, _, err := ScoreInputs(ctx, st, day)
			return err
		}
	}
	type query struct {
		name, source string
		run          func(context.Context) error
	}
	queries := []query{
		{"aggregated_stats 24h", "rollups/cold", aggregated(cold)},
		{"aggregated_stats 24h", "rollups/warm", aggregated(warm)},
		{"aggregated_stats 24h", "raw/cold", func(ctx context.Context) error {
			if _, err := cold.aggregatesRaw(ctx, day); err != nil {
				return err
			}
			_, err := cold.medianRTTsRaw(ctx, day)
			return err
		}},
		{"history 7d hourly", "rollups/cold", func(ctx context.Context) error { _, err := cold.historyRollups(ctx, week, Hour); return err }},
		{"history 7d hourly", "raw/cold", func(ctx context.Context) error { _, err := cold.historyRaw(ctx, week, Hour); return err }},
		{"raw_stats 1h one orchestrator", "raw/cold", func(ctx context.Context) error { _, err := cold.Raw(ctx, hour, false, 1000); return err }},
	}
	var lines []string
	only := os.Getenv("LPGAUGE_BENCH_QUERIES")
	for _, q := range queries {
		if only != "" && !strings.Contains(q.name+"/"+q.source, only) {
			continue
		}
		// The first request fills the warm cache and fails the benchmark if
		// the query fails; the second counts what ClickHouse read for one
		// request as timed below (the native protocol's progress packets,
		// summed over its queries).
		if err := q.run(ctx); err != nil {
			b.Fatalf("%s from %s: %v", q.name, q.source, err)
		}
		var readRows, readBytes uint64
		var mu sync.Mutex
		pctx := clickhouse.Context(ctx, clickhouse.WithProgress(func(p *clickhouse.Progress) {
			mu.Lock()
			readRows += p.Rows
			readBytes += p.Bytes
			mu.Unlock()
		}))
		if err := q.run(pctx); err != nil {
			b.Fatalf("%s from %s: %v", q.name, q.source, err)
		}
		reads = append(reads, fmt.Sprintf("| %d | %s | %s | %d | %.2f |", n, q.name, q.source, readRows, float64(readBytes)/1e6))
		run := func() error { return q.run(ctx) }
		for _, clients := range []int{1, 8} {
			perClient := 60
			if clients > 1 {
				perClient = 15
			}
			lat, total := timeRequests(b, run, clients, perClient)
			p := func(x float64) float64 { return float64(lat[int(x*float64(len(lat)-1))].Microseconds()) / 1000 }
			source := fmt.Sprintf("%s/%d", q.source, clients)
			lines = append(lines, fmt.Sprintf("| %d | %s | %s | %.1f | %.1f | %.0f |", n, q.name, source, p(0.5), p(0.99), float64(len(lat))/total.Seconds()))
			b.ReportMetric(p(0.99), strings.ReplaceAll(q.name+"/"+source, " ", "_")+"_p99_ms")
		}
	}
	// How far the bounded median (migration 0008) is from the exact one
	// here: exact while every (pipeline, model, region, hour) holds at most
	// 4096 successes, a t-digest past that.
	exact, err := cold.medianRTTsRaw(ctx, day)
	if err != nil {
		b.Fatal(err)
	}
	_, bounded, err := ScoreInputs(ctx, cold, day)
	if err != nil {
		b.Fatal(err)
	}
	k := Key{day.Pipeline, day.Model}
	medianGaps = append(medianGaps, fmt.Sprintf("| %d | %.3f | %.3f | %.3f |", n, exact[k]*1e3, bounded[k]*1e3, (bounded[k]-exact[k])*1e3))
	return lines
}

// timeRequests runs perClient requests on each of clients goroutines at
// once and returns every request's latency, sorted, and the wall time.
func timeRequests(b *testing.B, run func() error, clients, perClient int) ([]time.Duration, time.Duration) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	lat := make([]time.Duration, 0, clients*perClient)
	errs := make(chan error, clients)
	t0 := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range perClient {
				s := time.Now()
				if err := run(); err != nil {
					errs <- err
					return
				}
				d := time.Since(s)
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	total := time.Since(t0)
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return lat, total
}
