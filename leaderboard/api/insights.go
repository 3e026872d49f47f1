package api

import (
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/lpgauge/lpgauge/internal/results"
	"github.com/lpgauge/lpgauge/leaderboard/score"
	"github.com/lpgauge/lpgauge/leaderboard/store"
	"github.com/lpgauge/lpgauge/regions"
)

// The additive read endpoints: phase percentiles, regions with data,
// history and the error breakdown. None changes an old shape.

// regionsWithData answers /api/regions?with_data=1: only the AI regions
// with scored probes in the window (and pipeline/model when given), GLOBAL
// first when any has data. Without with_data the compat catalogue is served.
func (s *Server) regionsWithData(c *gin.Context) {
	q := c.Request.URL.Query()
	p, err := s.parseParams(q)
	if err != nil {
		fail(c, http.StatusBadRequest, err.Error())
		return
	}
	out := []regionEntry{}
	if q.Get("job_type") == string(regions.Transcoding) {
		writeJSON(c, http.StatusOK, map[string][]regionEntry{"regions": out})
		return
	}
	ctx, cancel := s.queryCtx(c)
	defer cancel()
	f := p.filter()
	f.Orchestrator = ""
	codes, err := s.store.RegionsWithData(ctx, f)
	if err != nil {
		s.storeFailed(c, "regions", err)
		return
	}
	if len(codes) > 0 {
		g, _ := regions.Lookup(regions.Global)
		out = append(out, regionEntry{ID: g.Code, Name: g.Name, Type: string(regions.AI)})
	}
	for _, code := range codes {
		name := code
		if r, ok := regions.Lookup(code); ok {
			name = r.Name
		}
		out = append(out, regionEntry{ID: code, Name: name, Type: string(regions.AI)})
	}
	writeJSON(c, http.StatusOK, map[string][]regionEntry{"regions": out})
}

type quantilesOut struct {
	Samples uint64  `json:"samples"`
	P50     float64 `json:"p50"`
	P90     float64 `json:"p90"`
	P99     float64 `json:"p99"`
}

type phasesOut struct {
	Server    quantilesOut `json:"server"`
	Upload    quantilesOut `json:"upload"`
	Download  quantilesOut `json:"download"`
	Total     quantilesOut `json:"total"`
	Discovery quantilesOut `json:"discovery"`
	// TTFT (additive) is the LLM time to first token; absent for pipelines
	// without one.
	TTFT *quantilesOut `json:"ttft,omitempty"`
	// Queue and Inference (additive) split server where the orchestrator
	// reports them (issue #19): waiting for a runner vs inferring; absent
	// when no probe of the split has them.
	Queue     *quantilesOut `json:"queue,omitempty"`
	Inference *quantilesOut `json:"inference,omitempty"`
}

type splitOut struct {
	Samples     uint64    `json:"samples"`
	Successes   uint64    `json:"successes"`
	SuccessRate float64   `json:"success_rate"`
	Phases      phasesOut `json:"phases"`
	// TokensPerSecond (additive, LLM only) is generation speed: completion
	// tokens over the streaming time after the first token.
	TokensPerSecond *quantilesOut `json:"tokens_per_second,omitempty"`
}

type latencyOut struct {
	All  splitOut `json:"all"`
	Warm splitOut `json:"warm"`
	Cold splitOut `json:"cold"`
}

func toQuantiles(q store.Quantiles) quantilesOut {
	return quantilesOut{Samples: q.Samples, P50: q.P50, P90: q.P90, P99: q.P99}
}

func toSplit(sp store.Split) splitOut {
	o := splitOut{Samples: sp.Probes, Successes: sp.Successes, Phases: phasesOut{
		Server: toQuantiles(sp.Phases.Server), Upload: toQuantiles(sp.Phases.Upload), Download: toQuantiles(sp.Phases.Download),
		Total: toQuantiles(sp.Phases.Total), Discovery: toQuantiles(sp.Phases.Discovery),
	}}
	if sp.Phases.TTFT.Samples > 0 {
		t := toQuantiles(sp.Phases.TTFT)
		o.Phases.TTFT = &t
	}
	if sp.Phases.Queue.Samples > 0 || sp.Phases.Inference.Samples > 0 {
		q, i := toQuantiles(sp.Phases.Queue), toQuantiles(sp.Phases.Inference)
		o.Phases.Queue, o.Phases.Inference = &q, &i
	}
	if sp.TokensPerSecond.Samples > 0 {
		t := toQuantiles(sp.TokensPerSecond)
		o.TokensPerSecond = &t
	}
	if sp.Probes > 0 {
		o.SuccessRate = float64(sp.Successes) / float64(sp.Probes)
	}
	return o
}

