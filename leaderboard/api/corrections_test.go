package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lpgauge/lpgauge/internal/chtest"
	"github.com/lpgauge/lpgauge/internal/results"
	"github.com/lpgauge/lpgauge/leaderboard/store"
)

// One test per correction of leaderboard-serverless listed in the README's
// "Differences" table. Each seeds the real ClickHouse through resultsdb.Insert
// (or post_stats), asks the real handler, and expects numbers taken from the
// reference formulas and golden vectors (reference/leaderboard-api.md §b), so
// each fails on the old behaviour it names.

// Golden vectors of leaderboard-serverless score/stats_scorer_test.go: the
// median is 5 s (successful jobs of 8 s and 2 s).
const (
	goldenRTS8       = 0.699751727323698  // R = 8
	goldenScore8     = 0.8949131045632943 // R = 8, S = 1
	goldenRTS2       = 0.9146101038546527 // R = 2
	goldenScore2     = 0.9701135363491284 // R = 2, S = 1
	goldenScore2At75 = 0.8076135363491285 // R = 2, S = 0.75
	goldenSingle     = 0.9299999999999999 // a single orchestrator: 0.65 + 0.35·0.8
)

const (
	corrA = "0xc0aa000000000000000000000000000000000001"
	corrB = "0xc0bb000000000000000000000000000000000002"
	corrC = "0xc0cc000000000000000000000000000000000003"
	corrE = "0xc0ee000000000000000000000000000000000004"
)

// fullEntry is an aggregated_stats entry with the additive fields the
// corrections are about.
type fullEntry struct {
	SuccessRate    float64 `json:"success_rate"`
	RoundTripScore float64 `json:"round_trip_score"`
	Score          float64 `json:"score"`
	Samples        uint64  `json:"samples"`
	Excused        uint64  `json:"excused"`
	MeanRTT        float64 `json:"mean_rtt"`
	MedianRTT      float64 `json:"median_rtt"`
	LastTested     int64   `json:"last_tested"`
}

const t2iPair = "pipeline=Text%20to%20image&model=ByteDance/SDXL-Lightning"

func mins(now time.Time, n int) time.Time { return now.Add(-time.Duration(n) * time.Minute) }

