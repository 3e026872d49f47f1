package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lpgauge/lpgauge/gateway/trickle"
	"github.com/lpgauge/lpgauge/media/livets"
)

// TestLiveOnOnePort: the orchestrator binary with a live-video-to-video
// entry serves the start request and the stream's trickle channels on its
// one public port, as go-livepeer's orchestrator (server/ai_http.go:42,91):
// the gateway publishes to publish_url, what it published is read back at
// the runner's subscribe_url, and the gateway's DELETE ends the stream (the
// output channel is gone too).
func TestLiveOnOnePort(t *testing.T) {
	var mu sync.Mutex
	var start map[string]any
	runner := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/health":
			_, _ = io.WriteString(w, `{"status":"IDLE"}`)
		case "/version":
			_, _ = io.WriteString(w, `{"version":"0.14.1"}`)
		case "/live-video-to-video":
			mu.Lock()
			_ = json.NewDecoder(r.Body).Decode(&start)
			mu.Unlock()
			_, _ = io.WriteString(w, `{}`)
		default:
			http.NotFound(w, r)
		}
	}))
	defer runner.Close()
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, []string{"-httpAddr", addr, "-serviceAddr", addr, "-operator-addr", "",
			"-aiModels", `[{"pipeline":"live-video-to-video","model_id":"noop","warm":true,"capacity":1,"url":"` + runner.URL + `"}]`})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	body := `{"model_id":"noop","params":{"prompt":"x"},"publish_url":"","subscribe_url":"","stream_id":"s1","gateway_request_id":"g1"}`
	var resp *http.Response
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var err error
		resp, err = http.Post("http://"+addr+"/live-video-to-video", "application/json", strings.NewReader(body))
		if err == nil && resp.StatusCode == http.StatusOK {
			break
		}
		if err == nil {
			resp.Body.Close()
		}
		if time.Now().After(deadline) {
			t.Fatalf("start never accepted: %v", err)
		}
	}
	var urls struct {
		Publish   string `json:"publish_url"`
		Subscribe string `json:"subscribe_url"`
		Manifest  string `json:"manifest_id"`
	}
	err := json.NewDecoder(resp.Body).Decode(&urls)
	resp.Body.Close()
	if err != nil || urls.Publish != "http://"+addr+"/ai/trickle/"+urls.Manifest || urls.Subscribe != urls.Publish+"-out" {
		t.Fatalf("start answer %+v %v", urls, err)
	}
	mu.Lock()
	runnerIn, _ := start["subscribe_url"].(string)
	mu.Unlock()
	if runnerIn != urls.Publish {
		t.Fatalf("runner subscribes to %q, want the gateway's publish_url %q", runnerIn, urls.Publish)
	}
	tctx, tcancel := context.WithTimeout(ctx, 10*time.Second)
	defer tcancel()
	pub := trickle.NewPublisher(urls.Publish, nil)
	if _, err := pub.Write(tctx, strings.NewReader("segment zero")); err != nil {
		t.Fatalf("publish: %v", err)
	}
	seg, err := trickle.NewSubscriber(runnerIn, nil, 0).Read(tctx)
	if err != nil {
		t.Fatalf("the runner's read: %v", err)
	}
	got, _ := io.ReadAll(seg.Body)
	seg.Body.Close()
	if string(got) != "segment zero" {
		t.Errorf("runner read %q", got)
	}
	if err := pub.Close(tctx); err != nil {
		t.Fatalf("DELETE: %v", err)
	}
	// The orchestrator closes the other three channels when it sees the
	// input gone.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		_, err := trickle.NewSubscriber(urls.Subscribe, nil, -1).Read(tctx)
		if errors.Is(err, trickle.ErrStreamNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("output channel still there after the DELETE: %v", err)
		}
	}
}

