package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Settings that used to vanish are refused: a malformed ai-runner variable
// (the runner once fell back to the default in silence), a malformed flag,
// and the token as a flag value (ps shows it).
func TestBadSettingsRefused(t *testing.T) {
	cases := []struct {
		env, val string
		args     []string
		want     string
	}{
		{"RUNNER_MEAN_LATENCY", "soon", nil, `$RUNNER_MEAN_LATENCY="soon": parse error (or give -mean-latency)`},
		{"RUNNER_FAILURE_RATE", "often", nil, `$RUNNER_FAILURE_RATE="often"`},
		{"", "", []string{"-log.level", "loud"}, `invalid value "loud" for flag -log.level: want debug, info, warn or error`},
		{"", "", []string{"-log.format", "xml"}, `invalid value "xml" for flag -log.format: want text or json`},
		{"", "", []string{"-auth-token", "s3cret"}, "put the token in $AUTH_TOKEN or a file named by -auth-token-file"},
		{"", "", []string{"-auth-token-file", "/nonexistent"}, "-auth-token-file"},
	}
	for _, tc := range cases {
		if tc.env != "" {
			t.Setenv(tc.env, tc.val)
		}
		err := run(context.Background(), append([]string{"-pipeline", "text-to-image", "-model-id", "m"}, tc.args...), io.Discard, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s=%s %q: error %v, want %q", tc.env, tc.val, tc.args, err, tc.want)
		}
		if tc.env != "" {
			os.Unsetenv(tc.env)
		}
	}
}

// The runner takes its token from a file (or $AUTH_TOKEN), answers /healthz
// and /metrics beside ai-runner's API, and logs at -log.level in -log.format.
func TestServesWithTokenFileHealthAndMetrics(t *testing.T) {
	tok := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tok, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	logs := &strings.Builder{}
	go func() {
		done <- run(ctx, []string{"-pipeline", "text-to-image", "-model-id", "m", "-listen", "127.0.0.1:0", "-mean-latency", "1ms",
			"-auth-token-file", tok, "-log.format", "text", "-verbose"}, logs, ready)
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatal(err)
	case <-time.After(10 * time.Second):
		t.Fatal("runner did not start")
	}
	get := func(path, auth string) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+path, strings.NewReader(`{"prompt":"a cat","model_id":"m"}`))
		if path == "/healthz" || path == "/metrics" {
			req.Method = http.MethodGet
		}
		req.Header.Set("Content-Type", "application/json")
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/text-to-image", ""); code != http.StatusUnauthorized {
		t.Errorf("job without the file's token: %d, want 401", code)
	}
	if code, body := get("/text-to-image", "s3cret"); code != http.StatusOK {
		t.Errorf("job with the file's token: %d %.200s", code, body)
	}
	if code, _ := get("/healthz", ""); code != http.StatusOK {
		t.Errorf("/healthz: %d", code)
	}
	if code, body := get("/metrics", ""); code != http.StatusOK || !strings.Contains(body, `runner_http_requests_total{code="200"}`) {
		t.Errorf("/metrics: %d %.300s", code, body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "level=WARN msg=\"flag -verbose is deprecated: use -log.level debug\"") {
		t.Errorf("-verbose not warned about in text logs:\n%s", logs.String())
	}
}

// The live profile flags reach the runner from the environment the Docker
// runtime sets, a bad value is refused, and a live runner serves /health
// IDLE until a stream starts.
func TestLiveProfileFlags(t *testing.T) {
	t.Setenv("RUNNER_LIVE_DROP_EVERY", "often")
	err := run(context.Background(), []string{"-pipeline", "live-video-to-video", "-model-id", "noop"}, io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), `$RUNNER_LIVE_DROP_EVERY="often"`) {
		t.Errorf("bad RUNNER_LIVE_DROP_EVERY: %v", err)
	}
	os.Unsetenv("RUNNER_LIVE_DROP_EVERY")
	err = run(context.Background(), []string{"-pipeline", "live-video-to-video", "-model-id", "noop", "-live-event-interval", "1m"}, io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "30 s event timeout") {
		t.Errorf("-live-event-interval 1m: %v", err)
	}
	t.Setenv("RUNNER_LIVE_LATENCY", "80ms")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-pipeline", "live-video-to-video", "-model-id", "noop", "-listen", "127.0.0.1:0", "-live-drop-every", "4"}, io.Discard, ready)
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatal(err)
	case <-time.After(10 * time.Second):
		t.Fatal("runner did not start")
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		resp, err := http.Get("http://" + addr + "/health")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(b), `"IDLE"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/health: %s, want IDLE", b)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
