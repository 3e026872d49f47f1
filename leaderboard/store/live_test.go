package store

import (
	"context"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/lpgauge/lpgauge/internal/results"
)

const liveModel = "noop"

// liveSession is one live probe row as the tester writes it.
func liveSession(orch, region string, at time.Time, outcome results.Outcome, l results.Live) results.Result {
	r := probe(orch, region, at, outcome, l.FirstSegment)
	r.Pipeline, r.Model, r.Live = LivePipeline, liveModel, l
	r.ProbeID = results.ProbeID("live", orch, region, at.Format(time.RFC3339Nano))
	return r
}

// liveNetwork: A in FRA has three successful sessions, one failed and one
// excused; A in LAX one; B in FRA one. A batch row of A in FRA, named like
// the live model and carrying live-looking numbers, must never count.
func liveNetwork(now time.Time) (rows []results.Result, batchID string) {
	ms := time.Millisecond
	s := time.Second
	live := func(fseg, ffr, l50, l99 time.Duration, out float64, stalls uint32, stallTot, stallMax time.Duration, lost, payOK, payRefused uint32) results.Live {
		return results.Live{FirstSegment: fseg, FirstFrame: ffr, LatencyP50: l50, LatencyP95: l99 - 10*ms, LatencyP99: l99,
			FramesIn: 1800, FramesOut: uint32(out * 60), InFPS: 30, OutFPS: out, Stalls: stalls, StallTotal: stallTot, StallMax: stallMax,
			SegmentsLost: lost, PaymentsOK: payOK, PaymentsRefused: payRefused, Session: 60 * s}
	}
	at := func(m int) time.Time { return now.Add(time.Duration(-m) * time.Minute) }
	rows = []results.Result{
		liveSession(orchA, "FRA", at(50), results.Success, live(400*ms, 450*ms, 100*ms, 200*ms, 30, 0, 0, 0, 0, 3, 0)),
		liveSession(orchA, "FRA", at(40), results.Success, live(600*ms, 700*ms, 120*ms, 260*ms, 27, 1, 2*s, 2*s, 1, 3, 0)),
		liveSession(orchA, "FRA", at(30), results.Success, live(500*ms, 520*ms, 140*ms, 300*ms, 24, 2, 4*s, 3*s, 0, 3, 0)),
		// Failed: it stalled for 12 s (longest 10 s), lost 2 segments, a payment was refused.
		liveSession(orchA, "FRA", at(20), results.Failure, live(0, 0, 0, 0, 0, 3, 12*s, 10*s, 2, 0, 1)),
		// Excused (a tester-side fault): nothing of it counts.
		liveSession(orchA, "FRA", at(10), results.Excused, live(9*s, 9*s, 9*s, 9*s, 1, 100, 50*s, 50*s, 50, 0, 50)),
		liveSession(orchA, "LAX", at(25), results.Success, live(1*s, 1100*ms, 300*ms, 500*ms, 15, 0, 0, 0, 0, 2, 0)),
		liveSession(orchB, "FRA", at(25), results.Success, live(2*s, 2*s, 800*ms, 900*ms, 30, 0, 0, 0, 0, 1, 0)),
	}
	batch := probe(orchA, "FRA", at(15), results.Success, 50*ms)
	batch.Model = liveModel
	batch.Live = live(10*ms, 10*ms, 10*ms, 10*ms, 30, 0, 0, 0, 0, 0, 0)
	return append(rows, batch), batch.ProbeID
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

// testLiveStats: the live numbers per orchestrator, region and model, by
// hand from liveNetwork; batch rows never enter them; GLOBAL pools regions;
// /api/pipelines' query lists the live pipeline; LiveRaw gives live rows'
// measures only.
func testLiveStats(t *testing.T, newDB backend) {
	db := newDB(t)
	now := time.Now().UTC().Truncate(time.Second)
	rows, batchID := liveNetwork(now)
	insert(t, db, rows)
	st := newStore(t, db)
	ctx := context.Background()
	win := Window{Since: now.Add(-2 * time.Hour), Until: now}

	got, err := st.LiveStats(ctx, Filter{Window: win})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("live stats = %d groups %+v, want A/FRA, A/LAX, B/FRA", len(got), got)
	}
	a := got[0]
	if a.Orchestrator != orchA || a.Region != "FRA" || a.Model != liveModel {
		t.Fatalf("first group = %s/%s/%s, want A/FRA/noop", a.Orchestrator, a.Region, a.Model)
	}
	// 4 scored sessions (the batch row and the excused one never count), 3 successes.
	if a.Sessions != 4 || a.Successes != 3 || a.Excused != 1 || a.Timed != 3 || !near(a.SuccessRate(), 0.75) {
		t.Errorf("A/FRA sessions %d ok %d excused %d timed %d, want 4, 3, 1, 3", a.Sessions, a.Successes, a.Excused, a.Timed)
	}
	for name, c := range map[string][2]float64{
		// first segment 0.4, 0.5, 0.6 s: median 0.5; p95 = 0.5 + 0.9·0.1
		"first segment p50": {a.FirstSegmentP50, 0.5}, "first segment p95": {a.FirstSegmentP95, 0.59},
		// first frame 0.45, 0.52, 0.7: median 0.52; p95 = 0.52 + 0.9·0.18
		"first frame p50": {a.FirstFrameP50, 0.52}, "first frame p95": {a.FirstFrameP95, 0.682},
		"latency p50 (median)": {a.LatencyP50, 0.12}, "latency p99 (median)": {a.LatencyP99, 0.26},
		// out/in fps 1, 0.9, 0.8
		"fps ratio": {a.FPSRatio, 0.9},
		// 0+1+2+3 stalls over 4 sessions of 60 s: 6 per 4 min; 18 s of 240 s stalled
		"stalls per minute": {a.StallsPerMinute, 1.5}, "stall share": {a.StallShare, 0.075}, "longest stall": {a.StallMax, 10},
	} {
		if !near(c[0], c[1]) {
			t.Errorf("A/FRA %s = %v, want %v", name, c[0], c[1])
		}
	}
	if a.SegmentsLost != 3 || a.PaymentsOK != 9 || a.PaymentsRefused != 1 {
		t.Errorf("A/FRA lost %d payments ok %d refused %d, want 3, 9, 1", a.SegmentsLost, a.PaymentsOK, a.PaymentsRefused)
	}
	if !a.LastTested.Equal(now.Add(-10 * time.Minute)) {
		t.Errorf("A/FRA last tested %v, want %v (the newest session, excused included)", a.LastTested, now.Add(-10*time.Minute))
	}
	if b := got[2]; b.Orchestrator != orchB || b.Sessions != 1 || !near(b.LatencyP50, 0.8) || !near(b.FPSRatio, 1) {
		t.Errorf("B = %+v, want one session, latency 0.8 s, fps held 1", b)
	}

	// GLOBAL pools A's regions; one orchestrator; a model with no live rows.
	glob, err := st.LiveStats(ctx, Filter{Window: win, Region: "GLOBAL", Orchestrator: orchA, Model: liveModel})
	if err != nil || len(glob) != 1 {
		t.Fatalf("GLOBAL live stats of A = %+v, %v; want one group", glob, err)
	}
	// fps ratios 0.5, 0.8, 0.9, 1: median 0.85; first segment 0.4..1 s: median 0.55.
	if g := glob[0]; g.Region != "GLOBAL" || g.Sessions != 5 || g.Successes != 4 || !near(g.FPSRatio, 0.85) || !near(g.FirstSegmentP50, 0.55) {
		t.Errorf("GLOBAL A = %+v, want 5 sessions, 4 ok, fps held 0.85, first segment 0.55 s", g)
	}
	if none, err := st.LiveStats(ctx, Filter{Window: win, Model: "other"}); err != nil || len(none) != 0 {
		t.Errorf("live stats of an unknown model = %+v, %v; want none", none, err)
	}
	// A batch pipeline in the filter changes nothing: live stats are the live pipeline's.
	if same, err := st.LiveStats(ctx, Filter{Window: win, Pipeline: t2i}); err != nil || !reflect.DeepEqual(same, got) {
		t.Errorf("live stats with pipeline=%s = %+v, %v; want the live groups", t2i, same, err)
	}

	ps, err := st.Pipelines(ctx, Filter{Window: win})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, p := range ps {
		if p.ID == LivePipeline {
			found = reflect.DeepEqual(p.Models, []string{liveModel}) && reflect.DeepEqual(p.Regions, []string{"FRA", "LAX"})
		}
	}
	if !found {
		t.Errorf("pipelines = %+v, want %q with model noop in FRA and LAX", ps, LivePipeline)
	}

	liveID := rows[1].ProbeID
	lr, err := st.LiveRaw(ctx, []string{liveID, batchID})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := lr[batchID]; ok || len(lr) != 1 {
		t.Errorf("live raw = %+v, want only the live row", lr)
	}
	if l := lr[liveID]; l != rows[1].Live {
		t.Errorf("live raw of %s = %+v, want %+v", liveID, l, rows[1].Live)
	}
}
