package explorerapi

import (
	"net/http"
	"slices"
	"sort"

	"github.com/lpgauge/lpgauge/leaderboard/score"
	"github.com/lpgauge/lpgauge/leaderboard/store"
	"github.com/lpgauge/lpgauge/regions"
)

type regionInfo struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

func regionInfos(codes []string) []regionInfo {
	out := []regionInfo{}
	for _, c := range codes {
		name := c
		if r, ok := regions.Lookup(c); ok {
			name = r.Name
		}
		out = append(out, regionInfo{ID: c, Name: name})
	}
	return out
}

type modelOverview struct {
	ID      string       `json:"id"`
	Regions []regionInfo `json:"regions"`
	// Tested counts orchestrators with scored probes; Passing those with at
	// least one successful probe in the window.
	Tested     int   `json:"orchestrators_tested"`
	Passing    int   `json:"orchestrators_passing"`
	Samples    int64 `json:"samples"`
	LastTested int64 `json:"last_tested"`
}

type pipelineOverview struct {
	ID     string          `json:"id"`
	Models []modelOverview `json:"models"`
}

type poolOverview struct {
	Orchestrators int    `json:"orchestrators"`
	Active        int    `json:"active"`
	Error         string `json:"error,omitempty"`
	// Partial: the first pool walk is still running; the counts are the
	// members walked so far. AsOf: when the walk shown started (unix s).
	Partial bool  `json:"partial,omitempty"`
	AsOf    int64 `json:"as_of,omitempty"`
}

type overview struct {
	Since      int64              `json:"since"`
	Until      int64              `json:"until"`
	Pipelines  []pipelineOverview `json:"pipelines"`
	Regions    []regionInfo       `json:"regions"`
	Tested     int                `json:"orchestrators_tested"`
	Passing    int                `json:"orchestrators_passing"`
	Samples    int64              `json:"samples"`
	LastTested int64              `json:"last_tested"`
	// OnChain is the discovery pool; null when no chain is configured.
	OnChain *poolOverview `json:"on_chain"`
}

func (s *server) overview(w http.ResponseWriter, r *http.Request) {
	p, err := s.parseParams(r.URL.Query(), "")
	if err != nil {
		fail(w, http.StatusBadRequest, err.Error())
		return
	}
	ctx, cancel := s.ctx(r)
	defer cancel()
	f := store.Filter{Window: p.window, Region: p.region}
	pls, err := s.store.Pipelines(ctx, f)
	if err != nil {
		s.storeFailed(w, "pipelines", err)
		return
	}
	f.Region = regions.Global
	if p.region != "" && p.region != regions.Global {
		f.Region = p.region
	}
	aggs, err := s.store.Aggregates(ctx, f)
	if err != nil {
		s.storeFailed(w, "aggregates", err)
		return
	}
	regs, err := s.store.RegionsWithData(ctx, store.Filter{Window: p.window})
	if err != nil {
		s.storeFailed(w, "regions", err)
		return
	}
	out := overview{Since: unix(p.window.Since), Until: unix(p.window.Until), Pipelines: []pipelineOverview{}, Regions: regionInfos(regs)}
	type counts struct {
		tested, passing map[string]bool
		samples         int64
		last            int64
	}
	newCounts := func() *counts { return &counts{tested: map[string]bool{}, passing: map[string]bool{}} }
	all := newCounts()
	per := map[store.Key]*counts{}
	for _, a := range aggs {
		k := store.Key{Pipeline: a.Pipeline, Model: a.Model}
		if per[k] == nil {
			per[k] = newCounts()
		}
		for _, c := range []*counts{all, per[k]} {
			c.tested[a.Orchestrator] = true
			if a.Successes > 0 {
				c.passing[a.Orchestrator] = true
			}
			c.samples += int64(a.Probes)
			c.last = max(c.last, unix(a.LastTested))
		}
	}
	out.Tested, out.Passing, out.Samples, out.LastTested = len(all.tested), len(all.passing), all.samples, all.last
	for _, pl := range pls {
		po := pipelineOverview{ID: pl.ID, Models: []modelOverview{}}
		for _, m := range pl.Models {
			mo := modelOverview{ID: m, Regions: []regionInfo{}}
			if c := per[store.Key{Pipeline: pl.ID, Model: m}]; c != nil {
				mo.Tested, mo.Passing, mo.Samples, mo.LastTested = len(c.tested), len(c.passing), c.samples, c.last
			}
			// Regions with data for this pair (a pipeline's regions may
			// include regions where only another model was probed).
			rs, err := s.store.RegionsWithData(ctx, store.Filter{Window: p.window, Pipeline: pl.ID, Model: m})
			if err != nil {
				s.storeFailed(w, "regions", err)
				return
			}
			mo.Regions = regionInfos(rs)
			po.Models = append(po.Models, mo)
		}
		out.Pipelines = append(out.Pipelines, po)
	}
	if s.cfg.Chain != nil {
		po := &poolOverview{}
		pool, err := s.cfg.Chain.Pool(ctx)
		if err != nil {
			s.cfg.Logger.Warn("chain pool read failed", "err", err)
			po.Error = "the chain does not answer"
		}
		for _, o := range pool {
			po.Orchestrators++
			if o.Active {
				po.Active++
			}
		}
		if sc, ok := s.cfg.Chain.(interface{ Status() ChainStatus }); ok {
			st := sc.Status()
			po.Partial, po.AsOf = st.Partial, unix(st.AsOf)
		}
		out.OnChain = po
	}
	writeJSON(w, http.StatusOK, out)
}

