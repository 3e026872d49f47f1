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

// Schedule runs rounds on a cron schedule until ctx ends: rounds never
// overlap (a round still running when the next tick comes makes that tick
// skip), and each round waits the region's offset (its share of the period)
// so regions do not probe one orchestrator at the same moment.
//
// When ctx ends Schedule stops scheduling, lets the running round finish its
// in-flight probes (it starts no new ones) and returns once it has.
func (t *Tester) Schedule(ctx context.Context, sched cron.Schedule, period time.Duration, plan []Planned, sink Sink, done func(Summary)) {
	logger := cronLogger{t.cfg.Log}
	c := cron.New(cron.WithChain(cron.Recover(logger), cron.SkipIfStillRunning(logger)))
	offset := time.Duration(t.cfg.Region.Offset * float64(period))
	c.Schedule(sched, cron.FuncJob(func() {
		// The tick, not the moment after the offset, names the round.
		slot := time.Now().Truncate(time.Second)
		if !sleep(ctx, ctx, offset) {
			return
		}
		t.cfg.Log.Info("round starting", "round", RoundID(t.cfg.Region.Code, slot), "probes", len(plan))
		sum := t.RunRound(ctx, slot, plan, sink)
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
