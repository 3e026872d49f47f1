package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lpgauge/lpgauge/internal/chtest"
	"github.com/lpgauge/lpgauge/internal/results/resultsdb"
	"github.com/lpgauge/lpgauge/leaderboard/store"
)

// syncBuffer is a log sink the handlers' goroutines can write to at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

const abuseSecret, abuseKeySecret = "abuse-shared-secret-42", "abuse-key-secret-4242"

// abuseRig is a leaderboard over a real ClickHouse database seeded with the
// test network, logging into a buffer, plus a way to see what is stored.
type abuseRig struct {
	*fixture
	db   *chtest.DB
	h    http.Handler
	logs *syncBuffer
}

func newAbuseRig(t *testing.T) *abuseRig {
	t.Helper()
	logs := &syncBuffer{}
	db := chtest.NewDB(t)
	now := time.Now().UTC().Truncate(time.Second)
	if err := resultsdb.Insert(context.Background(), db.Conn, db.Name, network(now)); err != nil {
		t.Fatal(err)
	}
	st, err := store.NewClickHouse(db.Conn, db.Name, 0)
	if err != nil {
		t.Fatal(err)
	}
	h := New(Config{
		Secret: abuseSecret, Keys: map[string]PostKey{"fra": {Secret: abuseKeySecret, Regions: []string{"FRA"}}},
		Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}, st)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &abuseRig{fixture: &fixture{srv: srv, now: now, st: st}, db: db, h: h, logs: logs}
}

// snapshot is every stored row, in a stable order, as text.
func (r *abuseRig) snapshot(t *testing.T) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rows, err := r.db.Conn.Query(ctx, "SELECT probe_id, orchestrator, region, pipeline, model, outcome FROM "+r.db.Name+".probe_results ORDER BY probe_id")
	if err != nil {
		t.Fatalf("probe_results is not readable: %v", err)
	}
	defer rows.Close()
	var b strings.Builder
	n := 0
	for rows.Next() {
		var id, o, reg, p, m, out string
		if err := rows.Scan(&id, &o, &reg, &p, &m, &out); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintln(&b, id, o, reg, p, m, out)
		n++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return n, b.String()
}

func (r *abuseRig) checkLogs(t *testing.T) {
	t.Helper()
	logs := r.logs.String()
	for _, bad := range []string{"goroutine ", ".go:", "panic", abuseSecret, abuseKeySecret} {
		if strings.Contains(logs, bad) {
			t.Errorf("logs contain %q:\n%s", bad, grepLines(logs, bad))
		}
	}
}

// injections are values a hostile client puts in any parameter.
var injections = []string{
	`'`, `"`, `' OR '1'='1`, `1' OR 1=1 --`, `x'; DROP TABLE probe_results; --`, `'; DROP TABLE probe_results; --`,
	`1 UNION SELECT * FROM system.tables`, `') UNION ALL SELECT name FROM system.databases --`,
	`\`, `\'`, `x\\'); --`, "a\x00b", "\x00", `/* comment */`, `-- `, `%`, `_`, `0x'`,
	"\u202e\u0000\uffff", "Ω≈ç√", "\xff\xfe", `{{7*7}}`, `${jndi:ldap://x}`, `1e309`, `-1`, `NaN`, `9999999999999999999999`,
	strings.Repeat("A", 4096),
}

var abuseParams = []string{
	"orchestrator", "region", "pipeline", "model", "since", "until", "job_type", "limit", "include_excused",
	"global", "with_data", "bucket", "failures", "min_score", "min_samples", "format",
}

// abuseBase gives each endpoint the parameters it needs, so a hostile value
// in one parameter reaches as far into the handler as it can.
var abuseBase = map[string]url.Values{
	"/api/regions":          {"with_data": {"1"}},
	"/api/pipelines":        {},
	"/api/aggregated_stats": {"pipeline": {t2i}, "model": {sdxl}},
	"/api/raw_stats":        {"orchestrator": {fast}, "pipeline": {t2i}, "model": {sdxl}},
	"/api/top_ai_score":     {"orchestrator": {fast}},
	"/api/percentiles":      {"pipeline": {t2i}, "model": {sdxl}},
	"/api/history":          {"orchestrator": {fast}, "pipeline": {t2i}, "model": {sdxl}},
	"/api/errors":           {"orchestrator": {bad}},
	"/api/perf_scores":      {},
	"/api/blocklist":        {"format": {"json"}},
	"/api/orchestrators":    {},
}