// needPair refuses a request without pipeline and model where numbers are
// per pipeline and model.
func needPair(c *gin.Context, p params, what string) bool {
	if p.pipeline == "" {
		fail(c, http.StatusBadRequest, what+" are per pipeline and model: give pipeline and model (see /api/pipelines)")
		return false
	}
	return true
}

// percentiles answers /api/percentiles: p50/p90/p99 of each phase of the
// successful probes, per orchestrator and region, all and split warm/cold.
func (s *Server) percentiles(c *gin.Context) {
	p, err := s.parseParams(c.Request.URL.Query())
	if err != nil {
		fail(c, http.StatusBadRequest, err.Error())
		return
	}
	if !needPair(c, p, "percentiles") {
		return
	}
	ctx, cancel := s.queryCtx(c)
	defer cancel()
	lats, err := s.store.Latencies(ctx, p.filter())
	if err != nil {
		s.storeFailed(c, "latencies", err)
		return
	}
	out := map[string]map[string]latencyOut{}
	for _, l := range lats {
		if out[l.Orchestrator] == nil {
			out[l.Orchestrator] = map[string]latencyOut{}
		}
		out[l.Orchestrator][l.Region] = latencyOut{All: toSplit(l.All), Warm: toSplit(l.Warm), Cold: toSplit(l.Cold)}
	}
	writeJSON(c, http.StatusOK, out)
}

// maxHistoryPoints bounds a series: beyond it the window is too long for
// the bucket.
const maxHistoryPoints = 800

type historyPoint struct {
	Time           int64   `json:"time"`
	Samples        uint64  `json:"samples"`
	Successes      uint64  `json:"successes"`
	SuccessRate    float64 `json:"success_rate"`
	RoundTripScore float64 `json:"round_trip_score"`
	Score          float64 `json:"score"`
	MeanRTT        float64 `json:"mean_rtt"`
	MedianRTT      float64 `json:"median_rtt"`
	ServerP50      float64 `json:"server_p50"`
	ServerP95      float64 `json:"server_p95"`
}

type historyOut struct {
	Orchestrator string                    `json:"orchestrator"`
	Pipeline     string                    `json:"pipeline"`
	Model        string                    `json:"model"`
	Bucket       string                    `json:"bucket"`
	Since        int64                     `json:"since"`
	Until        int64                     `json:"until"`
	Series       map[string][]historyPoint `json:"series"`
}

// history answers /api/history: one orchestrator's series per region, one
// point per hour or day that has scored probes, each scored against that
// bucket's median (network-wide, or the region's when region is given).
func (s *Server) history(c *gin.Context) {
	q := c.Request.URL.Query()
	p, err := s.parseParams(q)
	if err != nil {
		fail(c, http.StatusBadRequest, err.Error())
		return
	}
	if p.orchestrator == "" {
		fail(c, http.StatusBadRequest, "orchestrator is a required parameter: give the orchestrator's 0x address")
		return
	}
	if !needPair(c, p, "history series") {
		return
	}
	b, err := enumParam(q, "bucket", string(store.Hour), string(store.Hour), string(store.Day))
	if err != nil {
		fail(c, http.StatusBadRequest, err.Error())
		return
	}
	step := time.Hour
	if b == string(store.Day) {
		step = 24 * time.Hour
	}
	if n := p.until.Sub(p.since) / step; n > maxHistoryPoints {
		fail(c, http.StatusBadRequest, fmt.Sprintf("the window holds %d %s buckets, more than %d: narrow since/until or use bucket=day", n, b, maxHistoryPoints))
		return
	}
	ctx, cancel := s.queryCtx(c)
	defer cancel()
	f := p.filter()
	pts, err := s.store.History(ctx, f, store.Bucket(b))
	if err != nil {
		s.storeFailed(c, "history", err)
		return
	}
	out := historyOut{Orchestrator: p.orchestrator, Pipeline: p.pipeline, Model: p.model, Bucket: b,
		Since: p.since.Unix(), Until: p.until.Unix(), Series: map[string][]historyPoint{}}
	if len(pts) > 0 {
		medians, err := s.store.BucketMedians(ctx, f, store.Bucket(b))
		if err != nil {
			s.storeFailed(c, "bucket medians", err)
			return
		}
		for _, pt := range pts {
			sr := 0.0
			if pt.Probes > 0 {
				sr = float64(pt.Successes) / float64(pt.Probes)
			}
			m := medians[pt.Start]
			sc := score.AI(sr, pt.MeanRTTSeconds, m)
			out.Series[pt.Region] = append(out.Series[pt.Region], historyPoint{
				Time: pt.Start.Unix(), Samples: pt.Probes, Successes: pt.Successes, SuccessRate: sc.SuccessRate,
				RoundTripScore: sc.RoundTripScore, Score: sc.Score, MeanRTT: pt.MeanRTTSeconds, MedianRTT: m,
				ServerP50: pt.ServerP50, ServerP95: pt.ServerP95,
			})
		}
	}
	writeJSON(c, http.StatusOK, out)
}

