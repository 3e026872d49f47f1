package orchestrator

import (
	"bytes"
	"flag"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lpgauge/lpgauge/orchestrator/runner"
)

var updateGolden = flag.Bool("update", false, "rewrite testdata/*.golden from this build")

// goLivepeerJob is a job as a go-livepeer gateway sends it: the headers of
// server/ai_process.go (Authorization marker, payment, segment), no opt-in.
func goLivepeerJob(t *testing.T, url string, body []byte) (*http.Response, []byte) {
	t.Helper()
	return post(t, url, "application/json", body,
		"Authorization", "Livepeer-AI-Worker-1.0", "Livepeer-Payment", "cGF5", "Livepeer-Segment", "c2Vn")
}

var (
	streamIDs = regexp.MustCompile(`/stream/[0-9a-f]+/`)
	hostPorts = regexp.MustCompile(`127\.0\.0\.1:[0-9]+`)
)

// wireRecord is an answer as bytes a gateway could notice: status, every
// header but Date (the clock), X-Processing-Time-Ms's value (a duration)
// and the one addition Lpgauge-Job-Timing, and the body with the random
// request id and the test server's port replaced.
func wireRecord(name string, resp *http.Response, body []byte) string {
	var b strings.Builder
	fmt.Fprintf(&b, "== %s\nstatus %d\n", name, resp.StatusCode)
	var keys []string
	for k := range resp.Header {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := strings.Join(resp.Header[k], ",")
		switch k {
		case "Date", "Lpgauge-Job-Timing":
			continue
		case "X-Processing-Time-Ms":
			v = "*"
		case "Content-Length":
			if n, err := strconv.Atoi(v); err == nil && n == len(body) {
				v = "= body length"
			}
		}
		fmt.Fprintf(&b, "%s: %s\n", k, v)
	}
	body = streamIDs.ReplaceAll(body, []byte("/stream/ID/"))
	body = hostPorts.ReplaceAll(body, []byte("HOST"))
	fmt.Fprintf(&b, "body %s\n", bytes.TrimRight(body, "\n"))
	return b.String()
}

// TestGoLivepeerExchangeUnchanged: without the progress opt-in, a
// go-livepeer-shaped request gets today's answer byte for byte (the golden
// file was written by main before issue #19) — success in URL and inline
// mode, a bad request, and a 503 after waiting in the queue — and the only
// addition is the Lpgauge-Job-Timing header.
func TestGoLivepeerExchangeUnchanged(t *testing.T) {
	r := newRig(t, t2iModel, runner.Latency{Mean: 300 * time.Millisecond}, func(c *Config) { c.QueueTimeout = 100 * time.Millisecond })
	var got strings.Builder
	var timing []string
	record := func(name string, resp *http.Response, body []byte) {
		got.WriteString(wireRecord(name, resp, body))
		timing = append(timing, resp.Header.Get("Lpgauge-Job-Timing"))
	}
	resp, body := goLivepeerJob(t, r.url+"/text-to-image", t2iBody(8, 8))
	record("text-to-image, URL mode", resp, body)
	resp, body = post(t, r.url+"/text-to-image", "application/json", t2iBody(8, 8))
	record("text-to-image, inline (old gateway)", resp, body)
	resp, body = goLivepeerJob(t, r.url+"/text-to-image", []byte(`{"prompt":"a lighthouse"}`))
	record("text-to-image without model_id", resp, body)

	busy := make(chan struct{})
	go func() {
		defer close(busy)
		resp, _ := goLivepeerJob(t, r.url+"/text-to-image", t2iBody(8, 8))
		_ = resp
	}()
	waitInUse(t, r, 1)
	resp, body = goLivepeerJob(t, r.url+"/text-to-image", t2iBody(8, 8))
	record("text-to-image while the only runner is busy", resp, body)
	<-busy

	golden := "testdata/go-livepeer-exchange.golden"
	if *updateGolden {
		if err := os.WriteFile(golden, []byte(got.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got.String() != string(want) {
		t.Errorf("answers differ from main's:\n--- got\n%s\n--- want\n%s", got.String(), want)
	}
	for i, v := range timing {
		if !strings.Contains(v, "progress=v1") {
			t.Errorf("answer %d: Lpgauge-Job-Timing %q, want the offer progress=v1 on every job", i, v)
		}
	}
}

// waitInUse waits until the rig's runners hold n jobs.
func waitInUse(t *testing.T, r *rig, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		inUse := 0
		for _, m := range r.runners.States() {
			inUse += m.InUse
		}
		if inUse >= n {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("runners never held %d jobs", n)
}
