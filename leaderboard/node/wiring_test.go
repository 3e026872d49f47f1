package node

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lpgauge/lpgauge/internal/chtest"
)

// The house flags: -log.level and -log.format take effect, a malformed value
// is refused naming the flag and the values it takes, and the leaderboard
// answers /healthz and /metrics.
func TestLogFlagsAndOperatorEndpoints(t *testing.T) {
	for _, tc := range []struct{ arg, want string }{
		{"-log.level=loud", `invalid value "loud" for flag -log.level: want debug, info, warn or error`},
		{"-log.format=xml", `invalid value "xml" for flag -log.format: want text or json`},
		{"-window=soon", `invalid value "soon" for flag -window`},
	} {
		err := Main(context.Background(), []string{tc.arg}, io.Discard, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.arg, err, tc.want)
		}
	}
	db := chtest.NewDB(t)
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	var logs syncBuffer
	go func() {
		done <- Main(ctx, []string{"-listen", "127.0.0.1:0", "-clickhouse.addr", db.Addr, "-clickhouse.database", db.Name,
			"-log.level", "debug", "-log.format", "text"}, &logs, ready)
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("leaderboard ended early: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("leaderboard did not start")
	}
	// In this order: a request is counted once served, so /metrics shows
	// the request counter after /healthz (a map's random order asked
	// /metrics first half the time).
	for _, c := range []struct{ path, want string }{{"/healthz", ""}, {"/metrics", "leaderboard_http_requests_total"}} {
		path, want := c.path, c.want
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), want) {
			t.Errorf("%s: %d %.200s", path, resp.StatusCode, b)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if out := logs.String(); !strings.Contains(out, "level=INFO msg=listening") || strings.HasPrefix(out, "{") {
		t.Errorf("-log.format text not used:\n%s", out)
	}
}

// syncBuffer is a log sink the server's goroutines can write to at once.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
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
