package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/lpgauge/lpgauge/internal/chtest"
	"github.com/lpgauge/lpgauge/internal/results"
	"github.com/lpgauge/lpgauge/internal/results/resultsdb"
	"github.com/lpgauge/lpgauge/leaderboard/store"
)

func TestMain(m *testing.M) {
	// As the binaries do (gin's mode is theirs to set, not a library init's):
	// no debug route listing in the test output.
	gin.SetMode(gin.ReleaseMode)
	chtest.Main(m)
}

const (
	t2i   = "Text to image"
	sdxl  = "ByteDance/SDXL-Lightning"
	llm   = "Llm"
	llama = "meta-llama/Meta-Llama-3.1-8B-Instruct"

	fast  = "0xfa57000000000000000000000000000000000001"
	slow  = "0x5104000000000000000000000000000000000002"
	bad   = "0xbad0000000000000000000000000000000000003"
	flaky = "0xf1a4000000000000000000000000000000000004"
)

type fixture struct {
	srv *httptest.Server
	now time.Time
	st  *store.ClickHouse
}

func row(orch, region, pipeline, model string, at time.Time, outcome results.Outcome, total time.Duration) results.Result {
	r := results.Result{
		Region: region, Orchestrator: orch, Pipeline: pipeline, Model: model, StartedAt: at,
		Outcome: outcome, Total: total, Server: total / 2, Upload: total / 10, Warm: true,
		InputParameters: `{"prompt":"a cat"}`, Source: "tester", HTTPStatus: 200,
	}
	if outcome == results.Failure {
		r.ErrorClass, r.ErrorCode, r.ErrorMessage, r.HTTPStatus = "http_status", "HTTP-STATUS-503", "orchestrator busy", 503
	}
	if outcome == results.Excused {
		r.ErrorClass, r.ErrorMessage, r.HTTPStatus = "tester_payment", "tester price ceiling", 0
	}
	r.ProbeID = results.ProbeID(orch, region, pipeline, model, at.Format(time.RFC3339Nano))
	return r
}

// newFixture seeds a network: a fast orchestrator in FRA and LAX (and the
// only one serving an LLM in MDW), a slow one, one that always fails (plus an
// excused probe that must not count), a flaky one, and a probe outside the
// 24 h window.
func newFixture(t *testing.T, rows func(now time.Time) []results.Result) *fixture {
	t.Helper()
	return newFixtureCfg(t, Config{}, rows)
}

func newFixtureCfg(t *testing.T, cfg Config, rows func(now time.Time) []results.Result) *fixture {
	t.Helper()
	return newFixtureOn(t, chtest.NewDB(t), cfg, rows)
}

// newFixtureOn is newFixtureCfg on a given database (either engine).
func newFixtureOn(t *testing.T, db *chtest.DB, cfg Config, rows func(now time.Time) []results.Result) *fixture {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	now := time.Now().UTC().Truncate(time.Second)
	if err := resultsdb.Insert(context.Background(), db.Conn, db.Name, rows(now)); err != nil {
		t.Fatal(err)
	}
	st, err := store.NewClickHouse(db.Conn, db.Name, 0)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(New(cfg, st))
	t.Cleanup(srv.Close)
	return &fixture{srv: srv, now: now, st: st}
}

func network(now time.Time) []results.Result {
	m := func(n int) time.Time { return now.Add(-time.Duration(n) * time.Minute) }
	s := time.Second
	return []results.Result{
		row(fast, "FRA", t2i, sdxl, m(10), results.Success, 2*s),
		row(fast, "FRA", t2i, sdxl, m(20), results.Success, 2*s),
		row(fast, "FRA", t2i, sdxl, m(30), results.Success, 2*s),
		row(fast, "LAX", t2i, sdxl, m(10), results.Success, 3*s),
		row(fast, "LAX", t2i, sdxl, m(20), results.Success, 3*s),
		row(fast, "MDW", llm, llama, m(15), results.Success, 1*s),
		row(slow, "FRA", t2i, sdxl, m(11), results.Success, 10*s),
		row(slow, "FRA", t2i, sdxl, m(21), results.Success, 10*s),
		row(bad, "FRA", t2i, sdxl, m(12), results.Failure, 100*time.Millisecond),
		row(bad, "FRA", t2i, sdxl, m(5), results.Failure, 200*time.Millisecond),
		row(bad, "FRA", t2i, sdxl, m(2), results.Excused, 0),
		row(flaky, "LAX", t2i, sdxl, m(13), results.Success, 4*s),
		row(flaky, "LAX", t2i, sdxl, m(14), results.Failure, 1*s),
		row(flaky, "LAX", t2i, sdxl, m(16), results.Excused, 0),
		row(fast, "FRA", t2i, sdxl, now.Add(-30*time.Hour), results.Failure, 1*s), // outside the window
	}
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

// get sends path exactly as given (already-encoded bytes go on the wire unchanged).
func (f *fixture) get(t *testing.T, path string) reply {
	t.Helper()
	return f.do(t, http.MethodGet, path)
}

func (f *fixture) do(t *testing.T, method, path string) reply {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, b}
}