// keysOf is the sorted top-level keys of a JSON object answer, or the
// pipeline ids of a /api/pipelines answer.
func keysOf(t *testing.T, r reply) []string {
	t.Helper()
	var m map[string]json.RawMessage
	r.decode(t, &m)
	keys := []string{}
	if raw, ok := m["pipelines"]; ok {
		var ps []struct{ ID string }
		if err := json.Unmarshal(raw, &ps); err != nil {
			t.Fatal(err)
		}
		for _, p := range ps {
			keys = append(keys, p.ID)
		}
		return keys
	}
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Old: the window filtered on insert time (event_time) and the posted
// timestamp was ignored, so back-filled and retried probes landed "now", and
// top_ai_score ignored since/until altogether. Every row here is inserted
// now; only its start time is old, so insert time and test time disagree.
func TestCorrectionWindowIsProbeStartTimeNotInsertTime(t *testing.T) {
	f := newFixtureCfg(t, Config{Secret: secret}, func(now time.Time) []results.Result {
		old := now.Add(-30 * time.Hour)
		return []results.Result{
			row(corrA, "FRA", t2i, sdxl, old, results.Success, 4*time.Second),
			row(corrA, "MDW", llm, llama, old, results.Success, 1*time.Second),
			row(corrA, "LAX", llm, llama, mins(now, 10), results.Success, 500*time.Millisecond),
			row(corrB, "FRA", t2i, sdxl, mins(now, 10), results.Success, 2*time.Second),
		}
	})
	// A back-filled post: tested 30 h ago, posted now.
	body := []byte(strings.Replace(string(posted(f.now.Add(-30*time.Hour).Unix(), 1, 3)), "0xABCDEF", "0xC0DDEF", 1))
	if r := f.post(t, body, sign(secret, body)); r.status != 200 {
		t.Fatalf("back-filled post: %d %s", r.status, r.body)
	}
	const poster = "0xc0ddef0000000000000000000000000000000001"
	old := fmt.Sprintf("&since=%d.5&until=%d", f.now.Add(-31*time.Hour).Unix(), f.now.Add(-29*time.Hour).Unix())
	cases := []struct {
		name, path string
		keys       []string // top-level keys (orchestrators, regions or pipeline ids)
		body       string   // exact body, when keys is nil
	}{
		{"aggregated_stats default window: only the recent probe", "/api/aggregated_stats?" + t2iPair, []string{corrB}, ""},
		{"aggregated_stats old window: the old probe and the back-filled post", "/api/aggregated_stats?" + t2iPair + old, []string{corrA, poster}, ""},
		{"raw_stats default window", "/api/raw_stats?job_type=ai&orchestrator=" + corrA, []string{"LAX"}, ""},
		{"raw_stats old window", "/api/raw_stats?job_type=ai&orchestrator=" + corrA + old, []string{"FRA", "MDW"}, ""},
		{"raw_stats of the back-filled post, default window", "/api/raw_stats?job_type=ai&orchestrator=" + poster, []string{}, ""},
		{"raw_stats of the back-filled post, old window", "/api/raw_stats?job_type=ai&orchestrator=" + poster + old, []string{"FRA"}, ""},
		{"pipelines default window", "/api/pipelines", []string{llm, t2i}, ""},
		{"pipelines old window", "/api/pipelines?" + old[1:], []string{llm, t2i}, ""},
		{"pipelines region MDW default window: its only probe is old", "/api/pipelines?region=MDW", []string{}, ""},
		{"pipelines region MDW old window", "/api/pipelines?region=MDW" + old, []string{llm}, ""},
		// Over all rows (the old default) corrA's best would be LAX against
		// a median of 0.75 s: 0.65 + 0.35·0.8^(0.5/0.75), not 0.93.
		{"top_ai_score default window: LAX alone in its scope", "/api/top_ai_score?orchestrator=" + corrA, nil,
			fmt.Sprintf(`{"region":"LAX","orchestrator":"%s","value":%v,"model":"%s","pipeline":"%s"}`, corrA, goldenSingle, llama, llm)},
		{"top_ai_score old window: MDW alone in its scope", "/api/top_ai_score?orchestrator=" + corrA + old, nil,
			fmt.Sprintf(`{"region":"MDW","orchestrator":"%s","value":%v,"model":"%s","pipeline":"%s"}`, corrA, goldenSingle, llama, llm)},
		{"top_ai_score before any probe", fmt.Sprintf("/api/top_ai_score?orchestrator=%s&since=1000&until=2000", corrA), nil, "{}"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := f.get(t, c.path)
			if c.keys == nil {
				if r.status != 200 || string(r.body) != c.body {
					t.Errorf("%s: %d %s\nwant %s", c.path, r.status, r.body, c.body)
				}
				return
			}
			if got := keysOf(t, r); !reflect.DeepEqual(got, c.keys) {
				t.Errorf("%s: keys %v, want %v (body %s)", c.path, got, c.keys, r.body)
			}
		})
	}
}

