package api

import (
	"encoding/json"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/lpgauge/lpgauge/internal/results"
	"github.com/lpgauge/lpgauge/leaderboard/score"
	"github.com/lpgauge/lpgauge/leaderboard/store"
	"github.com/lpgauge/lpgauge/regions"
)

func (s *Server) healthz(c *gin.Context) {
	c.Header("Cache-Control", "no-store")
	writeJSON(c, http.StatusOK, map[string]bool{"ok": true})
}

type component struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

// health is Cloud-SPE's /api/health with our store as the component.
func (s *Server) health(c *gin.Context) {
	c.Header("Cache-Control", "no-store")
	ctx, cancel := s.queryCtx(c)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		s.cfg.Logger.Warn("health: store ping failed", "err", err)
		writeJSON(c, http.StatusServiceUnavailable, map[string]component{"clickhouse": {OK: false, Error: "the result store does not answer"}})
		return
	}
	writeJSON(c, http.StatusOK, map[string]component{"clickhouse": {OK: true}})
}

type regionEntry struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Type string `json:"type"`
}

// regions lists the catalogue once per job type, as leaderboard-serverless's
// regions ⨝ job_types does.
func (s *Server) regions(c *gin.Context) {
	withData, err := boolParam(c.Request.URL.Query(), "with_data")
	if err != nil {
		fail(c, http.StatusBadRequest, err.Error())
		return
	}
	if withData {
		s.regionsWithData(c)
		return
	}
	out := []regionEntry{}
	for _, jt := range []regions.JobType{regions.Transcoding, regions.AI} {
		for _, r := range regions.All() {
			if r.Has(jt) {
				out = append(out, regionEntry{ID: r.Code, Name: r.Name, Type: string(jt)})
			}
		}
	}
	writeJSON(c, http.StatusOK, map[string][]regionEntry{"regions": out})
}

type pipelineEntry struct {
	ID      string   `json:"id"`
	Models  []string `json:"models"`
	Regions []string `json:"regions"`
}

func (s *Server) pipelines(c *gin.Context) {
	p, err := s.parseParams(c.Request.URL.Query())
	if err != nil {
		fail(c, http.StatusBadRequest, err.Error())
		return
	}
	ctx, cancel := s.queryCtx(c)
	defer cancel()
	ps, err := s.store.Pipelines(ctx, store.Filter{Window: store.Window{Since: p.since, Until: p.until}, Region: p.region})
	if err != nil {
		s.storeFailed(c, "pipelines", err)
		return
	}
	out := []pipelineEntry{}
	for _, pl := range ps {
		e := pipelineEntry{ID: pl.ID, Models: pl.Models, Regions: pl.Regions}
		if e.Models == nil {
			e.Models = []string{}
		}
		if e.Regions == nil {
			e.Regions = []string{}
		}
		out = append(out, e)
	}
	writeJSON(c, http.StatusOK, map[string][]pipelineEntry{"pipelines": out})
}

// aggregatedEntry keeps leaderboard-serverless's three fields first, in its
// order; the rest are additive.
type aggregatedEntry struct {
	score.Scores
	// Samples is the number of scored probes behind the numbers.
	Samples uint64 `json:"samples"`
	// Excused counts the probes left out of them: tester-side faults and
	// capacity refusals ("insufficient capacity": busy, not scored), so
	// an orchestrator that often refuses is visible to gateways.
	Excused uint64 `json:"excused"`
	// SuccessRateLower is the 95 % Wilson lower bound of success_rate.
	SuccessRateLower float64 `json:"success_rate_lower"`
	// MeanRTT and MedianRTT are the seconds the round-trip score compares.
	MeanRTT   float64 `json:"mean_rtt"`
	MedianRTT float64 `json:"median_rtt"`
	// LastTested is the unix time of the newest probe.
	LastTested int64 `json:"last_tested"`
}

func entryFor(a store.Aggregate, median float64) aggregatedEntry {
	return aggregatedEntry{
		Scores:           score.AI(a.SuccessRate(), a.MeanRTTSeconds, median),
		Samples:          a.Probes,
		Excused:          a.Excused,
		SuccessRateLower: score.WilsonLower(a.Successes, a.Probes, 1.96),
		MeanRTT:          a.MeanRTTSeconds,
		MedianRTT:        median,
		LastTested:       a.LastTested.Unix(),
	}
}