func (r reply) decode(t *testing.T, v any) {
	t.Helper()
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("body %s: %v", r.body, err)
	}
}

// rttScore is the reference formula (leaderboard-api.md §b): 0.8^(R/M).
func rttScore(r, m float64) float64 { return math.Pow(0.8, r/m) }

type entry struct {
	SuccessRate    float64 `json:"success_rate"`
	RoundTripScore float64 `json:"round_trip_score"`
	Score          float64 `json:"score"`
	Samples        uint64  `json:"samples"`
	LastTested     int64   `json:"last_tested"`
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-12 }

func checkEntry(t *testing.T, label string, got entry, s, r, m float64) {
	t.Helper()
	var rts, sc float64
	if r > 0 {
		rts = rttScore(r, m)
	}
	if s > 0 {
		sc = 0.65*s + 0.35*rts
	}
	if !near(got.SuccessRate, s) || !near(got.RoundTripScore, rts) || !near(got.Score, sc) {
		t.Errorf("%s = %+v, want success_rate %v round_trip_score %v score %v", label, got, s, rts, sc)
	}
}

// The Explorer's exact AI call: no region, no window, pipeline with spaces
// and model with a slash, interpolated without re-encoding (its fetch turns
// the spaces into %20 and leaves the slash).
func TestAggregatedStatsExplorerCall(t *testing.T) {
	f := newFixture(t, network)
	for _, q := range []string{
		"pipeline=Text%20to%20image&model=ByteDance/SDXL-Lightning",
		"pipeline=Text+to+image&model=ByteDance%2FSDXL-Lightning",
		"pipeline=text-to-image&model=ByteDance/SDXL-Lightning", // slug, additive
	} {
		var got map[string]map[string]entry
		f.get(t, "/api/aggregated_stats?"+q).decode(t, &got)
		// Median over all regions of successful jobs: 2,2,2,3,3,4,10,10 → 3.
		const m = 3.0
		checkEntry(t, q+" fast/FRA", got[fast]["FRA"], 1, 2, m)
		checkEntry(t, q+" fast/LAX", got[fast]["LAX"], 1, 3, m)
		checkEntry(t, q+" slow/FRA", got[slow]["FRA"], 1, 10, m)
		checkEntry(t, q+" bad/FRA", got[bad]["FRA"], 0, 0, m)
		checkEntry(t, q+" flaky/LAX", got[flaky]["LAX"], 0.5, 4, m)
		if len(got) != 4 || len(got[fast]) != 2 {
			t.Errorf("%s: want 4 orchestrators, fast in FRA and LAX only: %v", q, got)
		}
		if got[bad]["FRA"].Samples != 2 || got[flaky]["LAX"].Samples != 2 {
			t.Errorf("%s: excused probes must not count as samples: bad %d flaky %d", q, got[bad]["FRA"].Samples, got[flaky]["LAX"].Samples)
		}
		if lt := got[fast]["FRA"].LastTested; lt != f.now.Add(-10*time.Minute).Unix() {
			t.Errorf("%s: last_tested = %d, want the newest probe's start", q, lt)
		}
	}
}

