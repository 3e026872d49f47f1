package api

import (
	"context"
	"encoding/json"
	"math"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	ethcommon "github.com/ethereum/go-ethereum/common"

	"github.com/lpgauge/lpgauge/internal/chtest"
	"github.com/lpgauge/lpgauge/internal/results"
)

var q = url.QueryEscape

// pair is the Explorer's pipeline/model query for text-to-image.
var pair = "pipeline=" + q(t2i) + "&model=" + q(sdxl)

// GLOBAL is pooled over regions, so it is the samples-weighted mean, not the
// Explorer's plain mean of regional numbers: fast has 3 probes of 2 s in FRA
// and 2 of 3 s in LAX → mean RTT 12/5 = 2.4 s (a plain mean would say 2.5).
func TestAggregatedStatsGlobalIsWeightedBySamples(t *testing.T) {
	f := newFixture(t, network)
	var plain map[string]map[string]entry
	f.get(t, "/api/aggregated_stats?"+pair).decode(t, &plain)
	if _, ok := plain[fast]["GLOBAL"]; ok {
		t.Fatal("GLOBAL must be opt-in: the Explorer's default answer must not change")
	}
	var got map[string]map[string]struct {
		entry
		MeanRTT float64 `json:"mean_rtt"`
	}
	f.get(t, "/api/aggregated_stats?"+pair+"&global=1").decode(t, &got)
	g := got[fast]["GLOBAL"]
	if math.Abs(g.MeanRTT-2.4) > 1e-9 || g.Samples != 5 {
		t.Errorf("fast GLOBAL mean_rtt %v samples %d, want 2.4 s over 5 probes", g.MeanRTT, g.Samples)
	}
	checkEntry(t, "fast/GLOBAL", g.entry, 1, 2.4, 3)
	checkEntry(t, "flaky/GLOBAL", got[flaky]["GLOBAL"].entry, 0.5, 4, 3)
	checkEntry(t, "fast/FRA still there", got[fast]["FRA"].entry, 1, 2, 3)
	if r := f.get(t, "/api/aggregated_stats?"+pair+"&global=1&region=FRA"); r.status != 400 {
		t.Errorf("global=1 with a region: status %d, want 400", r.status)
	}
}

func TestRegionsWithData(t *testing.T) {
	f := newFixture(t, network)
	ids := func(path string) []string {
		var got struct {
			Regions []regionEntry `json:"regions"`
		}
		f.get(t, path).decode(t, &got)
		var out []string
		for _, r := range got.Regions {
			if r.Type != "ai" {
				t.Errorf("%s: %+v is not an AI region", path, r)
			}
			out = append(out, r.ID)
		}
		return out
	}
	if got := strings.Join(ids("/api/regions?with_data=1"), ","); got != "GLOBAL,FRA,LAX,MDW" {
		t.Errorf("with_data=1 = %s, want GLOBAL,FRA,LAX,MDW", got)
	}
	if got := strings.Join(ids("/api/regions?with_data=1&pipeline=Llm&model="+q(llama)), ","); got != "GLOBAL,MDW" {
		t.Errorf("with_data=1 for the LLM = %s, want GLOBAL,MDW", got)
	}
	var compat struct {
		Regions []regionEntry `json:"regions"`
	}
	f.get(t, "/api/regions").decode(t, &compat)
	if len(compat.Regions) <= 4 {
		t.Errorf("compat /api/regions must still list the whole catalogue, got %v", compat.Regions)
	}
}

// latencyNet: fast in FRA, warm server times 1..10 s, plus two cold probes
// of 20 s and 40 s; one failure that must not enter the percentiles.
func latencyNet(now time.Time) []results.Result {
	var rows []results.Result
	for i := 1; i <= 10; i++ {
		r := row(fast, "FRA", t2i, sdxl, now.Add(-time.Duration(i)*time.Minute), results.Success, time.Duration(2*i)*time.Second)
		rows = append(rows, r)
	}
	for i, d := range []int{20, 40} {
		r := row(fast, "FRA", t2i, sdxl, now.Add(-time.Duration(30+i)*time.Minute), results.Success, time.Duration(2*d)*time.Second)
		r.Warm = false
		rows = append(rows, r)
	}
	rows = append(rows, row(fast, "FRA", t2i, sdxl, now.Add(-40*time.Minute), results.Failure, 99*time.Second))
	return rows
}

