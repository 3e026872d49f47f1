package store

import (
	"context"
	"testing"
	"time"

	"github.com/lpgauge/lpgauge/internal/results"
)

// testQueueAndInferencePercentiles (issue #19): probes whose orchestrator
// reported the split carry queue and inference percentiles beside server;
// probes without it (queue_us = inference_us = 0) count for server only.
// The raw rows give both back.
func testQueueAndInferencePercentiles(t *testing.T, newDB backend) {
	db := newDB(t)
	now := time.Now().UTC().Truncate(time.Hour).Add(-time.Hour)
	var rows []results.Result
	for i := 1; i <= 10; i++ {
		r := probe(orchA, "FRA", now.Add(time.Duration(i)*time.Minute), results.Success, time.Duration(2*i)*time.Second)
		r.Server, r.Warm = time.Duration(i)*time.Second, true
		r.Queue = time.Duration(i) * 100 * time.Millisecond
		r.Inference = r.Server - r.Queue
		rows = append(rows, r)
	}
	for i := 1; i <= 2; i++ { // a go-livepeer orchestrator: the server phase only
		r := probe(orchA, "FRA", now.Add(time.Duration(20+i)*time.Minute), results.Success, 3*time.Second)
		r.Server, r.Warm = 3*time.Second, true
		rows = append(rows, r)
	}
	insert(t, db, rows)
	st := newStore(t, db)
	w := Window{now.Add(-time.Hour), now.Add(time.Hour)}
	lat, err := st.Latencies(context.Background(), Filter{Window: w, Orchestrator: orchA})
	if err != nil || len(lat) != 1 {
		t.Fatalf("latencies = %+v, %v", lat, err)
	}
	p := lat[0].Warm.Phases
	if p.Server.Samples != 12 {
		t.Errorf("server samples %d, want all 12", p.Server.Samples)
	}
	if q := p.Queue; q.Samples != 10 || !approx(q.P50, 0.55) || !approx(q.P90, 0.91) {
		t.Errorf("queue = %+v, want 10 samples p50 0.55 s p90 0.91 s", q)
	}
	if i := p.Inference; i.Samples != 10 || !approx(i.P50, 4.95) {
		t.Errorf("inference = %+v, want 10 samples p50 4.95 s", i)
	}
	raw, err := st.Raw(context.Background(), Filter{Window: w, Orchestrator: orchA}, true, 100)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range raw {
		if r.Server == 4*time.Second {
			found = r.Queue == 400*time.Millisecond && r.Inference == 3600*time.Millisecond
		}
	}
	if !found {
		t.Errorf("raw rows lost queue/inference: %+v", raw)
	}

	// An idle orchestrator that reports the split: its jobs wait 0. Those
	// zeros are its queue (p50 0), not missing samples; leaving them out
	// would show it as busy.
	var idle []results.Result
	for i := 1; i <= 4; i++ {
		r := probe(orchB, "FRA", now.Add(time.Duration(i)*time.Minute), results.Success, time.Second)
		r.Server, r.Warm = 500*time.Millisecond, true
		r.Inference = r.Server
		idle = append(idle, r)
	}
	idle[3].Queue, idle[3].Server = 200*time.Millisecond, 700*time.Millisecond
	insert(t, db, idle)
	lat, err = st.Latencies(context.Background(), Filter{Window: w, Orchestrator: orchB})
	if err != nil || len(lat) != 1 {
		t.Fatalf("latencies = %+v, %v", lat, err)
	}
	if q := lat[0].Warm.Phases.Queue; q.Samples != 4 || !approx(q.P50, 0) {
		t.Errorf("idle orchestrator's queue = %+v, want 4 samples p50 0 s", q)
	}
}