func TestAggregatedStatsFilters(t *testing.T) {
	f := newFixture(t, network)
	base := "/api/aggregated_stats?pipeline=Text%20to%20image&model=ByteDance/SDXL-Lightning"

	// Region filter (lower case accepted): the median becomes FRA's (2,2,2,10,10 → 2).
	var got map[string]map[string]entry
	f.get(t, base+"&region=fra").decode(t, &got)
	if len(got) != 3 || len(got[fast]) != 1 {
		t.Fatalf("region=fra: want fast, slow, bad in FRA only: %v", got)
	}
	checkEntry(t, "FRA-only slow", got[slow]["FRA"], 1, 10, 2)

	// Orchestrator filter (mixed case): same numbers as unfiltered, because
	// the median never depends on the orchestrator asked about.
	got = nil
	f.get(t, base+"&orchestrator="+strings.ToUpper(slow[2:4])+slow[4:]).decode(t, &got)
	if len(got) != 0 {
		t.Fatalf("orchestrator without 0x prefix must match nothing: %v", got)
	}
	f.get(t, base+"&orchestrator=0x"+strings.ToUpper(slow[2:])).decode(t, &got)
	if len(got) != 1 {
		t.Fatalf("orchestrator filter: %v", got)
	}
	checkEntry(t, "orchestrator filter slow", got[slow]["FRA"], 1, 10, 3)

	// Window: since/until on test time; only the 30 h-old failure in this window.
	got = nil
	since, until := f.now.Add(-31*time.Hour).Unix(), f.now.Add(-29*time.Hour).Unix()
	f.get(t, fmt.Sprintf("%s&since=%d.5&until=%d", base, since, until)).decode(t, &got)
	if len(got) != 1 || got[fast]["FRA"].Samples != 1 || got[fast]["FRA"].Score != 0 {
		t.Errorf("old window: want fast/FRA with its one failure: %v", got)
	}

	// GLOBAL only when asked: pooled per orchestrator, sample-weighted.
	got = nil
	f.get(t, base+"&region=GLOBAL").decode(t, &got)
	if len(got[fast]) != 1 {
		t.Fatalf("region=GLOBAL: %v", got)
	}
	checkEntry(t, "GLOBAL fast", got[fast]["GLOBAL"], 1, 12.0/5, 3)
	f.get(t, base).decode(t, &got)
	for orch, regs := range got {
		if _, ok := regs["GLOBAL"]; ok {
			t.Errorf("%s has a GLOBAL key without region=GLOBAL", orch)
		}
	}
}

func TestAggregatedStatsWithoutAIParamsIsTranscoding(t *testing.T) {
	f := newFixture(t, network)
	for _, path := range []string{"/api/aggregated_stats", "/api/aggregated_stats?orchestrator=" + fast, "/api/raw_stats?orchestrator=" + fast} {
		r := f.get(t, path)
		if r.status != 200 || string(r.body) != "{}" {
			t.Errorf("%s: no pipeline/model means transcoding, of which we have none: got %d %s", path, r.status, r.body)
		}
	}
}

func TestBadParamsAreJSON400(t *testing.T) {
	f := newFixture(t, network)
	cases := []struct {
		path, want string
	}{
		{"/api/aggregated_stats?pipeline=Text%20to%20image", `{"error":"model required"}`},
		{"/api/aggregated_stats?model=ByteDance/SDXL-Lightning", `{"error":"pipeline required"}`},
		{"/api/raw_stats?pipeline=Llm&model=x", `{"error":"orchestrator is a required parameter"}`},
		{"/api/aggregated_stats?pipeline=Llm&model=x&since=abc", "since"},
		{"/api/pipelines?until=tomorrow", "until"},
		{"/api/aggregated_stats?pipeline=Llm&model=x&since=NaN", "since"},
		{"/api/aggregated_stats?pipeline=Llm&model=x&since=-5", "since"},
		{"/api/aggregated_stats?pipeline=Llm&model=x&since=2000&until=1000", "since"},
		{"/api/aggregated_stats?pipeline=Llm&model=x&region=XYZ", `unknown region \"XYZ\"`},
		{"/api/pipelines?region=nowhere", "NOWHERE"},
		{"/api/aggregated_stats?pipeline=Llm&model=x&job_type=video", "job_type"},
		{"/api/aggregated_stats?job_type=ai", "pipeline and model"},
		{"/api/raw_stats?orchestrator=0x1&job_type=ai&limit=0", "limit"},
		{"/api/raw_stats?orchestrator=0x1&job_type=ai&include_excused=maybe", "include_excused"},
		{"/api/top_ai_score?orchestrator=0x1&since=x", "since"},
	}
	for _, c := range cases {
		r := f.get(t, c.path)
		var body map[string]string
		if r.status != 400 || json.Unmarshal(r.body, &body) != nil || body["error"] == "" {
			t.Errorf("%s: want 400 with a JSON error, got %d %q", c.path, r.status, r.body)
			continue
		}
		if !strings.Contains(string(r.body), c.want) {
			t.Errorf("%s: error %s does not say %q", c.path, r.body, c.want)
		}
		if r.header.Get("Content-Type") != "application/json" || r.header.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("%s: error headers %v", c.path, r.header)
		}
	}
	r := f.get(t, "/api/nope")
	if r.status != 404 || !strings.Contains(string(r.body), `"error"`) {
		t.Errorf("unknown endpoint: %d %s", r.status, r.body)
	}
}