// Every parameter of every read endpoint with SQL injection, comments,
// UNION, DROP TABLE, backslashes, NUL and odd unicode: a 200 (the value is
// data, bound as such) or a JSON 4xx, never a 5xx; probe_results keeps its
// rows; the logs carry no stack trace and no secret.
func TestAbuseQueryParamsInjection(t *testing.T) {
	r := newAbuseRig(t)
	n0, before := r.snapshot(t)
	type job struct{ path, param, value string }
	jobs := make(chan job)
	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[int]int{}
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				q := url.Values{}
				for k, v := range abuseBase[j.path] {
					q[k] = v
				}
				q.Set(j.param, j.value)
				rec := httptest.NewRecorder()
				req := httptest.NewRequest(http.MethodGet, j.path+"?"+q.Encode(), nil)
				r.h.ServeHTTP(rec, req)
				mu.Lock()
				statuses[rec.Code]++
				mu.Unlock()
				what := fmt.Sprintf("%s %s=%q", j.path, j.param, bounded([]byte(j.value), 40))
				if rec.Code >= 500 {
					t.Errorf("%s: %d %s", what, rec.Code, bounded(rec.Body.Bytes(), 300))
					continue
				}
				if rec.Code >= 400 {
					var e errorBody
					if rec.Header().Get("Content-Type") != "application/json" || json.Unmarshal(rec.Body.Bytes(), &e) != nil || e.Error == "" {
						t.Errorf("%s: %d is not a JSON error: %s", what, rec.Code, bounded(rec.Body.Bytes(), 300))
					}
				}
			}
		}()
	}
	for path := range abuseBase {
		for _, p := range abuseParams {
			for _, v := range injections {
				jobs <- job{path, p, v}
			}
		}
	}
	close(jobs)
	wg.Wait()
	t.Logf("statuses: %v", statuses)
	n1, after := r.snapshot(t)
	if n1 != n0 || after != before {
		t.Errorf("probe_results changed: %d rows before, %d after", n0, n1)
	}
	r.checkLogs(t)
}

// A 1 MB value in any parameter is refused with a JSON 4xx, whether it
// reaches the handler (tested directly) or the HTTP server in front of it.
func TestAbuseOversizedAndMalformedParams(t *testing.T) {
	r := newAbuseRig(t)
	n0, before := r.snapshot(t)
	huge := strings.Repeat("x", 1<<20)
	for path := range abuseBase {
		for _, p := range abuseParams {
			q := url.Values{}
			for k, v := range abuseBase[path] {
				q[k] = v
			}
			q.Set(p, huge)
			rec := httptest.NewRecorder()
			r.h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path+"?"+q.Encode(), nil))
			// A parameter the endpoint does not take is ignored (200); one it
			// takes is refused with a JSON 400 before it reaches the store.
			used := path != "/api/regions" && (p == "orchestrator" || p == "since" || p == "until" ||
				path != "/api/top_ai_score" && (p == "pipeline" || p == "model" || p == "region"))
			var e errorBody
			switch {
			case rec.Code >= 500, used && rec.Code != 400,
				rec.Code >= 400 && (json.Unmarshal(rec.Body.Bytes(), &e) != nil || e.Error == ""):
				t.Errorf("%s %s=<1 MB>: %d %s", path, p, rec.Code, bounded(rec.Body.Bytes(), 200))
			}
		}
	}
	// Through the server: Go's own limit answers first, still a 4xx.
	resp, err := http.Get(r.srv.URL + "/api/aggregated_stats?pipeline=x&model=" + huge)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode < 400 || resp.StatusCode >= 500 {
		t.Errorf("1 MB query through the server: %d", resp.StatusCode)
	}
	// Malformed query strings: bad escapes, separators, repeated keys.
	for _, raw := range []string{"pipeline=%zz&model=%", "pipeline=" + t2i + "&pipeline=Llm&model=" + sdxl, ";;;&&&===", "since=1&since=abc", "model=%00&pipeline=%00"} {
		for path := range abuseBase {
			rec := httptest.NewRecorder()
			req := httptest.NewRequest(http.MethodGet, path, nil)
			req.URL.RawQuery = raw
			r.h.ServeHTTP(rec, req)
			if rec.Code >= 500 {
				t.Errorf("%s?%s: %d %s", path, raw, rec.Code, rec.Body.Bytes())
			}
		}
	}
	n1, after := r.snapshot(t)
	if n1 != n0 || after != before {
		t.Errorf("probe_results changed: %d rows before, %d after", n0, n1)
	}
	r.checkLogs(t)
}

