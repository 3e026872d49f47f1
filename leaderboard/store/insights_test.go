package store

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/lpgauge/lpgauge/internal/results"
	"github.com/lpgauge/lpgauge/internal/results/resultsdb"
)

func timed(orch, region string, at time.Time, outcome results.Outcome, warm bool, server time.Duration, uri string) results.Result {
	r := probe(orch, region, at, outcome, 2*server)
	r.Warm, r.Server, r.Upload, r.Download, r.Discovery, r.ServiceURI = warm, server, server/10, server/5, 0, uri
	if warm {
		r.Discovery = 50 * time.Millisecond
	}
	return r
}

func seedInsights(t *testing.T, newDB backend) (*ClickHouse, time.Time) {
	t.Helper()
	db := newDB(t)
	now := time.Now().UTC().Truncate(time.Hour).Add(-time.Hour)
	s := time.Second
	var rows []results.Result
	// A in FRA: warm server times 1..10 s (one per minute), one cold probe of 30 s.
	for i := 1; i <= 10; i++ {
		rows = append(rows, timed(orchA, "FRA", now.Add(time.Duration(i)*time.Minute), results.Success, true, time.Duration(i)*s, "https://a-old:8935"))
	}
	rows = append(rows, timed(orchA, "FRA", now.Add(20*time.Minute), results.Success, false, 30*s, "https://a.example:8935"))
	// B: success, then three failures, an excused probe (skipped), a failure: streak 4.
	rows = append(rows,
		timed(orchB, "LAX", now.Add(1*time.Minute), results.Success, true, s, ""),
		timed(orchB, "LAX", now.Add(2*time.Minute), results.Failure, true, s, ""),
		timed(orchB, "LAX", now.Add(3*time.Minute), results.Failure, true, s, ""),
		timed(orchB, "LAX", now.Add(4*time.Minute), results.Failure, true, s, ""),
		timed(orchB, "LAX", now.Add(5*time.Minute), results.Excused, true, 0, ""),
		timed(orchB, "LAX", now.Add(6*time.Minute), results.Failure, true, s, ""),
	)
	// C: only excused, in SIN: no data for regions.
	rows = append(rows, timed(orchC, "SIN", now.Add(time.Minute), results.Excused, true, 0, ""))
	if err := resultsdb.Insert(context.Background(), db.Conn, db.Name, rows); err != nil {
		t.Fatal(err)
	}
	st, err := NewClickHouse(db.Conn, db.Name, 0)
	if err != nil {
		t.Fatal(err)
	}
	return st, now
}

// testInsightQueries: percentiles, regions with data, history, failure
// streaks, service URIs and errors (the profile page's and the gateway
// outputs' queries).
func testInsightQueries(t *testing.T, newDB backend) {
	st, now := seedInsights(t, newDB)
	ctx := context.Background()
	f := Filter{Window: Window{Since: now.Add(-time.Hour), Until: now.Add(time.Hour)}}

	lat, err := st.Latencies(ctx, Filter{Window: f.Window, Orchestrator: orchA})
	if err != nil || len(lat) != 1 {
		t.Fatalf("latencies = %+v, %v", lat, err)
	}
	l := lat[0]
	// percentile_cont over 1..10 s: p50 5.5, p90 9.1, p99 9.91.
	if w := l.Warm.Phases.Server; w.Samples != 10 || !approx(w.P50, 5.5) || !approx(w.P90, 9.1) || !approx(w.P99, 9.91) {
		t.Errorf("warm server = %+v, want 10 samples p50 5.5 p90 9.1 p99 9.91", w)
	}
	if c := l.Cold; c.Probes != 1 || c.Phases.Server.P50 != 30 || c.Phases.Discovery.Samples != 0 {
		t.Errorf("cold = %+v, want one 30 s probe and no discovery samples", c)
	}
	// All = 1..10 and 30 → p50 = 6.
	if a := l.All; a.Probes != 11 || a.Phases.Server.Samples != 11 || !approx(a.Phases.Server.P50, 6) || !approx(a.Phases.Total.P50, 12) {
		t.Errorf("all = %+v, want 11 probes, server p50 6 s, total p50 12 s", a)
	}

	regs, err := st.RegionsWithData(ctx, f)
	if err != nil || len(regs) != 2 || regs[0] != "FRA" || regs[1] != "LAX" {
		t.Errorf("regions with data = %v, %v; want FRA, LAX (SIN has only excused probes)", regs, err)
	}

	hist, err := st.History(ctx, Filter{Window: f.Window, Orchestrator: orchB}, Hour)
	if err != nil || len(hist) != 1 {
		t.Fatalf("history = %+v, %v", hist, err)
	}
	if h := hist[0]; h.Region != "LAX" || !h.Start.Equal(now) || h.Probes != 5 || h.Successes != 1 || h.MeanRTTSeconds != 2 {
		t.Errorf("history point = %+v, want LAX at %v, 5 probes, 1 success, mean 2 s", h, now)
	}

	streaks, err := st.FailureStreaks(ctx, f)
	if err != nil || streaks[orchB] != 4 || streaks[orchA] != 0 {
		t.Errorf("streaks = %v, %v; want B 4 (excused skipped), A 0", streaks, err)
	}

	uris, err := st.ServiceURIs(ctx, f)
	if err != nil || uris[orchA] != "https://a.example:8935" || len(uris) != 1 {
		t.Errorf("service uris = %v, %v; want A's newest URI only", uris, err)
	}

	errs, err := st.Errors(ctx, f)
	if err != nil || len(errs) != 3 {
		t.Fatalf("errors = %+v, %v", errs, err)
	}
	if e := errs[0]; e.Outcome != results.Failure || e.Count != 4 || e.Region != "LAX" || !e.LastSeen.Equal(now.Add(6*time.Minute)) {
		t.Errorf("top error = %+v, want B's 4 failures last seen at +6 min", e)
	}
}