func TestStandardHeaders(t *testing.T) {
	f := newFixture(t, network)
	for _, path := range []string{"/api/regions", "/api/pipelines", "/api/aggregated_stats?pipeline=Llm&model=" + llama, "/api/top_ai_score?orchestrator=" + fast} {
		r := f.get(t, path)
		if r.status != 200 {
			t.Errorf("%s: %d %s", path, r.status, r.body)
		}
		for k, v := range map[string]string{
			"Access-Control-Allow-Origin": "*",
			"Content-Type":                "application/json",
			"Cache-Control":               "public, max-age=30, stale-while-revalidate=15",
		} {
			if got := r.header.Get(k); got != v {
				t.Errorf("%s: %s = %q, want %q", path, k, got, v)
			}
		}
	}
	r := f.do(t, http.MethodOptions, "/api/aggregated_stats")
	if r.status != 204 || r.header.Get("Access-Control-Allow-Origin") != "*" || !strings.Contains(r.header.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Errorf("preflight: %d %v", r.status, r.header)
	}
}

func TestRegions(t *testing.T) {
	f := newFixture(t, network)
	var got struct {
		Regions []struct{ ID, Name, Type string } `json:"regions"`
	}
	f.get(t, "/api/regions").decode(t, &got)
	has := map[string]bool{}
	for _, r := range got.Regions {
		has[r.ID+"/"+r.Type] = true
		if r.ID == "" || r.Name == "" || (r.Type != "ai" && r.Type != "transcoding") {
			t.Errorf("bad region entry %+v", r)
		}
	}
	// The Explorer shows an AI region only if it is listed with type "ai".
	for _, want := range []string{"GLOBAL/ai", "FRA/ai", "LAX/ai", "MDW/ai", "GLOBAL/transcoding", "FRA/transcoding"} {
		if !has[want] {
			t.Errorf("regions lack %s", want)
		}
	}
}

func TestPipelines(t *testing.T) {
	f := newFixture(t, network)
	r := f.get(t, "/api/pipelines")
	want := `{"pipelines":[{"id":"Llm","models":["meta-llama/Meta-Llama-3.1-8B-Instruct"],"regions":["MDW"]},` +
		`{"id":"Text to image","models":["ByteDance/SDXL-Lightning"],"regions":["FRA","LAX"]}]}`
	if r.status != 200 || string(r.body) != want {
		t.Errorf("pipelines = %d %s\nwant %s", r.status, r.body, want)
	}
	r = f.get(t, "/api/pipelines?region=lax")
	want = `{"pipelines":[{"id":"Text to image","models":["ByteDance/SDXL-Lightning"],"regions":["LAX"]}]}`
	if string(r.body) != want {
		t.Errorf("pipelines region=lax = %s, want %s", r.body, want)
	}
	r = f.get(t, "/api/pipelines?region=SIN")
	if string(r.body) != `{"pipelines":[]}` {
		t.Errorf("no data must be an empty list, got %s", r.body)
	}
}

