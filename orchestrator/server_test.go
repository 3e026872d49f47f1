package orchestrator

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"image"
	"image/png"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lpgauge/lpgauge/capability"
	"github.com/lpgauge/lpgauge/orchestrator/aimodels"
	"github.com/lpgauge/lpgauge/orchestrator/cpurunner"
	"github.com/lpgauge/lpgauge/orchestrator/runner"
)

// ledger is a Gate that records what was paid and charged.
type ledger struct {
	refuse  *Refusal
	payErr  error
	mu      sync.Mutex
	checks  []Job
	charged int64
}

func (l *ledger) Check(_ *http.Request, job Job) (Admission, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.checks = append(l.checks, job)
	if l.refuse != nil {
		return nil, l.refuse
	}
	return l, nil
}

func (l *ledger) Pay(context.Context) error { return l.payErr }

func (l *ledger) Charge(units int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.charged += units
}

func (l *ledger) total() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.charged
}

type rig struct {
	url     string
	op      string // the operator listener: /status, /metrics
	srv     *Server
	runners *cpurunner.Runners
	gate    *ledger
}

func newRig(t *testing.T, models string, lat runner.Latency, tweak func(*Config)) *rig {
	t.Helper()
	ms, err := aimodels.Parse(models)
	if err != nil {
		t.Fatal(err)
	}
	cr, err := cpurunner.New(ms, cpurunner.Config{Latency: lat})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cr.Close)
	cfg := Config{MaxBodyBytes: 100 << 20, MaxResponseBytes: 256 << 20, MaxQueue: 8,
		QueueTimeout: time.Second, RunnerTimeout: time.Minute, ResultTTL: 10 * time.Minute, EthAddr: "0xabc"}
	if tweak != nil {
		tweak(&cfg)
	}
	g := &ledger{}
	s, err := New(cfg, cr, g)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	op := httptest.NewServer(s.OperatorHandler())
	t.Cleanup(op.Close)
	return &rig{url: srv.URL, op: op.URL, srv: s, runners: cr, gate: g}
}

