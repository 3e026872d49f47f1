package api

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/lpgauge/lpgauge/leaderboard/store"
	"github.com/lpgauge/lpgauge/regions"
)

// The fuzz targets drive the real gin handler over the real ClickHouse store
// type, whose connection points at a loopback port nobody listens on: every
// store call fails fast with ErrUnavailable (503). So a fuzzed request that
// gets anything but a 4xx, a 503 or a store-free 200 has found a bug — a
// panic shows up as the recovery middleware's 500 — and no fuzz worker has to
// start a ClickHouse server of its own.

const fuzzKeyID, fuzzKeySecret = "tester-fra", "fra-secret-0123456789"

var (
	fuzzOnce    sync.Once
	fuzzHandler http.Handler
	fuzzServer  *Server
	fuzzNow     = time.Date(2025, 11, 24, 12, 0, 0, 0, time.UTC)
)

func fuzzRig(tb testing.TB) (http.Handler, *Server) {
	fuzzOnce.Do(func() {
		conn, err := clickhouse.Open(&clickhouse.Options{
			Addr:        []string{"127.0.0.1:1"},
			DialTimeout: 200 * time.Millisecond,
			ReadTimeout: time.Second,
		})
		if err != nil {
			panic(err)
		}
		st, err := store.NewClickHouse(conn, "fuzz", time.Second)
		if err != nil {
			panic(err)
		}
		cfg := Config{
			Secret: secret, Keys: map[string]PostKey{fuzzKeyID: {Secret: fuzzKeySecret}},
			QueryTimeout: 2 * time.Second, Now: func() time.Time { return fuzzNow },
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		}
		fuzzHandler = New(cfg, st)
		cfg.defaults()
		fuzzServer = &Server{cfg: cfg, store: st}
	})
	return fuzzHandler, fuzzServer
}

// readEndpoints are every GET route; sharedParams marks those that parse the
// shared parameters (params.go) and so must refuse whatever parseParams refuses.
var readEndpoints = []struct {
	path         string
	sharedParams bool
}{
	{"/api/regions", false}, // compat catalogue ignores parameters unless with_data
	{"/api/pipelines", true},
	{"/api/aggregated_stats", true},
	{"/api/raw_stats", true},
	{"/api/top_ai_score", false}, // takes orchestrator/since/until only
	{"/api/percentiles", true},
	{"/api/history", true},
	{"/api/errors", true},
	{"/api/perf_scores", true},
	{"/api/blocklist", true},
	{"/api/orchestrators", true},
	{"/api/health", false},
	{"/healthz", false},
}

// checkAnswer holds what every answer must be: no 500 (a panic or an
// unexpected error), JSON errors that say something, no stack trace.
func checkAnswer(t *testing.T, what string, rec *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	switch {
	case rec.Code == http.StatusInternalServerError:
		t.Fatalf("%s: 500 %s", what, rec.Body.Bytes())
	case rec.Code >= 500 && rec.Code != http.StatusServiceUnavailable && rec.Code != http.StatusGatewayTimeout:
		t.Fatalf("%s: unexpected %d %s", what, rec.Code, rec.Body.Bytes())
	}
	body := rec.Body.String()
	if strings.Contains(body, "goroutine ") || strings.Contains(body, ".go:") {
		t.Fatalf("%s: stack trace in the answer: %s", what, body)
	}
	if rec.Code < 400 || strings.HasPrefix(what, "/api/health?") { // health has its own documented 503 shape
		return nil
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s: %d with Content-Type %q", what, rec.Code, ct)
	}
	var e map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
		t.Fatalf("%s: %d body is not JSON: %v: %q", what, rec.Code, err, body)
	}
	if msg, _ := e["error"].(string); msg == "" {
		t.Fatalf("%s: %d without an error message: %s", what, rec.Code, body)
	}
	return e
}