// Old: R was the mean round-trip time of every job, failures included, so a
// failure that came back in 0.1 s raised round_trip_score. Here R is the mean
// of successful probes only: the fast failures below lower S and nothing else.
func TestCorrectionFastFailureDoesNotImproveRTTScore(t *testing.T) {
	s := time.Second
	f := newFixture(t, func(now time.Time) []results.Result {
		// Successful times 2,2,2,8,8,8 → median 5 s, the golden vectors' scope.
		return []results.Result{
			row(corrA, "FRA", t2i, sdxl, mins(now, 1), results.Success, 8*s),
			row(corrA, "FRA", t2i, sdxl, mins(now, 2), results.Success, 8*s),
			row(corrA, "FRA", t2i, sdxl, mins(now, 3), results.Success, 8*s),
			row(corrA, "FRA", t2i, sdxl, mins(now, 4), results.Failure, 100*time.Millisecond),
			row(corrB, "FRA", t2i, sdxl, mins(now, 1), results.Success, 2*s),
			row(corrB, "FRA", t2i, sdxl, mins(now, 2), results.Success, 2*s),
			row(corrB, "FRA", t2i, sdxl, mins(now, 3), results.Success, 2*s),
			row(corrB, "FRA", t2i, sdxl, mins(now, 4), results.Failure, 100*time.Millisecond),
		}
	})
	cases := []struct {
		orch           string
		s, r, rts, sco float64
	}{
		// With failures in R (old): (24+0.1)/4 = 6.025 s → 0.8^1.205 ≈ 0.764.
		{corrA, 0.75, 8, goldenRTS8, 0.65*0.75 + 0.35*goldenRTS8},
		// Old: (6+0.1)/4 = 1.525 s → 0.8^0.305 ≈ 0.934.
		{corrB, 0.75, 2, goldenRTS2, goldenScore2At75},
	}
	for _, q := range []string{"", "&region=FRA", "&orchestrator=" + corrA, "&orchestrator=" + corrB} {
		var got map[string]map[string]fullEntry
		f.get(t, "/api/aggregated_stats?"+t2iPair+q).decode(t, &got)
		for _, c := range cases {
			e, ok := got[c.orch]["FRA"]
			if !ok {
				if !strings.Contains(q, "orchestrator=") {
					t.Errorf("%s: %s missing: %v", q, c.orch, got)
				}
				continue
			}
			if !near(e.SuccessRate, c.s) || !near(e.MeanRTT, c.r) || !near(e.MedianRTT, 5) ||
				!near(e.RoundTripScore, c.rts) || !near(e.Score, c.sco) || e.Samples != 4 {
				t.Errorf("%s %s = %+v, want S %v R %v M 5 round_trip_score %v score %v samples 4", q, c.orch, e, c.s, c.r, c.rts, c.sco)
			}
		}
	}
}

// Old: with no successful job in scope the median was NULL → 0, k = +Inf,
// and a mean RTT of 0 (a refused connection) made e^(−Inf·0) = NaN, which Go's
// JSON encoder refuses: a 500 for the whole pipeline. Here the round-trip
// score is 0 and the answer a 200.
func TestCorrectionNoSuccessfulJobsScoresZeroNotNaN(t *testing.T) {
	f := newFixture(t, func(now time.Time) []results.Result {
		return []results.Result{
			// Llm: nobody ever succeeded, one failure took no time at all.
			row(corrA, "FRA", llm, llama, mins(now, 1), results.Failure, 0),
			row(corrB, "FRA", llm, llama, mins(now, 2), results.Failure, 500*time.Millisecond),
			// Text to image succeeds in FRA, only fails in LAX: LAX's own
			// scope has no median.
			row(corrA, "FRA", t2i, sdxl, mins(now, 1), results.Success, 2*time.Second),
			row(corrC, "LAX", t2i, sdxl, mins(now, 1), results.Failure, 0),
		}
	})
	cases := []struct {
		path string
		want map[string]string // orchestrator → region that must be all zeros
	}{
		{"/api/aggregated_stats?pipeline=Llm&model=" + llama, map[string]string{corrA: "FRA", corrB: "FRA"}},
		{"/api/aggregated_stats?pipeline=Llm&model=" + llama + "&global=1", map[string]string{corrA: "GLOBAL", corrB: "GLOBAL"}},
		{"/api/aggregated_stats?pipeline=Llm&model=" + llama + "&region=GLOBAL", map[string]string{corrA: "GLOBAL"}},
		{"/api/aggregated_stats?" + t2iPair + "&region=LAX", map[string]string{corrC: "LAX"}},
		{"/api/aggregated_stats?pipeline=Llm&model=" + llama + "&orchestrator=" + corrA, map[string]string{corrA: "FRA"}},
	}
	for _, c := range cases {
		var got map[string]map[string]fullEntry
		f.get(t, c.path).decode(t, &got)
		for orch, reg := range c.want {
			e, ok := got[orch][reg]
			if !ok || e.SuccessRate != 0 || e.RoundTripScore != 0 || e.Score != 0 || e.MedianRTT != 0 || e.Samples != 1 {
				t.Errorf("%s: %s/%s = %+v (present %v), want one sample scoring 0 everywhere", c.path, orch, reg, e, ok)
			}
		}
	}
	// The orchestrator page and the gateway output for the same scope.
	want := fmt.Sprintf(`{"region":"FRA","orchestrator":"%s","value":0,"model":"%s","pipeline":"%s"}`, corrB, llama, llm)
	if r := f.get(t, "/api/top_ai_score?orchestrator="+corrB); r.status != 200 || string(r.body) != want {
		t.Errorf("top_ai_score: %d %s, want %s", r.status, r.body, want)
	}
	if r := f.get(t, "/api/perf_scores?pipeline=Llm&model="+llama); r.status != 200 || !json.Valid(r.body) {
		t.Errorf("perf_scores: %d %s, want a 200 JSON answer", r.status, r.body)
	}
}