func TestPercentilesPerPhaseWarmCold(t *testing.T) {
	f := newFixture(t, latencyNet)
	var got map[string]map[string]latencyOut
	f.get(t, "/api/percentiles?"+pair).decode(t, &got)
	l := got[fast]["FRA"]
	// Postgres percentile_cont over 1..10: p50 5.5, p90 9.1, p99 9.91.
	if s := l.Warm.Phases.Server; s.Samples != 10 || !approx(s.P50, 5.5) || !approx(s.P90, 9.1) || !approx(s.P99, 9.91) {
		t.Errorf("warm server = %+v, want p50 5.5 p90 9.1 p99 9.91 over 10", s)
	}
	if c := l.Cold; c.Samples != 2 || !approx(c.Phases.Server.P50, 30) || c.SuccessRate != 1 {
		t.Errorf("cold = %+v, want 2 probes, server p50 30 s", c)
	}
	// The failure counts as a sample (success rate) but not in the timings.
	if a := l.All; a.Samples != 13 || a.Successes != 12 || a.Phases.Total.Samples != 12 || !approx(a.Phases.Upload.P50, 1.3) {
		t.Errorf("all = %+v, want 13 samples, 12 timed, upload p50 1.3 s", a)
	}
	if r := f.get(t, "/api/percentiles"); r.status != 400 || !strings.Contains(string(r.body), "pipeline and model") {
		t.Errorf("no pipeline/model: %d %s", r.status, r.body)
	}
}

// LLM probes carry a time to first token and a completion token count:
// percentiles add a ttft phase and tokens_per_second (tokens over the
// streaming time after the first one) for them, interpolated over
// successful probes, and leave both out for pipelines without them.
func TestPercentilesTimeToFirstToken(t *testing.T) {
	const llm, llama = "Llm", "meta-llama/Meta-Llama-3.1-8B-Instruct" // go-livepeer's name for the pipeline
	f := newFixture(t, func(now time.Time) []results.Result {
		var rs []results.Result
		for i := 1; i <= 4; i++ {
			r := row(fast, "FRA", llm, llama, now.Add(-time.Duration(i)*time.Minute), results.Success, 3*time.Second)
			r.TTFT = time.Duration(i) * 100 * time.Millisecond
			r.Download, r.OutputUnits = 2*time.Second, float64(40*i) // 20, 40, 60, 80 tokens/s
			rs = append(rs, r)
		}
		failed := row(fast, "FRA", llm, llama, now.Add(-9*time.Minute), results.Failure, time.Second)
		failed.TTFT = 9 * time.Second // a failure's timings never count
		return append(rs, failed, row(fast, "FRA", t2i, sdxl, now.Add(-time.Minute), results.Success, 2*time.Second))
	})
	var got map[string]map[string]latencyOut
	f.get(t, "/api/percentiles?pipeline=Llm&model="+llama).decode(t, &got)
	// Postgres percentile_cont over 0.1..0.4 s: p50 0.25, p90 0.37.
	if tt := got[fast]["FRA"].All.Phases.TTFT; tt == nil || tt.Samples != 4 || !approx(tt.P50, 0.25) || !approx(tt.P90, 0.37) {
		t.Errorf("ttft = %+v, want 4 samples, p50 0.25 s, p90 0.37 s", tt)
	}
	if tps := got[fast]["FRA"].All.TokensPerSecond; tps == nil || tps.Samples != 4 || !approx(tps.P50, 50) || !approx(tps.P90, 74) {
		t.Errorf("tokens_per_second = %+v, want 4 samples, p50 50, p90 74", tps)
	}
	var img map[string]map[string]json.RawMessage
	f.get(t, "/api/percentiles?"+pair).decode(t, &img)
	if s := string(img[fast]["FRA"]); strings.Contains(s, "ttft") || strings.Contains(s, "tokens_per_second") {
		t.Errorf("text-to-image percentiles carry LLM figures: %s", s)
	}
}