// FuzzQueryParams sends a fuzzed query string to every read endpoint and
// checks the shared parser's promises directly.
func FuzzQueryParams(f *testing.F) {
	for _, q := range []string{
		"",
		"pipeline=Text%20to%20image&model=ByteDance/SDXL-Lightning",
		"pipeline=text-to-image&model=ByteDance%2FSDXL-Lightning&region=fra&since=1700000000.5&until=1700003600",
		"orchestrator=0xFA57000000000000000000000000000000000001&job_type=ai&limit=10&include_excused=true",
		"pipeline=Llm&model=x&region=GLOBAL&global=1",
		"orchestrator=0x1&pipeline=Llm&model=x&bucket=day&since=0&until=4294967295",
		"failures=3&min_score=0.5&min_samples=3&format=json",
		"limit=100&min_score=0&with_data=1",
		"since=NaN&until=-Inf",
		"since=1e309",
		"region=%00&model=%27%3B+DROP+TABLE+probe_results%3B--",
		"pipeline=%ff%fe&model=%E2%80%AE",
		"job_type=AI&pipeline=x&model=y",
		"since=2000&until=1000",
		"limit=99999999999999999999",
		"a=%zz&pipeline;model",
	} {
		for i := range readEndpoints {
			f.Add(uint8(i), q)
		}
	}
	f.Fuzz(func(t *testing.T, which uint8, rawQuery string) {
		h, s := fuzzRig(t)
		ep := readEndpoints[int(which)%len(readEndpoints)]
		req := &http.Request{
			Method: http.MethodGet, URL: &url.URL{Path: ep.path, RawQuery: rawQuery},
			Header: http.Header{}, Host: "leaderboard.test", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			RemoteAddr: "192.0.2.1:1234",
		}
		req = req.WithContext(t.Context())
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		what := ep.path + "?" + rawQuery
		checkAnswer(t, what, rec)

		q := req.URL.Query()
		p, err := s.parseParams(q)
		if err != nil {
			if err.Error() == "" {
				t.Fatalf("%s: empty error", what)
			}
			if ep.sharedParams && rec.Code != http.StatusBadRequest {
				t.Fatalf("%s: parseParams refused (%v) but the endpoint answered %d", what, err, rec.Code)
			}
			return
		}
		// What parseParams accepts is usable as is.
		if p.since.After(p.until) || p.since.Before(time.Unix(0, 0)) || p.until.After(time.Unix(maxUnix, 999999999)) {
			t.Fatalf("%s: window %v..%v", what, p.since, p.until)
		}
		if p.region != "" {
			if _, ok := regions.Lookup(p.region); !ok {
				t.Fatalf("%s: unknown region %q accepted", what, p.region)
			}
		}
		if (p.pipeline == "") != (p.model == "") {
			t.Fatalf("%s: pipeline %q without model %q (or the reverse)", what, p.pipeline, p.model)
		}
		if p.jobType != regions.AI && p.jobType != regions.Transcoding {
			t.Fatalf("%s: job type %q", what, p.jobType)
		}
		if p.orchestrator != strings.ToLower(strings.TrimSpace(p.orchestrator)) {
			t.Fatalf("%s: orchestrator %q not normalised", what, p.orchestrator)
		}
		// The extra parameters: a value is either refused or within bounds.
		if n, err := intParam(q, "limit", 100, 1, 10000); err == nil && (n < 1 || n > 10000) {
			t.Fatalf("%s: limit %d out of bounds", what, n)
		}
		if x, err := floatParam(q, "min_score", 0, 0, 1); err == nil && !(x >= 0 && x <= 1) {
			t.Fatalf("%s: min_score %v out of bounds", what, x)
		}
		if v, err := enumParam(q, "bucket", "hour", "hour", "day"); err == nil && v != "hour" && v != "day" {
			t.Fatalf("%s: bucket %q", what, v)
		}
		if _, err := boolParam(q, "global"); err != nil && !strings.Contains(err.Error(), "global") {
			t.Fatalf("%s: boolean error %q does not name the parameter", what, err)
		}
	})
}

