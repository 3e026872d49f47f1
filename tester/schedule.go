package tester

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lpgauge/lpgauge/internal/results"

	"github.com/robfig/cron/v3"
)

// ParseSchedule turns -schedule (a cron spec, 5 fields or a descriptor like
// "@every 5m") or -interval into a schedule and its period.
func ParseSchedule(spec string, interval time.Duration) (cron.Schedule, time.Duration, error) {
	switch {
	case spec != "" && interval > 0:
		return nil, 0, fmt.Errorf("give -schedule or -interval, not both")
	case spec == "" && interval <= 0:
		return nil, 0, fmt.Errorf("no schedule: give -schedule (cron spec, e.g. \"*/5 * * * *\") or -interval (e.g. 5m), or -once")
	case spec == "":
		if interval < time.Second {
			return nil, 0, fmt.Errorf("-interval %s is under a second", interval)
		}
		spec = "@every " + interval.String()
	}
	s, err := cron.ParseStandard(spec)
	if err != nil {
		return nil, 0, fmt.Errorf("bad -schedule %q: %w (want 5 cron fields like \"*/5 * * * *\" or \"@every 5m\")", spec, err)
	}
	if every, ok := s.(cron.ConstantDelaySchedule); ok {
		// cron's "@every" counts from whenever it is asked, so two testers
		// started together would tick together and the region offsets that
		// keep them apart would cancel out; aligned ticks keep every tester
		// of a period on one grid, shifted only by its region's offset.
		s = alignedEvery{every.Delay}
	}
	a := s.Next(time.Now())
	period := s.Next(a).Sub(a)
	if period <= 0 {
		return nil, 0, fmt.Errorf("-schedule %q never repeats", spec)
	}
	return s, period, nil
}

// alignedEvery ticks at whole multiples of its period since the zero time.
type alignedEvery struct{ period time.Duration }

func (e alignedEvery) Next(t time.Time) time.Time { return t.Truncate(e.period).Add(e.period) }

// Planner lists the probes of the next round. Schedule calls it at the start
// of every round, so a discovered orchestrator list (chain, webhook) follows
// registrations, new service URIs and models added or dropped without a
// restart. It must honour ctx's deadline.
type Planner func(ctx context.Context) ([]Planned, error)

// StaticPlan is the Planner of a fixed list (-discovery static).
func StaticPlan(plan []Planned) Planner {
	return func(context.Context) ([]Planned, error) { return plan, nil }
}

// defaultPlanTimeout bounds one call of the Planner when Config.PlanTimeout
// is unset: go-livepeer's discovery is a chain walk plus one GetOrchestrator
// per orchestrator, done in parallel.
const defaultPlanTimeout = time.Minute

// Schedule runs rounds of a fixed plan on a cron schedule until ctx ends.
// Each round starts at its tick plus the region's offset (its share of the
// period, so regions do not probe one orchestrator at the same moment) and
// has the whole round deadline from there: the offset shifts the round, it
// never eats its budget. Rounds never overlap: a tick that comes while the
// previous round still runs is recorded as skipped (previous_round_running),
// logged and counted, never silently lost.
//
// When ctx ends Schedule stops scheduling, lets the running round finish its
// in-flight probes (it starts no new ones: those are excused
// tester/shutdown) and returns once it has.
func (t *Tester) Schedule(ctx context.Context, sched cron.Schedule, period time.Duration, plan []Planned, sink Sink, done func(Summary)) {
	t.SchedulePlanner(ctx, sched, period, StaticPlan(plan), sink, done)
}

// Skip reasons of the rounds table.
const (
	SkipPreviousRunning = "previous_round_running" // the round before was still running at this tick
	SkipTesterLate      = "tester_late"            // the tester woke after this tick's round was due (stalled, clock stepped)
	SkipNoPlan          = "no_plan"                // discovery failed and no earlier round had a plan
)

// roundMargin is how much of the period a scheduled round leaves free at
// its end (a twentieth, at most 5 s), so that writing its last results
// never makes the next tick find it still running.
func roundMargin(period time.Duration) time.Duration { return min(period/20, 5*time.Second) }

