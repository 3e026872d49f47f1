package tester

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/lpgauge/lpgauge/tester/orchtest"
	"github.com/lpgauge/lpgauge/tester/probe"
)

// SchedulePlanner plans every round afresh. A round whose planner fails
// before any plan ever worked is skipped (no rows, no summary); later a
// failing planner (or one that hangs past PlanTimeout) leaves the round on
// the last plan that worked, with the reason in the summary.
func TestSchedulePlannerFallsBackToLastGoodPlan(t *testing.T) {
	one := orchtest.New(t, orchtest.Behaviour{})
	two := orchtest.New(t, orchtest.Behaviour{})
	plan := func(o *orchtest.Orch) []Planned {
		return []Planned{{Target: Target{Address: o.Address, ServiceURI: o.URL}, Model: Model{Pipeline: probe.TextToImage{}, Model: "m"}}}
	}
	errDown := errors.New("webhook down")
	// Planner answers by call: fail, plan one, fail, hang, plan two.
	var mu sync.Mutex
	calls := 0
	planner := func(ctx context.Context) ([]Planned, error) {
		mu.Lock()
		calls++
		n := calls
		mu.Unlock()
		switch n {
		case 1, 3:
			return nil, errDown
		case 2:
			return plan(one), nil
		case 4:
			<-ctx.Done()
			return nil, ctx.Err()
		default:
			return plan(two), nil
		}
	}
	tt := newTester(t, func(c *Config) { c.PlanTimeout = 100 * time.Millisecond })
	sched, period, err := ParseSchedule("", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	sums := make(chan Summary, 16)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		tt.SchedulePlanner(ctx, sched, period, planner, &collect{}, func(s Summary) { sums <- s })
	}()
	var got []Summary
	for len(got) < 4 {
		select {
		case s := <-sums:
			got = append(got, s)
		case <-time.After(20 * time.Second):
			t.Fatalf("%d rounds done in 20 s", len(got))
		}
	}
	cancel()
	<-stopped
	want := []struct {
		orch    string
		planErr bool
	}{{one.Address, false}, {one.Address, true}, {one.Address, true}, {two.Address, false}}
	for i, w := range want {
		s := got[i]
		if len(s.Results) != 1 || s.Results[0].Orchestrator != w.orch || (s.PlanErr != nil) != w.planErr {
			t.Errorf("round %d: %d results (%+v), plan error %v; want one probe of %s, plan error %v", i+1, len(s.Results), s.Results, s.PlanErr, w.orch, w.planErr)
		}
	}
	if one.Calls.Load() != 3 || two.Calls.Load() < 1 {
		t.Errorf("orchestrator one served %d probes (want 3), two %d", one.Calls.Load(), two.Calls.Load())
	}
}