// FuzzPostStats posts fuzzed bodies in both HMAC modes, correctly signed,
// forged and unsigned. A write that is not correctly signed is a 403 (or a
// 400/413 the body earns before any check); a signed one is a 400 exactly
// when resultFromPost refuses it, else it reaches the (down) store: 503.
// Accepted bodies round-trip through the Stats shape to the same row.
func FuzzPostStats(f *testing.F) {
	now := fuzzNow.Unix()
	for _, body := range [][]byte{
		posted(now-60, 1, 2.5),
		posted(now-60, 0, 0.1),
		posted(0, 1, 86400),
		[]byte(`{"region":"LAX","orchestrator":" 0xabcdef0000000000000000000000000000000001 ","success_rate":0.5,"round_trip_time":1e-9,` +
			`"errors":[{"error_code":"HTTP-500","message":"boom","count":1}],"timestamp":1,"model":"m","pipeline":"llm"}`),
		[]byte(`{"region":"FRA","orchestrator":"0xabcdef0000000000000000000000000000000001","success_rate":1,"round_trip_time":1,` +
			`"model":"x'; DROP TABLE probe_results; --","pipeline":"Text to image\u0000"}`),
		[]byte(`{"success_rate":null}`),
		[]byte(`{"success_rate":1e400}`),
		[]byte(`{"timestamp":-9223372036854775808,"region":"FRA"}`),
		[]byte(`[]`),
		[]byte(`null`),
		[]byte(``),
	} {
		for mode := uint8(0); mode < 6; mode++ {
			f.Add(mode, body, "0123456789abcdef0123")
		}
	}
	f.Fuzz(func(t *testing.T, mode uint8, body []byte, nonce string) {
		h, s := fuzzRig(t)
		req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/api/post_stats", bytes.NewReader(body))
		validNonce := nonce == strings.TrimSpace(nonce) && len(nonce) >= 16 && len(nonce) <= 128 && validHeaderValue(nonce)
		ts := strconv.FormatInt(fuzzNow.Unix(), 10)
		const (
			unsigned = iota
			sharedSigned
			sharedForged
			keySigned
			keyForged
			keyUnknown
		)
		mode %= 6
		switch mode {
		case sharedSigned:
			req.Header.Set("Authorization", sign(secret, body))
		case sharedForged:
			req.Header.Set("Authorization", sign(secret+"x", body))
		case keySigned, keyForged, keyUnknown:
			key, sec := fuzzKeyID, fuzzKeySecret
			if mode == keyForged {
				sec = "not-" + sec
			}
			if mode == keyUnknown {
				key = "tester-nowhere"
			}
			req.Header.Set("X-Lpgauge-Key", key)
			req.Header.Set("X-Lpgauge-Timestamp", ts)
			if validHeaderValue(nonce) {
				req.Header.Set("X-Lpgauge-Nonce", nonce)
			}
			req.Header.Set("Authorization", sign(sec, append([]byte(ts+"\n"+strings.TrimSpace(nonce)+"\n"), body...)))
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		what := "post mode " + strconv.Itoa(int(mode)) + " " + strconv.Quote(string(body))
		checkAnswer(t, what, rec)
		if rec.Code == http.StatusOK {
			t.Fatalf("%s: stored while the store is down?", what)
		}
		if len(body) > DefaultMaxPostBytes && mode != unsigned {
			if rec.Code != http.StatusRequestEntityTooLarge {
				t.Fatalf("%s: %d-byte body answered %d", what, len(body), rec.Code)
			}
			return
		}
		r, _, perr := s.resultFromPost(body, "")
		switch mode {
		case unsigned, sharedForged, keyUnknown:
			if rec.Code != http.StatusForbidden {
				t.Fatalf("%s: not signed correctly but answered %d %s", what, rec.Code, rec.Body.Bytes())
			}
		case keyForged:
			if rec.Code != http.StatusForbidden && !(rec.Code == http.StatusBadRequest && !validNonce) {
				t.Fatalf("%s: forged key signature answered %d %s", what, rec.Code, rec.Body.Bytes())
			}
		case sharedSigned:
			want := http.StatusServiceUnavailable
			if perr != nil {
				want = http.StatusBadRequest
			}
			if rec.Code != want {
				t.Fatalf("%s: want %d (resultFromPost: %v), got %d %s", what, want, perr, rec.Code, rec.Body.Bytes())
			}
		case keySigned:
			// The body is validated before the nonce is claimed (the store).
			want := http.StatusServiceUnavailable
			if !validNonce || perr != nil {
				want = http.StatusBadRequest
			}
			if rec.Code != want {
				t.Fatalf("%s: nonce %q: want %d, got %d %s", what, nonce, want, rec.Code, rec.Body.Bytes())
			}
		}
		if perr != nil {
			return
		}
		// An accepted post is a row the scores can use.
		if reg, ok := regions.Lookup(r.Region); !ok || reg.Code == regions.Global || !reg.Has(regions.AI) {
			t.Fatalf("%s: region %q stored", what, r.Region)
		}
		if !addressRE.MatchString(r.Orchestrator) || r.Pipeline == "" || r.Model == "" {
			t.Fatalf("%s: row %+v", what, r)
		}
		if r.Total < 0 || r.Total > 24*time.Hour || r.StartedAt.After(fuzzNow.Add(5*time.Minute)) || r.StartedAt.Before(time.Unix(0, 0)) {
			t.Fatalf("%s: total %v started %v", what, r.Total, r.StartedAt)
		}
		// Round trip: the Stats object as decoded, encoded again, is the same row.
		var p postedStats
		if err := json.Unmarshal(body, &p); err != nil {
			t.Fatalf("%s: accepted but does not decode: %v", what, err)
		}
		again, err := json.Marshal(p)
		if err != nil {
			t.Fatalf("%s: re-encode: %v", what, err)
		}
		r2, _, err := s.resultFromPost(again, "")
		if err != nil {
			t.Fatalf("%s: re-encoded %s refused: %v", what, again, err)
		}
		r2.ProbeID = r.ProbeID
		if r.StartedAt.Equal(r2.StartedAt) {
			r2.StartedAt = r.StartedAt
		}
		if !equalJSON(r, r2) {
			t.Fatalf("%s: round trip changed the row:\n%+v\n%+v", what, r, r2)
		}
	})
}

func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

func equalJSON(a, b any) bool {
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}
