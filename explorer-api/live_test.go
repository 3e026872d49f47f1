package explorerapi_test

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	explorerapi "github.com/lpgauge/lpgauge/explorer-api"
	"github.com/lpgauge/lpgauge/explorer-api/seed"
	"github.com/lpgauge/lpgauge/internal/chtest"
	"github.com/lpgauge/lpgauge/leaderboard/store"
)

// /api/live, the web page's live table: the seeded live sessions ranked
// A, B, C by the live score, on both engines; batch rows never appear;
// bad parameters are 400s saying what to send.
func TestLiveTableOnBothEngines(t *testing.T) {
	for _, e := range chtest.Engines() {
		t.Run(e.Name, func(t *testing.T) {
			n := seed.ProbesOn(t, e.NewDB(t))
			seed.Live(t, n)
			st, err := store.NewClickHouse(n.DB.Conn, n.DB.Name, 0)
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(explorerapi.New(explorerapi.Config{Now: func() time.Time { return n.Now }}, st))
			defer srv.Close()
			var out struct {
				Pipeline string                `json:"pipeline"`
				Formula  string                `json:"formula"`
				Rows     []explorerapi.LiveRow `json:"rows"`
			}
			get(t, srv.URL, "/api/live?region=GLOBAL", 200, &out)
			var order []string
			for _, r := range out.Rows {
				order = append(order, r.Orchestrator)
				if r.Region != "GLOBAL" || r.Model != seed.LiveModel || r.Sessions != 3 {
					t.Errorf("row %+v: want GLOBAL, noop, 3 sessions", r)
				}
			}
			if strings.Join(order, ",") != strings.Join([]string{seed.A, seed.B, seed.C}, ",") || out.Pipeline != seed.LivePipeline || out.Formula == "" {
				t.Fatalf("live rows %v (pipeline %q), want A, B, C", order, out.Pipeline)
			}
			a, b, c := out.Rows[0], out.Rows[1], out.Rows[2]
			if a.Rank != 1 || b.Rank != 2 || c.Rank != 3 {
				t.Errorf("ranks %d %d %d, want 1 2 3", a.Rank, b.Rank, c.Rank)
			}
			// A: 100 ms, every frame, no stall: 0.8^(0.1/0.5) = 0.956.
			if !near(a.Score, 0.9563524997900368) || !near(a.FirstFrameP50, 0.42) || a.StallsPerMinute != 0 {
				t.Errorf("A = %+v, want score 0.8^0.2, first frame 0.42 s, no stalls", a.LiveStat)
			}
			// B: 1 stall per 20 s session = 3 a minute, 5 % stalled, 80 % of the frames.
			if !near(b.StallsPerMinute, 3) || !near(b.StallShare, 0.05) || !near(b.FPSRatio, 0.8) || !near(b.LatencyP50, 0.4) {
				t.Errorf("B = %+v, want 3 stalls/min, 5 %% stalled, fps held 0.8, 400 ms", b.LiveStat)
			}
			if c.Successes != 1 || c.SegmentsLost != 6 || c.PaymentsRefused != 2 {
				t.Errorf("C = %+v, want 1 success, 6 segments lost, 2 refused payments", c.LiveStat)
			}

			// One orchestrator, per region (the profile page's call).
			out.Rows = nil
			get(t, srv.URL, "/api/live?orchestrator="+strings.ToUpper(seed.B[2:4])+seed.B[4:], 400, &struct{}{})
			get(t, srv.URL, "/api/live?orchestrator="+seed.B, 200, &out)
			if len(out.Rows) != 1 || out.Rows[0].Region != "FRA" || out.Rows[0].Orchestrator != seed.B {
				t.Errorf("B's live rows = %+v, want one in FRA", out.Rows)
			}
			for _, bad := range []string{"?region=nowhere", "?since=x", "?pipeline=Text+to+image", "?orchestrator=0x12", "?model=" + strings.Repeat("m", 300)} {
				var e struct {
					Error string `json:"error"`
				}
				get(t, srv.URL, "/api/live"+bad, 400, &e)
				if e.Error == "" {
					t.Errorf("/api/live%s: no error message", bad)
				}
			}
		})
	}
}