// Old: leaderboard-serverless had no excused outcome: a tester-side fault
// (its own network, its price ceiling) reached the leaderboard as a failed
// job and cost the orchestrator. Here excused probes are stored and shown on
// request, but never counted in S, R, the median, samples or pipelines.
func TestCorrectionExcusedProbesStoredNeverScored(t *testing.T) {
	f := newFixture(t, func(now time.Time) []results.Result {
		ex := func(orch, region, pipeline, model string, n int) results.Result {
			// A fast excused probe: were it counted, it would also pull the
			// median and R down.
			return row(orch, region, pipeline, model, mins(now, n), results.Excused, 50*time.Millisecond)
		}
		return []results.Result{
			row(corrA, "FRA", t2i, sdxl, mins(now, 1), results.Success, 2*time.Second),
			ex(corrA, "FRA", t2i, sdxl, 2), ex(corrA, "FRA", t2i, sdxl, 3), ex(corrA, "FRA", t2i, sdxl, 4),
			row(corrB, "FRA", t2i, sdxl, mins(now, 1), results.Success, 8*time.Second),
			ex(corrE, "LAX", t2i, sdxl, 1),  // an orchestrator only ever excused
			ex(corrA, "MDW", llm, llama, 5), // a pipeline only ever excused
		}
	})
	var got map[string]map[string]fullEntry
	f.get(t, "/api/aggregated_stats?"+t2iPair).decode(t, &got)
	// Golden vectors: median of 2 and 8 is 5.
	for _, c := range []struct {
		orch       string
		rts, score float64
	}{{corrA, goldenRTS2, goldenScore2}, {corrB, goldenRTS8, goldenScore8}} {
		e := got[c.orch]["FRA"]
		if e.SuccessRate != 1 || e.Samples != 1 || !near(e.MedianRTT, 5) || !near(e.RoundTripScore, c.rts) || !near(e.Score, c.score) {
			t.Errorf("%s = %+v, want S 1, 1 sample, M 5, round_trip_score %v, score %v", c.orch, e, c.rts, c.score)
		}
	}
	if a, b := got[corrA]["FRA"].Excused, got[corrB]["FRA"].Excused; a != 3 || b != 0 {
		t.Errorf("excused = %d and %d, want the 3 left out of A's numbers counted beside them, 0 for B", a, b)
	}
	if _, ok := got[corrE]; ok || len(got) != 2 {
		t.Errorf("an orchestrator with only excused probes must not be scored: %v", got)
	}
	if r := f.get(t, "/api/top_ai_score?orchestrator="+corrE); string(r.body) != "{}" {
		t.Errorf("top_ai_score of an only-excused orchestrator: %s, want {}", r.body)
	}
	if keys := keysOf(t, f.get(t, "/api/pipelines")); !reflect.DeepEqual(keys, []string{t2i}) {
		t.Errorf("pipelines = %v: a pipeline with only excused probes must not be listed", keys)
	}
	// Stored: raw_stats shows them when asked, and only then.
	for q, want := range map[string]int{"": 1, "&include_excused=true": 4} {
		var raw map[string][]map[string]any
		f.get(t, "/api/raw_stats?"+t2iPair+"&orchestrator="+corrA+q).decode(t, &raw)
		if len(raw["FRA"]) != want {
			t.Errorf("raw_stats%s: %d rows, want %d", q, len(raw["FRA"]), want)
		}
	}
}