type errorOut struct {
	Region      string `json:"region"`
	Pipeline    string `json:"pipeline"`
	Model       string `json:"model"`
	ErrorClass  string `json:"error_class"`
	ErrorCode   string `json:"error_code"`
	Count       uint64 `json:"count"`
	LastMessage string `json:"last_message"`
	LastSeen    int64  `json:"last_seen"`
}

type probeCounts struct {
	Scored    uint64 `json:"scored"`
	Successes uint64 `json:"successes"`
	Failures  uint64 `json:"failures"`
	Excused   uint64 `json:"excused"`
}

type errorsOut struct {
	Orchestrator string      `json:"orchestrator"`
	Since        int64       `json:"since"`
	Until        int64       `json:"until"`
	Probes       probeCounts `json:"probes"`
	SuccessRate  float64     `json:"success_rate"`
	LastTested   int64       `json:"last_tested"`
	// Diagnosis says in one sentence why the score is what it is.
	Diagnosis string `json:"diagnosis"`
	// Errors are the failures that count against the score; Excused are
	// tester-side faults and capacity refusals, which never count, shown
	// apart.
	Errors  []errorOut `json:"errors"`
	Excused []errorOut `json:"excused_errors"`
	// Flags (additive) are the gaming flags raised against this
	// orchestrator in the window ([] when none); see /api/flags.
	Flags []flagOut `json:"flags"`
}

// flagOut is one gaming flag (store.Flag) on the wire.
type flagOut struct {
	Code         string             `json:"code"`
	Orchestrator string             `json:"orchestrator"`
	Region       string             `json:"region,omitempty"`
	Pipeline     string             `json:"pipeline,omitempty"`
	Model        string             `json:"model,omitempty"`
	Detail       string             `json:"detail"`
	Evidence     map[string]float64 `json:"evidence"`
}

func toFlags(fs []store.Flag) []flagOut {
	out := make([]flagOut, 0, len(fs))
	for _, f := range fs {
		out = append(out, flagOut{Code: f.Code, Orchestrator: f.Orchestrator, Region: f.Region, Pipeline: f.Pipeline, Model: f.Model,
			Detail: f.Detail, Evidence: f.Evidence})
	}
	return out
}

// flagThresholds publishes the rules behind the flags, so a flagged
// operator can see what it would take not to be.
var flagThresholds = map[string]float64{
	"min_samples":                  store.FlagMinSamples,
	"favouritism_success_rate_gap": store.FavouritismRateGap,
	"favouritism_min_z":            store.FavouritismMinZ,
	"favouritism_latency_ratio":    store.FavouritismLatencyRatio,
	"capacity_min_rate":            store.CapacityMinRate,
	"capacity_network_multiple":    store.CapacityNetworkMultiple,
}

type flagsOut struct {
	Since      int64              `json:"since"`
	Until      int64              `json:"until"`
	Thresholds map[string]float64 `json:"thresholds"`
	Flags      []flagOut          `json:"flags"`
}

// flags answers /api/flags: every gaming flag in the window (one
// orchestrator's with orchestrator=), with the thresholds that raised them.
func (s *Server) flags(c *gin.Context) {
	p, err := s.parseParams(c.Request.URL.Query())
	if err != nil {
		fail(c, http.StatusBadRequest, err.Error())
		return
	}
	ctx, cancel := s.queryCtx(c)
	defer cancel()
	fs, err := s.store.Flags(ctx, p.filter())
	if err != nil {
		s.storeFailed(c, "flags", err)
		return
	}
	writeJSON(c, http.StatusOK, flagsOut{Since: p.since.Unix(), Until: p.until.Unix(), Thresholds: flagThresholds, Flags: toFlags(fs)})
}

