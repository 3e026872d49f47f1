package demo

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestDemoRanksTheFleet runs the real demo with a ClickHouse server — built
// binaries, a private ClickHouse, four orchestrators, two regional testers,
// the leaderboard — and checks what a newcomer is promised: every
// orchestrator scored in every region, the slowest profile ranked last, the
// failing one below 100%. (demo_chdb_test.go runs the embedded default.)
func TestDemoRanksTheFleet(t *testing.T) {
	runDemo(t, "clickhouse")
}

func runDemo(t *testing.T, storeKind string) {
	bin := t.TempDir()
	for _, b := range []string{"orchestrator", "tester", "leaderboard", "explorer-api"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(bin, b), "../cmd/"+b)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", b, err, out)
		}
	}
	var mu sync.Mutex
	var out bytes.Buffer
	var last []scoreRow
	satisfied := func(rows []scoreRow) bool {
		last = rows
		byRegion := map[string][]scoreRow{}
		for _, r := range rows { // rows arrive ranked within each region
			byRegion[r.Region] = append(byRegion[r.Region], r)
		}
		flakyBelowOne := false
		for _, rs := range byRegion {
			if len(rs) != len(fleet) || rs[len(rs)-1].Name != "slow" {
				return false
			}
			for _, r := range rs {
				if r.Name == "flaky" && r.SuccessRate < 1 {
					flakyBelowOne = true
				}
			}
		}
		return len(byRegion) == 2 && flakyBelowOne
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	err := Run(ctx, Config{
		BinDir: bin, DataDir: t.TempDir(), LeaderboardAddr: "127.0.0.1:0",
		Interval: 6 * time.Second, Pipeline: "Text to image", Model: "ByteDance/SDXL-Lightning", Regions: "FRA,LAX", Store: storeKind,
		Out:     &lockedWriter{mu: &mu, w: &out},
		OnBoard: satisfied,
	})
	mu.Lock()
	defer mu.Unlock()
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	if ctx.Err() != nil || !satisfied(last) {
		t.Fatalf("demo never showed every orchestrator in both regions with the slow one last and the flaky one below 100%%:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "RANK") {
		t.Fatalf("no ranked table printed:\n%s", out.String())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
