package tester

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// gatewayHeaders is every header a go-livepeer gateway's AI job request
// carries: Content-Type from the generated client (ai/worker/runner.gen.go,
// NewGen*RequestWithBody), Authorization, Livepeer-Segment and
// Livepeer-Payment (server/ai_process.go:1674-1676), and what Go's
// transport adds to any request (Host is not in Header; User-Agent,
// Content-Length, Accept-Encoding gzip: server/segment_rpc.go:51-66 leaves
// compression on).
var gatewayHeaders = map[string]bool{
	"Content-Type": true, "Authorization": true, "Livepeer-Segment": true, "Livepeer-Payment": true,
	"User-Agent": true, "Content-Length": true, "Accept-Encoding": true,
}

// inputKey is what an orchestrator could recognise a job by: the uploaded
// file and the text fields for multipart jobs, the prompt, messages or text
// for JSON ones.
func inputKey(t *testing.T, r *http.Request, body []byte) string {
	ct, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct == "multipart/form-data" {
		mr := multipart.NewReader(strings.NewReader(string(body)), params["boundary"])
		h := sha256.New()
		for {
			p, err := mr.NextPart()
			if err != nil {
				break
			}
			b, _ := io.ReadAll(p)
			if p.FormName() == "image" || p.FormName() == "audio" {
				fmt.Fprintf(h, "%s=%x;", p.FormName(), sha256.Sum256(b))
			}
		}
		return fmt.Sprintf("%x", h.Sum(nil))
	}
	var j struct {
		Prompt   string `json:"prompt"`
		Text     string `json:"text"`
		Messages any    `json:"messages"`
	}
	if err := json.Unmarshal(body, &j); err != nil {
		t.Errorf("job body is not JSON: %v", err)
	}
	m, _ := json.Marshal(j.Messages)
	return j.Prompt + "|" + j.Text + "|" + string(m)
}

// Over 100 rounds of one orchestrator, every pipeline's probe sends an
// input the orchestrator has not seen before (no prompt, message, sentence,
// image or audio repeats), and every job request carries only headers a
// go-livepeer gateway's request carries too (no tester marker).
func TestHundredProbesNeverRepeatAnInput(t *testing.T) {
	var (
		mu      sync.Mutex
		inputs  = map[string]map[string]int{} // pipeline path → input key → times seen
		bodies  = map[string]map[[32]byte]bool{}
		headers = map[string]bool{}
		agents  = map[string]bool{}
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		key := inputKey(t, r, body)
		mu.Lock()
		if inputs[r.URL.Path] == nil {
			inputs[r.URL.Path], bodies[r.URL.Path] = map[string]int{}, map[[32]byte]bool{}
		}
		inputs[r.URL.Path][key]++
		bodies[r.URL.Path][sha256.Sum256(body)] = true
		for k := range r.Header {
			headers[k] = true
		}
		agents[r.Header.Get("User-Agent")] = true
		mu.Unlock()
		// Any answer ends the probe with a row; refusing is quickest.
		http.Error(w, "busy", http.StatusInternalServerError)
	}))
	defer srv.Close()
	targets, err := ParseTargets("0x00000000000000000000000000000000000000b1=" + srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	pipelines := []string{"text-to-image", "image-to-image", "upscale", "image-to-video", "audio-to-text",
		"segment-anything-2", "llm", "image-to-text", "text-to-speech"}
	var spec []string
	for _, p := range pipelines {
		spec = append(spec, p+":some/model")
	}
	models, err := ParseModels(strings.Join(spec, ","))
	if err != nil {
		t.Fatal(err)
	}
	plan, err := Plan(targets, models)
	if err != nil {
		t.Fatal(err)
	}
	tt := newTester(t, nil)
	const rounds = 100
	slot := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for i := range rounds {
		var sink collect
		// A round every 15 minutes, as the tester's default period.
		sum := tt.RunRound(context.Background(), slot.Add(time.Duration(i)*15*time.Minute), plan, &sink)
		if len(sink.rows) != len(plan) || len(sum.Results) != len(plan) {
			t.Fatalf("round %d: %d rows for %d planned probes", i, len(sink.rows), len(plan))
		}
	}
	for _, p := range pipelines {
		in := inputs["/"+p]
		if len(in) != rounds {
			var dup []string
			for k, n := range in {
				if n > 1 {
					dup = append(dup, fmt.Sprintf("%q×%d", k[:min(len(k), 80)], n))
				}
			}
			slices.Sort(dup)
			t.Errorf("%s: %d distinct inputs over %d probes; repeated: %v", p, len(in), rounds, dup[:min(len(dup), 5)])
		}
		if len(bodies["/"+p]) != rounds {
			t.Errorf("%s: %d distinct request bodies over %d probes", p, len(bodies["/"+p]), rounds)
		}
	}
	for ua := range agents {
		// Go's own, as go-livepeer's client sends (it sets none).
		if !strings.HasPrefix(ua, "Go-http-client/") {
			t.Errorf("job request User-Agent %q; a go-livepeer gateway sends Go's default", ua)
		}
	}
	for h := range headers {
		if !gatewayHeaders[h] {
			t.Errorf("job request carries header %s, which a go-livepeer gateway's does not", h)
		}
	}
}

// Every round visits its orchestrators in a freshly drawn order at drawn
// moments of the spread window, and still writes exactly one row for each.
func TestRoundOrderIsDrawnPerRound(t *testing.T) {
	const n = 12
	var (
		mu      sync.Mutex
		arrival []int
	)
	var targets []string
	for i := range n {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			arrival = append(arrival, i)
			mu.Unlock()
			http.Error(w, "busy", http.StatusInternalServerError)
		}))
		defer srv.Close()
		targets = append(targets, fmt.Sprintf("0x%040x=%s", 0xc0+i, srv.URL))
	}
	ts, err := ParseTargets(strings.Join(targets, ","))
	if err != nil {
		t.Fatal(err)
	}
	models, _ := ParseModels("llm:m")
	plan, err := Plan(ts, models)
	if err != nil {
		t.Fatal(err)
	}
	// 50 ms per orchestrator: each starts inside its own slice of the
	// window, so arrivals follow the drawn order.
	tt := newTester(t, func(c *Config) { c.Spread = n * 50 * time.Millisecond; c.Concurrency = n })
	var orders [][]int
	slot := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for round := range 3 {
		mu.Lock()
		arrival = nil
		mu.Unlock()
		var sink collect
		tt.RunRound(context.Background(), slot.Add(time.Duration(round)*15*time.Minute), plan, &sink)
		rows := map[string]int{}
		for _, r := range sink.rows {
			rows[r.Orchestrator]++
		}
		if len(sink.rows) != n || len(rows) != n {
			t.Fatalf("round %d: %d rows for %d orchestrators (%d distinct)", round, len(sink.rows), n, len(rows))
		}
		mu.Lock()
		orders = append(orders, append([]int(nil), arrival...))
		mu.Unlock()
	}
	inPlanOrder := 0
	for _, o := range orders {
		if slices.IsSorted(o) {
			inPlanOrder++
		}
	}
	if inPlanOrder > 0 || slices.Equal(orders[0], orders[1]) || slices.Equal(orders[1], orders[2]) {
		t.Errorf("orchestrators visited in the same order round after round (or in the list's order): %v", orders)
	}
}
