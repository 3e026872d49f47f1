// Package score turns per-orchestrator aggregates into the leaderboard's
// scores with exactly the formulas of livepeer/leaderboard-serverless, so the
// Explorer shows the same numbers for the same data, and guards every edge
// (no successes, zero median, zero RTT) so a score is never NaN or Inf: Go's
// JSON encoder refuses those, which would turn a quiet pipeline into a 500.
package score

import (
	"math"
	"sort"
)

// Constants of leaderboard-serverless's AI score.
const (
	// DesiredScoreAtMedian is the round-trip score of an orchestrator whose
	// mean RTT equals the median RTT of successful jobs.
	DesiredScoreAtMedian = 0.8
	// WeightSuccess and WeightRTT weigh success rate and round-trip score.
	WeightSuccess = 0.65
	WeightRTT     = 0.35
)

// Scores is one aggregated leaderboard entry, in the field order and with the
// JSON names leaderboard-serverless emits.
type Scores struct {
	SuccessRate    float64 `json:"success_rate"`
	RoundTripScore float64 `json:"round_trip_score"`
	Score          float64 `json:"score"`
}

// finite maps NaN and ±Inf to 0: an undefined score is no score.
func finite(x float64) float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return 0
	}
	return x
}

// AIRoundTripScore is e^(−k·meanRTT) with k = −ln(0.8)/medianRTT, i.e.
// 0.8^(meanRTT/medianRTT). A median of 0 (no successful jobs in the scope) or
// a mean of 0 (this orchestrator has no successful, timed job) gives 0 instead
// of leaderboard-serverless's +Inf/NaN.
func AIRoundTripScore(meanRTT, medianRTT float64) float64 {
	if !(medianRTT > 0) || !(meanRTT > 0) || math.IsInf(medianRTT, 0) || math.IsInf(meanRTT, 0) {
		return 0
	}
	k := -math.Log(DesiredScoreAtMedian) / medianRTT
	return finite(math.Exp(-k * meanRTT))
}

// AI scores one (orchestrator, region, pipeline, model) aggregate: success
// rate S in [0,1], mean RTT R and the scope's median RTT M, both in seconds.
// score = 0.65·S + 0.35·e^(−k·R), and 0 when S = 0.
func AI(successRate, meanRTT, medianRTT float64) Scores {
	s := clamp01(successRate)
	rts := AIRoundTripScore(meanRTT, medianRTT)
	out := Scores{SuccessRate: s, RoundTripScore: rts}
	if s != 0 {
		out.Score = finite(WeightSuccess*s + WeightRTT*rts)
	}
	return out
}

// Transcoding scores a transcoding aggregate: latency ratio L = D/R (segment
// duration over round-trip time, 0 when R = 0), round_trip_score = 1 − e^(−L),
// score = S × round_trip_score.
func Transcoding(successRate, segDuration, meanRTT float64) Scores {
	s := clamp01(successRate)
	var l float64
	if meanRTT > 0 && !math.IsInf(meanRTT, 0) {
		l = finite(segDuration / meanRTT)
	}
	rts := finite(1 - math.Exp(-l))
	out := Scores{SuccessRate: s, RoundTripScore: rts}
	if s != 0 {
		out.Score = finite(s * rts)
	}
	return out
}

func clamp01(x float64) float64 {
	x = finite(x)
	switch {
	case x < 0:
		return 0
	case x > 1:
		return 1
	}
	return x
}

// Median is the interpolated median (Postgres percentile_cont(0.5), which
// leaderboard-serverless uses) of xs; 0 for none. xs is sorted in place.
func Median(xs []float64) float64 {
	n := len(xs)
	if n == 0 {
		return 0
	}
	sort.Float64s(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}

// WilsonLower is the lower bound of the Wilson score interval for a success
// rate of successes out of n at z standard deviations (1.96 for 95 %): a rate
// measured on 3 probes ranks below the same rate measured on 300. 0 for n = 0.
func WilsonLower(successes, n uint64, z float64) float64 {
	if n == 0 {
		return 0
	}
	if successes > n {
		successes = n
	}
	nf := float64(n)
	p := float64(successes) / nf
	z2 := z * z
	centre := p + z2/(2*nf)
	margin := z * math.Sqrt(p*(1-p)/nf+z2/(4*nf*nf))
	return clamp01((centre - margin) / (1 + z2/nf))
}

// Percentile is Postgres percentile_cont(p) of the ascending-sorted xs: the
// value at rank p·(n−1), interpolated linearly between its neighbours (the
// same definition as Median, so p = 0.5 gives the median). 0 for none; p is
// clamped to [0,1].
func Percentile(sorted []float64, p float64) float64 {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	p = clamp01(p)
	rank := p * float64(n-1)
	lo := int(math.Floor(rank))
	if lo >= n-1 {
		return sorted[n-1]
	}
	frac := rank - float64(lo)
	return sorted[lo] + frac*(sorted[lo+1]-sorted[lo])
}
