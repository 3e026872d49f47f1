package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/lpgauge/lpgauge/internal/chtest"
	"github.com/lpgauge/lpgauge/internal/proctest"
)

// BenchmarkPeakRSS runs the real leaderboard binary (built to a temp dir)
// over a probe_results of 1M fleet-shaped rows (the shape of
// leaderboard/store BenchmarkReads: 4 regions × 100 orchestrators × 30
// models, one probe each every 10 minutes) and serves /api/aggregated_stats
// for every model from 4 clients at once; one b.N is 120 requests. It
// reports the binary's peak resident memory (VmHWM) and the HTTP latency and
// throughput the clients saw.
//
//	go test -run '^$' -bench PeakRSS -benchtime 1x ./cmd/leaderboard/
func BenchmarkPeakRSS(b *testing.B) {
	const rows = 1_000_000
	db := chtest.NewDB(b)
	loadFleetRows(b, db, rows)
	bin := proctest.Build(b, "github.com/lpgauge/lpgauge/cmd/leaderboard")
	addr := proctest.FreeAddr(b)
	p := proctest.Start(b, bin, nil, "-listen", addr, "-clickhouse.addr", db.Addr, "-clickhouse.database", db.Name)
	base := "http://" + addr
	p.WaitHTTP(b, base+"/api/health", time.Minute)

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}, Timeout: 30 * time.Second}
	get := func(m int) (time.Duration, error) {
		url := fmt.Sprintf("%s/api/aggregated_stats?pipeline=pipeline-%d&model=model-%d", base, m%5, m)
		start := time.Now()
		resp, err := client.Get(url)
		if err != nil {
			return 0, err
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || n < 100 {
			return 0, fmt.Errorf("%s: status %d, %d bytes", url, resp.StatusCode, n)
		}
		return time.Since(start), nil
	}
	for m := 0; m < 30; m++ { // warm-up; a failing request fails the benchmark
		if _, err := get(m); err != nil {
			b.Fatal(err)
		}
	}
	const clients, perOp = 4, 120
	var mu sync.Mutex
	var lat []time.Duration
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		jobs := make(chan int, perOp)
		for j := 0; j < perOp; j++ {
			jobs <- (i*perOp + j) % 30
		}
		close(jobs)
		var wg sync.WaitGroup
		for range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for m := range jobs {
					d, err := get(m)
					if err != nil {
						b.Error(err)
						return
					}
					mu.Lock()
					lat = append(lat, d)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
	}
	took := time.Since(start)
	b.StopTimer()
	peak, err := p.PeakRSS()
	if err != nil {
		b.Fatalf("read VmHWM: %v\n%s", err, p.Tail(4000))
	}
	if err := p.Stop(20 * time.Second); err != nil {
		b.Errorf("leaderboard shutdown: %v", err)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	q := func(f float64) float64 { return float64(lat[int(f*float64(len(lat)-1))]) / float64(time.Millisecond) }
	b.ReportMetric(proctest.MiB(peak), "peak-RSS-MiB")
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(float64(len(lat))/took.Seconds(), "req/s")
}

// loadFleetRows fills probe_results the way leaderboard/store BenchmarkReads
// does (its loader is test code of another package): row i is combo
// i % 12000 (region, orchestrator, model) in ten-minute rounds back from
// now; 90 % success; times 0.5–20 s. Rollups are filled by the view.
func loadFleetRows(b *testing.B, db *chtest.DB, n int) {
	const combos = 4 * 100 * 30
	load := fmt.Sprintf("INSERT INTO %[1]s.probe_results"+
		" (probe_id, region, orchestrator, pipeline, model, warm, started_at, started_at_ms, outcome, total_us, server_us, upload_us, download_us, source)"+
		" SELECT toString(number), ['FRA', 'LAX', 'MDW', 'SIN'][combo %% 4 + 1], concat('0xbench', toString(intDiv(combo, 4) %% 100)),"+
		" concat('pipeline-', toString(intDiv(combo, 400) %% 5)), concat('model-', toString(intDiv(combo, 400))), toUInt8(h %% 3 != 0),"+
		" toDateTime(%[2]d - intDiv(number, %[3]d) * 600 - combo %% 600), toUInt16(h %% 1000),"+
		" CAST(multiIf(h %% 100 < 90, 'success', h %% 100 < 98, 'failure', 'excused') AS Enum8('success' = 1, 'failure' = 2, 'excused' = 3)),"+
		" 500000 + h %% 19500000, intDiv(500000 + h %% 19500000, 2), h %% 300000, h %% 200000, 'bench'"+
		" FROM (SELECT number, number %% %[3]d AS combo, intHash64(number) AS h FROM system.numbers LIMIT %[4]d)",
		db.Name, time.Now().Unix(), combos, n)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	if err := db.Conn.Exec(ctx, load); err != nil {
		b.Fatalf("load %d rows: %v", n, err)
	}
	_ = db.Conn.Exec(ctx, "OPTIMIZE TABLE "+db.Name+".probe_rollup_hourly FINAL")
	b.Logf("loaded %d rows in %s", n, time.Since(start).Round(time.Millisecond))
}