func post(t *testing.T, url, contentType string, body []byte, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func t2iBody(w, h int) []byte {
	b, _ := json.Marshal(map[string]any{"prompt": "a lighthouse", "model_id": "ByteDance/SDXL-Lightning", "width": w, "height": h, "seed": 1})
	return b
}

const t2iModel = "text-to-image:ByteDance/SDXL-Lightning:true"

var t2i, _ = capability.BySlug("text-to-image")

func TestTextToImageURLModeAndInline(t *testing.T) {
	r := newRig(t, t2iModel, runner.Latency{}, nil)

	resp, body := post(t, r.url+"/text-to-image", "application/json", t2iBody(80, 48), "Authorization", aiWorkerProtocol)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if resp.Header.Get(ProcessingTimeHeader) == "" {
		t.Errorf("no %s header", ProcessingTimeHeader)
	}
	var out runner.ImageResponse
	if err := json.Unmarshal(body, &out); err != nil || len(out.Images) != 1 {
		t.Fatalf("body %s: %v", body, err)
	}
	if !strings.HasPrefix(out.Images[0].URL, r.url+"/stream/") || !strings.HasSuffix(out.Images[0].URL, ".png") {
		t.Fatalf("URL-mode result %q is not a /stream/ URL on this server", out.Images[0].URL)
	}
	media, err := http.Get(out.Images[0].URL)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(media.Body)
	media.Body.Close()
	if err != nil || img.Bounds().Dx() != 80 || img.Bounds().Dy() != 48 {
		t.Fatalf("stored media: %v %v, want an 80x48 PNG", err, img)
	}
	if got := r.gate.total(); got != 80*48 {
		t.Errorf("charged %d units, want h×w×n = %d", got, 80*48)
	}

	_, body = post(t, r.url+"/text-to-image", "application/json", t2iBody(32, 24))
	out = runner.ImageResponse{}
	_ = json.Unmarshal(body, &out)
	u, ok := strings.CutPrefix(out.Images[0].URL, "data:image/png;base64,")
	if !ok {
		t.Fatalf("inline result %.40q is not a PNG data URL", out.Images[0].URL)
	}
	raw, _ := base64.StdEncoding.DecodeString(u)
	if cfg, err := png.DecodeConfig(bytes.NewReader(raw)); err != nil || cfg.Width != 32 || cfg.Height != 24 {
		t.Errorf("inline PNG %v %+v, want 32x24", err, cfg)
	}
}

func TestInsufficientCapacity(t *testing.T) {
	r := newRig(t, t2iModel, runner.Latency{Mean: 800 * time.Millisecond}, func(c *Config) { c.QueueTimeout = 150 * time.Millisecond })
	type answer struct {
		status int
		body   string
		retry  string
	}
	answers := make(chan answer, 2)
	for range 2 {
		go func() {
			req, _ := http.NewRequest(http.MethodPost, r.url+"/text-to-image", bytes.NewReader(t2iBody(8, 8)))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				answers <- answer{}
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			answers <- answer{resp.StatusCode, string(b), resp.Header.Get("Retry-After")}
		}()
	}
	a, b := <-answers, <-answers
	if a.status == 503 {
		a, b = b, a
	}
	if a.status != 200 || b.status != 503 {
		t.Fatalf("statuses %d and %d, want 200 and 503", a.status, b.status)
	}
	if b.body != "insufficient capacity\n" || b.retry == "" {
		t.Errorf("503 body %q Retry-After %q, want go-livepeer's exact text and a Retry-After", b.body, b.retry)
	}
	if n := r.runners.Served(t2i, "ByteDance/SDXL-Lightning"); n != 1 {
		t.Errorf("runner saw %d jobs, want 1", n)
	}
}

func TestQueuedJobWaitsForTheSlot(t *testing.T) {
	r := newRig(t, t2iModel, runner.Latency{Mean: 300 * time.Millisecond}, func(c *Config) { c.QueueTimeout = 3 * time.Second })
	var wg sync.WaitGroup
	codes := make([]int, 2)
	for i := range codes {
		wg.Go(func() {
			resp, _ := post(t, r.url+"/text-to-image", "application/json", t2iBody(8, 8))
			codes[i] = resp.StatusCode
		})
	}
	wg.Wait()
	if codes[0] != 200 || codes[1] != 200 {
		t.Errorf("statuses %v, want both 200 (the second waits in the queue)", codes)
	}
}

func TestGateRefusalRunsNothing(t *testing.T) {
	r := newRig(t, t2iModel, runner.Latency{}, nil)
	r.gate.refuse = &Refusal{Status: http.StatusPaymentRequired, Message: "invalid payment"}
	resp, body := post(t, r.url+"/text-to-image", "application/json", t2iBody(8, 8))
	if resp.StatusCode != 402 || string(body) != "invalid payment\n" {
		t.Errorf("got %d %q, want 402 invalid payment", resp.StatusCode, body)
	}
	if n := r.runners.Served(t2i, "ByteDance/SDXL-Lightning"); n != 0 || r.gate.total() != 0 {
		t.Errorf("runner saw %d jobs, charged %d; want none", n, r.gate.total())
	}
	if st := r.runners.States()[0]; st.InUse != 0 {
		t.Errorf("refused job holds %d slots", st.InUse)
	}
}

func TestRunnerFailureIsNotCharged(t *testing.T) {
	r := newRig(t, t2iModel, runner.Latency{FailureRate: 1}, nil)
	resp, body := post(t, r.url+"/text-to-image", "application/json", t2iBody(8, 8))
	if resp.StatusCode != 500 || string(body) != "Text-to-image pipeline error.\n" {
		t.Errorf("got %d %q, want the runner's 500 and its text", resp.StatusCode, body)
	}
	if r.gate.total() != 0 {
		t.Errorf("charged %d for a failed job", r.gate.total())
	}
}

func TestBadRequests(t *testing.T) {
	r := newRig(t, t2iModel+",llm:meta-llama/Meta-Llama-3.1-8B-Instruct:true", runner.Latency{}, func(c *Config) { c.MaxBodyBytes = 1 << 20 })
	msgs := []map[string]string{{"role": "user", "content": "hi"}}
	llmBody := func(v map[string]any) []byte { b, _ := json.Marshal(v); return b }
	cases := []struct {
		name, path string
		body       []byte
		status     int
		text       string
	}{
		{"llm without max_tokens", "/llm", llmBody(map[string]any{"model": "meta-llama/Meta-Llama-3.1-8B-Instruct", "messages": msgs}), 400, "MaxTokens not specified\n"},
		{"not JSON", "/text-to-image", []byte("{"), 400, ""},
		{"t2i without prompt", "/text-to-image", []byte(`{"model_id":"ByteDance/SDXL-Lightning"}`), 400, "missing prompt\n"},
		{"unserved model", "/text-to-image", []byte(`{"prompt":"x","model_id":"other/model"}`), 503, "insufficient capacity\n"},
		{"body too large", "/text-to-image", bytes.Repeat([]byte(" "), 2<<20), 413, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, body := post(t, r.url+c.path, "application/json", c.body)
			if resp.StatusCode != c.status || (c.text != "" && string(body) != c.text) {
				t.Errorf("got %d %q, want %d %q", resp.StatusCode, body, c.status, c.text)
			}
		})
	}
}

