package explorerapi

import (
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"github.com/lpgauge/lpgauge/leaderboard/score"
	"github.com/lpgauge/lpgauge/leaderboard/store"
	"github.com/lpgauge/lpgauge/regions"
)

// MaxErrorGroups bounds the error classes a profile lists.
const MaxErrorGroups = 50

type scoreEntry struct {
	Pipeline string `json:"pipeline"`
	Model    string `json:"model"`
	Region   string `json:"region"`
	Row
	// Of is how many orchestrators were ranked in this scope.
	Of int `json:"of"`
}

type phaseEntry struct {
	Pipeline string `json:"pipeline"`
	Model    string `json:"model"`
	Region   string `json:"region"`
	Warm     bool   `json:"warm"`
	Samples  uint64 `json:"samples"`
	// p50 seconds of each phase of successful probes.
	Discovery float64 `json:"discovery_p50"`
	Upload    float64 `json:"upload_p50"`
	Server    float64 `json:"server_p50"`
	Download  float64 `json:"download_p50"`
	Total     float64 `json:"total_p50"`
	// Queue and Inference split Server where the orchestrator reports
	// them (issue #19); 0 otherwise.
	Queue     float64 `json:"queue_p50"`
	Inference float64 `json:"inference_p50"`
}

type point struct {
	T           int64   `json:"t"`
	Samples     uint64  `json:"samples"`
	SuccessRate float64 `json:"success_rate"`
	Score       float64 `json:"score"`
	MeanRTT     float64 `json:"mean_rtt"`
	ServerP50   float64 `json:"server_p50"`
	ServerP95   float64 `json:"server_p95"`
}

type series struct {
	Pipeline string  `json:"pipeline"`
	Model    string  `json:"model"`
	Region   string  `json:"region"`
	Points   []point `json:"points"`
}

type history struct {
	Bucket string   `json:"bucket"`
	Since  int64    `json:"since"`
	Until  int64    `json:"until"`
	Series []series `json:"series"`
}

type errorEntry struct {
	Outcome     string `json:"outcome"`
	Region      string `json:"region"`
	Pipeline    string `json:"pipeline"`
	Model       string `json:"model"`
	ErrorClass  string `json:"error_class"`
	ErrorCode   string `json:"error_code"`
	Count       uint64 `json:"count"`
	LastMessage string `json:"last_message"`
	LastSeen    int64  `json:"last_seen"`
}

type chainAnswer struct {
	*ChainFacts
	Error string `json:"error,omitempty"`
}

type profileAnswer struct {
	Address string `json:"address"`
	Since   int64  `json:"since"`
	Until   int64  `json:"until"`
	// LastTested is the newest probe ever (any outcome), so an empty
	// window still says when the testers last tried.
	LastTested int64 `json:"last_tested"`
	// ServiceURISeen is the URI the testers last probed.
	ServiceURISeen string `json:"service_uri_seen"`
	// FailureStreak is the failures since the newest success in the window.
	FailureStreak uint64       `json:"failure_streak"`
	OnChain       *chainAnswer `json:"on_chain"`
	Scores        []scoreEntry `json:"scores"`
	Phases        []phaseEntry `json:"phases"`
	History       history      `json:"history"`
	Errors        []errorEntry `json:"errors"`
	// Flags are the gaming flags raised against the orchestrator in the
	// window (the leaderboard's /api/flags); [] when none.
	Flags []flagEntry `json:"flags"`
}

type flagEntry struct {
	Code     string             `json:"code"`
	Region   string             `json:"region,omitempty"`
	Pipeline string             `json:"pipeline,omitempty"`
	Model    string             `json:"model,omitempty"`
	Detail   string             `json:"detail"`
	Evidence map[string]float64 `json:"evidence"`
}

// historySpan is how far back a history series reaches by default.
func historySpan(b store.Bucket) time.Duration {
	if b == store.Day {
		return 30 * 24 * time.Hour
	}
	return 48 * time.Hour
}

