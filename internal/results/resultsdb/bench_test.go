package resultsdb_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/lpgauge/lpgauge/internal/chtest"
	"github.com/lpgauge/lpgauge/internal/results"
	"github.com/lpgauge/lpgauge/internal/results/resultsdb"
)

func TestMain(m *testing.M) { chtest.Main(m) }

// BenchmarkInsert times resultsdb.Insert (the writer's one INSERT) into a
// migrated probe_results, materialized views to the hourly rollups
// included, on the package's private ClickHouse server: one b.N is one batch
// of tester-shaped rows (all columns filled, a fleet's spread of
// orchestrators and models, one round's time), reported as rows/s.
//
//	go test -run '^$' -bench Insert -benchtime 3s ./internal/results/resultsdb/
func BenchmarkInsert(b *testing.B) {
	db := chtest.NewDB(b)
	for _, size := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			ctx := context.Background()
			seq := 0
			batch := func() []results.Result {
				rows := make([]results.Result, size)
				now := time.Now()
				for i := range rows {
					seq++
					rows[i] = benchRow(seq, now)
				}
				rows[0].BatchID = results.BatchID(rows)
				for i := range rows {
					rows[i].BatchID = rows[0].BatchID
				}
				return rows
			}
			warm := batch()
			if err := resultsdb.Insert(ctx, db.Conn, db.Name, warm); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			var took time.Duration
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				rows := batch() // building rows is the tester's cost, not the insert's
				b.StartTimer()
				start := time.Now()
				ictx, cancel := context.WithTimeout(ctx, time.Minute)
				err := resultsdb.Insert(ictx, db.Conn, db.Name, rows)
				cancel()
				if err != nil {
					b.Fatal(err)
				}
				took += time.Since(start)
			}
			b.ReportMetric(float64(b.N*size)/took.Seconds(), "rows/s")
		})
	}
}

func benchRow(i int, now time.Time) results.Result {
	orch := fmt.Sprintf("0x%040x", i%500)
	outcome, class, code := results.Success, "", ""
	if i%10 == 0 {
		outcome, class, code = results.Failure, "orchestrator", "http_500"
	}
	return results.Result{
		ProbeID: results.ProbeID("FRA", "0xtester", strconv.Itoa(i)), RoundID: "bench", Region: "FRA", TesterID: "0xtester",
		Orchestrator: orch, ServiceURI: "https://orch" + strconv.Itoa(i%500) + ".example:8935",
		Pipeline: "Text to image", Model: "model-" + strconv.Itoa(i%4), Warm: i%3 != 0,
		StartedAt: now.Add(-time.Duration(i%600) * time.Second), Outcome: outcome, ErrorClass: class, ErrorCode: code,
		HTTPStatus: 200, Discovery: 3 * time.Millisecond, Connect: time.Millisecond, Upload: 2 * time.Millisecond,
		Server: time.Duration(500+i%1500) * time.Millisecond, Download: 4 * time.Millisecond, Media: 9 * time.Millisecond,
		Total: time.Duration(520+i%1500) * time.Millisecond, OrchProcessing: time.Duration(499+i%1500) * time.Millisecond,
		RequestBytes: 180, ResponseBytes: 1 << 20, OutputUnits: 262144, InputParameters: `{"width":512,"height":512}`,
	}
}