func TestLLMStreamPassesThrough(t *testing.T) {
	r := newRig(t, "llm:meta-llama/Meta-Llama-3.1-8B-Instruct:true", runner.Latency{Mean: 100 * time.Millisecond}, nil)
	body, _ := json.Marshal(map[string]any{"model": "meta-llama/Meta-Llama-3.1-8B-Instruct", "max_tokens": 64, "stream": true,
		"messages": []map[string]string{{"role": "user", "content": "Write about rivers."}}})
	resp, err := http.Post(r.url+"/llm", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	var last string
	n := 0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			last = d
			n++
		}
	}
	if last != "[DONE]" || n < 3 {
		t.Errorf("%d events ending %q, want several ending [DONE]", n, last)
	}
	if got := r.gate.total(); got != 64 {
		t.Errorf("charged %d, want max_tokens 64", got)
	}
}

func TestStreamExpiryAndTraversal(t *testing.T) {
	r := newRig(t, t2iModel, runner.Latency{}, func(c *Config) { c.ResultTTL = 300 * time.Millisecond })
	_, body := post(t, r.url+"/text-to-image", "application/json", t2iBody(8, 8), "Authorization", aiWorkerProtocol)
	var out runner.ImageResponse
	_ = json.Unmarshal(body, &out)
	get := func(u string) int {
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get(out.Images[0].URL); code != 200 {
		t.Fatalf("fresh result: %d", code)
	}
	id := strings.Split(strings.TrimPrefix(out.Images[0].URL, r.url+"/stream/"), "/")[0]
	for _, p := range []string{"/stream/" + id + "/..%2f..%2fetc%2fpasswd", "/stream/..%2f/0.png", "/stream/" + id + "/%2e%2e", "/stream/../../etc/passwd"} {
		if code := get(r.url + p); code != 404 && code != 400 {
			t.Errorf("%s: %d, want 404 or 400", p, code)
		}
	}
	time.Sleep(400 * time.Millisecond)
	if code := get(out.Images[0].URL); code != 404 {
		t.Errorf("expired result: %d, want 404", code)
	}
}

func pngPart(t *testing.T, w, h int) ([]byte, string) {
	t.Helper()
	var img bytes.Buffer
	_ = png.Encode(&img, image.NewGray(image.Rect(0, 0, w, h)))
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fw, _ := mw.CreateFormFile("image", "in.png")
	fw.Write(img.Bytes())
	mw.WriteField("model_id", "stabilityai/stable-video-diffusion-img2vid-xt")
	mw.WriteField("width", "64")
	mw.WriteField("height", "32")
	mw.Close()
	return buf.Bytes(), mw.FormDataContentType()
}

func TestImageToVideoIsOneVideo(t *testing.T) {
	r := newRig(t, "image-to-video:stabilityai/stable-video-diffusion-img2vid-xt:true", runner.Latency{}, nil)
	body, ct := pngPart(t, 16, 16)
	resp, out := post(t, r.url+"/image-to-video", ct, body, "Authorization", aiWorkerProtocol)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, out)
	}
	var res runner.ImageResponse
	if err := json.Unmarshal(out, &res); err != nil || len(res.Images) != 1 {
		t.Fatalf("body %.200s: %v", out, err)
	}
	media, err := http.Get(res.Images[0].URL)
	if err != nil {
		t.Fatal(err)
	}
	defer media.Body.Close()
	video, err := io.ReadAll(media.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := media.Header.Get("Content-Type"); ct != "video/mp4" || !strings.HasSuffix(res.Images[0].URL, ".mp4") {
		t.Errorf("served as %s at %s, want video/mp4", ct, res.Images[0].URL)
	}
	if frames := mp4Frames(t, video); len(frames) != 25 || frames[0].Width != 64 || frames[0].Height != 32 {
		t.Fatalf("video has %d frames, the first %+v: want 25 of 64x32", len(frames), frames[0])
	}
	if got := r.gate.total(); got != 64*32*25 {
		t.Errorf("charged %d, want h×w×25", got)
	}
}