func (s *server) profile(w http.ResponseWriter, r *http.Request) {
	raw := r.PathValue("address")
	if !addressRE.MatchString(raw) {
		fail(w, http.StatusBadRequest, "orchestrator address "+quoteShort(raw)+" is not an Ethereum address: want 0x followed by 40 hex digits")
		return
	}
	addr := strings.ToLower(raw)
	q := r.URL.Query()
	p, err := s.parseParams(q, "")
	if err != nil {
		fail(w, http.StatusBadRequest, err.Error())
		return
	}
	bucket := store.Bucket(q.Get("bucket"))
	switch bucket {
	case "":
		bucket = store.Hour
	case store.Hour, store.Day:
	default:
		fail(w, http.StatusBadRequest, "bucket="+quoteShort(string(bucket))+": want hour or day")
		return
	}
	hw := store.Window{Since: p.window.Until.Add(-historySpan(bucket)), Until: p.window.Until}
	if v := q.Get("history_since"); v != "" {
		t, err := parseUnix("history_since", v)
		if err != nil {
			fail(w, http.StatusBadRequest, err.Error())
			return
		}
		hw.Since = t
	}
	ctx, cancel := s.ctx(r)
	defer cancel()

	last, err := s.store.LastProbe(ctx, addr)
	if err != nil {
		s.storeFailed(w, "last probe", err)
		return
	}
	out := profileAnswer{Address: addr, Since: unix(p.window.Since), Until: unix(p.window.Until), LastTested: unix(last),
		Scores: []scoreEntry{}, Phases: []phaseEntry{}, Errors: []errorEntry{}, Flags: []flagEntry{},
		History: history{Bucket: string(bucket), Since: unix(hw.Since), Until: unix(hw.Until), Series: []series{}}}
	registered := false
	if s.cfg.Chain != nil {
		facts, err := s.cfg.Chain.Facts(ctx, common.HexToAddress(addr))
		if err != nil {
			// The profile still serves what the testers measured.
			s.cfg.Logger.Warn("chain facts read failed", "orchestrator", addr, "err", err)
			out.OnChain = &chainAnswer{Error: "the chain does not answer; on-chain facts unavailable"}
		} else {
			out.OnChain = &chainAnswer{ChainFacts: &facts}
			registered = facts.Registered
		}
	}
	if last.IsZero() && !registered {
		fail(w, http.StatusNotFound, "orchestrator "+addr+" is unknown: never probed by a tester and not registered on chain")
		return
	}

	own := store.Filter{Window: p.window, Orchestrator: addr, Pipeline: p.pipeline, Model: p.model}
	regs, err := s.store.RegionsWithData(ctx, own)
	if err != nil {
		s.storeFailed(w, "regions", err)
		return
	}
	// Scores per region and pooled: every orchestrator of the scope is
	// scored so the rank says where this one stands.
	for _, reg := range append(regs, regions.Global) {
		if len(regs) == 0 {
			break
		}
		f := store.Filter{Window: p.window, Region: reg, Pipeline: p.pipeline, Model: p.model}
		aggs, medians, err := store.ScoreInputs(ctx, s.store, f)
		if err != nil {
			s.storeFailed(w, "aggregates", err)
			return
		}
		f.Orchestrator = addr
		times, err := s.store.ServerTimes(ctx, f)
		if err != nil {
			s.storeFailed(w, "server times", err)
			return
		}
		rows := scoreRows(aggs, medians, times)
		of := map[store.Key]int{}
		for k := range rows {
			of[store.Key{Pipeline: k.pipeline, Model: k.model}]++
		}
		for k, row := range rows {
			if k.orch == addr {
				out.Scores = append(out.Scores, scoreEntry{Pipeline: k.pipeline, Model: k.model, Region: k.region, Row: row, Of: of[store.Key{Pipeline: k.pipeline, Model: k.model}]})
			}
		}
	}
	sort.Slice(out.Scores, func(i, j int) bool {
		a, b := out.Scores[i], out.Scores[j]
		if a.Pipeline != b.Pipeline || a.Model != b.Model {
			return a.Pipeline+"\x00"+a.Model < b.Pipeline+"\x00"+b.Model
		}
		return regionLess(a.Region, b.Region)
	})

	for _, reg := range []string{"", regions.Global} {
		lat, err := s.store.Latencies(ctx, store.Filter{Window: p.window, Orchestrator: addr, Region: reg, Pipeline: p.pipeline, Model: p.model})
		if err != nil {
			s.storeFailed(w, "latencies", err)
			return
		}
		for _, l := range lat {
			for _, sp := range []struct {
				warm bool
				s    store.Split
			}{{true, l.Warm}, {false, l.Cold}} {
				if sp.s.Successes == 0 {
					continue
				}
				ph := sp.s.Phases
				out.Phases = append(out.Phases, phaseEntry{Pipeline: l.Pipeline, Model: l.Model, Region: l.Region, Warm: sp.warm, Samples: ph.Total.Samples,
					Discovery: ph.Discovery.P50, Upload: ph.Upload.P50, Server: ph.Server.P50, Download: ph.Download.P50, Total: ph.Total.P50,
					Queue: ph.Queue.P50, Inference: ph.Inference.P50})
			}
		}
	}

	if err := s.histories(r, &out, addr, hw, bucket, p); err != nil {
		s.storeFailed(w, "history", err)
		return
	}

	streaks, err := s.store.FailureStreaks(ctx, own)
	if err != nil {
		s.storeFailed(w, "failure streaks", err)
		return
	}
	out.FailureStreak = streaks[addr]
	uris, err := s.store.ServiceURIs(ctx, store.Filter{Window: store.Window{Until: p.window.Until}, Orchestrator: addr})
	if err != nil {
		s.storeFailed(w, "service uris", err)
		return
	}
	out.ServiceURISeen = uris[addr]
	groups, err := s.store.Errors(ctx, own)
	if err != nil {
		s.storeFailed(w, "errors", err)
		return
	}
	for i, g := range groups {
		if i == MaxErrorGroups {
			break
		}
		out.Errors = append(out.Errors, errorEntry{Outcome: string(g.Outcome), Region: g.Region, Pipeline: g.Pipeline, Model: g.Model,
			ErrorClass: g.ErrorClass, ErrorCode: g.ErrorCode, Count: g.Count, LastMessage: g.LastMessage, LastSeen: unix(g.LastSeen)})
	}
	flags, err := s.store.Flags(ctx, own)
	if err != nil {
		s.storeFailed(w, "flags", err)
		return
	}
	for _, f := range flags {
		out.Flags = append(out.Flags, flagEntry{Code: f.Code, Region: f.Region, Pipeline: f.Pipeline, Model: f.Model, Detail: f.Detail, Evidence: f.Evidence})
	}
	writeJSON(w, http.StatusOK, out)
}

