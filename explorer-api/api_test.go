package explorerapi_test

import (
	"context"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/ethclient"

	"github.com/lpgauge/lpgauge/contracts"
	explorerapi "github.com/lpgauge/lpgauge/explorer-api"
	"github.com/lpgauge/lpgauge/explorer-api/seed"
	"github.com/lpgauge/lpgauge/internal/chtest"
	"github.com/lpgauge/lpgauge/leaderboard/api"
	"github.com/lpgauge/lpgauge/leaderboard/score"
	"github.com/lpgauge/lpgauge/leaderboard/store"
)

func TestMain(m *testing.M) { chtest.Main(m) }

type fixture struct {
	net   seed.Network
	st    *store.ClickHouse
	srv   *httptest.Server
	chain *seed.Chain
}

// newFixture seeds probes and a chain where A (probed) and E (never probed)
// are registered, and serves explorer-api over them.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	n := seed.Probes(t)
	st, err := store.NewClickHouse(n.DB.Conn, n.DB.Name, 0)
	if err != nil {
		t.Fatal(err)
	}
	c := seed.NewChain(t)
	c.Orchestrator(t, seed.A, 1500, 25, 50, "https://a.example:8935")
	c.Orchestrator(t, seed.E, 200, 10, 80, "https://e.example:8935")
	oc := &explorerapi.OnChain{L: c.L}
	rctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := oc.Refresh(rctx); err != nil { // the walk the background would make
		t.Fatal(err)
	}
	h := explorerapi.New(explorerapi.Config{Chain: oc, Now: func() time.Time { return n.Now }}, st)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &fixture{net: n, st: st, srv: srv, chain: c}
}

// get fetches path and decodes the JSON answer into v, checking the status
// and the headers every answer carries.
func get(t *testing.T, base, path string, status int, v any) {
	t.Helper()
	resp, err := http.Get(base + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != status {
		t.Fatalf("GET %s = %d %s, want %d", path, resp.StatusCode, body, status)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("GET %s: Content-Type %q, want application/json", path, ct)
	}
	if resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("GET %s: no CORS *", path)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: %v in %s", path, err, body)
	}
}

type row struct {
	Rank         int     `json:"rank"`
	Orchestrator string  `json:"orchestrator"`
	Score        float64 `json:"score"`
	SuccessRate  float64 `json:"success_rate"`
	LatencyScore float64 `json:"latency_score"`
	ServerP50    float64 `json:"server_p50"`
	ServerP95    float64 `json:"server_p95"`
	Samples      uint64  `json:"samples"`
	WarmProbes   uint64  `json:"warm_probes"`
	ColdProbes   uint64  `json:"cold_probes"`
}

type board struct {
	Region  string `json:"region"`
	Regions []struct {
		ID string `json:"id"`
	} `json:"regions"`
	Rows []row `json:"rows"`
}

