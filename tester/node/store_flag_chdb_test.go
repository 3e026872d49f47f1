//go:build chdb

package node

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lpgauge/lpgauge/internal/chembed"
	"github.com/lpgauge/lpgauge/tester/orchtest"
)

// `tester -once -store embedded:DIR` keeps its rows in embedded ClickHouse
// with no server (-clickhouse.addr names a port nobody listens on); the
// directory, opened again after the tester exits, holds one row per probe.
func TestOnceOnEmbeddedStore(t *testing.T) {
	good := orchtest.New(t, orchtest.Behaviour{})
	key := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(key, []byte("0000000000000000000000000000000000000000000000000000000000000001\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "data")
	var out, errOut bytes.Buffer
	err := Run(context.Background(), []string{
		"-region", "FRA", "-once", "-tester-key", key, "-listen", "",
		"-orchestrators", good.Target(), "-models", "text-to-image:stabilityai/sdxl-turbo",
		"-spool-dir", t.TempDir(), "-store", "embedded:" + dir, "-clickhouse.addr", "127.0.0.1:1",
	}, &out, &errOut)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, errOut.String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := chembed.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM lpgauge.probe_results WHERE outcome = 'success' AND region = 'FRA'").Scan(&n); err != nil || n != 1 {
		t.Errorf("embedded store holds %d successful FRA rows (%v), want 1\n%s", n, err, out.String())
	}
}