func TestExternalRunnerURL(t *testing.T) {
	ext, err := runner.New(runner.Config{Pipeline: "text-to-image", ModelID: "ext/model", AuthToken: "tok", Version: "0.13.0"})
	if err != nil {
		t.Fatal(err)
	}
	defer ext.Close()
	srv := httptest.NewServer(ext.Handler())
	defer srv.Close()
	models := `[{"pipeline":"text-to-image","model_id":"ext/model","url":"` + srv.URL + `","token":"tok","capacity":2}]`
	r := newRig(t, models, runner.Latency{}, nil)
	st := r.runners.States()[0]
	if st.Capacity != 2 || st.RunnerVersion != "0.13.0" {
		t.Errorf("external state %+v, want capacity 2 version 0.13.0", st)
	}
	body, _ := json.Marshal(map[string]any{"prompt": "x", "model_id": "ext/model", "width": 8, "height": 8})
	if resp, out := post(t, r.url+"/text-to-image", "application/json", body); resp.StatusCode != 200 {
		t.Errorf("via external runner: %d %s", resp.StatusCode, out)
	}
	srv.Close()
	r.runners.CheckExternal()
	if st := r.runners.States()[0]; st.Capacity != 0 {
		t.Errorf("dead external runner still advertises capacity %d", st.Capacity)
	}
}

func TestStatusAndMetrics(t *testing.T) {
	r := newRig(t, t2iModel, runner.Latency{}, nil)
	post(t, r.url+"/text-to-image", "application/json", t2iBody(8, 8))
	resp, err := http.Get(r.op + "/status")
	if err != nil {
		t.Fatal(err)
	}
	var st Status
	_ = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if st.EthAddr != "0xabc" || len(st.Models) != 1 || st.Models[0].Capacity != 1 || st.Models[0].Pipeline != "text-to-image" {
		t.Errorf("status %+v", st)
	}
	resp, _ = http.Get(r.op + "/metrics")
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`orchestrator_requests_total{code="200",pipeline="text-to-image"} 1`,
		"orchestrator_request_duration_seconds_bucket", "orchestrator_queue_depth 0",
		`orchestrator_model_capacity{model="ByteDance/SDXL-Lightning",pipeline="text-to-image"} 1`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// /status and /metrics are served by OperatorHandler only: the public
// handler, where jobs arrive, answers 404 for them.
func TestOperatorEndpointsOffThePublicPort(t *testing.T) {
	r := newRig(t, t2iModel, runner.Latency{}, nil)
	for _, path := range []string{"/status", "/metrics"} {
		resp, err := http.Get(r.url + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("public %s: %d, want 404", path, resp.StatusCode)
		}
		resp, err = http.Get(r.op + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("operator %s: %d, want 200", path, resp.StatusCode)
		}
	}
}
