package tester

import (
	"context"
	"fmt"
	"log/slog"
	"time"

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
	a := s.Next(time.Now())
	period := s.Next(a).Sub(a)
	if period <= 0 {
		return nil, 0, fmt.Errorf("-schedule %q never repeats", spec)
	}
	return s, period, nil
}

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

// Schedule runs rounds of a fixed plan on a cron schedule until ctx ends:
// rounds never overlap (a round still running when the next tick comes makes
// that tick skip), and each round waits the region's offset (its share of the
// period) so regions do not probe one orchestrator at the same moment.
//
// When ctx ends Schedule stops scheduling, lets the running round finish its
// in-flight probes (it starts no new ones) and returns once it has.
func (t *Tester) Schedule(ctx context.Context, sched cron.Schedule, period time.Duration, plan []Planned, sink Sink, done func(Summary)) {
	t.SchedulePlanner(ctx, sched, period, StaticPlan(plan), sink, done)
}

// SchedulePlanner is Schedule with a plan made afresh for every round: after
// the region's offset, each round asks plan for its probes within
// Config.PlanTimeout (and half the period). When that fails the round probes
// the last plan that succeeded and says so in the log (and Summary.PlanErr):
// a discovery outage is the tester's problem, so it neither stops probing nor
// leaves a row against any orchestrator. Only while no plan has ever
// succeeded are rounds skipped. Probe ids stay deterministic: they name the
// slot, orchestrator, pipeline and model, not the plan.
func (t *Tester) SchedulePlanner(ctx context.Context, sched cron.Schedule, period time.Duration, plan Planner, sink Sink, done func(Summary)) {
	logger := cronLogger{t.cfg.Log}
	c := cron.New(cron.WithChain(cron.Recover(logger), cron.SkipIfStillRunning(logger)))
	offset := time.Duration(t.cfg.Region.Offset * float64(period))
	planTimeout := t.cfg.PlanTimeout
	if planTimeout <= 0 {
		planTimeout = defaultPlanTimeout
	}
	if period > 0 {
		planTimeout = min(planTimeout, period/2)
	}
	var last []Planned // the last plan that succeeded; rounds never overlap, so no lock
	c.Schedule(sched, cron.FuncJob(func() {
		// The tick, not the moment after the offset, names the round.
		slot := time.Now().Truncate(time.Second)
		if !sleep(ctx, ctx, offset) {
			return
		}
		round := RoundID(t.cfg.Region.Code, slot)
		pctx, cancel := context.WithTimeout(ctx, planTimeout)
		ps, err := plan(pctx)
		cancel()
		var planErr error
		switch {
		case err == nil:
			last = ps
		case ctx.Err() != nil:
			return // shutting down: not a discovery failure
		case last != nil:
			planErr = err
			t.cfg.Log.Warn("discovery failed: this round probes the last discovered orchestrators", "round", round,
				"probes", len(last), "err", err)
		default:
			// No done: no round happened, and /healthz should notice.
			t.cfg.Log.Error("discovery failed and no earlier round has a plan: round skipped", "round", round, "err", err)
			return
		}
		t.cfg.Log.Info("round starting", "round", round, "probes", len(last))
		sum := t.RunRound(ctx, slot, last, sink)
		sum.PlanErr = planErr
		c := sum.Counts()
		t.cfg.Log.Info("round done", "round", sum.RoundID, "took", sum.Took.Round(time.Millisecond),
			"success", c["success"], "failure", c["failure"], "excused", c["excused"], "stopped", sum.Stopped)
		if done != nil {
			done(sum)
		}
	}))
	c.Start()
	<-ctx.Done()
	<-c.Stop().Done()
}

// cronLogger adapts slog to cron's logger.
type cronLogger struct{ l *slog.Logger }

func (c cronLogger) Info(msg string, kv ...any) { c.l.Debug("cron: "+msg, kv...) }
func (c cronLogger) Error(err error, msg string, kv ...any) {
	c.l.Error("cron: "+msg, append(kv, "err", err)...)
}
