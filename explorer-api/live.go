package explorerapi

// GET /api/live (issue #16): the live-video-to-video table of the web page,
// per orchestrator, ranked by the live score. The numbers and the score are
// leaderboard/api's /api/live_stats (api.ToLiveStat), so both agree.

import (
	"net/http"
	"net/url"
	"sort"
	"strings"

	"github.com/lpgauge/lpgauge/leaderboard/api"
	"github.com/lpgauge/lpgauge/leaderboard/store"
)

// LiveRow is one (orchestrator, region, live model) with its rank in its
// (region, model).
type LiveRow struct {
	Rank int `json:"rank"`
	api.LiveStat
}

type liveAnswer struct {
	Pipeline string    `json:"pipeline"`
	Region   string    `json:"region"`
	Since    int64     `json:"since"`
	Until    int64     `json:"until"`
	Formula  string    `json:"formula"`
	Rows     []LiveRow `json:"rows"`
}

// live answers /api/live?[region=&model=&orchestrator=&since=&until=]:
// without region one row per region (the orchestrator page), region=GLOBAL
// pools them (the leaderboard page).
func (s *server) live(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	shared := url.Values{}
	for _, k := range []string{"since", "until", "region"} {
		if v, ok := q[k]; ok {
			shared[k] = v
		}
	}
	p, err := s.parseParams(shared, "")
	if err != nil {
		fail(w, http.StatusBadRequest, err.Error())
		return
	}
	if v := strings.TrimSpace(q.Get("pipeline")); v != "" && v != store.LivePipeline && v != "live-video-to-video" {
		fail(w, http.StatusBadRequest, "pipeline="+v+": /api/live is the live pipeline only; use /api/leaderboard for batch pipelines")
		return
	}
	orch := strings.ToLower(strings.TrimSpace(q.Get("orchestrator")))
	if orch != "" && !addressRE.MatchString(orch) {
		fail(w, http.StatusBadRequest, "orchestrator="+q.Get("orchestrator")+": want a 0x address of 40 hex digits")
		return
	}
	model := q.Get("model")
	if len(model) > 256 {
		fail(w, http.StatusBadRequest, "model is longer than 256 bytes: give a live pipeline name such as noop")
		return
	}
	ctx, cancel := s.ctx(r)
	defer cancel()
	ls, err := s.store.LiveStats(ctx, store.Filter{Window: p.window, Region: p.region, Model: model, Orchestrator: orch})
	if err != nil {
		s.storeFailed(w, "live stats", err)
		return
	}
	out := liveAnswer{Pipeline: store.LivePipeline, Region: p.region, Since: unix(p.window.Since), Until: unix(p.window.Until),
		Formula: api.LiveFormula, Rows: []LiveRow{}}
	for _, l := range ls {
		out.Rows = append(out.Rows, LiveRow{LiveStat: api.ToLiveStat(l)})
	}
	// Best first; equal scores by success rate, sessions, then address, so
	// equal data always ranks the same way. Ranks count within one
	// (region, model).
	sort.SliceStable(out.Rows, func(i, j int) bool {
		a, b := out.Rows[i], out.Rows[j]
		switch {
		case a.Score != b.Score:
			return a.Score > b.Score
		case a.SuccessRate != b.SuccessRate:
			return a.SuccessRate > b.SuccessRate
		case a.Sessions != b.Sessions:
			return a.Sessions > b.Sessions
		case a.Orchestrator != b.Orchestrator:
			return a.Orchestrator < b.Orchestrator
		case a.Region != b.Region:
			return a.Region < b.Region
		}
		return a.Model < b.Model
	})
	rank := map[[2]string]int{}
	for i := range out.Rows {
		k := [2]string{out.Rows[i].Region, out.Rows[i].Model}
		rank[k]++
		out.Rows[i].Rank = rank[k]
	}
	writeJSON(w, http.StatusOK, out)
}
