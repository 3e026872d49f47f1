//go:build chdb

package node

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRunOnEmbeddedStore: explorer-api with -store embedded:DIR (and
// -migrate, as when it runs alone) serves its API and page with no
// ClickHouse server: -clickhouse.addr names a port nobody listens on.
func TestRunOnEmbeddedStore(t *testing.T) {
	var cfg Config
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	dir := filepath.Join(t.TempDir(), "data")
	if err := fs.Parse([]string{"-listen", "127.0.0.1:0", "-store", "embedded:" + dir, "-migrate", "-clickhouse.addr", "127.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), ready) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("shutdown: %v", err)
		}
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("explorer-api -store embedded: did not start: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("explorer-api did not start in 60 s")
	}
	for path, want := range map[string]string{
		"/api/overview": `"pipelines":[]`,
		"/api/orchestrators/0x00000000000000000000000000000000000000aa": `"error"`,
		"/healthz": `{"ok":true}`,
		"/":        "<html",
	} {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 500 || !strings.Contains(string(b), want) {
			t.Errorf("%s = %d %s, want no 5xx and %s", path, resp.StatusCode, b, want)
		}
	}
}