func (s *Server) aggregatedStats(c *gin.Context) {
	// Additive: global=1 adds a GLOBAL entry per orchestrator, every region
	// pooled (weighted by samples), beside the regional ones.
	p, global, ok := s.globalParams(c, "global=1 adds a GLOBAL entry pooled over every region: leave region out (or ask region=GLOBAL alone)")
	if !ok {
		return
	}
	out := map[string]map[string]aggregatedEntry{}
	if p.jobType == regions.Transcoding {
		// This instrument tests AI jobs only: no transcoding data, the
		// answer leaderboard-serverless gives an empty database.
		writeJSON(c, http.StatusOK, out)
		return
	}
	if p.pipeline == "" {
		fail(c, http.StatusBadRequest, "job_type=ai needs pipeline and model: scores are per pipeline and model (see /api/pipelines)")
		return
	}
	ctx, cancel := s.queryCtx(c)
	defer cancel()
	f := p.filter()
	// One read for both (store.ScoreInputs): the window's raw edge rows
	// serve the sums and the median alike.
	aggs, medians, err := store.ScoreInputs(ctx, s.store, f)
	if err != nil {
		s.storeFailed(c, "aggregates", err)
		return
	}
	if len(aggs) == 0 {
		writeJSON(c, http.StatusOK, out)
		return
	}
	for _, a := range aggs {
		if out[a.Orchestrator] == nil {
			out[a.Orchestrator] = map[string]aggregatedEntry{}
		}
		out[a.Orchestrator][a.Region] = entryFor(a, medians[store.Key{Pipeline: a.Pipeline, Model: a.Model}])
	}
	if global {
		// Without region the median is already network-wide: the
		// GLOBAL entries share it.
		g := f
		g.Region = regions.Global
		pooledAggs, ok := s.aggregates(ctx, c, g)
		if !ok {
			return
		}
		for _, a := range pooledAggs {
			if out[a.Orchestrator] == nil {
				out[a.Orchestrator] = map[string]aggregatedEntry{}
			}
			out[a.Orchestrator][regions.Global] = entryFor(a, medians[store.Key{Pipeline: a.Pipeline, Model: a.Model}])
		}
	}
	writeJSON(c, http.StatusOK, out)
}

type topScore struct {
	Region       string  `json:"region"`
	Orchestrator string  `json:"orchestrator"`
	Value        float64 `json:"value"`
	Model        string  `json:"model"`
	Pipeline     string  `json:"pipeline"`
}

// topAIScore returns the orchestrator's best (region, pipeline, model) by
// score, each scored against its pipeline/model's network-wide median.
func (s *Server) topAIScore(c *gin.Context) {
	q := c.Request.URL.Query()
	p, err := s.parseParams(only(q, "orchestrator", "since", "until"))
	if err != nil {
		fail(c, http.StatusBadRequest, err.Error())
		return
	}
	ctx, cancel := s.queryCtx(c)
	defer cancel()
	aggs, ok := s.aggregates(ctx, c, store.Filter{Window: store.Window{Since: p.since, Until: p.until}, Orchestrator: p.orchestrator})
	if !ok {
		return
	}
	// Only AI rows exist in probe_results; a row without a pipeline is not one.
	// Live sessions are scored by /api/live_stats' live score: the batch sum
	// over their time to first segment would misrank them.
	var cands []store.Aggregate
	for _, a := range aggs {
		if a.Pipeline != "" && a.Model != "" && a.Region != regions.Global && a.Pipeline != store.LivePipeline {
			cands = append(cands, a)
		}
	}
	if len(cands) == 0 {
		writeJSON(c, http.StatusOK, struct{}{})
		return
	}
	medians, err := s.store.MedianRTTs(ctx, store.Filter{Window: store.Window{Since: p.since, Until: p.until}})
	if err != nil {
		s.storeFailed(c, "median", err)
		return
	}
	type scored struct {
		a store.Aggregate
		s score.Scores
	}
	var best *scored
	for _, a := range cands {
		cur := scored{a, score.AI(a.SuccessRate(), a.MeanRTTSeconds, medians[store.Key{Pipeline: a.Pipeline, Model: a.Model}])}
		if best == nil || better(cur.s, cur.a, best.s, best.a) {
			b := cur
			best = &b
		}
	}
	writeJSON(c, http.StatusOK, topScore{
		Region: best.a.Region, Orchestrator: best.a.Orchestrator, Value: best.s.Score,
		Model: best.a.Model, Pipeline: best.a.Pipeline,
	})
}

