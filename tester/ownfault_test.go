package tester

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lpgauge/lpgauge/gateway"
	"github.com/lpgauge/lpgauge/internal/chtest"
	"github.com/lpgauge/lpgauge/internal/results"
	"github.com/lpgauge/lpgauge/leaderboard/api"
	"github.com/lpgauge/lpgauge/leaderboard/store"
	"github.com/lpgauge/lpgauge/tester/orchtest"
	"github.com/lpgauge/lpgauge/tester/preparer"
	"github.com/lpgauge/lpgauge/tester/probe"
	"github.com/lpgauge/lpgauge/tester/writer"
)

// tnet is the tester's own network, as its dialer sees it: working,
// refusing every connection (a firewall, the interface down), or a
// blackhole (packets dropped: a dial hangs until the blackhole lifts, when
// the SYN retransmission gets through, or its deadline passes).
type tnet struct {
	mu     sync.Mutex
	mode   string // "", "refuse", "blackhole"
	lifted chan struct{}
	d      net.Dialer
}

func (n *tnet) set(mode string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.mode == "blackhole" && mode != "blackhole" {
		close(n.lifted)
	}
	if mode == "blackhole" && n.mode != "blackhole" {
		n.lifted = make(chan struct{})
	}
	n.mode = mode
}

func (n *tnet) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	n.mu.Lock()
	mode, lifted := n.mode, n.lifted
	n.mu.Unlock()
	switch mode {
	case "refuse":
		return nil, &net.OpError{Op: "dial", Net: network, Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	case "blackhole":
		// The SYN is lost; Linux retransmits it 1, 3 and 7 s after the
		// dial began, and the first one after the blackhole lifts connects.
		start := time.Now()
		select {
		case <-lifted:
		case <-ctx.Done():
			return nil, &net.OpError{Op: "dial", Net: network, Err: ctx.Err()}
		}
		for _, rto := range []time.Duration{time.Second, 3 * time.Second, 7 * time.Second, 15 * time.Second} {
			at := start.Add(rto)
			if !at.After(time.Now()) {
				continue
			}
			select {
			case <-time.After(time.Until(at)):
			case <-ctx.Done():
				return nil, &net.OpError{Op: "dial", Net: network, Err: ctx.Err()}
			}
			break
		}
	}
	return n.d.DialContext(ctx, network, addr)
}

func fleet(t *testing.T, n int, b orchtest.Behaviour, models string) ([]*orchtest.Orch, []Planned) {
	t.Helper()
	var os []*orchtest.Orch
	var entries []string
	for i := 0; i < n; i++ {
		o := orchtest.New(t, b)
		os = append(os, o)
		entries = append(entries, o.Target())
	}
	targets, err := ParseTargets(strings.Join(entries, ","))
	if err != nil {
		t.Fatal(err)
	}
	ms, err := ParseModels(models)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := Plan(targets, ms)
	if err != nil {
		t.Fatal(err)
	}
	return os, plan
}

func verdicts(rows []results.Result) map[string]int {
	out := map[string]int{}
	for _, r := range rows {
		out[string(r.Outcome)+"/"+r.ErrorClass+"/"+r.ErrorCode]++
	}
	return out
}

// The tester's network refuses every connection for three rounds. No
// configuration (no -control): the tester sees the other orchestrators
// refuse at the same moment and excuses every probe as tester/network_down.
// The leaderboard, reading what the tester stored, blocklists nobody (on
// main all ten were stored as failures and all ten blocklisted after three
// rounds).
func TestRefusingNetworkBlamesNoOrchestrator(t *testing.T) {
	db := chtest.NewDB(t)
	_, plan := fleet(t, 10, orchtest.Behaviour{}, "text-to-image:m")
	var n tnet
	n.set("refuse")
	w := writer.New(writer.Table{Conn: db.Conn, DB: db.Name}, writer.Config{BatchSize: 50, FlushInterval: 50 * time.Millisecond}, nil, writer.Hooks{})
	tt := newTester(t, func(c *Config) { c.Prober = probe.New(probe.Config{Dial: n.dial}); c.Concurrency = 10 })
	slot := time.Now().Truncate(time.Minute).Add(-10 * time.Minute)
	var all []results.Result
	for i := 0; i < 3; i++ {
		sum := tt.RunRound(context.Background(), slot.Add(time.Duration(i)*time.Minute), plan, w)
		all = append(all, sum.Results...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if v := verdicts(all); len(all) != 30 || v["excused/tester/network_down"] != 30 {
		t.Errorf("30 probes with the tester's network refusing: %v", v)
	}

	st, err := store.NewClickHouse(db.Conn, db.Name, 0)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.New(api.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, st))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/api/blocklist?failures=3")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != "" {
		t.Errorf("/api/blocklist after the tester's own outage: %d %q, want 200 and nobody", resp.StatusCode, body)
	}
}

