package node

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/lpgauge/lpgauge/internal/chtest"
)

func TestMain(m *testing.M) {
	// As the binaries do (gin's mode is theirs to set, not a library init's):
	// no debug route listing in the test output.
	gin.SetMode(gin.ReleaseMode)
	chtest.Main(m)
}

// The binary migrates a fresh database, answers the Explorer's calls, and
// stops cleanly when its context ends (SIGTERM in production).
func TestRunServesAndShutsDown(t *testing.T) {
	db := chtest.NewDB(t)
	var cfg Config
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	if err := fs.Parse([]string{"-listen", "127.0.0.1:0", "-clickhouse.addr", db.Addr, "-clickhouse.database", db.Name + "_bin"}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), ready) }()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("run ended early: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("server did not start")
	}
	t.Cleanup(func() {
		c, cl := context.WithTimeout(context.Background(), 10*time.Second)
		defer cl()
		_ = db.Conn.Exec(c, "DROP DATABASE IF EXISTS "+db.Name+"_bin")
	})
	for path, want := range map[string]string{
		"/api/health": `{"clickhouse":{"ok":true}}`,
		"/api/aggregated_stats?pipeline=Text%20to%20image&model=ByteDance/SDXL-Lightning": `{}`,
		"/api/pipelines": `{"pipelines":[]}`,
	} {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != want {
			t.Errorf("%s = %d %s, want 200 %s", path, resp.StatusCode, b, want)
		}
	}
	// The binary serves its metrics (the dashboards' names) and its OpenAPI.
	for path, want := range map[string]string{
		"/metrics":          "leaderboard_http_requests_total{",
		"/api/openapi.yaml": "/api/perf_scores:",
	} {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), want) {
			t.Errorf("%s = %d, want 200 containing %q", path, resp.StatusCode, want)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("shutdown: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("run did not return after cancel")
	}
}

func TestInvalidConfigRefused(t *testing.T) {
	var cfg Config
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	_ = fs.Parse([]string{"-clickhouse.database", "bad-name", "-window", "0s"})
	err := Run(context.Background(), cfg, slog.Default(), nil)
	if err == nil {
		t.Fatal("invalid Config accepted")
	}
}
