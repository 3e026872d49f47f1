package api

// GET /api/live_stats (issue #16): the live-video-to-video numbers per
// orchestrator, region and live model, with the live score and its
// factors; and the live measures raw_stats adds to live rows.

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/lpgauge/lpgauge/capability"
	"github.com/lpgauge/lpgauge/internal/results"
	"github.com/lpgauge/lpgauge/leaderboard/score"
	"github.com/lpgauge/lpgauge/leaderboard/store"
)

// LiveFormula is the live score in words, published with every answer so a
// gateway operator can check a number by hand.
const LiveFormula = "score = success_rate × 0.8^(latency_p50 / 0.5 s) × min(1, fps_ratio) × (1 − stall_share) × 0.8^(stalls_per_minute)"

// liveConstants are the formula's constants, by name.
var liveConstants = map[string]float64{
	"latency_reference_seconds": score.LiveLatencyRef,
	"score_at_reference":        score.DesiredScoreAtMedian,
	"stall_base":                score.LiveStallBase,
}

// LiveStat is one (orchestrator, region, model); times in seconds.
type LiveStat struct {
	Orchestrator string `json:"orchestrator"`
	Region       string `json:"region"`
	Model        string `json:"model"`
	score.LiveScores
	SuccessRateLower  float64 `json:"success_rate_lower"`
	Sessions          uint64  `json:"sessions"`
	Successes         uint64  `json:"successes"`
	Excused           uint64  `json:"excused"`
	FirstSegmentP50   float64 `json:"first_segment_p50"`
	FirstSegmentP95   float64 `json:"first_segment_p95"`
	FirstFrameP50     float64 `json:"first_frame_p50"`
	FirstFrameP95     float64 `json:"first_frame_p95"`
	LatencyP50        float64 `json:"latency_p50"`
	LatencyP99        float64 `json:"latency_p99"`
	FPSRatio          float64 `json:"fps_ratio"`
	StallsPerMinute   float64 `json:"stalls_per_minute"`
	StallShare        float64 `json:"stall_share"`
	StallMax          float64 `json:"stall_max"`
	SegmentsLost      uint64  `json:"segments_lost"`
	SegmentsReordered uint64  `json:"segments_reordered"`
	PaymentsOK        uint64  `json:"payments_ok"`
	PaymentsRefused   uint64  `json:"payments_refused"`
	LastTested        int64   `json:"last_tested"`
}

type liveStatsOut struct {
	Pipeline  string             `json:"pipeline"`
	Since     int64              `json:"since"`
	Until     int64              `json:"until"`
	Formula   string             `json:"formula"`
	Constants map[string]float64 `json:"constants"`
	Stats     []LiveStat         `json:"stats"`
}

// ToLiveStat scores one store.LiveStat for the API (explorer-api shows the
// same numbers).
func ToLiveStat(l store.LiveStat) LiveStat {
	return LiveStat{
		Orchestrator: l.Orchestrator, Region: l.Region, Model: l.Model,
		LiveScores: score.Live(score.LiveInputs{SuccessRate: l.SuccessRate(), LatencyP50: l.LatencyP50, FPSRatio: l.FPSRatio,
			StallsPerMinute: l.StallsPerMinute, StallShare: l.StallShare}),
		SuccessRateLower: score.WilsonLower(l.Successes, l.Sessions, 1.96),
		Sessions:         l.Sessions, Successes: l.Successes, Excused: l.Excused,
		FirstSegmentP50: l.FirstSegmentP50, FirstSegmentP95: l.FirstSegmentP95, FirstFrameP50: l.FirstFrameP50, FirstFrameP95: l.FirstFrameP95,
		LatencyP50: l.LatencyP50, LatencyP99: l.LatencyP99, FPSRatio: l.FPSRatio,
		StallsPerMinute: l.StallsPerMinute, StallShare: l.StallShare, StallMax: l.StallMax,
		SegmentsLost: l.SegmentsLost, SegmentsReordered: l.SegmentsReordered, PaymentsOK: l.PaymentsOK, PaymentsRefused: l.PaymentsRefused,
		LastTested: l.LastTested.Unix(),
	}
}