func approx(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

// testProfileAndIngestQueries: the explorer's server times and newest probe,
// per-bucket medians, and post_stats' ingest and nonce claim, on one engine.
func testProfileAndIngestQueries(t *testing.T, newDB backend) {
	st, now := seedInsights(t, newDB)
	ctx := context.Background()
	f := Filter{Window: Window{Since: now.Add(-time.Hour), Until: now.Add(time.Hour)}}

	sts, err := st.ServerTimes(ctx, Filter{Window: f.Window, Orchestrator: orchA, Region: "GLOBAL"})
	if err != nil || len(sts) != 1 {
		t.Fatalf("server times = %+v, %v", sts, err)
	}
	// 1..10 s warm and 30 s cold: p50 6 s; 10 warm probes, 1 cold.
	if s := sts[0]; s.Region != "GLOBAL" || s.Samples != 11 || !approx(s.P50, 6) || s.WarmProbes != 10 || s.ColdProbes != 1 {
		t.Errorf("server times for A = %+v, want GLOBAL, 11 samples, p50 6 s, 10 warm, 1 cold", s)
	}
	last, err := st.LastProbe(ctx, orchB)
	if err != nil || !last.Equal(now.Add(6*time.Minute)) {
		t.Errorf("last probe of B = %v, %v; want %v", last, err, now.Add(6*time.Minute))
	}
	if never, err := st.LastProbe(ctx, "0x00000000000000000000000000000000000000ff"); err != nil || !never.IsZero() {
		t.Errorf("last probe of an unknown orchestrator = %v, %v; want zero", never, err)
	}
	meds, err := st.BucketMedians(ctx, Filter{Window: f.Window, Region: "FRA"}, Hour)
	if err != nil || len(meds) != 1 || !approx(meds[now], 12) {
		t.Errorf("bucket medians = %v, %v; want one hour at %v with median total 12 s", meds, err, now)
	}

	r := probe(orchC, "FRA", now.Add(30*time.Minute), results.Success, 3*time.Second)
	r.Source = "post_stats"
	for i, want := range []bool{true, false} {
		stored, err := st.Ingest(ctx, r, Posted{Errors: `[]`, ResponsePayload: `"{}"`})
		if err != nil || stored != want {
			t.Errorf("ingest #%d = %v, %v; want %v (a re-post is stored once)", i+1, stored, err, want)
		}
	}
	for i, want := range []bool{true, false} {
		fresh, err := st.ClaimNonce(ctx, "tester-1", "nonce-0123456789abcdef", now.Add(-5*time.Minute))
		if err != nil || fresh != want {
			t.Errorf("claim nonce #%d = %v, %v; want %v (a replayed nonce is refused)", i+1, fresh, err, want)
		}
	}
}