// Old: top_ai_score took the row with the highest success rate, then the
// lowest RTT, and reported that row's score, which need not be the highest.
// Here the highest score wins: corrA's LAX (S 0.75, R 2 s) beats its FRA
// (S 1, R 20 s) because its score is higher.
func TestCorrectionTopAIScorePicksHighestScore(t *testing.T) {
	s := time.Second
	f := newFixture(t, func(now time.Time) []results.Result {
		// Network-wide successful times 2,2,2,8,8,20 → median 5 s.
		return []results.Result{
			row(corrA, "FRA", t2i, sdxl, mins(now, 1), results.Success, 20*s),
			row(corrA, "LAX", t2i, sdxl, mins(now, 1), results.Success, 2*s),
			row(corrA, "LAX", t2i, sdxl, mins(now, 2), results.Success, 2*s),
			row(corrA, "LAX", t2i, sdxl, mins(now, 3), results.Success, 2*s),
			row(corrA, "LAX", t2i, sdxl, mins(now, 4), results.Failure, 100*time.Millisecond),
			row(corrB, "FRA", t2i, sdxl, mins(now, 1), results.Success, 8*s),
			row(corrB, "FRA", t2i, sdxl, mins(now, 2), results.Success, 8*s),
		}
	})
	// FRA would score 0.65 + 0.35·0.8^(20/5) = 0.79336 < 0.8076…
	fra := 0.65 + 0.35*rttScore(20, 5)
	if !(fra < goldenScore2At75) {
		t.Fatalf("fixture does not discriminate: FRA %v, LAX %v", fra, goldenScore2At75)
	}
	for _, addr := range []string{corrA, strings.ToUpper(corrA), "0x" + strings.ToUpper(corrA[2:])} {
		var got topScore
		f.get(t, "/api/top_ai_score?orchestrator="+addr).decode(t, &got)
		if got.Region != "LAX" || got.Orchestrator != corrA || got.Pipeline != t2i || got.Model != sdxl || !near(got.Value, goldenScore2At75) {
			t.Errorf("top_ai_score?orchestrator=%s = %+v, want LAX with the golden %v", addr, got, goldenScore2At75)
		}
	}
}

// Old: raw_stats returned every row of the window. Here at most limit rows
// (default 1000, at most 10000), newest first.
func TestCorrectionRawStatsLimit(t *testing.T) {
	const n = 1001
	f := newFixture(t, func(now time.Time) []results.Result {
		rows := make([]results.Result, n)
		for i := range rows {
			rows[i] = row(corrA, "FRA", t2i, sdxl, now.Add(-time.Duration(i+1)*time.Second), results.Success, time.Second)
		}
		return rows
	})
	base := "/api/raw_stats?" + t2iPair + "&orchestrator=" + corrA
	cases := []struct {
		q      string
		status int
		rows   int
	}{
		{"", 200, 1000},
		{"&limit=5", 200, 5},
		{"&limit=10000", 200, n},
		{"&limit=10001", 400, 0},
	}
	for _, c := range cases {
		r := f.get(t, base+c.q)
		if r.status != c.status {
			t.Errorf("%s: %d %s, want %d", c.q, r.status, r.body, c.status)
			continue
		}
		if c.status != 200 {
			continue
		}
		var raw map[string][]rawStat
		r.decode(t, &raw)
		got := raw["FRA"]
		if len(got) != c.rows || got[0].Timestamp != f.now.Add(-time.Second).Unix() ||
			got[len(got)-1].Timestamp != f.now.Add(-time.Duration(c.rows)*time.Second).Unix() {
			t.Errorf("%s: %d rows, want the %d newest", c.q, len(got), c.rows)
		}
	}
}