func approx(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestHistoryBuckets(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Hour)
	h1, h2 := now.Add(-2*time.Hour), now.Add(-time.Hour)
	rows := func(time.Time) []results.Result {
		return []results.Result{
			row(fast, "FRA", t2i, sdxl, h1.Add(5*time.Minute), results.Success, 2*time.Second),
			row(fast, "FRA", t2i, sdxl, h1.Add(6*time.Minute), results.Failure, time.Second),
			row(slow, "FRA", t2i, sdxl, h1.Add(7*time.Minute), results.Success, 6*time.Second),
			row(fast, "FRA", t2i, sdxl, h2.Add(5*time.Minute), results.Success, 4*time.Second),
		}
	}
	f := newFixture(t, rows)
	win := "&since=" + unix(h1.Add(-time.Minute)) + "&until=" + unix(now)
	var got historyOut
	f.get(t, "/api/history?orchestrator="+fast+"&"+pair+win).decode(t, &got)
	pts := got.Series["FRA"]
	if got.Bucket != "hour" || len(pts) != 2 || pts[0].Time != h1.Unix() || pts[1].Time != h2.Unix() {
		t.Fatalf("series = %+v, want two hourly points at %d and %d", got, h1.Unix(), h2.Unix())
	}
	// Hour 1: S = 0.5, R = 2, bucket median of successes (2, 6) = 4.
	p := pts[0]
	want := 0.65*0.5 + 0.35*math.Pow(0.8, 2.0/4)
	if p.Samples != 2 || p.SuccessRate != 0.5 || !approx(p.MedianRTT, 4) || !approx(p.Score, want) || !approx(p.ServerP50, 1) {
		t.Errorf("hour 1 = %+v, want 2 samples, rate 0.5, median 4 s, score %v, server p50 1 s", p, want)
	}
	var day historyOut
	f.get(t, "/api/history?orchestrator="+fast+"&"+pair+win+"&bucket=day").decode(t, &day)
	n := 0
	for _, p := range day.Series["FRA"] {
		n += int(p.Samples)
	}
	if n != 3 {
		t.Errorf("daily series %+v: want all 3 of fast's probes", day.Series)
	}
	for _, bad := range []string{
		"/api/history?" + pair,                                            // no orchestrator
		"/api/history?orchestrator=" + fast,                               // no pipeline/model
		"/api/history?orchestrator=" + fast + "&" + pair + "&bucket=week", // unknown bucket
		"/api/history?orchestrator=" + fast + "&" + pair + "&since=0",     // far too many hours
	} {
		if r := f.get(t, bad); r.status != 400 || !json.Valid(r.body) {
			t.Errorf("%s: %d %s, want a JSON 400", bad, r.status, r.body)
		}
	}
}

func unix(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }

// An orchestrator that only ever answered "insufficient capacity" (which
// the tester stores as excused: busy, not broken) has no score: it is absent
// from aggregated_stats rather than listed at 0, and /api/errors says it was
// at capacity.
func TestErrorsExplainCapacityRefusals(t *testing.T) {
	capped := "0xcafe000000000000000000000000000000000009"
	f := newFixture(t, func(now time.Time) []results.Result {
		rs := network(now)
		for i := 1; i <= 3; i++ {
			r := row(capped, "FRA", t2i, sdxl, now.Add(-time.Duration(i)*time.Minute), results.Excused, 0)
			r.ErrorClass, r.ErrorCode, r.ErrorMessage, r.HTTPStatus = "capacity", "insufficient_capacity", "insufficient capacity", 503
			rs = append(rs, r)
		}
		return rs
	})
	var got errorsOut
	f.get(t, "/api/errors?orchestrator="+capped).decode(t, &got)
	if got.Probes.Scored != 0 || got.Probes.Excused != 3 || len(got.Excused) != 1 {
		t.Fatalf("probes = %+v, excused = %+v: want 3 excused capacity refusals and nothing scored", got.Probes, got.Excused)
	}
	if !strings.HasPrefix(got.Diagnosis, "no score") || !strings.Contains(got.Diagnosis, "capacity/insufficient_capacity (3×)") ||
		!strings.Contains(got.Diagnosis, "busy") {
		t.Errorf("diagnosis %q must say there is no score because the orchestrator was busy", got.Diagnosis)
	}
	var agg map[string]map[string]json.RawMessage
	f.get(t, "/api/aggregated_stats?pipeline=Text%20to%20image&model=ByteDance/SDXL-Lightning").decode(t, &agg)
	if _, listed := agg[capped]; listed || agg[fast] == nil {
		t.Errorf("aggregated_stats lists %d orchestrators (capped listed: %v, fast listed: %v); want fast and not the capped one",
			len(agg), listed, agg[fast] != nil)
	}
}