// SchedulePlanner is Schedule with a plan made afresh for every round: each
// round asks plan for its probes within Config.PlanTimeout (and half the
// period), inside the round's budget. When that fails the round probes the
// last plan that succeeded and says so in the log (and Summary.PlanErr): a
// discovery outage is the tester's problem, so it neither stops probing nor
// leaves a row against any orchestrator. Only while no plan has ever
// succeeded are rounds skipped (no_plan). Probe ids stay deterministic: they
// name the slot, orchestrator, pipeline and model, not the plan.
func (t *Tester) SchedulePlanner(ctx context.Context, sched cron.Schedule, period time.Duration, plan Planner, sink Sink, done func(Summary)) {
	offset := time.Duration(t.cfg.Region.Offset * float64(period))
	planTimeout := t.cfg.PlanTimeout
	if planTimeout <= 0 {
		planTimeout = defaultPlanTimeout
	}
	if period > 0 {
		planTimeout = min(planTimeout, period/2)
		// A round's budget ends before the next tick's round begins. A
		// longer -round-deadline is honoured, and the ticks it covers are
		// recorded as skipped.
		if t.cfg.Deadline <= 0 {
			t.cfg.Deadline = period - roundMargin(period)
		}
	}
	var (
		running atomic.Bool
		wg      sync.WaitGroup
		last    []Planned // the last plan that succeeded; rounds never overlap
	)
	skipped := func(slot time.Time, reason, msg string, kv ...any) {
		round := RoundID(t.cfg.Region.Code, slot)
		t.cfg.Log.Warn(msg, append([]any{"round", round, "reason", reason}, kv...)...)
		if t.cfg.Skipped != nil {
			t.cfg.Skipped(reason)
		}
		if t.cfg.Rounds != nil {
			t.cfg.Rounds(results.Round{RoundID: round, Region: t.cfg.Region.Code, TesterID: t.cfg.TesterID, Slot: slot, SkipReason: reason})
		}
	}
	runRound := func(slot, began time.Time) {
		defer running.Store(false)
		round := RoundID(t.cfg.Region.Code, slot)
		pctx, cancel := context.WithTimeout(ctx, planTimeout)
		ps, err := plan(pctx)
		cancel()
		var planErr error
		switch {
		case err == nil:
			last = ps
		case ctx.Err() != nil:
			return // shutting down before the round began: nothing planned, nothing to record
		case last != nil:
			planErr = err
			t.cfg.Log.Warn("discovery failed: this round probes the last discovered orchestrators", "round", round,
				"probes", len(last), "err", err)
		default:
			// No done: no round happened, and /healthz should notice.
			skipped(slot, SkipNoPlan, "discovery failed and no earlier round has a plan: round skipped", "err", err)
			return
		}
		t.cfg.Log.Info("round starting", "round", round, "probes", len(last))
		sum := t.runRound(ctx, slot, began, last, sink)
		sum.PlanErr = planErr
		c := sum.Counts()
		lvl := slog.LevelInfo
		if sum.Overran || sum.TesterFaults > 0 || len(sum.Results) != sum.Planned {
			lvl = slog.LevelWarn
		}
		t.cfg.Log.Log(ctx, lvl, "round done", "round", sum.RoundID, "took", sum.Took.Round(time.Millisecond),
			"planned", sum.Planned, "rows", len(sum.Results), "success", c["success"], "failure", c["failure"], "excused", c["excused"],
			"tester_faults", sum.TesterFaults, "overran", sum.Overran, "stopped", sum.Stopped)
		if t.cfg.Rounds != nil {
			t.cfg.Rounds(sum.Record(t.cfg.Region.Code, t.cfg.TesterID))
		}
		if done != nil {
			done(sum)
		}
	}

	// The first tick whose round (tick + offset) is still ahead.
	next := sched.Next(time.Now().Add(-offset))
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	for {
		at := next.Add(offset)
		timer.Reset(time.Until(at))
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case <-timer.C:
		}
		// Woken past the following tick's round too: the tester did not run
		// (stopped, starved) or the clock stepped. Those ticks are recorded
		// as skipped and the newest one runs.
		now := time.Now()
		for n := 0; n < 1000; n++ {
			following := sched.Next(next)
			if following.Add(offset).After(now) {
				break
			}
			skipped(next, SkipTesterLate, "round skipped: the tester woke after its time", "late", now.Sub(at).Round(time.Millisecond))
			next, at = following, following.Add(offset)
		}
		slot := next
		next = sched.Next(next)
		if !running.CompareAndSwap(false, true) {
			skipped(slot, SkipPreviousRunning, "round skipped: the previous round is still running")
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			runRound(slot, at)
		}()
	}
}