// Row is one leaderboard line, ready to render.
type Row struct {
	Rank         int    `json:"rank"`
	Orchestrator string `json:"orchestrator"`
	// Score, SuccessRate and LatencyScore are leaderboard-serverless's score,
	// success_rate and round_trip_score (0..1).
	Score            float64 `json:"score"`
	SuccessRate      float64 `json:"success_rate"`
	SuccessRateLower float64 `json:"success_rate_lower"`
	LatencyScore     float64 `json:"latency_score"`
	MeanRTT          float64 `json:"mean_rtt"`
	ServerP50        float64 `json:"server_p50"`
	ServerP95        float64 `json:"server_p95"`
	Samples          uint64  `json:"samples"`
	Successes        uint64  `json:"successes"`
	WarmProbes       uint64  `json:"warm_probes"`
	ColdProbes       uint64  `json:"cold_probes"`
	LastTested       int64   `json:"last_tested"`
	// Flags are the codes of the gaming flags raised against the
	// orchestrator in the window (any pipeline for capacity_refusals, this
	// pipeline and model for probe_favouritism); absent when none.
	Flags []string `json:"flags,omitempty"`
}

type leaderboardAnswer struct {
	Pipeline  string       `json:"pipeline"`
	Model     string       `json:"model"`
	Region    string       `json:"region"`
	Since     int64        `json:"since"`
	Until     int64        `json:"until"`
	MedianRTT float64      `json:"median_rtt"`
	Regions   []regionInfo `json:"regions"`
	Rows      []Row        `json:"rows"`
}

// rowKey names one scored scope of one orchestrator.
type rowKey struct{ orch, region, pipeline, model string }