// "Why is my score 0?": bad failed twice with HTTP 503 (its score is 0) and
// had one excused probe that is shown apart and never counted.
func TestErrorsExplainScoreZero(t *testing.T) {
	f := newFixture(t, network)
	var got errorsOut
	f.get(t, "/api/errors?orchestrator="+bad).decode(t, &got)
	if got.Probes.Scored != 2 || got.Probes.Failures != 2 || got.Probes.Excused != 1 || got.SuccessRate != 0 {
		t.Errorf("probes = %+v rate %v, want 2 scored failures and 1 excused", got.Probes, got.SuccessRate)
	}
	if len(got.Errors) != 1 || got.Errors[0].ErrorCode != "HTTP-STATUS-503" || got.Errors[0].Count != 2 || got.Errors[0].LastMessage != "orchestrator busy" {
		t.Errorf("errors = %+v, want HTTP-STATUS-503 ×2, last message 'orchestrator busy'", got.Errors)
	}
	if len(got.Excused) != 1 || got.Excused[0].ErrorClass != "tester_payment" {
		t.Errorf("excused = %+v, want the tester_payment probe apart", got.Excused)
	}
	if !strings.HasPrefix(got.Diagnosis, "score 0") || !strings.Contains(got.Diagnosis, "HTTP-STATUS-503") {
		t.Errorf("diagnosis %q must say the score is 0 and why", got.Diagnosis)
	}
	if got.LastTested != f.now.Add(-2*time.Minute).Unix() {
		t.Errorf("last_tested = %d, want the excused probe's time (tested, not scored)", got.LastTested)
	}
	var none errorsOut
	f.get(t, "/api/errors?orchestrator=0x0000000000000000000000000000000000000009").decode(t, &none)
	if !strings.HasPrefix(none.Diagnosis, "not tested") || none.Errors == nil {
		t.Errorf("untested orchestrator: %+v", none)
	}
	if r := f.get(t, "/api/errors"); r.status != 400 {
		t.Errorf("no orchestrator: status %d", r.status)
	}
}

// The document is decoded exactly as go-livepeer's updatePerfScore does
// (map[ethcommon.Address]map[string]map[string]float64): one non-numeric
// value or malformed address would drop every score.
func TestPerfScoresParseAsGoLivepeer(t *testing.T) {
	f := newFixture(t, network)
	decode := func(path string) map[ethcommon.Address]map[string]map[string]float64 {
		r := f.get(t, path)
		m := map[ethcommon.Address]map[string]map[string]float64{}
		if r.status != 200 {
			t.Fatalf("%s: %d %s", path, r.status, r.body)
		}
		if err := json.Unmarshal(r.body, &m); err != nil {
			t.Fatalf("%s: go-livepeer could not parse %s: %v", path, r.body, err)
		}
		return m
	}
	m := decode("/api/perf_scores?" + pair)
	var agg map[string]map[string]entry
	f.get(t, "/api/aggregated_stats?"+pair).decode(t, &agg)
	if got := m[ethcommon.HexToAddress(slow)]["FRA"]["score"]; !approx(got, agg[slow]["FRA"].Score) {
		t.Errorf("perf score %v differs from aggregated_stats %v", got, agg[slow]["FRA"].Score)
	}
	// No pipeline/model: fast's MDW entry is the LLM alone, the only
	// successful orchestrator there → 0.65 + 0.35·0.8 = 0.93 (reference §b).
	all := decode("/api/perf_scores?global=1")
	if got := all[ethcommon.HexToAddress(fast)]["MDW"]["score"]; !approx(got, 0.93) {
		t.Errorf("fast MDW = %v, want 0.93", got)
	}
	if _, ok := all[ethcommon.HexToAddress(fast)]["GLOBAL"]["samples"]; !ok {
		t.Errorf("global=1 must add GLOBAL: %v", all[ethcommon.HexToAddress(fast)])
	}
}

