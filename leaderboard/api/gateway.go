package api

import (
	"context"
	"net/http"
	"regexp"
	"sort"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/lpgauge/lpgauge/leaderboard/score"
	"github.com/lpgauge/lpgauge/leaderboard/store"
	"github.com/lpgauge/lpgauge/regions"
)

// Outputs for stock go-livepeer gateways: -orchPerfStatsUrl (numeric map),
// -orchBlocklist (comma list) and -orchWebhookUrl (ranked service URIs).

// ethAddress is what go-livepeer's map[ethcommon.Address] key decoding
// accepts; one bad key would make the gateway drop the whole document.
var ethAddress = regexp.MustCompile(`^0x[0-9a-fA-F]{40}$`)

// standing is an orchestrator's score in one region over every
// (pipeline, model) in scope, each scored against its own median and
// weighted by its scored probes.
type standing struct {
	Score, SuccessRate, RoundTripScore float64
	Samples                            uint64
}

// standings scores every aggregate matching f and combines them per
// (orchestrator, region). With a pipeline and model there is one aggregate
// per key, so the numbers equal aggregated_stats'.
func (s *Server) standings(ctx context.Context, f store.Filter) (map[string]map[string]standing, error) {
	aggs, medians, err := store.ScoreInputs(ctx, s.store, f)
	if err != nil || len(aggs) == 0 {
		return nil, err
	}
	out := map[string]map[string]standing{}
	for _, a := range aggs {
		if f.Pipeline == "" && a.Pipeline == store.LivePipeline {
			// Live sessions have their own score (/api/live_stats); the
			// batch sum over time to first segment would misrank them,
			// and go-livepeer selects live orchestrators without perf
			// scores. A request naming the live pipeline still gets them.
			continue
		}
		sc := score.AI(a.SuccessRate(), a.MeanRTTSeconds, medians[store.Key{Pipeline: a.Pipeline, Model: a.Model}])
		if out[a.Orchestrator] == nil {
			out[a.Orchestrator] = map[string]standing{}
		}
		st := out[a.Orchestrator][a.Region]
		w := float64(a.Probes)
		n := float64(st.Samples)
		st.Score = (st.Score*n + sc.Score*w) / (n + w)
		st.SuccessRate = (st.SuccessRate*n + sc.SuccessRate*w) / (n + w)
		st.RoundTripScore = (st.RoundTripScore*n + sc.RoundTripScore*w) / (n + w)
		st.Samples += a.Probes
		out[a.Orchestrator][a.Region] = st
	}
	return out, nil
}

// perfScores answers /api/perf_scores: map[address]map[REGION]map[string]float64,
// every value numeric, every key a valid address, as go-livepeer's
// -orchPerfStatsUrl parser demands.
func (s *Server) perfScores(c *gin.Context) {
	p, global, ok := s.globalParams(c, "global=1 adds a GLOBAL entry pooled over every region: leave region out")
	if !ok {
		return
	}
	ctx, cancel := s.queryCtx(c)
	defer cancel()
	f := p.filter()
	scopes := []store.Filter{f}
	if global {
		g := f
		g.Region = regions.Global
		scopes = append(scopes, g)
	}
	out := map[string]map[string]map[string]float64{}
	for _, sf := range scopes {
		st, err := s.standings(ctx, sf)
		if err != nil {
			s.storeFailed(c, "perf scores", err)
			return
		}
		for orch, byRegion := range st {
			if !ethAddress.MatchString(orch) {
				continue
			}
			if out[orch] == nil {
				out[orch] = map[string]map[string]float64{}
			}
			for region, v := range byRegion {
				out[orch][region] = map[string]float64{
					"score": v.Score, "success_rate": v.SuccessRate, "round_trip_score": v.RoundTripScore, "samples": float64(v.Samples),
				}
			}
		}
	}
	writeJSON(c, http.StatusOK, out)
}

// pooled is f scoped to one entry per orchestrator: the given region, or
// every region pooled.
func pooled(f store.Filter) store.Filter {
	if f.Region == "" {
		f.Region = regions.Global
	}
	return f
}

type blockEntry struct {
	Address             string   `json:"address"`
	Reasons             []string `json:"reasons"`
	ConsecutiveFailures uint64   `json:"consecutive_failures"`
	Score               float64  `json:"score"`
	Samples             uint64   `json:"samples"`
}

type blocklistOut struct {
	Addresses []string     `json:"addresses"`
	Entries   []blockEntry `json:"entries"`
}