// An outage that starts 0.9 s into a round, after the control probe
// passed: every failure from then on is checked against the control target
// at that moment, so none is scored (on main 9 were).
func TestOutageMidRoundAfterControlPassed(t *testing.T) {
	control := orchtest.New(t, orchtest.Behaviour{})
	ct, _ := ParseTargets(control.Target())
	orchs, plan := fleet(t, 6, orchtest.Behaviour{Delay: 250 * time.Millisecond}, "text-to-image:a,text-to-image:b,text-to-image:c,text-to-image:d,text-to-image:e,text-to-image:f")
	var n tnet
	tt := newTester(t, func(c *Config) {
		c.Prober = probe.New(probe.Config{Dial: n.dial})
		c.Concurrency = 6
		c.Control = &Planned{Target: ct[0], Model: plan[0].Model}
	})
	// The outage begins 0.9 s into the round's probing (the control probe
	// passed before it).
	go func() {
		for control.Calls.Load() == 0 || orchs[0].Calls.Load() == 0 {
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(900 * time.Millisecond)
		n.set("refuse")
	}()
	sum := tt.RunRound(context.Background(), time.Now(), plan, &collect{})
	v := verdicts(sum.Results)
	if len(sum.Results) != len(plan) || v["success//"] == 0 || v["excused/tester/control_failed"] == 0 {
		for _, r := range sum.Results {
			t.Logf("%s %s: %s", r.Orchestrator, r.Model, r.ErrorMessage)
		}
		t.Fatalf("rows %d of %d: %v; want successes before the outage and control_failed after", len(sum.Results), len(plan), v)
	}
	for _, r := range sum.Results {
		if r.Outcome == results.Failure {
			t.Errorf("%s %s scored %s/%s: %s", r.Orchestrator, r.Model, r.ErrorClass, r.ErrorCode, r.ErrorMessage)
		}
	}
}

// A blackhole at the start of a round: probes that could not connect time
// out (timeout_connect, not a discovery or EOF), and probes that waited in
// it and succeeded once it lifted are not successes either: every probe
// overlapping the blackhole is excused tester/network_down (on main the
// timeouts were scored and the waits stored as slow successes).
func TestBlackholeAtRoundStart(t *testing.T) {
	_, plan := fleet(t, 6, orchtest.Behaviour{Delay: 50 * time.Millisecond}, "text-to-image:a,text-to-image:b")
	var n tnet
	n.set("blackhole")
	tt := newTester(t, func(c *Config) {
		c.Prober = probe.New(probe.Config{Dial: n.dial})
		c.Concurrency = 6
		c.Timeouts = map[string]probe.Timeouts{"text-to-image": {Connect: 600 * time.Millisecond}}
		c.Spread = 900 * time.Millisecond // later probes start inside the blackhole and outlast it
	})
	time.AfterFunc(1800*time.Millisecond, func() { n.set("") })
	sum := tt.RunRound(context.Background(), time.Now(), plan, &collect{})
	v := verdicts(sum.Results)
	if v["excused/tester/network_down"] == 0 {
		t.Errorf("no probe excused for the blackhole: %v", v)
	}
	for _, r := range sum.Results {
		if r.Outcome == results.Failure {
			t.Errorf("%s %s scored %s/%s: %s", r.Orchestrator, r.Model, r.ErrorClass, r.ErrorCode, r.ErrorMessage)
		}
		if r.Outcome == results.Success && r.Wall > 500*time.Millisecond {
			t.Errorf("%s %s stored as a success after waiting %v in the blackhole", r.Orchestrator, r.Model, r.Wall)
		}
	}
}

// The same blackhole with the Livepeer protocol in front of every job: the
// probes' first step is GetOrchestrator over gRPC, through the same
// blackholed network. On the main of the finding those discovery calls
// failed as the orchestrators' `discovery` ("error reading server preface:
// EOF") and the probes that waited them out (10.5–11 s) were stored as
// successes. Every probe overlapping the blackhole must be excused with a
// tester/ code, none scored, and no success may carry the wait.
func TestBlackholeAtRoundStartOverGRPCDiscovery(t *testing.T) {
	orchs, plan := fleet(t, 6, orchtest.Behaviour{Delay: 50 * time.Millisecond}, "text-to-image:a,text-to-image:b")
	var n tnet
	n.set("blackhole")
	gw := &gateway.Gateway{Dial: n.dial, ReuseSessions: true}
	tt := newTester(t, func(c *Config) {
		c.Prober = probe.New(probe.Config{Dial: n.dial, Preparer: preparer.Preparer{Gateway: gw}})
		c.Concurrency = 6
		c.Timeouts = map[string]probe.Timeouts{"text-to-image": {Connect: 600 * time.Millisecond}}
		c.Spread = 900 * time.Millisecond // later probes start inside the blackhole and outlast it
	})
	// Longer than a discovery connect may take (gateway.ConnectTimeout, 3 s):
	// the first GetOrchestrator calls fail while the blackhole lasts, and
	// the connectivity check that follows still finds it (800 ms of slack).
	time.AfterFunc(gateway.ConnectTimeout+800*time.Millisecond, func() { n.set("") })
	sum := tt.RunRound(context.Background(), time.Now(), plan, &collect{})
	v := verdicts(sum.Results)
	for _, r := range sum.Results {
		t.Logf("%s %s: %s/%s/%s wall %v discovery %v total %v: %.200s", r.Orchestrator[:8], r.Model, r.Outcome, r.ErrorClass, r.ErrorCode, r.Wall, r.Discovery, r.Total, r.ErrorMessage)
	}
	if len(sum.Results) != len(plan) {
		t.Fatalf("%d rows for %d planned probes", len(sum.Results), len(plan))
	}
	var discoveries int64
	for _, o := range orchs {
		discoveries += o.Discoveries.Load()
	}
	if discoveries == 0 {
		t.Fatal("no GetOrchestrator reached the fakes: the gRPC path was not exercised")
	}
	excused := 0
	for _, r := range sum.Results {
		switch {
		case r.Outcome == results.Excused && r.ErrorClass == string(probe.ClassTester):
			excused++
		case r.Outcome != results.Success:
			t.Errorf("%s %s scored %s/%s: %s", r.Orchestrator, r.Model, r.ErrorClass, r.ErrorCode, r.ErrorMessage)
		case r.Wall > 500*time.Millisecond || r.Discovery > 500*time.Millisecond:
			t.Errorf("%s %s stored as a success after waiting in the blackhole (wall %v, discovery %v)", r.Orchestrator, r.Model, r.Wall, r.Discovery)
		}
	}
	if excused == 0 {
		t.Errorf("no probe excused for the blackhole: %v", v)
	}
}

// freeze stops this very process with SIGSTOP for d (a helper process
// sends SIGCONT), as a VM pause or an operator's ^Z would.
func freeze(tb testing.TB, d time.Duration) {
	cont := exec.Command("sh", "-c", fmt.Sprintf("sleep %.3f; kill -CONT %d", d.Seconds(), os.Getpid()))
	if err := cont.Start(); err != nil {
		tb.Error(err)
		return
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGSTOP); err != nil {
		tb.Error(err)
	}
	_ = cont.Wait()
}

// The tester frozen for 2 s (SIGSTOP) in the middle of its probes: every
// probe overlapping the freeze is excused tester/stall, not stored as a
// success 2 s slower (on main: server time ~2.3 s for ~0.4 s of work, with
// orch_processing_us in the same row saying so).
func TestFrozenTesterExcusesOverlappingProbes(t *testing.T) {
	orchs, plan := fleet(t, 4, orchtest.Behaviour{Delay: 400 * time.Millisecond}, "text-to-image:m")
	_ = orchs
	tt := newTester(t, func(c *Config) { c.StallThreshold = 250 * time.Millisecond })
	time.AfterFunc(150*time.Millisecond, func() { freeze(t, 2*time.Second) })
	sum := tt.RunRound(context.Background(), time.Now(), plan, &collect{})
	v := verdicts(sum.Results)
	if len(sum.Results) != 4 || v["excused/tester/stall"] != 4 {
		for _, r := range sum.Results {
			t.Logf("%s: %s/%s server %v orch %v", r.Orchestrator, r.Outcome, r.ErrorCode, r.Server, r.OrchProcessing)
		}
		t.Errorf("probes overlapping a 2 s freeze: %v, want all 4 excused tester/stall", v)
	}
	if sum.TesterFaults != 4 {
		t.Errorf("summary counts %d tester faults, want 4", sum.TesterFaults)
	}
}

// A genuinely dead orchestrator among working ones is still its own
// failure: the connectivity check reaches the others.
func TestDeadOrchestratorStillScored(t *testing.T) {
	_, plan := fleet(t, 4, orchtest.Behaviour{}, "text-to-image:m")
	dead, _ := ParseTargets("0x00000000000000000000000000000000000000dd=http://127.0.0.1:1")
	plan = append(plan, Planned{Target: dead[0], Model: plan[0].Model})
	tt := newTester(t, nil)
	sum := tt.RunRound(context.Background(), time.Now(), plan, &collect{})
	v := verdicts(sum.Results)
	if v["failure/network/connection_refused"] != 1 || v["success//"] != 4 {
		t.Errorf("one dead orchestrator among four working: %v", v)
	}
}