func TestBlocklist(t *testing.T) {
	f := newFixture(t, network)
	text := func(path string) string {
		r := f.get(t, path)
		if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") {
			t.Fatalf("%s: %d %s %s", path, r.status, r.header.Get("Content-Type"), r.body)
		}
		return string(r.body)
	}
	// bad failed twice in a row (its excused probe does not break the run).
	if got := text("/api/blocklist"); got != "" {
		t.Errorf("default (3 failures) = %q, want none", got)
	}
	if got := text("/api/blocklist?failures=2"); got != bad {
		t.Errorf("failures=2 = %q, want %s", got, bad)
	}
	// Floor 0.9: slow (0.82), flaky (0.59) and bad (0) fall below; fast stays.
	got := text("/api/blocklist?failures=0&min_score=0.9&min_samples=2&" + pair)
	if want := strings.Join([]string{slow, bad, flaky}, ","); got != want {
		t.Errorf("min_score=0.9 = %q, want %q", got, want)
	}
	var js blocklistOut
	f.get(t, "/api/blocklist?failures=2&min_score=0.9&min_samples=2&format=json").decode(t, &js)
	for _, e := range js.Entries {
		if e.Address == bad && (len(e.Reasons) != 2 || e.ConsecutiveFailures != 2) {
			t.Errorf("bad entry = %+v, want both reasons and 2 consecutive failures", e)
		}
	}
	if len(js.Addresses) != 3 {
		t.Errorf("json addresses = %v", js.Addresses)
	}
}

func withURIs(now time.Time) []results.Result {
	rows := network(now)
	for i := range rows {
		rows[i].ServiceURI = "https://" + rows[i].Orchestrator[2:6] + ".example:8935"
	}
	return rows
}

// Decoded as go-livepeer's webhook discovery does: [{"address": uri}].
func TestOrchestratorsWebhook(t *testing.T) {
	f := newFixture(t, withURIs)
	var got []struct {
		Address string `json:"address"`
	}
	f.get(t, "/api/orchestrators?"+pair).decode(t, &got)
	var order []string
	for _, g := range got {
		order = append(order, g.Address)
	}
	want := "https://fa57.example:8935,https://5104.example:8935,https://f1a4.example:8935,https://bad0.example:8935"
	if strings.Join(order, ",") != want {
		t.Errorf("ranking = %v, want %s (best score first)", order, want)
	}
	got = nil
	f.get(t, "/api/orchestrators?"+pair+"&min_score=0.5&limit=2").decode(t, &got)
	if len(got) != 2 || got[0].Address != "https://fa57.example:8935" {
		t.Errorf("min_score/limit = %v", got)
	}
}

