package api

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lpgauge/lpgauge/internal/results"
)

const secret = "tester-shared-secret"

func sign(key string, body []byte) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

func (f *fixture) post(t *testing.T, body []byte, auth string) reply {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/api/post_stats", bytes.NewReader(body))
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, b}
}

func noRows(time.Time) []results.Result { return nil }

// A stats object as the AI job tester posts it.
func posted(ts int64, success int, rtt float64) []byte {
	return []byte(fmt.Sprintf(`{"region":"FRA","orchestrator":"0xABCDEF0000000000000000000000000000000001","success_rate":%d,`+
		`"round_trip_time":%v,"errors":[],"timestamp":%d,"model":"ByteDance/SDXL-Lightning","model_is_warm":true,`+
		`"pipeline":"Text to image","input_parameters":"{\"prompt\":\"x\"}","response_payload":"{}","test_outcome":"passed"}`, success, rtt, ts))
}

func TestPostStatsStoresOnceAndScores(t *testing.T) {
	f := newFixtureCfg(t, Config{Secret: secret}, noRows)
	body := posted(time.Now().Add(-time.Minute).Unix(), 1, 2.5)
	for i := 0; i < 2; i++ { // the re-post must not count twice
		r := f.post(t, body, sign(secret, body))
		if r.status != 200 || string(r.body) != "ok" {
			t.Fatalf("post %d: %d %s", i, r.status, r.body)
		}
	}
	var got map[string]map[string]entry
	f.get(t, "/api/aggregated_stats?pipeline=Text%20to%20image&model=ByteDance/SDXL-Lightning").decode(t, &got)
	e := got["0xabcdef0000000000000000000000000000000001"]["FRA"]
	if e.Samples != 1 || e.SuccessRate != 1 {
		t.Fatalf("posted stat: want one sample with success rate 1, got %v", got)
	}
	// Single orchestrator: its RTT is the median → the 0.93 golden value.
	if e.Score != 0.9299999999999999 {
		t.Errorf("score = %v, want 0.9299999999999999", e.Score)
	}
	var raw map[string][]map[string]any
	f.get(t, "/api/raw_stats?job_type=ai&orchestrator=0xabcdef0000000000000000000000000000000001").decode(t, &raw)
	if len(raw["FRA"]) != 1 || raw["FRA"][0]["source"] != "post_stats" || raw["FRA"][0]["round_trip_time"] != 2.5 {
		t.Errorf("raw of the posted row: %v", raw)
	}
}

func TestPostStatsRefusals(t *testing.T) {
	f := newFixtureCfg(t, Config{Secret: secret, MaxPostBytes: 4096}, noRows)
	good := posted(time.Now().Unix(), 0, 1)
	with := func(old, new string) []byte { return []byte(strings.Replace(string(good), old, new, 1)) }
	big := append(append([]byte{}, good[:len(good)-1]...), []byte(`,"pad":"`+strings.Repeat("x", 5000)+`"}`)...)
	cases := []struct {
		name   string
		body   []byte
		auth   string
		status int
		want   string
	}{
		{"no signature", good, "", 403, `{"error":"request can not be authenticated"}`},
		{"wrong key", good, sign("other", good), 403, `{"error":"request can not be authenticated"}`},
		{"signature of another body", good, sign(secret, with("FRA", "LAX")), 403, "authenticated"},
		{"unknown region", with("FRA", "XYZ"), "", 400, `invalid region \"XYZ\"`},
		{"GLOBAL is not a place", with("FRA", "GLOBAL"), "", 400, "invalid region"},
		{"transcoding-only region", with("FRA", "ATL"), "", 400, "invalid region"},
		{"not JSON", []byte("{nope"), "", 400, "not a JSON"},
		{"no pipeline", with(`"pipeline":"Text to image"`, `"pipeline":""`), "", 400, "pipeline and model"},
		{"bad address", with("0xABCDEF", "0xZZ"), "", 400, "invalid orchestrator"},
		{"negative rtt", with(`"round_trip_time":1`, `"round_trip_time":-1`), "", 400, "round_trip_time"},
		{"too large", big, "", 413, "larger than 4096"},
	}
	for _, c := range cases {
		auth := c.auth
		if auth == "" && c.status != 403 {
			auth = sign(secret, c.body)
		}
		r := f.post(t, c.body, auth)
		var m map[string]string
		if r.status != c.status || json.Unmarshal(r.body, &m) != nil || !strings.Contains(string(r.body), c.want) {
			t.Errorf("%s: got %d %s, want %d with %s", c.name, r.status, r.body, c.status, c.want)
		}
	}
	if r := f.get(t, "/api/post_stats"); r.status != 405 || !strings.Contains(string(r.body), `"error"`) {
		t.Errorf("GET post_stats: %d %s", r.status, r.body)
	}
	g := newFixtureCfg(t, Config{}, noRows)
	if r := g.post(t, good, sign("", good)); r.status != 403 {
		t.Errorf("without a configured secret posts must be refused, got %d %s", r.status, r.body)
	}
}

func (f *fixture) postSigned(t *testing.T, body []byte, key, secret string, ts int64, nonce string) reply {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/api/post_stats", bytes.NewReader(body))
	tsS := fmt.Sprint(ts)
	req.Header.Set("X-Lpgauge-Key", key)
	req.Header.Set("X-Lpgauge-Timestamp", tsS)
	req.Header.Set("X-Lpgauge-Nonce", nonce)
	req.Header.Set("Authorization", sign(secret, append([]byte(tsS+"\n"+nonce+"\n"), body...)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, b}
}

// Per-tester keys: signature over timestamp, nonce and body; a replayed
// nonce, a stale timestamp or another tester's key is refused.
func TestPostStatsSignedModeRefusesReplays(t *testing.T) {
	f := newFixtureCfg(t, Config{Keys: map[string]PostKey{"fra-1": {Secret: "k1"}, "lax-1": {Secret: "k2"}}}, noRows)
	now := time.Now().Unix()
	body := posted(now-30, 1, 1.5)
	if r := f.postSigned(t, body, "fra-1", "k1", now, "nonce-0000000000001"); r.status != 200 || string(r.body) != "ok" {
		t.Fatalf("signed post: %d %s", r.status, r.body)
	}
	cases := []struct {
		name, key, secret, nonce string
		ts                       int64
		status                   int
		want                     string
	}{
		{"replay", "fra-1", "k1", "nonce-0000000000001", now, 403, "replayed"},
		{"stale timestamp", "fra-1", "k1", "nonce-0000000000002", now - 3600, 403, "clock"},
		{"other tester's secret", "lax-1", "k1", "nonce-0000000000003", now, 403, "authenticated"},
		{"unknown key", "sin-9", "k1", "nonce-0000000000004", now, 403, "authenticated"},
		{"short nonce", "fra-1", "k1", "n1", now, 400, "Nonce"},
	}
	for _, c := range cases {
		r := f.postSigned(t, body, c.key, c.secret, c.ts, c.nonce)
		if r.status != c.status || !strings.Contains(string(r.body), c.want) {
			t.Errorf("%s: %d %s, want %d %s", c.name, r.status, r.body, c.status, c.want)
		}
	}
	var raw map[string][]map[string]any
	f.get(t, "/api/raw_stats?job_type=ai&orchestrator=0xabcdef0000000000000000000000000000000001").decode(t, &raw)
	if len(raw["FRA"]) != 1 || raw["FRA"][0]["source"] != "post_stats:fra-1" {
		t.Errorf("signed post must be stored once with its key as source: %v", raw)
	}
}