// blocklist answers /api/blocklist: orchestrators whose newest probes are
// `failures` consecutive failures, or (with min_score) whose score over at
// least min_samples probes is below the floor. Text: a comma list for
// -orchBlocklist; format=json: the same with the reasons.
func (s *Server) blocklist(c *gin.Context) {
	q := c.Request.URL.Query()
	p, err := s.parseParams(q)
	if err != nil {
		fail(c, http.StatusBadRequest, err.Error())
		return
	}
	failures, err1 := intParam(q, "failures", 3, 0, 1000)
	minScore, err2 := floatParam(q, "min_score", 0, 0, 1)
	minSamples, err3 := intParam(q, "min_samples", 3, 1, 1000000)
	format, err4 := enumParam(q, "format", "text", "text", "json")
	if err := firstErr(err1, err2, err3, err4); err != nil {
		fail(c, http.StatusBadRequest, err.Error())
		return
	}
	s.writeBlocklist(c, p, failures, minScore, uint64(minSamples), format)
}

func (s *Server) writeBlocklist(c *gin.Context, p params, failures int, minScore float64, minSamples uint64, format string) {
	ctx, cancel := s.queryCtx(c)
	defer cancel()
	f := pooled(p.filter())
	streaks, err := s.store.FailureStreaks(ctx, f)
	if err != nil {
		s.storeFailed(c, "failure streaks", err)
		return
	}
	st, err := s.standings(ctx, f)
	if err != nil {
		s.storeFailed(c, "blocklist scores", err)
		return
	}
	out := blocklistOut{Addresses: []string{}, Entries: []blockEntry{}}
	seen := map[string]bool{}
	for o := range streaks {
		seen[o] = true
	}
	for o := range st {
		seen[o] = true
	}
	for _, o := range sortedKeys(seen) {
		if !ethAddress.MatchString(o) {
			continue
		}
		var v standing
		for _, x := range st[o] {
			v = x // one entry: pooled or the given region
		}
		e := blockEntry{Address: o, Reasons: []string{}, ConsecutiveFailures: streaks[o], Score: v.Score, Samples: v.Samples}
		if failures > 0 && streaks[o] >= uint64(failures) {
			e.Reasons = append(e.Reasons, "consecutive_failures")
		}
		if minScore > 0 && v.Samples >= minSamples && v.Score < minScore {
			e.Reasons = append(e.Reasons, "low_score")
		}
		if len(e.Reasons) > 0 {
			out.Addresses = append(out.Addresses, o)
			out.Entries = append(out.Entries, e)
		}
	}
	if format == "json" {
		writeJSON(c, http.StatusOK, out)
		return
	}
	// c.Data keeps an already-set Content-Type (standardHeaders' JSON).
	c.Header("Content-Type", "text/plain; charset=utf-8")
	c.Data(http.StatusOK, "text/plain; charset=utf-8", []byte(strings.Join(out.Addresses, ",")))
}

type webhookEntry struct {
	Address string `json:"address"`
}

// orchestrators answers /api/orchestrators: [{"address":"<service URI>"}],
// best score first, the shape go-livepeer's -orchWebhookUrl reads.
func (s *Server) orchestrators(c *gin.Context) {
	q := c.Request.URL.Query()
	p, err := s.parseParams(q)
	if err != nil {
		fail(c, http.StatusBadRequest, err.Error())
		return
	}
	minScore, err := floatParam(q, "min_score", 0, 0, 1)
	if err != nil {
		fail(c, http.StatusBadRequest, err.Error())
		return
	}
	limit, err := intParam(q, "limit", 100, 1, 1000)
	if err != nil {
		fail(c, http.StatusBadRequest, err.Error())
		return
	}
	ctx, cancel := s.queryCtx(c)
	defer cancel()
	f := pooled(p.filter())
	st, err := s.standings(ctx, f)
	if err != nil {
		s.storeFailed(c, "orchestrator scores", err)
		return
	}
	uf := f
	uf.Pipeline, uf.Model = "", "" // the newest URI, whatever the probe tested
	uris, err := s.store.ServiceURIs(ctx, uf)
	if err != nil {
		s.storeFailed(c, "service uris", err)
		return
	}
	type ranked struct {
		orch, uri string
		v         standing
	}
	var rs []ranked
	for o, byRegion := range st {
		for _, v := range byRegion {
			if uri := uris[o]; uri != "" && v.Score >= minScore {
				rs = append(rs, ranked{o, uri, v})
			}
		}
	}
	sort.Slice(rs, func(i, j int) bool {
		a, b := rs[i], rs[j]
		if a.v.Score != b.v.Score {
			return a.v.Score > b.v.Score
		}
		if a.v.Samples != b.v.Samples {
			return a.v.Samples > b.v.Samples
		}
		return a.orch < b.orch
	})
	out := []webhookEntry{}
	dup := map[string]bool{}
	for _, r := range rs {
		if len(out) == limit {
			break
		}
		if !dup[r.uri] {
			dup[r.uri] = true
			out = append(out, webhookEntry{Address: r.uri})
		}
	}
	writeJSON(c, http.StatusOK, out)
}