func (r *abuseRig) postRaw(t *testing.T, body []byte, hdr map[string]string) reply {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, r.srv.URL+"/api/post_stats", bytes.NewReader(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return reply{resp.StatusCode, resp.Header, b.Bytes()}
}

// Forged, replayed, unsigned and oversized writes are refused (403/400/413)
// and store nothing; a correctly signed write is stored once.
func TestAbusePostStatsForgedReplayedUnsigned(t *testing.T) {
	r := newAbuseRig(t)
	n0, _ := r.snapshot(t)
	body := posted(time.Now().Add(-time.Minute).Unix(), 1, 2.5)
	ts := fmt.Sprint(time.Now().Unix())
	nonce := "nonce-0123456789abcdef"
	signed := func(secret, ts, nonce string, body []byte) map[string]string {
		return map[string]string{"X-Lpgauge-Key": "fra", "X-Lpgauge-Timestamp": ts, "X-Lpgauge-Nonce": nonce,
			"Authorization": sign(secret, append([]byte(ts+"\n"+nonce+"\n"), body...))}
	}
	other := []byte(strings.Replace(string(body), `"FRA"`, `"LAX"`, 1))
	// The key "fra" posts for FRA only: a second FRA post, another body.
	otherFRA := posted(time.Now().Add(-2*time.Minute).Unix(), 1, 2.5)
	big := append(bytes.Repeat([]byte(" "), DefaultMaxPostBytes), body...)
	cases := []struct {
		name   string
		body   []byte
		hdr    map[string]string
		status int
	}{
		{"unsigned", body, nil, 403},
		{"empty signature", body, map[string]string{"Authorization": ""}, 403},
		{"signature not hex", body, map[string]string{"Authorization": "zz' OR 1=1 --"}, 403},
		{"signature of another body", body, map[string]string{"Authorization": sign(abuseSecret, other)}, 403},
		{"signed with a guessed secret", body, map[string]string{"Authorization": sign("secret", body)}, 403},
		{"truncated signature", body, map[string]string{"Authorization": sign(abuseSecret, body)[:40]}, 403},
		{"upper-case body tampering", bytes.ToUpper(body), map[string]string{"Authorization": sign(abuseSecret, body)}, 403},
		{"key mode, unknown key", body, map[string]string{"X-Lpgauge-Key": "'; DROP TABLE post_nonces; --", "X-Lpgauge-Timestamp": ts, "X-Lpgauge-Nonce": nonce, "Authorization": sign(abuseKeySecret, body)}, 403},
		{"key mode, shared-mode signature", body, map[string]string{"X-Lpgauge-Key": "fra", "X-Lpgauge-Timestamp": ts, "X-Lpgauge-Nonce": nonce, "Authorization": sign(abuseKeySecret, body)}, 403},
		{"key mode, stale timestamp", body, signed(abuseKeySecret, fmt.Sprint(time.Now().Add(-time.Hour).Unix()), nonce+"-stale", body), 403},
		{"key mode, bad timestamp", body, signed(abuseKeySecret, "1e9", nonce+"-ts", body), 400},
		{"key mode, short nonce", body, signed(abuseKeySecret, ts, "short", body), 400},
		{"key mode, nonce injection", otherFRA, signed(abuseKeySecret, ts, "'); DROP TABLE probe_results; --", otherFRA), 201},
		{"oversized", big, map[string]string{"Authorization": sign(abuseSecret, big)}, 413},
		{"signed garbage", []byte("\x00\xff{"), map[string]string{"Authorization": sign(abuseSecret, []byte("\x00\xff{"))}, 400},
		{"signed injection in region", []byte(strings.Replace(string(body), `"FRA"`, `"FRA' OR 1=1 --"`, 1)), nil, 400},
	}
	for _, c := range cases {
		hdr := c.hdr
		if hdr == nil {
			hdr = map[string]string{"Authorization": sign(abuseSecret, c.body)}
		}
		if c.name == "unsigned" {
			hdr = nil
		}
		rep := r.postRaw(t, c.body, hdr)
		want := c.status
		if want == 201 { // a nonce is opaque data: any 16-128 characters work, bound as a parameter
			want = 200
		}
		var e errorBody
		if rep.status != want || (want != 200 && (json.Unmarshal(rep.body, &e) != nil || e.Error == "")) {
			t.Errorf("%s: %d %s, want %d", c.name, rep.status, bounded(rep.body, 200), want)
		}
	}
	if n, _ := r.snapshot(t); n != n0+1 {
		t.Fatalf("%d rows stored by refused writes (only the signed nonce-injection post may store one)", n-n0-1)
	}
	// Replay: the same signed post, twice; and the shared-mode re-post.
	h := signed(abuseKeySecret, ts, nonce, body)
	if rep := r.postRaw(t, body, h); rep.status != 200 {
		t.Fatalf("first signed post: %d %s", rep.status, rep.body)
	}
	for i := 0; i < 3; i++ {
		if rep := r.postRaw(t, body, h); rep.status != 403 || !strings.Contains(string(rep.body), "replay") {
			t.Errorf("replay %d: %d %s", i, rep.status, rep.body)
		}
	}
	// A captured signature replayed with a fresh nonce is a forgery.
	h2 := map[string]string{}
	for k, v := range h {
		h2[k] = v
	}
	h2["X-Lpgauge-Nonce"] = nonce + "-fresh"
	if rep := r.postRaw(t, body, h2); rep.status != 403 {
		t.Errorf("captured signature with a new nonce: %d %s", rep.status, rep.body)
	}
	if n, _ := r.snapshot(t); n != n0+2 {
		t.Errorf("after replays: %d new rows, want 2", n-n0)
	}
	r.checkLogs(t)
}

func bounded(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}
