package store

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/lpgauge/lpgauge/internal/chtest"
	"github.com/lpgauge/lpgauge/internal/results"
	"github.com/lpgauge/lpgauge/internal/results/resultsdb"
)

func TestMain(m *testing.M) { chtest.Main(m) }

const (
	t2i   = "Text to image"
	sdxl  = "ByteDance/SDXL-Lightning"
	orchA = "0xaaaa000000000000000000000000000000000001"
	orchB = "0xbbbb000000000000000000000000000000000002"
	orchC = "0xcccc000000000000000000000000000000000003"
)

func probe(orch, region string, at time.Time, outcome results.Outcome, total time.Duration) results.Result {
	r := results.Result{
		Region: region, Orchestrator: orch, Pipeline: t2i, Model: sdxl,
		StartedAt: at, Outcome: outcome, Total: total, Source: "tester",
	}
	if outcome != results.Success {
		r.ErrorClass, r.ErrorCode, r.ErrorMessage = "http_status", "HTTP-STATUS-503", "busy"
	}
	r.ProbeID = results.ProbeID(orch, region, at.Format(time.RFC3339Nano), string(outcome))
	return r
}

// seedOn stores the basic fixture in a fresh database of backend newDB.
func seedOn(t *testing.T, newDB backend) (*ClickHouse, time.Time) {
	t.Helper()
	db := newDB(t)
	now := time.Now().UTC().Truncate(time.Second)
	rows := []results.Result{
		// A: FRA 8 s success; LAX 2 s success.
		probe(orchA, "FRA", now.Add(-time.Hour), results.Success, 8*time.Second),
		probe(orchA, "LAX", now.Add(-2*time.Hour), results.Success, 2*time.Second),
		// B: FRA one failure (fast, must not lower the mean RTT), one excused.
		probe(orchB, "FRA", now.Add(-time.Hour), results.Failure, 100*time.Millisecond),
		probe(orchB, "FRA", now.Add(-30*time.Minute), results.Excused, 0),
		// C: only excused: no aggregate at all.
		probe(orchC, "FRA", now.Add(-time.Hour), results.Excused, 0),
		// Out of the window (test time two days ago): ignored.
		probe(orchA, "FRA", now.Add(-48*time.Hour), results.Success, 100*time.Second),
	}
	if err := resultsdb.Insert(context.Background(), db.Conn, db.Name, rows); err != nil {
		t.Fatal(err)
	}
	st, err := NewClickHouse(db.Conn, db.Name, 0)
	if err != nil {
		t.Fatal(err)
	}
	return st, now
}

func testAggregatesAndMedian(t *testing.T, newDB backend) {
	st, now := seedOn(t, newDB)
	ctx := context.Background()
	win := Window{Since: now.Add(-24 * time.Hour), Until: now}
	f := Filter{Window: win, Pipeline: t2i, Model: sdxl}

	aggs, err := st.Aggregates(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Aggregate{}
	for _, a := range aggs {
		got[a.Orchestrator+"/"+a.Region] = a
	}
	if len(got) != 3 {
		t.Fatalf("want aggregates A/FRA, A/LAX, B/FRA (C only excused, old row out of window), got %v", aggs)
	}
	if a := got[orchA+"/FRA"]; a.Probes != 1 || a.SuccessRate() != 1 || a.MeanRTTSeconds != 8 || !a.LastTested.Equal(now.Add(-time.Hour)) {
		t.Errorf("A/FRA = %+v", a)
	}
	if b := got[orchB+"/FRA"]; b.Probes != 1 || b.Excused != 1 || b.SuccessRate() != 0 || b.MeanRTTSeconds != 0 {
		t.Errorf("B/FRA: excused must not count and failures must not give an RTT: %+v", b)
	}

	// The median of successful jobs 8 s and 2 s is 5 s, whatever orchestrator is asked about.
	f.Orchestrator = orchB
	med, err := st.MedianRTTs(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	if m := med[Key{t2i, sdxl}]; m != 5.0 {
		t.Errorf("median = %v, want 5", m)
	}
	f.Region = "FRA"
	med, _ = st.MedianRTTs(ctx, f)
	if m := med[Key{t2i, sdxl}]; m != 8.0 {
		t.Errorf("FRA median = %v, want 8", m)
	}

	// GLOBAL pools A's regions: 2 probes, mean 5 s.
	g, err := st.Aggregates(ctx, Filter{Window: win, Pipeline: t2i, Model: sdxl, Region: "GLOBAL", Orchestrator: orchA})
	if err != nil {
		t.Fatal(err)
	}
	if len(g) != 1 || g[0].Region != "GLOBAL" || g[0].Probes != 2 || g[0].MeanRTTSeconds != 5 {
		t.Errorf("GLOBAL for A = %+v", g)
	}
}

func testMedianInterpolatesOddAndEven(t *testing.T, newDB backend) {
	db := newDB(t)
	now := time.Now().UTC().Truncate(time.Second)
	var rows []results.Result
	for i, s := range []int{1, 3, 10} {
		rows = append(rows, probe(fmt.Sprintf("0x%040d", i), "FRA", now.Add(-time.Minute), results.Success, time.Duration(s)*time.Second))
	}
	if err := resultsdb.Insert(context.Background(), db.Conn, db.Name, rows); err != nil {
		t.Fatal(err)
	}
	st, _ := NewClickHouse(db.Conn, db.Name, 0)
	med, err := st.MedianRTTs(context.Background(), Filter{Window: Window{now.Add(-time.Hour), now}, Pipeline: t2i, Model: sdxl})
	if err != nil {
		t.Fatal(err)
	}
	if m := med[Key{t2i, sdxl}]; m != 3 {
		t.Errorf("median of 1,3,10 = %v, want 3", m)
	}
}

func testPipelinesAndRaw(t *testing.T, newDB backend) {
	st, now := seedOn(t, newDB)
	ctx := context.Background()
	win := Window{Since: now.Add(-24 * time.Hour), Until: now}
	ps, err := st.Pipelines(ctx, Filter{Window: win})
	if err != nil {
		t.Fatal(err)
	}
	want := []Pipeline{{ID: t2i, Models: []string{sdxl}, Regions: []string{"FRA", "LAX"}}}
	if !reflect.DeepEqual(ps, want) {
		t.Errorf("pipelines = %+v, want %+v", ps, want)
	}
	raw, err := st.Raw(ctx, Filter{Window: win, Orchestrator: orchA}, false, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) != 2 || raw[0].Region != "FRA" || raw[1].Region != "LAX" || raw[0].Total != 8*time.Second {
		t.Errorf("raw for A must be FRA (newer) then LAX: %+v", raw)
	}
	raw, _ = st.Raw(ctx, Filter{Window: win, Orchestrator: orchB}, true, 10)
	if len(raw) != 2 || raw[0].Outcome != results.Excused || raw[1].ErrorCode != "HTTP-STATUS-503" {
		t.Errorf("raw for B with excused = %+v", raw)
	}
	if err := st.Ping(ctx); err != nil {
		t.Errorf("ping: %v", err)
	}
}
