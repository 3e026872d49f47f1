package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/lpgauge/lpgauge/internal/results"
)

// postRow is a posted result as post_stats makes it.
func postRow(i int, at time.Time) results.Result {
	r := probe(orchA, "FRA", at, results.Failure, 1500*time.Millisecond)
	r.Source, r.ErrorClass, r.ErrorCode = "post_stats", "posted", "HTTP-STATUS-503"
	r.ProbeID = results.ProbeID("post_stats", fmt.Sprint(i))
	return r
}

// testIngestOnceAcrossReplicas: two stores over one database (two
// leaderboard replicas) given the same posts at once store each once, keep
// its extras, and a re-post after the claims expired is still refused by the
// primary-key lookup of the row. A nonce is accepted once across both.
func testIngestOnceAcrossReplicas(t *testing.T, newDB backend) {
	db := newDB(t)
	a, b := newStore(t, db), newStore(t, db)
	// Settle must stay far above a claim INSERT's latency (IngestConfig):
	// under -race on a loaded 2-core box chDB's inserts passed the default
	// 1 s's half, every copy yielded and none was stored (ErrContested, the
	// poster's retry would store it). 3 s keeps this a test of "once".
	for _, st := range []*ClickHouse{a, b} {
		st.SetIngest(IngestConfig{FlushEvery: 20 * time.Millisecond, Settle: 3 * time.Second})
	}
	ctx := context.Background()
	at := time.Now().UTC().Add(-time.Minute).Truncate(time.Second)
	extra := Posted{Errors: `[{"error_code":"HTTP-STATUS-503","count":2},{"error_code":"TIMEOUT","count":1}]`, ResponsePayload: `"{}"`}
	const posts, copies = 5, 6
	var wg sync.WaitGroup
	var mu sync.Mutex
	won := map[string]int{}
	for i := 0; i < posts; i++ {
		for c := 0; c < copies; c++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				st := a
				if c%2 == 1 {
					st = b
				}
				r := postRow(i, at)
				isNew, err := st.Ingest(ctx, r, extra)
				if err != nil {
					t.Errorf("post %d copy %d: %v", i, c, err)
					return
				}
				if isNew {
					mu.Lock()
					won[r.ProbeID]++
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	var n uint64
	if err := db.Conn.QueryRow(ctx, "SELECT count() FROM "+db.Name+".probe_results").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != posts || len(won) != posts {
		t.Fatalf("%d posts × %d copies over two replicas: %d rows, %d reported new, want %d", posts, copies, n, len(won), posts)
	}
	for id, k := range won {
		if k != 1 {
			t.Errorf("%s reported new %d times", id, k)
		}
	}
	got, err := a.Posted(ctx, []string{postRow(0, at).ProbeID, "not-posted"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[postRow(0, at).ProbeID] != extra {
		t.Errorf("Posted = %+v, want the extras of the one post", got)
	}
	// Once the claims have expired (a replica whose claims live 1 ns) the
	// row itself refuses the re-post.
	late := newStore(t, db)
	late.SetIngest(IngestConfig{ClaimTTL: time.Nanosecond})
	if isNew, err := late.Ingest(ctx, postRow(1, at), extra); err != nil || isNew {
		t.Errorf("re-post after the claims expired: new=%v err=%v, want refused as stored", isNew, err)
	}
	// A nonce, claimed at once through both replicas, is fresh once.
	fresh := 0
	var nwg sync.WaitGroup
	for c := 0; c < 4; c++ {
		nwg.Add(1)
		go func() {
			defer nwg.Done()
			st := a
			if c%2 == 1 {
				st = b
			}
			ok, err := st.ClaimNonce(ctx, "fra", "nonce-0123456789abcdef", time.Now().Add(-10*time.Minute))
			if err != nil {
				t.Error(err)
			}
			if ok {
				mu.Lock()
				fresh++
				mu.Unlock()
			}
		}()
	}
	nwg.Wait()
	if fresh != 1 {
		t.Errorf("one nonce claimed 4 times over two replicas: fresh %d times, want 1", fresh)
	}
}

// testLimitsRefuseLargeAnswers: a read past the per-query limits is
// ErrTooLarge on this engine (the server; chDB's adapter ignores settings).
func testLimitsRefuseLargeAnswers(t *testing.T, newDB backend) {
	db := newDB(t)
	now := time.Now().UTC()
	insert(t, db, fleet(now.Add(-5*time.Hour), 4))
	st := newStore(t, db)
	st.SetLimits(Limits{MaxResultRows: 3})
	_, err := st.Raw(context.Background(), Filter{Window: Window{Since: now.Add(-24 * time.Hour), Until: now}, Orchestrator: orchA}, true, 1000)
	if db.Addr == "" {
		return // embedded: settings are not sent
	}
	if !errors.Is(err, ErrTooLarge) {
		t.Errorf("raw rows past max_result_rows: %v, want ErrTooLarge", err)
	}
}

// testLatenciesOnTheServer: percentiles are taken on the server (only a few
// numbers per group leave it) and equal percentile_cont: warm 1..10 s, one
// cold 30 s, all 1..10 and 30.
func testLatenciesOnTheServer(t *testing.T, newDB backend) {
	db := newDB(t)
	now := time.Now().UTC().Truncate(time.Hour).Add(-time.Hour)
	var rows []results.Result
	for i := 1; i <= 10; i++ {
		r := probe(orchA, "FRA", now.Add(time.Duration(i)*time.Minute), results.Success, time.Duration(2*i)*time.Second)
		r.Server, r.Warm = time.Duration(i)*time.Second, true
		rows = append(rows, r)
	}
	cold := probe(orchA, "FRA", now.Add(20*time.Minute), results.Success, 60*time.Second)
	cold.Server, cold.Warm = 30*time.Second, false
	rows = append(rows, cold, probe(orchA, "FRA", now.Add(21*time.Minute), results.Failure, time.Second))
	insert(t, db, rows)
	lat, err := newStore(t, db).Latencies(context.Background(), Filter{Window: Window{now.Add(-time.Hour), now.Add(time.Hour)}, Orchestrator: orchA})
	if err != nil || len(lat) != 1 {
		t.Fatalf("latencies = %+v, %v", lat, err)
	}
	l := lat[0]
	if w := l.Warm.Phases.Server; w.Samples != 10 || !approx(w.P50, 5.5) || !approx(w.P90, 9.1) || !approx(w.P99, 9.91) {
		t.Errorf("warm server = %+v, want 10 samples p50 5.5 p90 9.1 p99 9.91", w)
	}
	if c := l.Cold; c.Probes != 2 || c.Successes != 1 || c.Phases.Server.P50 != 30 || c.Phases.Server.P99 != 30 || c.Phases.Discovery.Samples != 0 {
		t.Errorf("cold = %+v, want 2 probes (one failed), server 30 s, no discovery samples", c)
	}
	if a := l.All; a.Probes != 12 || a.Phases.Server.Samples != 11 || !approx(a.Phases.Server.P50, 6) || !approx(a.Phases.Total.P50, 12) {
		t.Errorf("all = %+v, want 12 probes, 11 timed, server p50 6 s, total p50 12 s", a)
	}
}
