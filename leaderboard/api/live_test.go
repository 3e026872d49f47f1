package api

import (
	"encoding/json"
	"math"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"

	"github.com/lpgauge/lpgauge/internal/results"
	"github.com/lpgauge/lpgauge/leaderboard/score"
	"github.com/lpgauge/lpgauge/leaderboard/store"
)

const noop = "noop"

// liveNetwork is the batch network plus live sessions: fast streams well
// in FRA (two sessions), bad's one session failed after stalling; a batch
// row of fast named like the live model must never count.
func liveNetwork(now time.Time) []results.Result {
	rows := withURIs(now)
	ms, s := time.Millisecond, time.Second
	session := func(orch, region string, minAgo int, outcome results.Outcome, l results.Live) results.Result {
		r := row(orch, region, store.LivePipeline, noop, now.Add(-time.Duration(minAgo)*time.Minute), outcome, l.FirstSegment)
		r.Live = l
		return r
	}
	rows = append(rows,
		session(fast, "FRA", 5, results.Success, results.Live{FirstSegment: 300 * ms, FirstFrame: 320 * ms, InFPS: 30, OutFPS: 30,
			LatencyP50: 100 * ms, LatencyP95: 150 * ms, LatencyP99: 200 * ms, FramesIn: 300, FramesOut: 300, PaymentsOK: 3, Session: 10 * s}),
		session(fast, "FRA", 6, results.Success, results.Live{FirstSegment: 500 * ms, FirstFrame: 520 * ms, InFPS: 30, OutFPS: 24,
			LatencyP50: 300 * ms, LatencyP95: 350 * ms, LatencyP99: 400 * ms, FramesIn: 300, FramesOut: 240, PaymentsOK: 3,
			Stalls: 1, StallTotal: 1 * s, StallMax: 1 * s, Session: 10 * s}),
		session(bad, "FRA", 7, results.Failure, results.Live{InFPS: 30, Stalls: 2, StallTotal: 6 * s, StallMax: 5 * s,
			SegmentsLost: 4, PaymentsRefused: 1, Session: 10 * s}),
	)
	batch := row(fast, "FRA", t2i, noop, now.Add(-8*time.Minute), results.Success, 50*ms)
	batch.Live = results.Live{LatencyP50: 10 * ms, InFPS: 30, OutFPS: 30, FirstSegment: 10 * ms}
	return append(rows, batch)
}

// checkSchema validates an answer of path against openapi.yaml's schema.
func checkSchema(t *testing.T, f *fixture, path string, r reply) {
	t.Helper()
	var doc map[string]any
	if err := yaml.Unmarshal(f.get(t, "/api/openapi.yaml").body, &doc); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(doc)
	_ = json.Unmarshal(b, &doc)
	sc := schemaChecker{doc}
	schema, err := sc.responseSchema(strings.SplitN(path, "?", 2)[0], http.MethodGet, r.status)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var v any
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("%s: %s is not JSON", path, r.body)
	}
	for _, e := range sc.check("$", schema, v) {
		t.Errorf("%s (%d): %s", path, r.status, e)
	}
}