// better orders candidates: higher score, then higher success rate, then
// lower RTT, then names, so equal data always gives the same answer.
func better(s1 score.Scores, a1 store.Aggregate, s2 score.Scores, a2 store.Aggregate) bool {
	if s1.Score != s2.Score {
		return s1.Score > s2.Score
	}
	if s1.SuccessRate != s2.SuccessRate {
		return s1.SuccessRate > s2.SuccessRate
	}
	if a1.MeanRTTSeconds != a2.MeanRTTSeconds {
		return a1.MeanRTTSeconds < a2.MeanRTTSeconds
	}
	k1 := a1.Orchestrator + "\x00" + a1.Region + "\x00" + a1.Pipeline + "\x00" + a1.Model
	k2 := a2.Orchestrator + "\x00" + a2.Region + "\x00" + a2.Pipeline + "\x00" + a2.Model
	return k1 < k2
}

// only keeps only the named parameters: top_ai_score takes no region,
// pipeline or model, and must not refuse them as half a pair.
func only(q map[string][]string, keep ...string) map[string][]string {
	out := map[string][]string{}
	for _, k := range keep {
		if v, ok := q[k]; ok {
			out[k] = v
		}
	}
	return out
}

type statError struct {
	ErrorCode string `json:"error_code"`
	Message   string `json:"message,omitempty"`
	Count     int    `json:"count"`
}

// phases are a probe's timings in seconds (additive to the posted shape).
type phases struct {
	Discovery      float64 `json:"discovery"`
	Connect        float64 `json:"connect"`
	TLS            float64 `json:"tls"`
	Upload         float64 `json:"upload"`
	Server         float64 `json:"server"`
	Download       float64 `json:"download"`
	Media          float64 `json:"media"`
	Total          float64 `json:"total"`
	OrchProcessing float64 `json:"orch_processing"`
	TTFT           float64 `json:"ttft"`
	// Queue and Inference split Server when the orchestrator reported
	// them (issue #19); 0 otherwise.
	Queue     float64 `json:"queue"`
	Inference float64 `json:"inference"`
}

// rawStat is the Stats object an AI tester posts to leaderboard-serverless,
// followed by what our testers record beyond it.
type rawStat struct {
	Region        string  `json:"region"`
	Orchestrator  string  `json:"orchestrator"`
	SuccessRate   float64 `json:"success_rate"`
	RoundTripTime float64 `json:"round_trip_time"`
	// Errors and ResponsePayload are a posted row's as posted; a tester's
	// row has its error as one entry and an empty payload.
	Errors          json.RawMessage `json:"errors"`
	Timestamp       int64           `json:"timestamp"`
	Model           string          `json:"model"`
	ModelIsWarm     bool            `json:"model_is_warm"`
	Pipeline        string          `json:"pipeline"`
	InputParameters string          `json:"input_parameters"`
	ResponsePayload json.RawMessage `json:"response_payload"`

	ProbeID     string `json:"probe_id"`
	Outcome     string `json:"outcome"`
	ErrorClass  string `json:"error_class"`
	HTTPStatus  int    `json:"http_status"`
	Source      string `json:"source"`
	TimestampMs int64  `json:"timestamp_ms"`
	Phases      phases `json:"phases"`
	// Live is a live-video-to-video row's measures (issue #16; live.go).
	Live *liveRaw `json:"live,omitempty"`
}

func secs(d time.Duration) float64 { return d.Seconds() }

