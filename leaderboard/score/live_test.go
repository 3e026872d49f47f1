package score

import (
	"encoding/json"
	"math"
	"testing"
)

// Hand-computed cases of the live score (leaderboard/README.md, "The live
// score").
func TestLiveScoreHandComputed(t *testing.T) {
	cases := []struct {
		name                        string
		in                          LiveInputs
		latency, fps, stalls, score float64
	}{
		// A perfect stream at the reference latency: 0.8, the batch score's anchor.
		{"at the reference latency", LiveInputs{SuccessRate: 1, LatencyP50: 0.5, FPSRatio: 1}, 0.8, 1, 1, 0.8},
		// 1 s of delay: 0.8² = 0.64.
		{"1 s delay", LiveInputs{SuccessRate: 1, LatencyP50: 1, FPSRatio: 1}, 0.64, 1, 1, 0.64},
		// The store test's A/FRA: S 0.75, latency 120 ms → 0.8^0.24 = 0.94785…,
		// fps held 0.9, 1.5 stalls/min and 7.5 % stalled → 0.925 × 0.8^1.5 = 0.66188…;
		// product 0.42347….
		{"store fixture A/FRA", LiveInputs{SuccessRate: 0.75, LatencyP50: 0.12, FPSRatio: 0.9, StallsPerMinute: 1.5, StallShare: 0.075},
			0.9478543267357953, 0.9, 0.6618761213399379, 0.4234694481282373},
		// More output frames than input (a duplicating runner) is not a bonus.
		{"fps over 1 clamps", LiveInputs{SuccessRate: 1, LatencyP50: 0.5, FPSRatio: 1.3}, 0.8, 1, 1, 0.8},
		// Never delivered output: no latency measured → 0, whatever else says.
		{"no output", LiveInputs{SuccessRate: 0, FPSRatio: 0}, 0, 0, 1, 0},
		{"succeeded but no latency measured", LiveInputs{SuccessRate: 1, FPSRatio: 1}, 0, 1, 1, 0},
		// Frozen the whole time.
		{"frozen", LiveInputs{SuccessRate: 1, LatencyP50: 0.1, FPSRatio: 1, StallsPerMinute: 1, StallShare: 1}, math.Pow(0.8, 0.2), 1, 0, 0},
		// Garbage in (NaN, negative, Inf) never gives NaN out: JSON refuses NaN.
		{"hostile numbers", LiveInputs{SuccessRate: math.NaN(), LatencyP50: math.Inf(1), FPSRatio: -1, StallsPerMinute: math.NaN(), StallShare: -3}, 0, 0, 1, 0},
	}
	for _, c := range cases {
		got := Live(c.in)
		if !nearly(got.LatencyFactor, c.latency) || !nearly(got.FPSFactor, c.fps) || !nearly(got.StallFactor, c.stalls) || !nearly(got.Score, c.score) {
			t.Errorf("%s: Live(%+v) = %+v, want latency %v fps %v stalls %v score %v", c.name, c.in, got, c.latency, c.fps, c.stalls, c.score)
		}
		if _, err := json.Marshal(got); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}

// A live score orders what a viewer would: lower delay, fewer stalls and
// more frames held each raise it, all else equal.
func TestLiveScoreIsMonotonic(t *testing.T) {
	base := LiveInputs{SuccessRate: 0.9, LatencyP50: 0.3, FPSRatio: 0.95, StallsPerMinute: 0.5, StallShare: 0.02}
	s := Live(base).Score
	for name, in := range map[string]LiveInputs{
		"slower":      {0.9, 0.6, 0.95, 0.5, 0.02},
		"more stalls": {0.9, 0.3, 0.95, 2, 0.02},
		"longer":      {0.9, 0.3, 0.95, 0.5, 0.2},
		"fewer fps":   {0.9, 0.3, 0.7, 0.5, 0.02},
		"less ok":     {0.6, 0.3, 0.95, 0.5, 0.02},
	} {
		if w := Live(in).Score; !(w < s) {
			t.Errorf("%s: score %v, want below the baseline's %v", name, w, s)
		}
	}
}

func nearly(a, b float64) bool { return math.Abs(a-b) < 1e-12 }
