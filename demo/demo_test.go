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
// failing one below 100%, and live video sessions scored for every
// orchestrator in both regions. (demo_chdb_test.go runs the embedded default.)
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
	// Live video (issue #16): every orchestrator has live sessions scored
	// in both regions, on the live table the demo prints.
	var lastLive []liveRow
	liveSatisfied := func(rows []liveRow) bool {
		lastLive = rows
		seen := map[string]bool{}
		for _, r := range rows {
			if r.Sessions > 0 && r.Name != "" {
				seen[r.Region+"/"+r.Name] = true
			}
		}
		return len(seen) == 2*len(fleet)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	err := Run(ctx, Config{
		BinDir: bin, DataDir: t.TempDir(), LeaderboardAddr: "127.0.0.1:0",
		Interval: 10 * time.Second, Pipeline: "Text to image", Model: "ByteDance/SDXL-Lightning", Regions: "FRA,LAX", Store: storeKind,
		Out:     &lockedWriter{mu: &mu, w: &out},
		OnBoard: satisfied,
		OnLive:  liveSatisfied,
	})
	mu.Lock()
	defer mu.Unlock()
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	if ctx.Err() != nil || !satisfied(last) {
		t.Fatalf("demo never showed every orchestrator in both regions with the slow one last and the flaky one below 100%%:\n%s", out.String())
	}
	if !liveSatisfied(lastLive) {
		t.Fatalf("demo never showed live sessions for every orchestrator in both regions (live rows %+v):\n%s", lastLive, out.String())
	}
	if !strings.Contains(out.String(), "RANK") || !strings.Contains(out.String(), "LIVE SCORE") {
		t.Fatalf("no ranked table printed:\n%s", out.String())
	}
	t.Logf("demo output:\n%s", out.String())
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
