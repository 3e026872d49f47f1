package demo

import (
	"bytes"
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/lpgauge/lpgauge/internal/chtest"
	"github.com/lpgauge/lpgauge/internal/results"
	"github.com/lpgauge/lpgauge/internal/results/resultsdb"
	"github.com/lpgauge/lpgauge/leaderboard/api"
	"github.com/lpgauge/lpgauge/leaderboard/store"
)

// The demo's live table (issue #16): the leaderboard's live_stats for every
// fleet orchestrator, ranked by live score per region, with the profile
// names; batch rows never show in it.
func TestLiveTableShowsTheFleet(t *testing.T) {
	db := chtest.NewDB(t)
	now := time.Now().UTC().Truncate(time.Second)
	var rows []results.Result
	for i, p := range fleet {
		for k := range 2 {
			at := now.Add(-time.Duration(10*i+k+1) * time.Minute)
			r := results.Result{ProbeID: results.ProbeID(p.Address, "live", at.String()), Region: "FRA", Orchestrator: p.Address,
				Pipeline: store.LivePipeline, Model: "noop", StartedAt: at, Outcome: results.Success, Source: "tester",
				Live: results.Live{FirstFrame: time.Duration(300+100*i) * time.Millisecond, InFPS: 30, OutFPS: float64(30 - 2*i),
					LatencyP50: time.Duration(80+60*i) * time.Millisecond, LatencyP99: time.Duration(120+90*i) * time.Millisecond,
					FirstSegment: time.Duration(250+100*i) * time.Millisecond, Session: 10 * time.Second}}
			rows = append(rows, r)
		}
		b := results.Result{ProbeID: results.ProbeID(p.Address, "batch"), Region: "FRA", Orchestrator: p.Address, Pipeline: "Text to image",
			Model: "noop", StartedAt: now.Add(-time.Minute), Outcome: results.Success, Total: time.Second, Source: "tester"}
		rows = append(rows, b)
	}
	if err := resultsdb.Insert(context.Background(), db.Conn, db.Name, rows); err != nil {
		t.Fatal(err)
	}
	st, err := store.NewClickHouse(db.Conn, db.Name, 0)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.New(api.Config{}, st))
	defer srv.Close()
	live, err := fetchLive(context.Background(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if len(live) != len(fleet) {
		t.Fatalf("live rows = %+v, want one per fleet orchestrator", live)
	}
	for i, r := range live {
		if r.Name != fleet[i].Name || r.Sessions != 2 || r.Score <= 0 {
			t.Errorf("rank %d = %+v, want %s with 2 sessions and a live score (lower latency, more fps ranks higher)", i+1, r, fleet[i].Name)
		}
	}
	var out bytes.Buffer
	printLive(&out, live)
	for _, want := range []string{"LIVE SCORE", "FIRST FRAME", "fast", "slow", "80 ms / 120 ms", "100%"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("live table lacks %q:\n%s", want, out.String())
		}
	}
}