// The orchestrator page asks aggregated_stats with orchestrator=; the
// leaderboard without. The median is the (pipeline, model, region scope)'s,
// so the same orchestrator must get the same entry both ways, whatever the
// region scope and whether the window is read from rollups, raw edges or both.
// leaderboard-serverless dropped the filter before its median too; this
// guards our rollup and cache paths, which have their own median queries.
func TestCorrectionOrchestratorFilterNeverMovesTheMedian(t *testing.T) {
	f := newFixture(t, network)
	// Medians of the successful times in network (reference percentile_cont).
	recent := fmt.Sprintf("&since=%d&until=%d", f.now.Add(-12*time.Minute).Unix(), f.now.Unix())
	cases := []struct {
		name, q string
		median  float64
	}{
		{"every region (2,2,2,3,3,4,10,10)", "", 3},
		{"FRA (2,2,2,10,10)", "&region=FRA", 2},
		{"LAX (3,3,4)", "&region=lax", 3},
		{"GLOBAL pooled", "&region=GLOBAL", 3},
		{"global=1 beside regions", "&global=1", 3},
		{"sub-hour window, raw edges only (2,3,10)", recent, 3},
		{"sub-hour window in FRA (2,10)", recent + "&region=FRA", 6},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var all map[string]map[string]fullEntry
			f.get(t, "/api/aggregated_stats?"+t2iPair+c.q).decode(t, &all)
			if len(all) == 0 {
				t.Fatal("no entries")
			}
			for orch, regs := range all {
				for reg, e := range regs {
					if !near(e.MedianRTT, c.median) {
						t.Errorf("%s/%s median %v, want %v", orch, reg, e.MedianRTT, c.median)
					}
				}
				for _, addr := range []string{orch, "0x" + strings.ToUpper(orch[2:])} {
					var one map[string]map[string]fullEntry
					f.get(t, "/api/aggregated_stats?"+t2iPair+c.q+"&orchestrator="+addr).decode(t, &one)
					if !reflect.DeepEqual(one, map[string]map[string]fullEntry{orch: regs}) {
						t.Errorf("orchestrator=%s: %v\nwithout the filter: %v", addr, one, regs)
					}
				}
			}
		})
	}
}

// Old: addresses were stored as posted and top_ai_score did not lower-case
// its parameter, so a checksummed (mixed-case) address split an orchestrator
// in two or matched nothing. Here every address is lower-cased on the way in
// and in every parameter.
func TestCorrectionAddressesAreCaseInsensitive(t *testing.T) {
	f := newFixtureCfg(t, Config{Secret: secret}, func(now time.Time) []results.Result {
		// A tester row with a checksummed address, as go-livepeer prints it.
		return []results.Result{row("0xC0Aa000000000000000000000000000000000001", "LAX", t2i, sdxl, mins(now, 2), results.Success, 2*time.Second)}
	})
	// A posted row for the same orchestrator, in another case again.
	body := []byte(strings.Replace(string(posted(f.now.Add(-time.Minute).Unix(), 1, 2)), "0xABCDEF0000000000000000000000000000000001", "0xC0AA000000000000000000000000000000000001", 1))
	if r := f.post(t, body, sign(secret, body)); r.status != 200 {
		t.Fatalf("post: %d %s", r.status, r.body)
	}
	for _, addr := range []string{corrA, strings.ToUpper(corrA), "0x" + strings.ToUpper(corrA[2:]), "0xC0aA000000000000000000000000000000000001"} {
		if keys := keysOf(t, f.get(t, "/api/aggregated_stats?"+t2iPair+"&orchestrator="+addr)); !reflect.DeepEqual(keys, []string{corrA}) {
			t.Errorf("aggregated_stats orchestrator=%s: %v, want one lower-case key", addr, keys)
		}
		if keys := keysOf(t, f.get(t, "/api/raw_stats?job_type=ai&orchestrator="+addr)); !reflect.DeepEqual(keys, []string{"FRA", "LAX"}) {
			t.Errorf("raw_stats orchestrator=%s: regions %v, want the posted FRA and the tested LAX", addr, keys)
		}
		var top topScore
		f.get(t, "/api/top_ai_score?orchestrator="+addr).decode(t, &top)
		// Two successes of 2 s in scope: R = M, the single-orchestrator golden.
		if top.Orchestrator != corrA || !near(top.Value, goldenSingle) {
			t.Errorf("top_ai_score orchestrator=%s: %+v", addr, top)
		}
	}
	if keys := keysOf(t, f.get(t, "/api/aggregated_stats?"+t2iPair)); !reflect.DeepEqual(keys, []string{corrA}) {
		t.Errorf("aggregated_stats without a filter: %v, want the one lower-case address", keys)
	}
}