func TestRawStats(t *testing.T) {
	f := newFixture(t, network)
	base := "/api/raw_stats?pipeline=Text%20to%20image&model=ByteDance/SDXL-Lightning&orchestrator=" + strings.ToUpper(bad)
	var got map[string][]map[string]any
	f.get(t, base).decode(t, &got)
	fra := got["FRA"]
	if len(got) != 1 || len(fra) != 2 {
		t.Fatalf("bad's raw stats: want 2 scored FRA rows, got %s", mustJSON(got))
	}
	first := fra[0]
	if first["timestamp"].(float64) != float64(f.now.Add(-5*time.Minute).Unix()) {
		t.Errorf("rows must be newest first: %v", first["timestamp"])
	}
	if first["success_rate"].(float64) != 0 || first["round_trip_time"].(float64) != 0.2 ||
		first["region"] != "FRA" || first["orchestrator"] != bad || first["pipeline"] != t2i || first["model"] != sdxl ||
		first["model_is_warm"] != true || first["input_parameters"] != `{"prompt":"a cat"}` {
		t.Errorf("posted Stats fields wrong: %s", mustJSON(first))
	}
	errs := first["errors"].([]any)
	if len(errs) != 1 || mustJSON(errs[0]) != `{"count":1,"error_code":"HTTP-STATUS-503","message":"orchestrator busy"}` {
		t.Errorf("errors = %s", mustJSON(errs))
	}
	for _, k := range []string{"response_payload", "probe_id", "outcome", "error_class", "phases"} {
		if _, ok := first[k]; !ok {
			t.Errorf("raw row lacks %q", k)
		}
	}
	got = nil
	f.get(t, base+"&include_excused=true").decode(t, &got)
	if len(got["FRA"]) != 3 || got["FRA"][0]["outcome"] != "excused" {
		t.Errorf("include_excused must add the excused probe first: %s", mustJSON(got))
	}
	got = nil
	f.get(t, "/api/raw_stats?job_type=ai&limit=1&orchestrator="+fast).decode(t, &got)
	if n := len(got["FRA"]) + len(got["LAX"]) + len(got["MDW"]); n != 1 {
		t.Errorf("limit=1 returned %d rows", n)
	}
}

func TestTopAIScore(t *testing.T) {
	f := newFixture(t, network)
	var got map[string]any
	// fast's best: FRA text-to-image, 2 s against the network median 3 s.
	f.get(t, "/api/top_ai_score?orchestrator="+strings.ToUpper(fast)).decode(t, &got)
	want := 0.65 + 0.35*rttScore(2, 3)
	if got["region"] != "FRA" || got["orchestrator"] != fast || got["pipeline"] != t2i || got["model"] != sdxl || !near(got["value"].(float64), want) {
		t.Errorf("top_ai_score fast = %v, want FRA %s %s %v", got, t2i, sdxl, want)
	}
	r := f.get(t, "/api/top_ai_score?orchestrator=0x0000000000000000000000000000000000000000")
	if r.status != 200 || string(r.body) != "{}" {
		t.Errorf("unknown orchestrator: %d %s, want 200 {}", r.status, r.body)
	}
}

// Golden value from leaderboard-serverless api/top_ai_score_test.go: a single
// successful orchestrator scores 0.65 + 0.35·0.8.
func TestTopAIScoreSingleOrchestratorGolden(t *testing.T) {
	f := newFixture(t, func(now time.Time) []results.Result {
		return []results.Result{
			row(slow, "FRA", "pipeline1", "model1", now.Add(-time.Minute), results.Success, 24100*time.Millisecond),
			row(bad, "LAX", "pipeline1", "model1", now.Add(-time.Minute), results.Failure, time.Second),
		}
	})
	r := f.get(t, "/api/top_ai_score?orchestrator="+slow)
	want := fmt.Sprintf(`{"region":"FRA","orchestrator":"%s","value":0.9299999999999999,"model":"model1","pipeline":"pipeline1"}`, slow)
	if string(r.body) != want {
		t.Errorf("top_ai_score = %s\nwant %s", r.body, want)
	}
}

func TestHealth(t *testing.T) {
	f := newFixture(t, network)
	r := f.get(t, "/api/health")
	if r.status != 200 || string(r.body) != `{"clickhouse":{"ok":true}}` {
		t.Errorf("health: %d %s", r.status, r.body)
	}
	if r := f.get(t, "/healthz"); r.status != 200 {
		t.Errorf("healthz: %d", r.status)
	}
	// A store whose database is gone: 503 with a JSON body, for health and reads.
	db := chtest.NewDB(t)
	st, _ := store.NewClickHouse(db.Conn, "no_such_db", time.Second)
	srv := httptest.NewServer(New(Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, st))
	defer srv.Close()
	g := &fixture{srv: srv}
	for _, p := range []string{"/api/health", "/api/aggregated_stats?pipeline=Llm&model=x"} {
		r := g.get(t, p)
		if r.status != 503 || !strings.Contains(string(r.body), `"error"`) || r.header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s on a missing database: %d %s %v", p, r.status, r.body, r.header)
		}
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