// TestLiveCPURunnerEndToEnd: the orchestrator binary with an in-process CPU
// live runner (-runners cpu) takes a stream as a go-livepeer gateway sends
// it: the start request, media/livets segments on publish_url, transformed
// frames back on subscribe_url (one output segment per input, every frame's
// stamp read back as transformed), status events on events_url, a params
// update on control_url; the gateway's DELETE ends it and the runner, once
// IDLE, is back in the pool (GetOrchestrator-facing /status: in_use 0).
func TestLiveCPURunnerEndToEnd(t *testing.T) {
	addr, op := freeAddr(t), freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, []string{"-httpAddr", addr, "-serviceAddr", addr, "-operator-addr", op,
			"-aiModels", `[{"pipeline":"live-video-to-video","model_id":"noop","warm":true,"capacity":1}]`,
			"-live-latency", "20ms", "-live-event-interval", "200ms", "-live.health-poll", "50ms"})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	inUse := func() int {
		resp, err := http.Get("http://" + op + "/status")
		if err != nil {
			return -1
		}
		defer resp.Body.Close()
		var st struct {
			Models []struct {
				Capacity int `json:"capacity"`
				InUse    int `json:"in_use"`
			} `json:"models"`
		}
		if json.NewDecoder(resp.Body).Decode(&st) != nil || len(st.Models) != 1 || st.Models[0].Capacity != 1 {
			return -1
		}
		return st.Models[0].InUse
	}
	waitUntil(t, "the CPU live runner ready", func() bool { return inUse() == 0 })
	resp, err := http.Post("http://"+addr+"/live-video-to-video", "application/json",
		strings.NewReader(`{"model_id":"noop","params":{"prompt":"x"},"publish_url":"","subscribe_url":"","stream_id":"s1","gateway_request_id":"g1"}`))
	if err != nil {
		t.Fatal(err)
	}
	var urls struct {
		Publish   string `json:"publish_url"`
		Subscribe string `json:"subscribe_url"`
		Control   string `json:"control_url"`
		Events    string `json:"events_url"`
	}
	err = json.NewDecoder(resp.Body).Decode(&urls)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || err != nil {
		t.Fatalf("start: %d %v", resp.StatusCode, err)
	}
	if n := inUse(); n != 1 {
		t.Errorf("while streaming in_use %d, want 1", n)
	}
	tctx, tcancel := context.WithTimeout(ctx, 20*time.Second)
	defer tcancel()
	out := trickle.NewSubscriber(urls.Subscribe, nil, 0)
	pub := trickle.NewPublisher(urls.Publish, nil)
	enc := livets.NewEncoder(livets.Format{Width: 128, Height: 64, FPS: 30})
	for i := range 3 {
		if _, err := pub.Write(tctx, bytes.NewReader(enc.Segment(uint32(i*30), 30))); err != nil {
			t.Fatalf("publish segment %d: %v", i, err)
		}
		seg, err := out.Read(tctx)
		if err != nil {
			t.Fatalf("output segment %d: %v", i, err)
		}
		b, _ := io.ReadAll(seg.Body)
		seg.Body.Close()
		frames, err := livets.Decode(b)
		if err != nil || len(frames) != 30 || seg.Seq != i {
			t.Fatalf("output segment %d: seq %d, %d frames, %v", i, seg.Seq, len(frames), err)
		}
		for _, f := range frames {
			if !f.Transformed || !f.Intact || f.Number < uint32(i*30) || f.Number >= uint32(i*30+30) {
				t.Fatalf("output segment %d: frame %+v, want the transform of input frames %d..%d", i, f, i*30, i*30+29)
			}
		}
	}
	ctl := trickle.NewPublisher(urls.Control, nil)
	if _, err := ctl.Write(tctx, strings.NewReader(`{"prompt":"y"}`)); err != nil {
		t.Fatalf("control: %v", err)
	}
	ev, err := trickle.NewSubscriber(urls.Events, nil, -1).Read(tctx)
	if err != nil {
		t.Fatalf("events: %v", err)
	}
	eb, _ := io.ReadAll(ev.Body)
	ev.Body.Close()
	if !strings.Contains(string(eb), `"type":"status"`) {
		t.Errorf("event %s, want a status event", eb)
	}
	if err := pub.Close(tctx); err != nil {
		t.Fatalf("DELETE: %v", err)
	}
	waitUntil(t, "the runner IDLE and back in the pool", func() bool { return inUse() == 0 })
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out: %s", what)
		}
	}
}
