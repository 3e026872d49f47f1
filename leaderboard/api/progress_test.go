package api

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/lpgauge/lpgauge/internal/results"
)

// Issue #19: probes of an orchestrator that reports the split carry queue
// and inference percentiles in /api/percentiles (and both in raw_stats
// phases); a split none of whose probes has them leaves both out.
func TestPercentilesQueueAndInference(t *testing.T) {
	f := newFixture(t, func(now time.Time) []results.Result {
		var rows []results.Result
		for i := 1; i <= 10; i++ {
			r := row(fast, "FRA", t2i, sdxl, now.Add(-time.Duration(i)*time.Minute), results.Success, time.Duration(2*i)*time.Second)
			r.Queue = time.Duration(i) * 100 * time.Millisecond
			r.Inference = r.Server - r.Queue
			rows = append(rows, r)
		}
		cold := row(fast, "FRA", t2i, sdxl, now.Add(-30*time.Minute), results.Success, 8*time.Second)
		cold.Warm = false
		return append(rows, cold)
	})
	var got map[string]map[string]latencyOut
	f.get(t, "/api/percentiles?"+pair).decode(t, &got)
	l := got[fast]["FRA"]
	if q := l.Warm.Phases.Queue; q == nil || q.Samples != 10 || !approx(q.P50, 0.55) {
		t.Errorf("warm queue = %+v, want 10 samples p50 0.55 s", q)
	}
	if i := l.Warm.Phases.Inference; i == nil || i.Samples != 10 {
		t.Errorf("warm inference = %+v, want 10 samples", i)
	}
	if l.Cold.Phases.Queue != nil || l.Cold.Phases.Inference != nil {
		t.Errorf("cold split without reports has queue %+v inference %+v, want both absent", l.Cold.Phases.Queue, l.Cold.Phases.Inference)
	}
	var raw map[string][]struct {
		Phases map[string]float64 `json:"phases"`
	}
	f.get(t, "/api/raw_stats?"+pair+"&orchestrator="+fast).decode(t, &raw)
	found := false
	for _, r := range raw["FRA"] {
		found = found || (r.Phases["queue"] > 0 && r.Phases["inference"] > 0)
	}
	if !found {
		b, _ := json.Marshal(raw)
		t.Errorf("raw_stats phases without queue/inference: %.300s", b)
	}
}