// Old: a post from a region that exists only for transcoding (or not at
// all) matched no region row, inserted nothing and still answered 200 "ok";
// a read with an unknown region silently answered {}. Here both are a JSON
// 400 naming the region and listing the codes to use, and nothing is stored.
func TestCorrectionUnknownRegionIs400(t *testing.T) {
	f := newFixtureCfg(t, Config{Secret: secret}, network)
	for _, region := range []string{"XYZ", "SEA", "ATL", "GLOBAL"} {
		body := []byte(strings.Replace(string(posted(f.now.Unix(), 1, 1)), `"region":"FRA"`, `"region":"`+region+`"`, 1))
		r := f.post(t, body, sign(secret, body))
		if r.status != 400 || r.header.Get("Content-Type") != "application/json" ||
			!strings.Contains(string(r.body), `\"`+region+`\"`) || !strings.Contains(string(r.body), "FRA") {
			t.Errorf("post from %s: %d %s, want a JSON 400 naming it and listing FRA", region, r.status, r.body)
		}
	}
	if keys := keysOf(t, f.get(t, "/api/raw_stats?job_type=ai&include_excused=1&orchestrator=0xabcdef0000000000000000000000000000000001")); len(keys) != 0 {
		t.Errorf("a refused post was stored: %v", keys)
	}
	for _, path := range []string{
		"/api/aggregated_stats?" + t2iPair + "&region=xyz",
		"/api/raw_stats?" + t2iPair + "&orchestrator=" + fast + "&region=xyz",
		"/api/pipelines?region=xyz",
		"/api/percentiles?" + t2iPair + "&region=xyz",
		"/api/perf_scores?region=xyz",
	} {
		r := f.get(t, path)
		if r.status != 400 || r.header.Get("Content-Type") != "application/json" ||
			!strings.Contains(string(r.body), `unknown region \"XYZ\"`) || !strings.Contains(string(r.body), "LAX") {
			t.Errorf("%s: %d %s, want a JSON 400 naming XYZ and listing the codes", path, r.status, r.body)
		}
	}
}

// Old: an unknown job_type was logged and ignored; job_type=ai without a
// pipeline let rows of different pipelines overwrite each other; a bad
// since/until was http.Error's text/plain (and NaN, negative or reversed
// windows passed); 404 and 405 were Go's text. Here each is a JSON error with
// Content-Type application/json that names what to fix.
func TestCorrectionBadRequestsAreJSONErrors(t *testing.T) {
	f := newFixture(t, network)
	raw := "/api/raw_stats?job_type=ai&orchestrator=" + fast
	cases := []struct {
		path   string
		status int
		says   string
	}{
		{"/api/aggregated_stats?" + t2iPair + "&job_type=video", 400, "job_type"},
		{"/api/raw_stats?job_type=video&orchestrator=" + fast, 400, "job_type"},
		{"/api/pipelines?job_type=video", 400, "job_type"},
		{"/api/aggregated_stats?job_type=ai", 400, "pipeline and model"},
		{"/api/aggregated_stats?job_type=ai&region=FRA", 400, "pipeline and model"},
		{raw + "&since=yesterday", 400, "since"},
		{raw + "&until=Inf", 400, "until"},
		{"/api/pipelines?since=NaN", 400, "since"},
		{"/api/top_ai_score?orchestrator=" + fast + "&until=abc", 400, "until"},
		{"/api/top_ai_score?orchestrator=" + fast + "&since=-1", 400, "since"},
		{"/api/top_ai_score?orchestrator=" + fast + "&since=2000&until=1000", 400, "since"},
		{"/api/aggregated_stats?" + t2iPair + "&since=1e20", 400, "since"},
		{"/api/no_such_endpoint", 404, ""},
		{"/api/post_stats", 405, ""},
	}
	for _, c := range cases {
		r := f.get(t, c.path)
		var body map[string]string
		if r.status != c.status || r.header.Get("Content-Type") != "application/json" ||
			json.Unmarshal(r.body, &body) != nil || body["error"] == "" || !strings.Contains(body["error"], c.says) {
			t.Errorf("%s: %d %q %s, want %d application/json {\"error\"} saying %q", c.path, r.status, r.header.Get("Content-Type"), r.body, c.status, c.says)
		}
	}
}