// histories fills one series per (pipeline, model, region) plus a GLOBAL
// series per (pipeline, model); each bucket is scored against that bucket's
// median in the same scope, as the leaderboard would have scored it then.
func (s *server) histories(r *http.Request, out *profileAnswer, addr string, hw store.Window, b store.Bucket, p params) error {
	ctx, cancel := s.ctx(r)
	defer cancel()
	keys, err := s.store.Aggregates(ctx, store.Filter{Window: hw, Orchestrator: addr, Region: regions.Global, Pipeline: p.pipeline, Model: p.model})
	if err != nil {
		return err
	}
	for _, k := range keys {
		for _, reg := range []string{"", regions.Global} {
			f := store.Filter{Window: hw, Orchestrator: addr, Pipeline: k.Pipeline, Model: k.Model, Region: reg}
			pts, err := s.store.History(ctx, f, b)
			if err != nil {
				return err
			}
			byRegion := map[string][]store.HistoryPoint{}
			var order []string
			for _, pt := range pts {
				if byRegion[pt.Region] == nil {
					order = append(order, pt.Region)
				}
				byRegion[pt.Region] = append(byRegion[pt.Region], pt)
			}
			for _, region := range order {
				mf := store.Filter{Window: hw, Pipeline: k.Pipeline, Model: k.Model, Region: region}
				medians, err := s.store.BucketMedians(ctx, mf, b)
				if err != nil {
					return err
				}
				ser := series{Pipeline: k.Pipeline, Model: k.Model, Region: region, Points: []point{}}
				for _, pt := range byRegion[region] {
					sr := 0.0
					if pt.Probes > 0 {
						sr = float64(pt.Successes) / float64(pt.Probes)
					}
					sc := score.AI(sr, pt.MeanRTTSeconds, medians[pt.Start.UTC()])
					ser.Points = append(ser.Points, point{T: pt.Start.Unix(), Samples: pt.Probes, SuccessRate: sc.SuccessRate, Score: sc.Score,
						MeanRTT: pt.MeanRTTSeconds, ServerP50: pt.ServerP50, ServerP95: pt.ServerP95})
				}
				out.History.Series = append(out.History.Series, ser)
			}
		}
	}
	return nil
}

// regionLess puts GLOBAL first, then codes alphabetically.
func regionLess(a, b string) bool {
	if (a == regions.Global) != (b == regions.Global) {
		return a == regions.Global
	}
	return a < b
}

// quoteShort quotes s for an error message, cut to 64 bytes.
func quoteShort(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return "\"" + strings.ToValidUTF8(s, "?") + "\""
}
