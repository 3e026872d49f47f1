package node

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/lpgauge/lpgauge/internal/chtest"
	"github.com/lpgauge/lpgauge/tester"
	"github.com/lpgauge/lpgauge/tester/orchtest"
)

// The post_stats HMAC secret can come from a file (-post-stats-secret-file),
// as the runner's token does, so an operator never has to export it into
// the tester's environment; each posted result is signed with it. Before,
// $POST_STATS_SECRET was the only way in.
func TestPostStatsSecretFromFile(t *testing.T) {
	t.Setenv("POST_STATS_SECRET", "") // the file alone must do
	const secret = "s3cret-from-a-file"
	file := filepath.Join(t.TempDir(), "post_stats.secret")
	if err := os.WriteFile(file, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var posts, badSig int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		posts++
		if r.Header.Get("Authorization") != tester.Sign([]byte(secret), body) {
			badSig++
		}
	}))
	defer srv.Close()
	orch := orchtest.New(t, orchtest.Behaviour{})
	var errOut bytes.Buffer
	err := Run(context.Background(), []string{"-region", "FRA", "-once", "-no-store", "-listen", "",
		"-orchestrators", orch.Target(), "-models", "text-to-image:m",
		"-post-stats-url", srv.URL + "/api/post_stats", "-post-stats-secret-file", file}, &bytes.Buffer{}, &errOut)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, errOut.String())
	}
	mu.Lock()
	defer mu.Unlock()
	if posts == 0 || badSig != 0 {
		t.Errorf("post_stats got %d posts, %d not signed with the file's secret; want every result posted and signed", posts, badSig)
	}

	// A secret file that cannot be read is refused before anything starts.
	err = Run(context.Background(), []string{"-region", "FRA", "-once", "-no-store", "-listen", "",
		"-orchestrators", orch.Target(), "-models", "text-to-image:m",
		"-post-stats-url", srv.URL, "-post-stats-secret-file", filepath.Join(t.TempDir(), "missing")}, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "-post-stats-secret-file") {
		t.Errorf("missing secret file: %v, want it named", err)
	}
}

// -simulate-rtt adds the region's distance to every connection, the
// GetOrchestrator one the gateway dials included: Singapore's 25 ms shows
// in the stored discovery phase. Before, only the probe's job connection
// was delayed and discovery looked local (a few ms).
func TestSimulatedRTTReachesDiscovery(t *testing.T) {
	db := chtest.NewDB(t)
	orch := orchtest.New(t, orchtest.Behaviour{})
	var errOut bytes.Buffer
	err := Run(context.Background(), []string{"-region", "SIN", "-once", "-listen", "", "-simulate-rtt",
		"-orchestrators", orch.Target(), "-models", "text-to-image:m", "-spool-dir", t.TempDir(),
		"-clickhouse.addr", db.Addr, "-clickhouse.database", db.Name}, &bytes.Buffer{}, &errOut)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, errOut.String())
	}
	if n := count(t, db, "region = 'SIN' AND discovery_us >= 25000"); n != 1 || orch.Discoveries.Load() == 0 {
		t.Errorf("%d rows whose discovery phase carries SIN's simulated 25 ms (want 1); %d GetOrchestrator calls", n, orch.Discoveries.Load())
	}
}
