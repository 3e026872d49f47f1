package score

import "math"

// The live score (issue #16): how much of a live-video-to-video stream a
// gateway's viewer gets as sent. A product, not a weighted sum: each factor
// is a way a stream fails on its own (it does not start or dies, it lags,
// it judders, it freezes), and an orchestrator perfect on three of them but
// frozen half the time is no good for live video. leaderboard/README.md
// states the formula and the reasoning behind each constant.
const (
	// LiveLatencyRef is the in→out delay (median per-frame latency, the
	// median over sessions) that scores DesiredScoreAtMedian (0.8), the
	// anchor the batch score also uses. 500 ms is where a person talking
	// to a transformed camera feed starts to notice the lag; 1 s scores
	// 0.64, 2 s 0.41, 100 ms 0.96.
	LiveLatencyRef = 0.5
	// LiveStallBase is what each stall per minute of stream multiplies the
	// stall factor by: one visible freeze a minute costs 20 %, whatever its
	// length (the length is charged by the stalled share of the time).
	LiveStallBase = 0.8
)

// LiveInputs are one orchestrator's live numbers over a window (from
// store.LiveStat): success rate of scored sessions, median per-frame
// latency p50 (s), median out/in fps ratio, stalls per minute and the share
// of session time stalled.
type LiveInputs struct {
	SuccessRate     float64
	LatencyP50      float64
	FPSRatio        float64
	StallsPerMinute float64
	StallShare      float64
}

// LiveScores is the score and its factors, each in [0,1].
type LiveScores struct {
	Score         float64 `json:"score"`
	SuccessRate   float64 `json:"success_rate"`
	LatencyFactor float64 `json:"latency_factor"`
	FPSFactor     float64 `json:"fps_factor"`
	StallFactor   float64 `json:"stall_factor"`
}

// Live scores a live aggregate:
//
//	score = S × 0.8^(latency_p50 / 0.5 s) × min(1, out_fps/in_fps) × (1 − stall_share) × 0.8^(stalls_per_minute)
//
// S is the success rate of scored sessions. A latency of 0 means no
// session measured one (none succeeded): the latency factor is then 0, so
// an orchestrator never earns a score for output it did not deliver.
func Live(in LiveInputs) LiveScores {
	out := LiveScores{SuccessRate: clamp01(in.SuccessRate), FPSFactor: clamp01(in.FPSRatio)}
	if lat := finite(in.LatencyP50); lat > 0 {
		out.LatencyFactor = clamp01(math.Pow(DesiredScoreAtMedian, lat/LiveLatencyRef))
	}
	perMin := finite(in.StallsPerMinute)
	if perMin < 0 {
		perMin = 0
	}
	out.StallFactor = clamp01((1 - clamp01(in.StallShare)) * math.Pow(LiveStallBase, perMin))
	out.Score = clamp01(out.SuccessRate * out.LatencyFactor * out.FPSFactor * out.StallFactor)
	return out
}