// errorsBreakdown answers /api/errors: why an orchestrator's probes failed,
// most frequent first, with excused probes (tester-side faults, capacity
// refusals) listed apart.
func (s *Server) errorsBreakdown(c *gin.Context) {
	p, err := s.parseParams(c.Request.URL.Query())
	if err != nil {
		fail(c, http.StatusBadRequest, err.Error())
		return
	}
	if p.orchestrator == "" {
		fail(c, http.StatusBadRequest, "orchestrator is a required parameter: give the orchestrator's 0x address")
		return
	}
	ctx, cancel := s.queryCtx(c)
	defer cancel()
	f := p.filter()
	groups, err := s.store.Errors(ctx, f)
	if err != nil {
		s.storeFailed(c, "errors", err)
		return
	}
	aggs, ok := s.aggregates(ctx, c, f)
	if !ok {
		return
	}
	out := errorsOut{Orchestrator: p.orchestrator, Since: p.since.Unix(), Until: p.until.Unix(), Errors: []errorOut{}, Excused: []errorOut{}}
	var last time.Time
	for _, a := range aggs {
		out.Probes.Scored += a.Probes
		out.Probes.Successes += a.Successes
		if a.LastTested.After(last) {
			last = a.LastTested
		}
	}
	for _, g := range groups {
		e := errorOut{Region: g.Region, Pipeline: g.Pipeline, Model: g.Model, ErrorClass: g.ErrorClass, ErrorCode: g.ErrorCode,
			Count: g.Count, LastMessage: g.LastMessage, LastSeen: g.LastSeen.Unix()}
		if g.Outcome == results.Excused {
			out.Probes.Excused += g.Count
			out.Excused = append(out.Excused, e)
		} else {
			out.Probes.Failures += g.Count
			out.Errors = append(out.Errors, e)
		}
		if g.LastSeen.After(last) {
			last = g.LastSeen
		}
	}
	if !last.IsZero() {
		out.LastTested = last.Unix()
	}
	if out.Probes.Scored > 0 {
		out.SuccessRate = float64(out.Probes.Successes) / float64(out.Probes.Scored)
	}
	out.Diagnosis = diagnose(out)
	fs, err := s.store.Flags(ctx, f)
	if err != nil {
		s.storeFailed(c, "flags", err)
		return
	}
	out.Flags = toFlags(fs)
	writeJSON(c, http.StatusOK, out)
}

// diagnose answers "why is my score 0?" (or lower than expected) in words.
func diagnose(o errorsOut) string {
	switch {
	case o.Probes.Scored == 0 && o.Probes.Excused == 0:
		return "not tested in this window: no probe reached this orchestrator (not discovered on chain, not advertising this pipeline/model, or outside the window)"
	case o.Probes.Scored == 0:
		top := o.Excused[0]
		why := "a tester-side fault"
		if top.ErrorClass == "capacity" {
			why = "the orchestrator was at capacity (busy, not broken)"
		}
		return fmt.Sprintf("no score: all %d probes were excused, which never count; most often %s (%d×): %s",
			o.Probes.Excused, groupName(top), top.Count, why)
	case o.Probes.Failures == 0:
		return fmt.Sprintf("all %d scored probes succeeded", o.Probes.Scored)
	}
	top := o.Errors[0]
	what := groupName(top)
	msg := ""
	if top.LastMessage != "" {
		msg = ": " + top.LastMessage
	}
	if o.Probes.Successes == 0 {
		return fmt.Sprintf("score 0: every one of %d scored probes failed; most often %s (%d×)%s", o.Probes.Scored, what, top.Count, msg)
	}
	return fmt.Sprintf("%d of %d scored probes failed; most often %s (%d×)%s", o.Probes.Failures, o.Probes.Scored, what, top.Count, msg)
}

// groupName is an error group's class/code.
func groupName(e errorOut) string {
	if e.ErrorCode != "" {
		return e.ErrorClass + "/" + e.ErrorCode
	}
	return e.ErrorClass
}

// sortedKeys returns m's keys sorted.
func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
