package api

// Live sessions (pipeline "Live video to video") are scored by the live
// score of /api/live_stats; the batch score (0.65·S + 0.35·e^(−k·R), R = time
// to first segment for a live row) is the sum that README's live section says
// misranks live streams, and go-livepeer selects live orchestrators with
// LiveSelectionAlgorithm, which reads no perf score. So the reads that pool
// pipelines (top_ai_score, perf_scores without a pipeline) leave live rows
// out; a read that names the live pipeline (aggregated_stats or perf_scores
// with pipeline=Live video to video) still gets them.

import (
	"math"
	"testing"
	"time"

	"github.com/lpgauge/lpgauge/internal/chtest"
	"github.com/lpgauge/lpgauge/internal/results"
	"github.com/lpgauge/lpgauge/leaderboard/store"
)

const liveOnly = "0x11fe000000000000000000000000000000000005"

// liveBesideBatch is the batch network plus live sessions: slow (a poor
// batch score: 10 s against a 3 s median) streams well, so its live row
// would out-score its batch row under the batch formula; liveOnly has live
// sessions and nothing else.
func liveBesideBatch(now time.Time) []results.Result {
	rows := network(now)
	ms := time.Millisecond
	for i, s := range []struct {
		orch string
		ttfs time.Duration
	}{{slow, 400 * ms}, {slow, 400 * ms}, {liveOnly, 400 * ms}} {
		r := row(s.orch, "FRA", store.LivePipeline, noop, now.Add(-time.Duration(3+i)*time.Minute), results.Success, s.ttfs)
		r.Live = results.Live{FirstSegment: s.ttfs, InFPS: 30, OutFPS: 30, LatencyP50: 100 * ms, FramesIn: 300, FramesOut: 300, Session: 10 * time.Second}
		rows = append(rows, r)
	}
	return rows
}

func TestLiveRowsStayOutOfBatchReads(t *testing.T) {
	for _, e := range chtest.Engines() {
		t.Run(e.Name, func(t *testing.T) {
			f := newFixtureOn(t, e.NewDB(t), Config{}, liveBesideBatch)

			var batch, live map[string]map[string]aggregatedEntry
			f.get(t, "/api/aggregated_stats?"+pair).decode(t, &batch)
			f.get(t, "/api/aggregated_stats?pipeline="+q(store.LivePipeline)+"&model="+noop).decode(t, &live)
			// Asked for by pipeline: the live rows are there.
			if live[slow]["FRA"].Samples != 2 || live[liveOnly]["FRA"].Samples != 1 {
				t.Fatalf("aggregated_stats for the live pipeline = %+v, want slow's 2 and liveOnly's 1 sessions", live)
			}
			want := batch[slow]["FRA"]

			// top_ai_score names no pipeline: slow's best is its batch row,
			// and an orchestrator with only live sessions has no AI score.
			var top topScore
			f.get(t, "/api/top_ai_score?orchestrator="+slow).decode(t, &top)
			if top.Pipeline != t2i || top.Model != sdxl || top.Region != "FRA" || math.Abs(top.Value-want.Score) > 1e-12 {
				t.Errorf("top_ai_score(slow) = %+v, want %s %s FRA at aggregated_stats' %v (live scored by the batch formula: %v)",
					top, t2i, sdxl, want.Score, live[slow]["FRA"].Score)
			}
			r := f.get(t, "/api/top_ai_score?orchestrator="+liveOnly)
			if string(r.body) != "{}" {
				t.Errorf("top_ai_score(live only) = %s, want {}", r.body)
			}

			// perf_scores without a pipeline (what -orchPerfStatsUrl reads):
			// slow's FRA entry is its batch entry; liveOnly is absent.
			var perf map[string]map[string]map[string]float64
			f.get(t, "/api/perf_scores").decode(t, &perf)
			if p := perf[slow]["FRA"]; math.Abs(p["score"]-want.Score) > 1e-12 || p["samples"] != float64(want.Samples) {
				t.Errorf("perf_scores slow FRA = %v, want the batch score %v over %d samples", p, want.Score, want.Samples)
			}
			if _, ok := perf[liveOnly]; ok {
				t.Errorf("perf_scores lists the live-only orchestrator: %v", perf[liveOnly])
			}
			// perf_scores for the live pipeline: asked for, so present.
			perf = nil
			f.get(t, "/api/perf_scores?pipeline="+q(store.LivePipeline)+"&model="+noop).decode(t, &perf)
			if p := perf[liveOnly]["FRA"]; p["samples"] != 1 || math.Abs(p["score"]-live[liveOnly]["FRA"].Score) > 1e-12 {
				t.Errorf("perf_scores for the live pipeline, liveOnly FRA = %v, want aggregated_stats' %+v", p, live[liveOnly]["FRA"])
			}
		})
	}
}