// emptyString is the JSON of "": the response_payload of rows nobody posted.
var emptyString = json.RawMessage(`""`)

func toRawStat(r results.Result, posted store.Posted) rawStat {
	st := rawStat{
		Region: r.Region, Orchestrator: r.Orchestrator, RoundTripTime: secs(r.Total),
		Errors: json.RawMessage(`[]`), ResponsePayload: emptyString, Timestamp: r.StartedAt.Unix(), Model: r.Model, ModelIsWarm: r.Warm,
		Pipeline: r.Pipeline, InputParameters: r.InputParameters,
		ProbeID: r.ProbeID, Outcome: string(r.Outcome), ErrorClass: r.ErrorClass, HTTPStatus: r.HTTPStatus,
		Source: r.Source, TimestampMs: r.StartedAt.UnixMilli(),
		Phases: phases{
			Discovery: secs(r.Discovery), Connect: secs(r.Connect), TLS: secs(r.TLS), Upload: secs(r.Upload),
			Server: secs(r.Server), Download: secs(r.Download), Media: secs(r.Media), Total: secs(r.Total),
			OrchProcessing: secs(r.OrchProcessing), TTFT: secs(r.TTFT),
			Queue: secs(r.Queue), Inference: secs(r.Inference),
		},
	}
	if r.Outcome == results.Success {
		st.SuccessRate = 1
	} else {
		code := r.ErrorCode
		if code == "" {
			code = strings.ToUpper(r.ErrorClass)
		}
		if code == "" {
			code = "UNKNOWN"
		}
		st.Errors, _ = json.Marshal([]statError{{ErrorCode: code, Message: r.ErrorMessage, Count: 1}})
	}
	if posted.Errors != "" {
		st.Errors = json.RawMessage(posted.Errors)
	}
	if posted.ResponsePayload != "" {
		st.ResponsePayload = json.RawMessage(posted.ResponsePayload)
	}
	return st
}

func (s *Server) rawStats(c *gin.Context) {
	q := c.Request.URL.Query()
	p, err := s.parseParams(q)
	if err != nil {
		fail(c, http.StatusBadRequest, err.Error())
		return
	}
	if p.orchestrator == "" {
		fail(c, http.StatusBadRequest, "orchestrator is a required parameter")
		return
	}
	limit := s.cfg.RawLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || n > s.cfg.MaxRawLimit {
			fail(c, http.StatusBadRequest, "limit="+strconv.Quote(v)+" is invalid: give a whole number from 1 to "+strconv.Itoa(s.cfg.MaxRawLimit))
			return
		}
		limit = n
	}
	includeExcused := false
	if v := q.Get("include_excused"); v != "" {
		if includeExcused, err = strconv.ParseBool(v); err != nil {
			fail(c, http.StatusBadRequest, "include_excused="+strconv.Quote(v)+" is invalid: use true or false")
			return
		}
	}
	out := map[string][]rawStat{}
	if p.jobType == regions.Transcoding {
		writeJSON(c, http.StatusOK, out)
		return
	}
	ctx, cancel := s.queryCtx(c)
	defer cancel()
	rows, err := s.store.Raw(ctx, p.filter(), includeExcused, limit)
	if err != nil {
		s.storeFailed(c, "raw", err)
		return
	}
	var postedIDs []string
	for _, r := range rows {
		if strings.HasPrefix(r.Source, "post_stats") || strings.HasPrefix(r.Source, store.GatewaySourcePrefix) {
			postedIDs = append(postedIDs, r.ProbeID)
		}
	}
	posted, err := s.store.Posted(ctx, postedIDs)
	if err != nil {
		s.storeFailed(c, "raw", err)
		return
	}
	for _, r := range rows {
		out[r.Region] = append(out[r.Region], toRawStat(r, posted[r.ProbeID]))
	}
	if !s.attachLive(ctx, c, out) {
		return
	}
	for _, list := range out {
		// The store sorts newest first; keep it so per region too.
		sort.SliceStable(list, func(i, j int) bool { return list[i].TimestampMs > list[j].TimestampMs })
	}
	writeJSON(c, http.StatusOK, out)
}