// Old: no body limit (a post was read whole into memory). Here a body of
// up to MaxPostBytes is read and a larger one refused with a JSON 413 before
// any signature work. (The constant-time compare itself, hmac.Equal instead
// of ==, has no functional symptom a test can observe reliably.)
func TestCorrectionPostBodyLimit(t *testing.T) {
	const limit = 4096
	f := newFixtureCfg(t, Config{Secret: secret, MaxPostBytes: limit}, noRows)
	good := posted(f.now.Unix(), 1, 1)
	pad := func(n int) []byte { // a valid Stats object of exactly n bytes
		b := append(append([]byte{}, good[:len(good)-1]...), []byte(`,"pad":"`)...)
		b = append(b, bytes.Repeat([]byte("x"), n-len(b)-2)...)
		return append(b, '"', '}')
	}
	for _, c := range []struct {
		size, status int
	}{{limit, 200}, {limit + 1, 413}, {10 * limit, 413}} {
		body := pad(c.size)
		if len(body) != c.size || !json.Valid(body) {
			t.Fatalf("pad(%d) = %d bytes", c.size, len(body))
		}
		r := f.post(t, body, sign(secret, body))
		if r.status != c.status || (c.status != 200 && !json.Valid(r.body)) {
			t.Errorf("%d-byte body: %d %s, want %d", c.size, r.status, r.body, c.status)
		}
	}
	// A signature that differs only in its last hex digit is still refused.
	sig := []byte(sign(secret, good))
	sig[len(sig)-1] ^= 1
	if r := f.post(t, good, string(sig)); r.status != 403 {
		t.Errorf("near-miss signature: %d %s", r.status, r.body)
	}
}

// Old: every post was a new events row, so a tester's retry counted twice.
// Here the probe id is the body's hash: the same body posted again — in
// sequence or concurrently — is acknowledged and stored once.
func TestCorrectionRepostStoredOnce(t *testing.T) {
	f := newFixtureCfg(t, Config{Secret: secret}, noRows)
	body := posted(f.now.Add(-time.Minute).Unix(), 0, 0.5)
	if r := f.post(t, body, sign(secret, body)); r.status != 200 || string(r.body) != "ok" {
		t.Fatalf("first post: %d %s", r.status, r.body)
	}
	var wg sync.WaitGroup
	codes := make([]int, 8)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/api/post_stats", bytes.NewReader(body))
			req.Header.Set("Authorization", sign(secret, body))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return
			}
			resp.Body.Close()
			codes[i] = resp.StatusCode
		}()
	}
	wg.Wait()
	for i, c := range codes {
		if c != 200 {
			t.Errorf("re-post %d: %d, want 200", i, c)
		}
	}
	const orch = "0xabcdef0000000000000000000000000000000001"
	var raw map[string][]rawStat
	f.get(t, "/api/raw_stats?job_type=ai&orchestrator="+orch).decode(t, &raw)
	var got map[string]map[string]fullEntry
	f.get(t, "/api/aggregated_stats?"+t2iPair).decode(t, &got)
	if len(raw["FRA"]) != 1 || got[orch]["FRA"].Samples != 1 {
		t.Errorf("9 posts of one body: %d raw rows, %d samples, want 1 and 1", len(raw["FRA"]), got[orch]["FRA"].Samples)
	}
}

// Old: on a database error post_stats wrote a 500 and then, missing a
// return, "ok" after it. Here a store failure is a JSON 503 and nothing else.
func TestCorrectionPostStoreDownIs503JSONOnly(t *testing.T) {
	db := chtest.NewDB(t)
	st, err := store.NewClickHouse(db.Conn, "no_such_db", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(New(Config{Secret: secret, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, st))
	defer srv.Close()
	f := &fixture{srv: srv}
	body := posted(time.Now().Add(-time.Minute).Unix(), 1, 1)
	r := f.post(t, body, sign(secret, body))
	var e map[string]string
	if r.status != 503 || r.header.Get("Content-Type") != "application/json" ||
		json.Unmarshal(r.body, &e) != nil || len(e) != 1 || e["error"] == "" || bytes.HasSuffix(r.body, []byte("ok")) {
		t.Errorf("post with the store down: %d %q %s, want only a JSON 503", r.status, r.header.Get("Content-Type"), r.body)
	}
}
