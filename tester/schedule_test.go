package tester

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/lpgauge/lpgauge/internal/results"
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

// runSchedule runs SchedulePlanner until until says stop, collecting every
// round record (run or skipped).
func runSchedule(t *testing.T, tt *Tester, every time.Duration, plan []Planned, until func([]results.Round) bool) []results.Round {
	t.Helper()
	var mu sync.Mutex
	var recs []results.Round
	tt.cfg.Rounds = func(r results.Round) {
		mu.Lock()
		recs = append(recs, r)
		mu.Unlock()
	}
	sched, period, err := ParseSchedule("", every)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		tt.SchedulePlanner(ctx, sched, period, StaticPlan(plan), &collect{}, nil)
	}()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		mu.Lock()
		done := until(recs)
		mu.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("schedule did not get there in 30 s: %+v", recs)
		}
	}
	cancel()
	<-stopped
	mu.Lock()
	defer mu.Unlock()
	return append([]results.Round(nil), recs...)
}

// contiguous reports the first tick with no record, if any.
func contiguous(recs []results.Round, period time.Duration) error {
	for i := 1; i < len(recs); i++ {
		if gap := recs[i].Slot.Sub(recs[i-1].Slot); gap != period {
			return fmt.Errorf("rounds %s and %s are %s apart: %d tick(s) have no record", recs[i-1].RoundID, recs[i].RoundID, gap, gap/period-1)
		}
	}
	return nil
}

// A region whose offset is 30% of a 2 s period and whose round takes 1.6 s
// (more than period − offset): every tick still gets its round. On main the
// offset was slept inside the scheduled job, so such a round ran into the
// next tick, which was skipped without a row or a log line.
func TestOffsetNeverEatsTheRoundBudget(t *testing.T) {
	slow := orchtest.New(t, orchtest.Behaviour{Delay: 1600 * time.Millisecond})
	plan := []Planned{{Target: Target{Address: slow.Address, ServiceURI: slow.URL}, Model: Model{Pipeline: probe.TextToImage{}, Model: "m"}}}
	tt := newTester(t, func(c *Config) { c.Region.Offset = 0.3 })
	recs := runSchedule(t, tt, 2*time.Second, plan, func(r []results.Round) bool { return len(r) >= 3 })
	if err := contiguous(recs, 2*time.Second); err != nil {
		t.Error(err)
	}
	for _, r := range recs {
		if r.SkipReason != "" || r.Rows != 1 || r.Overran {
			t.Errorf("round %s: skipped %q, %d rows, overran %v; want it run with its one probe", r.RoundID, r.SkipReason, r.Rows, r.Overran)
		}
		if off := r.StartedAt.Sub(r.Slot); off < 550*time.Millisecond || off > 900*time.Millisecond {
			t.Errorf("round %s started %s after its tick, want the 600 ms offset", r.RoundID, off)
		}
	}
}

// The tester frozen (SIGSTOP) across two ticks: when it wakes, the ticks it
// slept through are recorded as skipped tester_late, so no round is missing
// from the record.
func TestFrozenSchedulerRecordsMissedRounds(t *testing.T) {
	o := orchtest.New(t, orchtest.Behaviour{})
	plan := []Planned{{Target: Target{Address: o.Address, ServiceURI: o.URL}, Model: Model{Pipeline: probe.TextToImage{}, Model: "m"}}}
	tt := newTester(t, nil)
	froze := false
	recs := runSchedule(t, tt, time.Second, plan, func(r []results.Round) bool {
		if len(r) == 1 && !froze {
			froze = true
			freeze(t, 2500*time.Millisecond)
		}
		return froze && len(r) >= 5
	})
	if err := contiguous(recs, time.Second); err != nil {
		t.Error(err)
	}
	late := 0
	for _, r := range recs {
		if r.SkipReason == SkipTesterLate {
			late++
		}
	}
	if late == 0 {
		t.Errorf("no tick recorded as skipped tester_late after a 2.5 s freeze: %+v", recs)
	}
}

// Two regional testers started at the same moment with the same -interval
// keep their regions' offsets apart: cron's "@every" counts from whenever
// it is asked, so without aligned ticks FRA (offset 0) and LAX (offset ½)
// both started their rounds at start + period, together, and the slow
// orchestrator of the demo answered one of them "insufficient capacity".
func TestIntervalTicksAlignSoOffsetsSeparateRegions(t *testing.T) {
	const period = 6 * time.Second
	s, p, err := ParseSchedule("", period)
	if err != nil || p != period {
		t.Fatalf("ParseSchedule: %v, period %s", err, p)
	}
	for _, start := range []time.Time{time.Now(), time.Now().Add(1234 * time.Millisecond), time.Unix(1796235261, 7e8)} {
		fra := s.Next(start)                                  // offset 0
		lax := s.Next(start.Add(-period / 2)).Add(period / 2) // offset ½
		gap := (lax.Sub(fra)%period + period) % period
		if gap != period/2 {
			t.Errorf("started at %s: FRA's round at %s, LAX's at %s: %s apart modulo the period, want %s",
				start.Format(time.StampMilli), fra.Format(time.StampMilli), lax.Format(time.StampMilli), gap, period/2)
		}
	}
}
