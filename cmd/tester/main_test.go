package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lpgauge/lpgauge/internal/chtest"
	"github.com/lpgauge/lpgauge/tester/orchtest"
)

func TestMain(m *testing.M) { chtest.Main(m) }

func count(t *testing.T, db *chtest.DB, where string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var n uint64
	if err := db.Conn.QueryRow(ctx, "SELECT count() FROM "+db.Name+".probe_results WHERE "+where).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// `tester -once` (what `make demo` runs) probes a static list, prints a table
// and leaves one row per probe in ClickHouse, under the key's address.
func TestOnceWritesRowsAndPrintsTable(t *testing.T) {
	db := chtest.NewDB(t)
	good := orchtest.New(t, orchtest.Behaviour{})
	bad := orchtest.New(t, orchtest.Behaviour{Status: 500, Body: "boom"})
	key := filepath.Join(t.TempDir(), "key")
	// Address of this well-known test key: 0x7e5f4552091a69125d5dfcb7b8c2659029395bdf.
	if err := os.WriteFile(key, []byte("0000000000000000000000000000000000000000000000000000000000000001\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{
		"-region", "FRA", "-once", "-tester-key", key, "-listen", "",
		"-orchestrators", good.Target() + "," + bad.Target(),
		"-models", "text-to-image:stabilityai/sdxl-turbo",
		"-simulate-rtt",
		"-clickhouse.addr", db.Addr, "-clickhouse.database", db.Name,
	}, &out, &errOut)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, errOut.String())
	}
	if !strings.Contains(out.String(), "2 probes, 1 success, 1 failure") || !strings.Contains(out.String(), "orchestrator_error/http_500") {
		t.Errorf("table does not show the round:\n%s", out.String())
	}
	if !strings.Contains(errOut.String(), "[2/2]") {
		t.Errorf("no progress lines:\n%s", errOut.String())
	}
	if n := count(t, db, "tester_id = '0x7e5f4552091a69125d5dfcb7b8c2659029395bdf' AND region = 'FRA'"); n != 2 {
		t.Errorf("stored %d rows for the tester, want 2", n)
	}
	// FRA simulates 2 ms of network distance on every connection.
	if n := count(t, db, "outcome = 'success' AND connect_us >= 2000"); n != 1 {
		t.Errorf("%d successful rows with the simulated connect delay, want 1", n)
	}
}

// A scheduled tester stopped by a signal finishes the probe in flight and
// stores it before exiting: nothing measured is lost on shutdown.
func TestScheduledShutdownDrainsAndFlushes(t *testing.T) {
	db := chtest.NewDB(t)
	slow := orchtest.New(t, orchtest.Behaviour{Delay: 1500 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	var errOut bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{
			"-region", "FRA", "-interval", "1s", "-round-deadline", "10s", "-listen", "127.0.0.1:0",
			"-orchestrators", slow.Target(), "-models", "text-to-image:m",
			"-clickhouse.addr", db.Addr, "-clickhouse.database", db.Name,
		}, &bytes.Buffer{}, &errOut)
	}()
	// Wait until a probe is in flight, then stop.
	for deadline := time.Now().Add(10 * time.Second); slow.Calls.Load() == 0; {
		if time.Now().After(deadline) {
			t.Fatalf("no probe started\n%s", errOut.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v\n%s", err, errOut.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("tester did not stop")
	}
	calls := slow.Calls.Load()
	if n := count(t, db, "outcome = 'success'"); n != uint64(calls) {
		t.Errorf("orchestrator served %d probes, %d stored as successes\n%s", calls, n, errOut.String())
	}
}

// Bad configuration is refused with a message that names the flag and says
// what to write instead.
func TestBadConfigErrors(t *testing.T) {
	orch := "0x1111111111111111111111111111111111111111=http://127.0.0.1:1"
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no region", []string{"-once", "-orchestrators", orch, "-models", "text-to-image:m"}, "-region is required"},
		{"transcoding region", []string{"-region", "ATL", "-once", "-orchestrators", orch, "-models", "text-to-image:m"}, "tests transcoding only"},
		{"bad address", []string{"-region", "FRA", "-once", "-orchestrators", "0x12=http://x:1", "-models", "text-to-image:m"}, "0x and 40 hex digits"},
		{"bad uri", []string{"-region", "FRA", "-once", "-orchestrators", "0x1111111111111111111111111111111111111111=ftp://x", "-models", "text-to-image:m"}, "want http(s)://host:port"},
		{"unknown pipeline", []string{"-region", "FRA", "-once", "-orchestrators", orch, "-models", "text-to-paint:m"}, "unknown pipeline \"text-to-paint\""},
		{"no models", []string{"-region", "FRA", "-once", "-orchestrators", orch}, "no default model list"},
		{"no schedule", []string{"-region", "FRA", "-orchestrators", orch, "-models", "text-to-image:m"}, "give -schedule"},
		{"bad cron", []string{"-region", "FRA", "-schedule", "every five", "-orchestrators", orch, "-models", "text-to-image:m"}, "bad -schedule"},
		{"bad key", []string{"-region", "FRA", "-once", "-tester-key", "/nonexistent/key", "-orchestrators", orch, "-models", "text-to-image:m"}, "read key file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := run(context.Background(), append(tc.args, "-no-store", "-listen", ""), &bytes.Buffer{}, &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want it to mention %q", err, tc.want)
			}
		})
	}
}
