package api

// The abuse set of issue #14: each attack a hostile user, a cheating
// keyholder or a forged tester made, replayed against a leaderboard over a
// real ClickHouse database, each asserting the bound (status and rows
// stored). Key-region ownership is in hostile_keys_test.go.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lpgauge/lpgauge/internal/chtest"
	"github.com/lpgauge/lpgauge/leaderboard/store"
)

const hostileOrch = "0xabcdef0000000000000000000000000000000001"

// storedPosts counts the rows post_stats stored.
func storedPosts(t *testing.T, db *chtest.DB) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var n uint64
	if err := db.Conn.QueryRow(ctx, "SELECT count() FROM "+db.Name+".probe_results WHERE source LIKE 'post_stats%'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// hostileRig is a leaderboard with the shared secret over its own database.
func hostileRig(t *testing.T, cfg Config) (*fixture, *chtest.DB) {
	t.Helper()
	db := chtest.NewDB(t)
	st, err := store.NewClickHouse(db.Conn, db.Name, 0)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	srv := httptest.NewServer(New(cfg, st))
	t.Cleanup(srv.Close)
	return &fixture{srv: srv, now: time.Now().UTC().Truncate(time.Second), st: st}, db
}

// A keyholder's implausible or malformed stats are refused with a 400 that
// names the field, and nothing is stored: a 1 µs RTT scored 0.99999995
// against 0.93 for an honest 1.5 s, 1970 timestamps made partitions, NUL/ESC/
// CRLF/invalid UTF-8/look-alike and 261 KB model ids reached /api/pipelines.
func TestAbuseImplausiblePostsRefused(t *testing.T) {
	f, db := hostileRig(t, Config{Secret: secret, MaxPostBytes: 1 << 20})
	now := time.Now().Unix()
	good := string(posted(now-60, 1, 1.5))
	with := func(old, new string) []byte {
		if !strings.Contains(good, old) {
			t.Fatalf("%q not in the body", old)
		}
		return []byte(strings.Replace(good, old, new, 1))
	}
	model := func(m string) []byte {
		b, _ := json.Marshal(m)
		return with(`"model":"ByteDance/SDXL-Lightning"`, `"model":`+string(b))
	}
	manyErrors := make([]map[string]any, 33)
	for i := range manyErrors {
		manyErrors[i] = map[string]any{"error_code": fmt.Sprint("E", i), "count": 1}
	}
	errs33, _ := json.Marshal(manyErrors)
	cases := []struct {
		name  string
		body  []byte
		field string
	}{
		{"RTT of a microsecond", with(`"round_trip_time":1.5`, `"round_trip_time":0.000001`), "round_trip_time"},
		{"RTT of a day", with(`"round_trip_time":1.5`, `"round_trip_time":86400`), "round_trip_time"},
		{"timestamp 1970", with(fmt.Sprint(`"timestamp":`, now-60), `"timestamp":1`), "timestamp"},
		{"timestamp missing", with(fmt.Sprint(`"timestamp":`, now-60), `"timestamp":0`), "timestamp"},
		{"timestamp a month old", with(fmt.Sprint(`"timestamp":`, now-60), fmt.Sprint(`"timestamp":`, now-31*86400)), "timestamp"},
		{"timestamp an hour ahead", with(fmt.Sprint(`"timestamp":`, now-60), fmt.Sprint(`"timestamp":`, now+3600)), "timestamp"},
		{"unknown pipeline", with(`"pipeline":"Text to image"`, `"pipeline":"Text to image\u0000"`), "pipeline"},
		{"made-up pipeline", with(`"pipeline":"Text to image"`, `"pipeline":"free-money"`), "pipeline"},
		{"model with NUL", model("ByteDance/SDXL\x00"), "model"},
		{"model with ESC", model("\x1b[31mByteDance/SDXL"), "model"},
		{"model with CRLF", model("ByteDance/SDXL\r\nX-Injected: 1"), "model"},
		{"model look-alike", model("ByteDance/SDXL-Lightnіng"), "model"}, // Cyrillic і
		{"model of 261 KB", model(strings.Repeat("a", 261<<10)), "model"},
		{"model of 257 characters", model(strings.Repeat("a", 257)), "model"},
		{"invalid UTF-8", []byte(strings.Replace(good, "ByteDance/SDXL-Lightning", "ByteDance/\xff\xfe", 1)), "UTF-8"},
		{"success_rate 0.5", with(`"success_rate":1`, `"success_rate":0.5`), "success_rate"},
		{"33 errors", with(`"errors":[]`, `"errors":`+string(errs33)), "errors"},
		{"error message of 8 KB", with(`"errors":[]`, `"errors":[{"error_code":"X","message":"`+strings.Repeat("m", 8<<10)+`","count":1}]`), "errors"},
		{"errors not an array", with(`"errors":[]`, `"errors":"boom"`), "errors"},
		{"response_payload of 80 KB", with(`"response_payload":"{}"`, `"response_payload":"`+strings.Repeat("p", 80<<10)+`"`), "response_payload"},
	}
	for _, c := range cases {
		r := f.post(t, c.body, sign(secret, c.body))
		var e errorBody
		if r.status != 400 || json.Unmarshal(r.body, &e) != nil || !strings.Contains(e.Error, c.field) {
			t.Errorf("%s: %d %s, want 400 naming %s", c.name, r.status, bounded(r.body, 300), c.field)
		}
	}
	if n := storedPosts(t, db); n != 0 {
		t.Errorf("%d implausible posts stored, want 0", n)
	}
	// The honest post next to them is stored.
	if r := f.post(t, []byte(good), sign(secret, []byte(good))); r.status != 200 {
		t.Fatalf("honest post: %d %s", r.status, r.body)
	}
	if n := storedPosts(t, db); n != 1 {
		t.Errorf("honest post: %d rows, want 1", n)
	}
}

// Nothing posted is lost: every error and response_payload come back from
// raw_stats as posted (before, response_payload was dropped and only the
// first error kept).
func TestAbusePostedErrorsAndPayloadKept(t *testing.T) {
	f, _ := hostileRig(t, Config{Secret: secret})
	errs := `[{"error_code":"HTTP-STATUS-503","message":"busy","count":2},{"error_code":"TIMEOUT","message":"no answer in 30 s","count":1},{"error_code":"BAD-IMAGE","count":1}]`
	payload := `"{\"images\":[{\"url\":\"https://x/y.png\",\"seed\":7}]}"`
	body := []byte(fmt.Sprintf(`{"region":"FRA","orchestrator":"%s","success_rate":0,"round_trip_time":3.25,"errors":%s,`+
		`"timestamp":%d,"model":"ByteDance/SDXL-Lightning","model_is_warm":false,"pipeline":"Text to image",`+
		`"input_parameters":"{\"prompt\":\"x\"}","response_payload":%s}`, hostileOrch, errs, time.Now().Unix()-30, payload))
	if r := f.post(t, body, sign(secret, body)); r.status != 200 {
		t.Fatalf("post: %d %s", r.status, r.body)
	}
	var raw map[string][]map[string]json.RawMessage
	f.get(t, "/api/raw_stats?job_type=ai&orchestrator="+hostileOrch).decode(t, &raw)
	if len(raw["FRA"]) != 1 {
		t.Fatalf("raw_stats: %v", raw)
	}
	got := raw["FRA"][0]
	if string(got["errors"]) != errs {
		t.Errorf("errors came back as %s, want as posted %s", got["errors"], errs)
	}
	if string(got["response_payload"]) != payload {
		t.Errorf("response_payload came back as %s, want as posted %s", got["response_payload"], payload)
	}
}

// Two leaderboard processes (replicas over one database) given the same post
// at once store it once, and every poster is answered ok. Before, each
// process checked and inserted under its own mutex: both stored it.
func TestAbuseSamePostToTwoReplicasStoredOnce(t *testing.T) {
	db := chtest.NewDB(t)
	var urls []string
	for i := 0; i < 2; i++ {
		st, err := store.NewClickHouse(db.Conn, db.Name, 0)
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(New(Config{Secret: secret, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, st))
		t.Cleanup(srv.Close)
		urls = append(urls, srv.URL)
	}
	base := time.Now().Unix() - 60
	for round := 0; round < 3; round++ {
		body := posted(base-int64(round), 1, 1.5)
		var wg sync.WaitGroup
		codes := make([]int, 8)
		start := make(chan struct{})
		for i := range codes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				req, _ := http.NewRequest(http.MethodPost, urls[i%2]+"/api/post_stats", bytes.NewReader(body))
				req.Header.Set("Authorization", sign(secret, body))
				<-start
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					return
				}
				resp.Body.Close()
				codes[i] = resp.StatusCode
			}()
		}
		close(start)
		wg.Wait()
		for i, c := range codes {
			if c != 200 {
				t.Errorf("round %d, poster %d: %d, want 200", round, i, c)
			}
		}
		if n := storedPosts(t, db); n != uint64(round+1) {
			t.Fatalf("round %d: %d rows after 8 copies of one post to two replicas, want %d", round, n, round+1)
		}
	}
}