// /api/live_stats: the live numbers and score an operator reads, live rows
// only, documented in openapi.yaml; refusals are 400s that say what to send.
func TestLiveStats(t *testing.T) {
	f := newFixture(t, liveNetwork)
	var out struct {
		Pipeline  string             `json:"pipeline"`
		Formula   string             `json:"formula"`
		Constants map[string]float64 `json:"constants"`
		Stats     []LiveStat         `json:"stats"`
	}
	path := "/api/live_stats"
	r := f.get(t, path)
	checkSchema(t, f, path, r)
	r.decode(t, &out)
	if out.Pipeline != store.LivePipeline || !strings.Contains(out.Formula, "0.8^(latency_p50 / 0.5 s)") || out.Constants["latency_reference_seconds"] != 0.5 {
		t.Errorf("pipeline %q formula %q constants %v", out.Pipeline, out.Formula, out.Constants)
	}
	// Sorted by orchestrator: bad (0xbad0…) before fast (0xfa57…).
	if len(out.Stats) != 2 || out.Stats[0].Orchestrator != bad || out.Stats[1].Orchestrator != fast {
		t.Fatalf("stats = %+v, want bad and fast in FRA (the batch row never counts)", out.Stats)
	}
	a, b := out.Stats[1], out.Stats[0]
	// fast: 2 sessions; latency median (0.1+0.3)/2 = 0.2 s; fps held (1+0.8)/2 = 0.9;
	// 1 stall over 20 s = 3 per minute, 1 s of 20 s stalled.
	want := score.Live(score.LiveInputs{SuccessRate: 1, LatencyP50: 0.2, FPSRatio: 0.9, StallsPerMinute: 3, StallShare: 0.05})
	if a.Sessions != 2 || a.Successes != 2 || math.Abs(a.LatencyP50-0.2) > 1e-9 || math.Abs(a.FPSRatio-0.9) > 1e-9 ||
		math.Abs(a.StallsPerMinute-3) > 1e-9 || math.Abs(a.Score-want.Score) > 1e-9 || math.Abs(a.FirstFrameP50-0.42) > 1e-9 {
		t.Errorf("fast = %+v, want 2 sessions, latency 0.2 s, fps 0.9, 3 stalls/min, first frame 0.42 s, score %v", a, want.Score)
	}
	// 0.8^(0.2/0.5) × 0.9 × 0.95 × 0.8^3, by hand.
	if byHand := math.Pow(0.8, 0.4) * 0.9 * 0.95 * math.Pow(0.8, 3); math.Abs(a.Score-byHand) > 1e-12 {
		t.Errorf("fast's score %v, by hand %v", a.Score, byHand)
	}
	if b.Score != 0 || b.SegmentsLost != 4 || b.PaymentsRefused != 1 || b.StallMax != 5 {
		t.Errorf("bad = %+v, want score 0, 4 lost, 1 refused payment, longest stall 5 s", b)
	}

	// Filters: one orchestrator, GLOBAL, the slug as pipeline, an unknown model.
	for q, n := range map[string]int{"orchestrator=" + fast: 1, "region=GLOBAL": 2, "pipeline=live-video-to-video&model=noop": 2, "model=other": 0} {
		out.Stats = nil
		r := f.get(t, path+"?"+q)
		checkSchema(t, f, path, r)
		r.decode(t, &out)
		if len(out.Stats) != n {
			t.Errorf("%s: %d entries, want %d", q, len(out.Stats), n)
		}
	}
	for q, want := range map[string]string{
		"pipeline=" + url.QueryEscape(t2i):   "live pipeline only",
		"region=nowhere":                     "unknown region",
		"since=soon":                         "not a unix time",
		"since=200&until=100":                "since",
		"model=" + strings.Repeat("m", 2000): "at most",
	} {
		r := f.get(t, path+"?"+q)
		checkSchema(t, f, path, r)
		if r.status != 400 || !strings.Contains(string(r.body), want) {
			t.Errorf("%s = %d %s, want 400 naming %q", q, r.status, r.body, want)
		}
	}

	// /api/pipelines lists the live pipeline once it has data.
	var pl struct {
		Pipelines []struct {
			ID     string   `json:"id"`
			Models []string `json:"models"`
		} `json:"pipelines"`
	}
	f.get(t, "/api/pipelines").decode(t, &pl)
	listed := false
	for _, p := range pl.Pipelines {
		listed = listed || (p.ID == store.LivePipeline && len(p.Models) == 1 && p.Models[0] == noop)
	}
	if !listed {
		t.Errorf("pipelines = %+v, want %q with model noop", pl.Pipelines, store.LivePipeline)
	}

	// raw_stats: live rows carry their measures, batch rows do not.
	rp := "/api/raw_stats?orchestrator=" + fast + "&job_type=ai"
	rr := f.get(t, rp)
	checkSchema(t, f, "/api/raw_stats", rr)
	var raw map[string][]map[string]any
	rr.decode(t, &raw)
	seen := 0
	for _, st := range raw["FRA"] {
		live, has := st["live"].(map[string]any)
		if (st["pipeline"] == store.LivePipeline) != has {
			t.Errorf("raw row %v: live present %v", st["pipeline"], has)
		}
		if has {
			seen++
			if live["in_fps"] != 30.0 || (live["latency_p50"] != 0.1 && live["latency_p50"] != 0.3) {
				t.Errorf("raw live = %v", live)
			}
		}
	}
	if seen != 2 {
		t.Errorf("raw_stats gave %d live rows, want 2", seen)
	}
}