// liveParams reads live_stats' query: the shared orchestrator, region
// (GLOBAL pools), since and until; model alone (the pipeline is implied);
// pipeline only as the live pipeline's name or slug.
func (s *Server) liveParams(q url.Values) (params, error) {
	if v := strings.TrimSpace(q.Get("pipeline")); v != "" {
		if p, ok := capability.Lookup(v); !ok || p.Name != store.LivePipeline {
			return params{}, fmt.Errorf("pipeline=%q: live_stats covers the live pipeline only (%q or live-video-to-video); leave pipeline out, and use aggregated_stats for batch pipelines", v, store.LivePipeline)
		}
	}
	shared := url.Values{}
	for _, k := range []string{"orchestrator", "region", "since", "until"} {
		if v, ok := q[k]; ok {
			shared[k] = v
		}
	}
	p, err := s.parseParams(shared)
	if err != nil {
		return p, err
	}
	if n := len(q.Get("model")); n > maxTextParam {
		return p, fmt.Errorf("model is %d bytes long: at most %d", n, maxTextParam)
	}
	p.pipeline, p.model = store.LivePipeline, q.Get("model")
	return p, nil
}

// liveStats answers /api/live_stats.
func (s *Server) liveStats(c *gin.Context) {
	p, err := s.liveParams(c.Request.URL.Query())
	if err != nil {
		fail(c, http.StatusBadRequest, err.Error())
		return
	}
	ctx, cancel := s.queryCtx(c)
	defer cancel()
	ls, err := s.store.LiveStats(ctx, p.filter())
	if err != nil {
		s.storeFailed(c, "live stats", err)
		return
	}
	out := liveStatsOut{Pipeline: store.LivePipeline, Since: p.since.Unix(), Until: p.until.Unix(),
		Formula: LiveFormula, Constants: liveConstants, Stats: make([]LiveStat, 0, len(ls))}
	for _, l := range ls {
		out.Stats = append(out.Stats, ToLiveStat(l))
	}
	writeJSON(c, http.StatusOK, out)
}

// liveRaw is one live probe's measures in raw_stats (times in seconds).
type liveRaw struct {
	FirstSegment      float64 `json:"first_segment"`
	FirstFrame        float64 `json:"first_frame"`
	FramesIn          uint32  `json:"frames_in"`
	FramesOut         uint32  `json:"frames_out"`
	InFPS             float64 `json:"in_fps"`
	OutFPS            float64 `json:"out_fps"`
	LatencyP50        float64 `json:"latency_p50"`
	LatencyP95        float64 `json:"latency_p95"`
	LatencyP99        float64 `json:"latency_p99"`
	Stalls            uint32  `json:"stalls"`
	StallTotal        float64 `json:"stall_total"`
	StallMax          float64 `json:"stall_max"`
	SegmentsLost      uint32  `json:"segments_lost"`
	SegmentsReordered uint32  `json:"segments_reordered"`
	PaymentsOK        uint32  `json:"payments_ok"`
	PaymentsRefused   uint32  `json:"payments_refused"`
	Session           float64 `json:"session"`
}

func toLiveRaw(l results.Live) *liveRaw {
	return &liveRaw{FirstSegment: secs(l.FirstSegment), FirstFrame: secs(l.FirstFrame), FramesIn: l.FramesIn, FramesOut: l.FramesOut,
		InFPS: l.InFPS, OutFPS: l.OutFPS, LatencyP50: secs(l.LatencyP50), LatencyP95: secs(l.LatencyP95), LatencyP99: secs(l.LatencyP99),
		Stalls: l.Stalls, StallTotal: secs(l.StallTotal), StallMax: secs(l.StallMax), SegmentsLost: l.SegmentsLost,
		SegmentsReordered: l.SegmentsReorder, PaymentsOK: l.PaymentsOK, PaymentsRefused: l.PaymentsRefused, Session: secs(l.Session)}
}

// attachLive adds the live measures to raw_stats' live rows (one more
// query, only when the answer has live rows). When the store fails it has
// answered the request and returns false.
func (s *Server) attachLive(ctx context.Context, c *gin.Context, out map[string][]rawStat) bool {
	var ids []string
	for _, list := range out {
		for _, r := range list {
			if r.Pipeline == store.LivePipeline {
				ids = append(ids, r.ProbeID)
			}
		}
	}
	if len(ids) == 0 {
		return true
	}
	live, err := s.store.LiveRaw(ctx, ids)
	if err != nil {
		s.storeFailed(c, "live raw", err)
		return false
	}
	for _, list := range out {
		for i := range list {
			if l, ok := live[list[i].ProbeID]; ok {
				list[i].Live = toLiveRaw(l)
			}
		}
	}
	return true
}
