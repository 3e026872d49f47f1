package httpserve

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// A slow client cannot hold a connection without sending its headers, and
// the house server has every timeout set.
func TestNewServerTimeouts(t *testing.T) {
	srv := NewServer(http.NotFoundHandler(), 0)
	if srv.ReadHeaderTimeout == 0 || srv.ReadTimeout == 0 || srv.WriteTimeout < 10*time.Second || srv.IdleTimeout == 0 {
		t.Fatalf("timeouts missing: %+v", srv)
	}
	srv.ReadHeaderTimeout = 200 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, wait, err := Start(ctx, srv, "127.0.0.1:0", time.Second, quiet)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = c.Write([]byte("GET / HTTP/1.1\r\n")) // and never the rest
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	_, _ = io.ReadAll(c)
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("half-sent headers held the connection %s", took)
	}
	cancel()
	if err := wait(); err != nil {
		t.Fatal(err)
	}
}

// A taken port fails at Start, not later; a request in flight when ctx ends
// is finished before wait returns.
func TestStartDrains(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if _, _, err := Start(context.Background(), NewServer(http.NotFoundHandler(), 0), ln.Addr().String(), time.Second, quiet); err == nil {
		t.Fatal("taken port accepted")
	}
	entered := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		close(entered)
		time.Sleep(300 * time.Millisecond)
		_, _ = io.WriteString(w, "done")
	})
	ctx, cancel := context.WithCancel(context.Background())
	addr, wait, err := Start(ctx, NewServer(h, 0), "127.0.0.1:0", 5*time.Second, quiet)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + addr)
		if err != nil {
			got <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- string(b)
	}()
	<-entered
	cancel()
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	if s := <-got; s != "done" {
		t.Errorf("in-flight request got %q, want it finished", s)
	}
}

// Observe adds /metrics (with the request counter) and /healthz in front of
// the handler, which keeps every other route.
func TestObserve(t *testing.T) {
	h := Observe("test", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "app "+r.URL.Path) }), prometheus.NewRegistry(), OK)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, _, err := Start(ctx, NewServer(h, 0), "127.0.0.1:0", time.Second, quiet)
	if err != nil {
		t.Fatal(err)
	}
	get := func(p string) string {
		resp, err := http.Get("http://" + addr + p)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return string(b)
	}
	if s := get("/x"); s != "app /x" {
		t.Errorf("/x = %q", s)
	}
	if s := get("/healthz"); s != "ok\n" {
		t.Errorf("/healthz = %q", s)
	}
	if s := get("/metrics"); !strings.Contains(s, `test_http_requests_total{code="200"} 1`) || !strings.Contains(s, "go_goroutines") {
		t.Errorf("/metrics lacks the counter or the Go collector:\n%.500s", s)
	}
}