func q(kv ...string) string {
	v := url.Values{}
	for i := 0; i < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	return v.Encode()
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

// The leaderboard rows are ranked by score and carry the very numbers the
// leaderboard API gives the Explorer for the same window and region.
func TestLeaderboardRowsMatchLeaderboardAPI(t *testing.T) {
	f := newFixture(t)
	lb := httptest.NewServer(api.New(api.Config{}, f.st))
	t.Cleanup(lb.Close)
	since, until := f.net.Now.Add(-24*time.Hour).Unix(), f.net.Now.Unix()
	window := []string{"since", itoa(since), "until", itoa(until)}
	for _, region := range []string{"GLOBAL", "FRA", "LAX"} {
		t.Run(region, func(t *testing.T) {
			var b board
			get(t, f.srv.URL, "/api/leaderboard?"+q(append(window, "pipeline", seed.T2I, "model", seed.M1, "region", region)...), 200, &b)
			want := map[string][]string{"GLOBAL": {seed.A, seed.B, seed.C}, "FRA": {seed.A, seed.B, seed.C}, "LAX": {seed.A}}[region]
			if len(b.Rows) != len(want) {
				t.Fatalf("%d rows %+v, want %d", len(b.Rows), b.Rows, len(want))
			}
			var ref map[string]map[string]struct {
				SuccessRate    float64 `json:"success_rate"`
				RoundTripScore float64 `json:"round_trip_score"`
				Score          float64 `json:"score"`
				Samples        uint64  `json:"samples"`
			}
			get(t, lb.URL, "/api/aggregated_stats?"+q(append(window, "pipeline", seed.T2I, "model", seed.M1, "region", region)...), 200, &ref)
			for i, r := range b.Rows {
				if r.Orchestrator != want[i] || r.Rank != i+1 {
					t.Errorf("row %d = %s rank %d, want %s rank %d", i, r.Orchestrator, r.Rank, want[i], i+1)
				}
				e := ref[r.Orchestrator][region]
				if !near(r.Score, e.Score) || !near(r.SuccessRate, e.SuccessRate) || !near(r.LatencyScore, e.RoundTripScore) || r.Samples != e.Samples {
					t.Errorf("%s: row %+v differs from the leaderboard API's %+v", r.Orchestrator, r, e)
				}
			}
		})
	}
	// GLOBAL pools the regions weighted by samples: A has 4 probes in each of
	// FRA and LAX, so 8 samples; its first probe in each region was cold.
	var b board
	get(t, f.srv.URL, "/api/leaderboard?"+q("pipeline", seed.T2I, "model", seed.M1), 200, &b)
	a := b.Rows[0]
	if b.Region != "GLOBAL" || a.Samples != 8 || a.WarmProbes != 6 || a.ColdProbes != 2 {
		t.Errorf("A in GLOBAL = %+v (region %s), want 8 samples, 6 warm, 2 cold", a, b.Region)
	}
	// Server times 0.5, 0.6, 0.7, 0.8 s in both regions: p50 0.65, p95 0.8.
	if math.Abs(a.ServerP50-0.65) > 1e-6 || math.Abs(a.ServerP95-0.8) > 1e-6 {
		t.Errorf("A server p50/p95 = %v/%v, want 0.65/0.8", a.ServerP50, a.ServerP95)
	}
	// A success rate 1 and RTT at the median: 0.65 + 0.35·0.8.
	if !near(a.Score, 0.93) || !near(a.SuccessRate, 1) {
		t.Errorf("A score %v success %v, want 0.93 and 1", a.Score, a.SuccessRate)
	}
	if len(b.Regions) != 2 || b.Regions[0].ID != "FRA" || b.Regions[1].ID != "LAX" {
		t.Errorf("regions with data = %+v, want FRA and LAX only", b.Regions)
	}
	// Another pipeline/model gives other rows.
	get(t, f.srv.URL, "/api/leaderboard?"+q("pipeline", seed.I2V, "model", seed.M2), 200, &b)
	if len(b.Rows) != 2 || b.Rows[0].Orchestrator != seed.C || b.Rows[1].Orchestrator != seed.D || b.Rows[1].Score != 0 {
		t.Errorf("I2V rows = %+v, want C then D (always failing, score 0)", b.Rows)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestOverview(t *testing.T) {
	f := newFixture(t)
	var o struct {
		Pipelines []struct {
			ID     string `json:"id"`
			Models []struct {
				ID      string `json:"id"`
				Tested  int    `json:"orchestrators_tested"`
				Passing int    `json:"orchestrators_passing"`
				Regions []struct {
					ID, Name string
				} `json:"regions"`
			} `json:"models"`
		} `json:"pipelines"`
		Tested     int   `json:"orchestrators_tested"`
		Passing    int   `json:"orchestrators_passing"`
		LastTested int64 `json:"last_tested"`
		Regions    []struct {
			ID, Name string
		} `json:"regions"`
		OnChain *struct {
			Orchestrators, Active int
		} `json:"on_chain"`
	}
	get(t, f.srv.URL, "/api/overview", 200, &o)
	if o.Tested != 4 || o.Passing != 3 {
		t.Errorf("tested %d passing %d, want 4 and 3 (D never succeeds)", o.Tested, o.Passing)
	}
	if want := f.net.Now.Add(-time.Hour + 6*time.Minute).Unix(); o.LastTested != want {
		t.Errorf("last tested %d, want %d", o.LastTested, want)
	}
	if len(o.Pipelines) != 2 || o.Pipelines[0].ID != seed.I2V || o.Pipelines[1].ID != seed.T2I {
		t.Fatalf("pipelines = %+v, want I2V and T2I", o.Pipelines)
	}
	t2i := o.Pipelines[1].Models[0]
	if t2i.ID != seed.M1 || t2i.Tested != 3 || t2i.Passing != 3 || len(t2i.Regions) != 2 || t2i.Regions[0].Name != "Frankfurt" {
		t.Errorf("T2I model = %+v, want 3 tested, 3 passing, FRA (Frankfurt) and LAX", t2i)
	}
	if len(o.Regions) != 2 {
		t.Errorf("regions = %+v, want FRA and LAX", o.Regions)
	}
	if o.OnChain == nil || o.OnChain.Orchestrators != 2 || o.OnChain.Active != 2 {
		t.Errorf("on chain = %+v, want 2 registered and active", o.OnChain)
	}
}

type profile struct {
	Address       string `json:"address"`
	LastTested    int64  `json:"last_tested"`
	FailureStreak uint64 `json:"failure_streak"`
	OnChain       *struct {
		Registered       bool    `json:"registered"`
		Active           bool    `json:"active"`
		ServiceURI       string  `json:"service_uri"`
		TotalStakeWei    string  `json:"total_stake_wei"`
		TotalStakeLPT    float64 `json:"total_stake_lpt"`
		RewardCutPercent float64 `json:"reward_cut_percent"`
		FeeSharePercent  float64 `json:"fee_share_percent"`
		Stale            bool    `json:"stale"`
		Error            string  `json:"error"`
	} `json:"on_chain"`
	Scores []struct {
		Pipeline, Model, Region string
		Rank                    int     `json:"rank"`
		Of                      int     `json:"of"`
		Score                   float64 `json:"score"`
	} `json:"scores"`
	Phases []struct {
		Region    string  `json:"region"`
		Warm      bool    `json:"warm"`
		ServerP50 float64 `json:"server_p50"`
	} `json:"phases"`
	History struct {
		Bucket string `json:"bucket"`
		Series []struct {
			Pipeline, Model, Region string
			Points                  []struct {
				T           int64   `json:"t"`
				Samples     uint64  `json:"samples"`
				SuccessRate float64 `json:"success_rate"`
				Score       float64 `json:"score"`
				ServerP50   float64 `json:"server_p50"`
			} `json:"points"`
		} `json:"series"`
	} `json:"history"`
	Errors []struct {
		Outcome    string `json:"outcome"`
		ErrorClass string `json:"error_class"`
		ErrorCode  string `json:"error_code"`
		Count      uint64 `json:"count"`
		Region     string `json:"region"`
	} `json:"errors"`
}

func TestProfile(t *testing.T) {
	f := newFixture(t)

	// A: on-chain facts as registered, scores per region and pooled, history.
	var a profile
	get(t, f.srv.URL, "/api/orchestrators/"+seed.A[2:], 400, &struct{}{}) // no 0x
	get(t, f.srv.URL, "/api/orchestrators/0x"+strings.ToUpper(seed.A[2:]), 200, &a)
	if a.Address != seed.A {
		t.Errorf("address %s, want lower-case %s", a.Address, seed.A)
	}
	c := a.OnChain
	if c == nil || !c.Registered || !c.Active || c.ServiceURI != "https://a.example:8935" || c.TotalStakeWei != "1500000000000000000000" ||
		c.TotalStakeLPT != 1500 || c.RewardCutPercent != 25 || c.FeeSharePercent != 50 {
		t.Errorf("on chain = %+v, want registered, active, its URI, 1500 LPT, 25%% reward cut, 50%% fee share", c)
	}
	if len(a.Scores) != 3 {
		t.Fatalf("scores = %+v, want GLOBAL, FRA, LAX", a.Scores)
	}
	for i, want := range []struct {
		region string
		of     int
	}{{"GLOBAL", 3}, {"FRA", 3}, {"LAX", 1}} {
		s := a.Scores[i]
		if s.Region != want.region || s.Rank != 1 || s.Of != want.of || s.Pipeline != seed.T2I {
			t.Errorf("score %d = %+v, want %s rank 1 of %d", i, s, want.region, want.of)
		}
	}
	// Hourly history: FRA, LAX and GLOBAL, each with the three seeded hours.
	if a.History.Bucket != "hour" || len(a.History.Series) != 3 {
		t.Fatalf("history = %+v, want 3 hourly series", a.History)
	}
	// Each bucket is scored against that bucket's median in the same scope
	// (A's round trips are 1 s; B's 2 s and C's 4 s raise FRA's median when
	// they succeed).
	medians := map[string][3]float64{"FRA": {2, 1, 2}, "LAX": {1, 1, 1}, "GLOBAL": {1.5, 1, 1}}
	for _, s := range a.History.Series {
		if len(s.Points) != 3 {
			t.Errorf("%s series has %d points, want 3", s.Region, len(s.Points))
			continue
		}
		for i, p := range s.Points {
			want := score.AI(1, 1, medians[s.Region][i]).Score
			if p.T != f.net.Hours[i].Unix() || p.SuccessRate != 1 || !near(p.Score, want) {
				t.Errorf("%s point %d = %+v, want t=%d, success 1, score %v", s.Region, i, p, f.net.Hours[i].Unix(), want)
			}
		}
		if s.Region == "GLOBAL" && s.Points[2].Samples != 4 {
			t.Errorf("GLOBAL last hour has %d samples, want 4 (2 regions × 2 probes)", s.Points[2].Samples)
		}
	}
	if len(a.Phases) == 0 || len(a.Errors) != 0 {
		t.Errorf("phases %+v errors %+v, want phases and no errors", a.Phases, a.Errors)
	}

	// C: errors with their classes, a failure streak; not on chain.
	var cp profile
	get(t, f.srv.URL, "/api/orchestrators/"+seed.C, 200, &cp)
	if cp.OnChain == nil || cp.OnChain.Registered {
		t.Errorf("C on chain = %+v, want present and not registered", cp.OnChain)
	}
	if len(cp.Errors) != 1 || cp.Errors[0].ErrorClass != "orchestrator_http" || cp.Errors[0].ErrorCode != "HTTP-STATUS-503" || cp.Errors[0].Count != 2 {
		t.Errorf("C errors = %+v, want 2 × orchestrator_http HTTP-STATUS-503", cp.Errors)
	}
	if cp.FailureStreak != 0 {
		t.Errorf("C failure streak %d, want 0 (its newest probe of each pipeline succeeded)", cp.FailureStreak)
	}

	// E: registered but never probed is known (200), with nothing measured.
	var e profile
	get(t, f.srv.URL, "/api/orchestrators/"+seed.E, 200, &e)
	if e.LastTested != 0 || len(e.Scores) != 0 || e.OnChain == nil || !e.OnChain.Registered || e.OnChain.RewardCutPercent != 10 {
		t.Errorf("E = %+v, want never tested, no scores, registered with 10%% reward cut", e)
	}
}

// Bad input is a 400 and an unknown orchestrator a 404, both JSON that say
// what is wrong.
func TestRefusals(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		path, want string
		status     int
	}{
		{"/api/orchestrators/0x123", "not an Ethereum address", 400},
		{"/api/orchestrators/hello", "not an Ethereum address", 400},
		{"/api/orchestrators/0x" + strings.Repeat("g", 40), "not an Ethereum address", 400},
		{"/api/orchestrators/0x" + strings.Repeat("0", 39) + "1", "unknown", 404},
		{"/api/orchestrators/" + seed.A + "?bucket=week", "want hour or day", 400},
		{"/api/leaderboard", "pipeline and model required", 400},
		{"/api/leaderboard?pipeline=x", "give both or neither", 400},
		{"/api/leaderboard?" + q("pipeline", seed.T2I, "model", seed.M1, "region", "XYZ"), "unknown region", 400},
		{"/api/leaderboard?" + q("pipeline", seed.T2I, "model", seed.M1, "since", "yesterday"), "unix seconds", 400},
		{"/api/overview?since=200&until=100", "since is after until", 400},
		{"/api/nothing", "no such endpoint", 404},
	} {
		var e struct{ Error string }
		get(t, f.srv.URL, tc.path, tc.status, &e)
		if !strings.Contains(e.Error, tc.want) {
			t.Errorf("GET %s: error %q, want it to say %q", tc.path, e.Error, tc.want)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/api/overview", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST = %d, want 405", resp.StatusCode)
	}
}

// A chain that does not answer degrades the profile, it does not fail it.
func TestProfileWithChainDown(t *testing.T) {
	f := newFixture(t)
	dead, err := ethclient.Dial("http://127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	l, err := contracts.New(dead, nil, f.chain.L.Addresses())
	if err != nil {
		t.Fatal(err)
	}
	oc := &explorerapi.OnChain{L: l}
	if err := oc.Refresh(context.Background()); err == nil {
		t.Fatal("a walk of a dead chain succeeded")
	}
	h := explorerapi.New(explorerapi.Config{Chain: oc, Now: func() time.Time { return f.net.Now }, QueryTimeout: 5 * time.Second}, f.st)
	srv := httptest.NewServer(h)
	defer srv.Close()
	var p profile
	get(t, srv.URL, "/api/orchestrators/"+seed.A, 200, &p)
	if p.OnChain == nil || p.OnChain.Error == "" || len(p.Scores) != 3 {
		t.Errorf("profile with chain down = on_chain %+v, %d scores; want an on-chain error and A's 3 scores", p.OnChain, len(p.Scores))
	}
}
