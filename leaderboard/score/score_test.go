package score

import (
	"encoding/json"
	"math"
	"testing"
)

// Golden vectors from leaderboard-serverless score/stats_scorer_test.go
// (reference/leaderboard-api.md §b): median 5.0 s from successful jobs of
// 8 s and 2 s.
func TestAIGoldenVectors(t *testing.T) {
	median := Median([]float64{8, 2})
	if median != 5.0 {
		t.Fatalf("median of successful jobs 8 s and 2 s = %v, want 5", median)
	}
	cases := []struct {
		r, s       float64
		rtt, score float64
	}{
		{8.0, 1.0, 0.699751727323698, 0.8949131045632943},
		{2.0, 1.0, 0.9146101038546527, 0.9701135363491284},
		{1.0, 0.75, 0.956352499790037, 0.822223374926513},
		{2.0, 0.75, 0.9146101038546527, 0.8076135363491285},
		{0.5, 0.95, 0.9779327685429285, 0.9597764689900249},
	}
	for _, c := range cases {
		got := AI(c.s, c.r, median)
		if got.RoundTripScore != c.rtt || got.Score != c.score || got.SuccessRate != c.s {
			t.Errorf("AI(S=%v, R=%v, M=5) = %+v, want round_trip_score %v score %v", c.s, c.r, got, c.rtt, c.score)
		}
	}
}

// top_ai_score with a single successful orchestrator: its RTT is the median,
// so the value is 0.65 + 0.35·0.8, encoded exactly as the upstream test
// expects (api/top_ai_score_test.go).
func TestAISingleOrchestratorIs093(t *testing.T) {
	got := AI(1, 24.1, 24.1)
	b, _ := json.Marshal(got.Score)
	if string(b) != "0.9299999999999999" {
		t.Fatalf("single orchestrator score encodes as %s, want 0.9299999999999999", b)
	}
}

func TestAIEdgesNeverNaN(t *testing.T) {
	cases := []struct {
		name      string
		s, r, m   float64
		wantScore float64
		wantRTT   float64
	}{
		{"no successes anywhere: median 0", 0, 0, 0, 0, 0},
		{"median 0 but success rate positive", 1, 3, 0, 0.65, 0},
		{"orchestrator without timed success", 0.5, 0, 5, 0.325, 0},
		{"success rate 0 forces score 0", 0, 2, 5, 0, 0.9146101038546527},
		{"NaN inputs", math.NaN(), math.NaN(), math.NaN(), 0, 0},
		{"Inf median", 1, 2, math.Inf(1), 0.65, 0},
	}
	for _, c := range cases {
		got := AI(c.s, c.r, c.m)
		if _, err := json.Marshal(got); err != nil {
			t.Errorf("%s: %+v does not encode: %v", c.name, got, err)
		}
		if got.Score != c.wantScore || got.RoundTripScore != c.wantRTT {
			t.Errorf("%s: got %+v, want score %v round_trip_score %v", c.name, got, c.wantScore, c.wantRTT)
		}
	}
}

func TestTranscoding(t *testing.T) {
	// L = D/R = 2/2 = 1 → 1 − e^−1.
	got := Transcoding(1, 2, 2)
	want := 1 - math.Exp(-1)
	if got.RoundTripScore != want || got.Score != want {
		t.Errorf("Transcoding(1, 2, 2) = %+v, want %v", got, want)
	}
	if got := Transcoding(0.5, 2, 0); got.Score != 0 || got.RoundTripScore != 0 {
		t.Errorf("zero RTT must score 0, got %+v", got)
	}
	if got := Transcoding(0, 2, 1); got.Score != 0 {
		t.Errorf("zero success must score 0, got %+v", got)
	}
}

func TestWilsonLower(t *testing.T) {
	if WilsonLower(0, 0, 1.96) != 0 {
		t.Error("no samples must give 0")
	}
	few, many := WilsonLower(3, 3, 1.96), WilsonLower(300, 300, 1.96)
	if !(few < many && many < 1 && few > 0.4) {
		t.Errorf("3/3 → %v, 300/300 → %v: more evidence must rank higher", few, many)
	}
	// 50 of 100 at 95 %: textbook lower bound 0.4038.
	if got := WilsonLower(50, 100, 1.96); math.Abs(got-0.4038) > 0.0005 {
		t.Errorf("WilsonLower(50, 100) = %v, want ≈ 0.4038", got)
	}
}

// Postgres: SELECT percentile_cont(ARRAY[0.5,0.9,0.99]) WITHIN GROUP (ORDER BY x)
// FROM generate_series(1,10) x → {5.5, 9.1, 9.91}.
func TestPercentileMatchesPercentileCont(t *testing.T) {
	xs := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for _, c := range []struct{ p, want float64 }{{0.5, 5.5}, {0.9, 9.1}, {0.99, 9.91}, {0, 1}, {1, 10}} {
		if got := Percentile(xs, c.p); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("Percentile(1..10, %v) = %v, want %v", c.p, got, c.want)
		}
	}
	if got := Percentile([]float64{2, 8}, 0.5); got != Median([]float64{8, 2}) {
		t.Errorf("Percentile p50 %v differs from Median", got)
	}
	if Percentile(nil, 0.9) != 0 || Percentile([]float64{7}, 0.99) != 7 {
		t.Error("empty → 0, one value → that value")
	}
}