// scoreRows scores aggregates against their (pipeline, model) medians and
// joins server times; rows are ranked per (region, pipeline, model).
func scoreRows(aggs []store.Aggregate, medians map[store.Key]float64, times []store.ServerTime) map[rowKey]Row {
	st := map[rowKey]store.ServerTime{}
	for _, t := range times {
		st[rowKey{t.Orchestrator, t.Region, t.Pipeline, t.Model}] = t
	}
	out := map[rowKey]Row{}
	type scope struct{ region, pipeline, model string }
	ranked := map[scope][]Row{}
	for _, a := range aggs {
		sc := score.AI(a.SuccessRate(), a.MeanRTTSeconds, medians[store.Key{Pipeline: a.Pipeline, Model: a.Model}])
		k := rowKey{a.Orchestrator, a.Region, a.Pipeline, a.Model}
		t := st[k]
		row := Row{
			Orchestrator: a.Orchestrator, Score: sc.Score, SuccessRate: sc.SuccessRate, LatencyScore: sc.RoundTripScore,
			SuccessRateLower: score.WilsonLower(a.Successes, a.Probes, 1.96), MeanRTT: a.MeanRTTSeconds,
			ServerP50: t.P50, ServerP95: t.P95, Samples: a.Probes, Successes: a.Successes,
			WarmProbes: t.WarmProbes, ColdProbes: t.ColdProbes, LastTested: unix(a.LastTested),
		}
		s := scope{a.Region, a.Pipeline, a.Model}
		ranked[s] = append(ranked[s], row)
	}
	for s, rows := range ranked {
		sortRows(rows)
		for i := range rows {
			rows[i].Rank = i + 1
			out[rowKey{rows[i].Orchestrator, s.region, s.pipeline, s.model}] = rows[i]
		}
	}
	return out
}

// sortRows orders by score, then success rate, then samples, then address,
// so equal data always ranks the same way.
func sortRows(rows []Row) {
	sort.Slice(rows, func(i, j int) bool {
		a, b := rows[i], rows[j]
		if a.Score != b.Score {
			return a.Score > b.Score
		}
		if a.SuccessRate != b.SuccessRate {
			return a.SuccessRate > b.SuccessRate
		}
		if a.Samples != b.Samples {
			return a.Samples > b.Samples
		}
		return a.Orchestrator < b.Orchestrator
	})
}

func (s *server) leaderboard(w http.ResponseWriter, r *http.Request) {
	p, err := s.parseParams(r.URL.Query(), regions.Global)
	if err != nil {
		fail(w, http.StatusBadRequest, err.Error())
		return
	}
	if p.pipeline == "" {
		fail(w, http.StatusBadRequest, "pipeline and model required: scores are per pipeline and model (see /api/overview)")
		return
	}
	ctx, cancel := s.ctx(r)
	defer cancel()
	f := store.Filter{Window: p.window, Pipeline: p.pipeline, Model: p.model, Region: p.region}
	// One read for both (store.ScoreInputs): the window's raw edge rows
	// serve the sums and the median alike.
	aggs, medians, err := store.ScoreInputs(ctx, s.store, f)
	if err != nil {
		s.storeFailed(w, "aggregates", err)
		return
	}
	out := leaderboardAnswer{Pipeline: p.pipeline, Model: p.model, Region: p.region, Since: unix(p.window.Since), Until: unix(p.window.Until), Rows: []Row{}}
	regs, err := s.store.RegionsWithData(ctx, store.Filter{Window: p.window, Pipeline: p.pipeline, Model: p.model})
	if err != nil {
		s.storeFailed(w, "regions", err)
		return
	}
	out.Regions = regionInfos(regs)
	if len(aggs) > 0 {
		times, err := s.store.ServerTimes(ctx, f)
		if err != nil {
			s.storeFailed(w, "server times", err)
			return
		}
		out.MedianRTT = medians[store.Key{Pipeline: p.pipeline, Model: p.model}]
		// Flags beside the orchestrator: favouritism of this pipeline and
		// model, capacity refusals network-wide.
		flags, err := s.store.Flags(ctx, store.Filter{Window: p.window, Pipeline: p.pipeline, Model: p.model, Region: p.region})
		if err != nil {
			s.storeFailed(w, "flags", err)
			return
		}
		byOrch := map[string][]string{}
		for _, f := range flags {
			if !slices.Contains(byOrch[f.Orchestrator], f.Code) {
				byOrch[f.Orchestrator] = append(byOrch[f.Orchestrator], f.Code)
			}
		}
		for _, row := range scoreRows(aggs, medians, times) {
			row.Flags = byOrch[row.Orchestrator]
			out.Rows = append(out.Rows, row)
		}
		sortRows(out.Rows)
	}
	writeJSON(w, http.StatusOK, out)
}
