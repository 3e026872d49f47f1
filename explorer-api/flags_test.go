package explorerapi_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	explorerapi "github.com/lpgauge/lpgauge/explorer-api"
	"github.com/lpgauge/lpgauge/internal/chtest"
	"github.com/lpgauge/lpgauge/internal/results"
	"github.com/lpgauge/lpgauge/internal/results/resultsdb"
	"github.com/lpgauge/lpgauge/leaderboard/store"
)

// The gaming flags are on the web page's data beside the orchestrator: the
// leaderboard row of one that serves probes and refuses a gateway's real
// jobs carries probe_favouritism, its profile says what was seen, and an
// honest orchestrator with the same volume carries nothing.
func TestFlagsBesideTheOrchestrator(t *testing.T) {
	const (
		gamer  = "0x6a3e000000000000000000000000000000000005"
		honest = "0x0e57000000000000000000000000000000000006"
		t2i    = "Text to image"
		sdxl   = "ByteDance/SDXL-Lightning"
	)
	db := chtest.NewDB(t)
	now := time.Now().UTC().Truncate(time.Second)
	var rows []results.Result
	add := func(orch, source string, at time.Time, ok bool) {
		r := results.Result{Region: "FRA", Orchestrator: orch, Pipeline: t2i, Model: sdxl, StartedAt: at, Source: source,
			Outcome: results.Success, Total: time.Second, Server: 800 * time.Millisecond, Warm: true}
		if !ok {
			r.Outcome, r.ErrorClass, r.ErrorCode, r.Total = results.Failure, "posted", "503", 0
		}
		r.ProbeID = results.ProbeID(orch, source, at.Format(time.RFC3339Nano))
		rows = append(rows, r)
	}
	for i := 0; i < 25; i++ {
		at := now.Add(-time.Duration(5+i) * time.Minute)
		add(gamer, "tester", at, true)
		add(honest, "tester", at, true)
		add(gamer, "gateway:gw-fra", at.Add(time.Second), i >= 20) // 20 of 25 real jobs refused
		add(honest, "gateway:gw-fra", at.Add(time.Second), true)
	}
	if err := resultsdb.Insert(context.Background(), db.Conn, db.Name, rows); err != nil {
		t.Fatal(err)
	}
	st, err := store.NewClickHouse(db.Conn, db.Name, 0)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(explorerapi.New(explorerapi.Config{Now: func() time.Time { return now }}, st))
	defer srv.Close()

	var b struct {
		Rows []struct {
			Orchestrator string   `json:"orchestrator"`
			Flags        []string `json:"flags"`
		} `json:"rows"`
	}
	get(t, srv.URL, "/api/leaderboard?"+q("pipeline", t2i, "model", sdxl), 200, &b)
	flags := map[string]string{}
	for _, r := range b.Rows {
		flags[r.Orchestrator] = strings.Join(r.Flags, ",")
	}
	if len(b.Rows) != 2 || flags[gamer] != "probe_favouritism" || flags[honest] != "" {
		t.Errorf("leaderboard row flags = %v, want the gamer's probe_favouritism only", flags)
	}

	var p struct {
		Flags []struct {
			Code, Region, Pipeline, Model, Detail string
		} `json:"flags"`
	}
	get(t, srv.URL, "/api/orchestrators/"+gamer, 200, &p)
	if len(p.Flags) != 1 || p.Flags[0].Code != "probe_favouritism" || p.Flags[0].Region != "FRA" ||
		!strings.Contains(p.Flags[0].Detail, fmt.Sprintf("real traffic only %d%% of 25", 20)) {
		t.Errorf("gamer profile flags = %+v", p.Flags)
	}
	p.Flags = nil
	get(t, srv.URL, "/api/orchestrators/"+honest, 200, &p)
	if p.Flags == nil || len(p.Flags) != 0 {
		t.Errorf("honest profile flags = %+v, want []", p.Flags)
	}

	// The page renders them: a pill beside the address in the table and a
	// Flags section on the orchestrator page.
	resp, err := http.Get(srv.URL + "/app.js")
	if err != nil {
		t.Fatal(err)
	}
	js, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"flagPills(r.flags)", "<h2>Flags</h2>", "p.flags.map"} {
		if !strings.Contains(string(js), want) {
			t.Errorf("app.js does not render flags: no %q", want)
		}
	}
}
