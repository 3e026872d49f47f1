package tester

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lpgauge/lpgauge/internal/chtest"
	"github.com/lpgauge/lpgauge/internal/results"
	"github.com/lpgauge/lpgauge/regions"
	"github.com/lpgauge/lpgauge/tester/orchtest"
	"github.com/lpgauge/lpgauge/tester/probe"
	"github.com/lpgauge/lpgauge/tester/writer"
)

func TestMain(m *testing.M) { chtest.Main(m) }

const testerID = "0x00000000000000000000000000000000000000aa"

func newTester(t *testing.T, mod func(*Config)) *Tester {
	t.Helper()
	fra, err := regions.ForTester("FRA")
	if err != nil {
		t.Fatal(err)
	}
	// A loaded CI box delays goroutines by a few hundred ms now and then; the
	// tests that are not about stalls must not see them as the tester's.
	cfg := Config{Region: fra, TesterID: testerID, Prober: probe.New(probe.Config{}), Concurrency: 4, StallThreshold: 1500 * time.Millisecond}
	if mod != nil {
		mod(&cfg)
	}
	tt, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return tt
}

type stored struct {
	outcome, class, code, msg string
	serverUS, totalUS         uint64
	n                         uint64
}

func storedRows(t *testing.T, db *chtest.DB) map[string]stored {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rows, err := db.Conn.Query(ctx, "SELECT probe_id, count(), any(toString(outcome)), any(error_class), any(error_code), any(server_us), any(total_us), any(error_message) FROM "+
		db.Name+".probe_results GROUP BY probe_id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]stored{}
	for rows.Next() {
		var id string
		var s stored
		if err := rows.Scan(&id, &s.n, &s.outcome, &s.class, &s.code, &s.serverUS, &s.totalUS, &s.msg); err != nil {
			t.Fatal(err)
		}
		out[id] = s
	}
	return out
}

// A round over a mixed fleet lands exactly one row per probe in ClickHouse,
// with the outcome and error class a leaderboard reader would expect, and the
// slow orchestrator's server phase close to its injected delay.
func TestRoundLandsRowsInClickHouse(t *testing.T) {
	db := chtest.NewDB(t)
	const slowDelay = 300 * time.Millisecond
	good := orchtest.New(t, orchtest.Behaviour{})
	slow := orchtest.New(t, orchtest.Behaviour{Delay: slowDelay})
	broken := orchtest.New(t, orchtest.Behaviour{Status: 500, Body: "Text to image pipeline error."})
	wrong := orchtest.New(t, orchtest.Behaviour{WrongSize: true})
	busy := orchtest.New(t, orchtest.Behaviour{Status: 503, Body: "insufficient capacity"})

	targets, err := ParseTargets(strings.Join([]string{good.Target(), slow.Target(), broken.Target(), wrong.Target(), busy.Target()}, ","))
	if err != nil {
		t.Fatal(err)
	}
	models, err := ParseModels("text-to-image:stabilityai/sdxl-turbo,text-to-image:ByteDance/SDXL-Lightning")
	if err != nil {
		t.Fatal(err)
	}
	plan, err := Plan(targets, models)
	if err != nil {
		t.Fatal(err)
	}
	w := writer.New(writer.Table{Conn: db.Conn, DB: db.Name}, writer.Config{BatchSize: 3, FlushInterval: 50 * time.Millisecond}, nil, writer.Hooks{})
	tt := newTester(t, nil)
	slot := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	sum := tt.RunRound(context.Background(), slot, plan, w)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.Close(ctx); err != nil {
		t.Fatalf("close writer: %v", err)
	}
	if len(sum.Results) != len(plan) || sum.SinkErrs != 0 {
		t.Fatalf("round returned %d results (%d sink errors), planned %d", len(sum.Results), sum.SinkErrs, len(plan))
	}

	want := map[string]struct{ outcome, class, code string }{
		good.Address:   {"success", "", ""},
		slow.Address:   {"success", "", ""},
		broken.Address: {"failure", "orchestrator_error", "http_500"},
		wrong.Address:  {"failure", "invalid_output", "image_size"},
		busy.Address:   {"excused", "capacity", "insufficient_capacity"}, // busy is not broken
	}
	got := storedRows(t, db)
	if len(got) != len(plan) {
		t.Fatalf("stored %d distinct probe ids, want %d", len(got), len(plan))
	}
	for _, p := range plan {
		id := tt.ProbeID(slot, p, 0)
		s, ok := got[id]
		if !ok {
			t.Errorf("probe %s (%s %s) not stored", id, p.Target.Address, p.Model)
			continue
		}
		if s.n != 1 {
			t.Errorf("probe %s stored %d times", id, s.n)
		}
		w := want[p.Target.Address]
		if s.outcome != w.outcome || s.class != w.class || s.code != w.code {
			t.Errorf("%s %s: stored %s/%s/%s (%s), want %s/%s/%s", p.Target.Address, p.Model, s.outcome, s.class, s.code, s.msg, w.outcome, w.class, w.code)
		}
		if p.Target.Address == slow.Address {
			server := time.Duration(s.serverUS) * time.Microsecond
			// The server phase must contain the inference. How close it
			// stays above it is measured by BenchmarkServerPhaseAccuracy,
			// not here: a loaded CI box would make an upper bound flaky.
			if server < slowDelay {
				t.Errorf("slow orchestrator: server phase %v, injected %v", server, slowDelay)
			}
			if s.totalUS < s.serverUS {
				t.Errorf("total %dus < server %dus", s.totalUS, s.serverUS)
			}
		}
	}
}

// Probe ids are deterministic per (region, tester, slot, orchestrator,
// pipeline, model) and differ between rounds.
func TestProbeIDDeterministic(t *testing.T) {
	tt := newTester(t, nil)
	ms, _ := ParseModels("text-to-image:m")
	p := Planned{Target: Target{Address: "0x1111111111111111111111111111111111111111"}, Model: ms[0]}
	s := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	if tt.ProbeID(s, p, 0) != tt.ProbeID(s.In(time.FixedZone("x", 3600)), p, 0) {
		t.Error("same slot in another zone gives another probe id")
	}
	if tt.ProbeID(s, p, 0) == tt.ProbeID(s.Add(time.Minute), p, 0) {
		t.Error("two rounds share a probe id")
	}
	if tt.ProbeID(s, p, 0) == tt.ProbeID(s, p, 1) {
		t.Error("two attempts share a probe id")
	}
}

// A round deadline leaves one excused row per planned probe: the probe it
// cut in flight and the one it kept from starting. Neither is the
// orchestrator's timeout (on main the cut probe was stored as its
// timeout_server and scored).
func TestRoundDeadlineExcusesProbesInFlight(t *testing.T) {
	slow := orchtest.New(t, orchtest.Behaviour{Delay: 2 * time.Second})
	targets, _ := ParseTargets(slow.Target())
	models, _ := ParseModels("text-to-image:a,text-to-image:b")
	plan, _ := Plan(targets, models)
	tt := newTester(t, func(c *Config) { c.Deadline = 300 * time.Millisecond })
	var sink collect
	sum := tt.RunRound(context.Background(), time.Now(), plan, &sink)
	if len(sink.rows) != 2 {
		t.Fatalf("got %d rows, want 2", len(sink.rows))
	}
	for _, r := range sink.rows {
		if r.Outcome != results.Excused || r.ErrorClass != "tester" || r.ErrorCode != "round_deadline" {
			t.Errorf("%s: stored %s/%s/%s (%s), want excused/tester/round_deadline", r.Model, r.Outcome, r.ErrorClass, r.ErrorCode, r.ErrorMessage)
		}
	}
	if !sum.Overran {
		t.Error("summary does not say the round overran its deadline")
	}
	if sum.Took > 2*time.Second {
		t.Errorf("round took %v despite a 300ms deadline", sum.Took)
	}
}

// A shutdown in the middle of a round still ends every planned probe as one
// row: the one in flight finishes and is measured, the ones not started are
// excused tester/shutdown (on main they vanished).
func TestShutdownRecordsEveryPlannedProbe(t *testing.T) {
	o := orchtest.New(t, orchtest.Behaviour{Delay: 400 * time.Millisecond})
	targets, _ := ParseTargets(o.Target())
	models, _ := ParseModels("text-to-image:a,text-to-image:b,text-to-image:c")
	plan, _ := Plan(targets, models)
	tt := newTester(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(150*time.Millisecond, cancel)
	var sink collect
	tt.RunRound(ctx, time.Now(), plan, &sink)
	got := map[string]string{}
	for _, r := range sink.rows {
		got[r.Model] = string(r.Outcome) + "/" + r.ErrorClass + "/" + r.ErrorCode
	}
	want := map[string]string{"a": "success//", "b": "excused/tester/shutdown", "c": "excused/tester/shutdown"}
	if len(sink.rows) != 3 || got["a"] != want["a"] || got["b"] != want["b"] || got["c"] != want["c"] {
		t.Errorf("rows %v, want %v", got, want)
	}
}

type collect struct {
	mu   sync.Mutex
	rows []results.Result
}

func (c *collect) Write(_ context.Context, r results.Result) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rows = append(c.rows, r)
	return nil
}

// When the control target fails too, a timeout is the tester's own network
// failing: it is excused, not scored against the orchestrator. A 500 is
// still the orchestrator's.
func TestControlFailureExcusesNetworkFaults(t *testing.T) {
	hanging := orchtest.New(t, orchtest.Behaviour{Delay: 5 * time.Second})
	broken := orchtest.New(t, orchtest.Behaviour{Status: 500, Body: "boom"})
	targets, _ := ParseTargets(hanging.Target() + "," + broken.Target())
	models, _ := ParseModels("text-to-image:m")
	plan, _ := Plan(targets, models)
	deadControl, _ := ParseTargets("0x00000000000000000000000000000000000000cc=http://127.0.0.1:1")
	short := probe.Timeouts{Server: 200 * time.Millisecond, Total: 500 * time.Millisecond}
	for _, withControl := range []bool{false, true} {
		tt := newTester(t, func(c *Config) {
			c.Timeouts = map[string]probe.Timeouts{"text-to-image": short}
			if withControl {
				c.Control = &Planned{Target: deadControl[0], Model: models[0]}
			}
		})
		var sink collect
		tt.RunRound(context.Background(), time.Now(), plan, &sink)
		got := map[string]string{}
		for _, r := range sink.rows {
			got[r.Orchestrator] = string(r.Outcome) + "/" + r.ErrorClass + "/" + r.ErrorCode
		}
		wantHang := "failure/timeout/timeout_server"
		if withControl {
			wantHang = "excused/tester/control_failed"
		}
		if got[hanging.Address] != wantHang || got[broken.Address] != "failure/orchestrator_error/http_500" {
			t.Errorf("control failing=%v: got %v, want hang=%s and the 500 still a failure", withControl, got, wantHang)
		}
	}
}