// Reads are bounded whatever the parameters: since=0 (every sample of the
// table) is refused before any store work; per-query limits turn an answer
// too large into a 400, not a process holding it.
func TestAbuseUnboundedReadsRefused(t *testing.T) {
	f := newFixtureCfg(t, Config{}, network)
	for _, path := range []string{
		"/api/percentiles?" + t2iPair + "&since=0",
		"/api/aggregated_stats?" + t2iPair + "&since=0",
		"/api/raw_stats?job_type=ai&orchestrator=" + fast + "&since=0",
		"/api/pipelines?since=0",
		"/api/history?orchestrator=" + fast + "&" + t2iPair + "&since=0&bucket=day",
		"/api/errors?orchestrator=" + fast + "&since=0",
		"/api/blocklist?since=0",
		"/api/top_ai_score?orchestrator=" + fast + "&since=0",
	} {
		r := f.get(t, path)
		var e errorBody
		if r.status != 400 || json.Unmarshal(r.body, &e) != nil || !strings.Contains(e.Error, "window") {
			t.Errorf("%s: %d %s, want 400 asking for a shorter window", path, r.status, bounded(r.body, 200))
		}
	}
	// 31 days is allowed.
	if r := f.get(t, "/api/percentiles?"+t2iPair+fmt.Sprintf("&since=%d", time.Now().Add(-30*24*time.Hour).Unix())); r.status != 200 {
		t.Errorf("30-day window: %d %s", r.status, r.body)
	}
}

// HEAD works on every GET route (was 405), and no error answer is cached
// publicly (400s carried public, max-age=30).
func TestAbuseHeadAndErrorCaching(t *testing.T) {
	f := newFixtureCfg(t, Config{}, network)
	for _, path := range []string{"/api/regions", "/api/aggregated_stats?" + t2iPair, "/healthz", "/api/pipelines"} {
		get, head := f.get(t, path), f.do(t, http.MethodHead, path)
		if head.status != get.status || head.status != 200 || len(head.body) != 0 ||
			head.header.Get("Content-Type") != get.header.Get("Content-Type") || head.header.Get("Cache-Control") != get.header.Get("Cache-Control") {
			t.Errorf("HEAD %s: %d %v %q, want GET's %d and headers, no body", path, head.status, head.header, head.body, get.status)
		}
	}
	for _, path := range []string{"/api/aggregated_stats?pipeline=x", "/api/raw_stats", "/api/nope", "/api/regions?with_data=maybe"} {
		r := f.get(t, path)
		if r.status < 400 || r.status >= 500 || strings.Contains(r.header.Get("Cache-Control"), "public") || r.header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: %d with Cache-Control %q, want a 4xx with no-store", path, r.status, r.header.Get("Cache-Control"))
		}
	}
}
