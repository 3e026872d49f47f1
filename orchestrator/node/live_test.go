package node

import (
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