func TestAdditionsRefuseBadInput(t *testing.T) {
	f := newFixture(t, network)
	for _, c := range []struct{ path, mention string }{
		{"/api/aggregated_stats?" + pair + "&global=maybe", "global"},
		{"/api/regions?with_data=yes", "with_data"},
		{"/api/percentiles?pipeline=" + q(t2i), "model"},
		{"/api/percentiles?" + pair + "&region=XXX", "region"},
		{"/api/blocklist?failures=-1", "failures"},
		{"/api/blocklist?min_score=2", "min_score"},
		{"/api/blocklist?min_samples=0", "min_samples"},
		{"/api/blocklist?format=xml", "format"},
		{"/api/orchestrators?limit=0", "limit"},
		{"/api/orchestrators?min_score=NaN", "min_score"},
		{"/api/perf_scores?global=1&region=FRA", "region"},
		{"/api/errors?orchestrator=" + fast + "&since=abc", "since"},
		{"/api/history?orchestrator=" + fast + "&" + pair + "&bucket=", ""},
	} {
		r := f.get(t, c.path)
		if c.mention == "" {
			if r.status != 200 {
				t.Errorf("%s: empty bucket should default to hour, got %d %s", c.path, r.status, r.body)
			}
			continue
		}
		var e errorBody
		if r.status != 400 || json.Unmarshal(r.body, &e) != nil || !strings.Contains(e.Error, c.mention) {
			t.Errorf("%s: %d %s, want a JSON 400 naming %s", c.path, r.status, r.body, c.mention)
		}
	}
}

// A stopped store: the last good answer comes back marked stale instead of
// a 503, and an answer never seen is still an honest 503.
func TestStaleAnswerWhileStoreDown(t *testing.T) {
	srv := chtest.Server(t) // private even when LPGAUGE_CLICKHOUSE_ADDR is set: killed below
	var mu sync.Mutex
	clock := time.Now().UTC()
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	f := newFixtureCfg(t, Config{Now: now, QueryTimeout: 3 * time.Second}, network)
	path := "/api/aggregated_stats?" + pair
	fresh := f.get(t, path)
	if fresh.status != 200 || fresh.header.Get("X-Cache-Stale-Seconds") != "" {
		t.Fatalf("fresh answer: %d %v", fresh.status, fresh.header)
	}

	srv.Kill()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		ns, err := srv.Restart(ctx)
		if err != nil {
			t.Fatalf("restart ClickHouse: %v", err)
		}
		chtest.ReplaceServer(ns)
	}()
	mu.Lock()
	clock = clock.Add(90 * time.Second)
	mu.Unlock()

	stale := f.get(t, path)
	if stale.status != 200 || string(stale.body) != string(fresh.body) {
		t.Fatalf("store down: %d %q %v, want the cached answer %s", stale.status, stale.body, stale.header, fresh.body)
	}
	if got := stale.header.Get("X-Cache-Stale-Seconds"); got != "90" {
		t.Errorf("X-Cache-Stale-Seconds = %q, want 90", got)
	}
	if !strings.HasPrefix(stale.header.Get("Warning"), "110 ") {
		t.Errorf("Warning = %q, want 110", stale.header.Get("Warning"))
	}
	if r := f.get(t, "/api/errors?orchestrator="+fast); r.status != 503 || !json.Valid(r.body) {
		t.Errorf("never-answered request with the store down: %d %s, want a JSON 503", r.status, r.body)
	}
	m := string(f.get(t, "/metrics").body)
	if !strings.Contains(m, `leaderboard_store_errors_total{operation="aggregates"} 1`) {
		t.Errorf("store error not counted:\n%s", grepLines(m, "leaderboard_store_errors_total"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// The names of dashboards/metrics.txt, with the route pattern as label.
func TestMetricsExposeContractNames(t *testing.T) {
	f := newFixture(t, network)
	f.get(t, "/api/raw_stats?orchestrator="+fast+"&"+pair)
	f.get(t, "/no/such/path")
	m := string(f.get(t, "/metrics").body)
	for _, want := range []string{
		`leaderboard_http_requests_total{code="200",method="GET",route="/api/raw_stats"} 1`,
		`leaderboard_http_requests_total{code="404",method="GET",route="unmatched"} 1`,
		`leaderboard_http_request_duration_seconds_bucket{method="GET",route="/api/raw_stats",le="+Inf"} 1`,
		`leaderboard_store_errors_total{operation="aggregates"} 0`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(m, "orchestrator=") || strings.Contains(m, "/no/such/path") {
		t.Error("a raw path or query leaked into a label")
	}
}
