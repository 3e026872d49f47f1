package node

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/lpgauge/lpgauge/leaderboard/store"
)

// rollupConfig holds the rollup maintenance flags: a one-off rebuild of
// closed hours, and the retention schedule (18.16 has no TTL).
type rollupConfig struct {
	rebuild           string
	rebuildTimeout    time.Duration
	retentionRaw      time.Duration
	retentionRollups  time.Duration
	retentionInterval time.Duration
}

func (c *rollupConfig) registerFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.rebuild, "rebuild-rollups", "", "rebuild the hourly rollups of closed hours from raw rows, then exit: FROM/TO in RFC 3339 (2026-03-01T00:00:00Z/2026-03-02T00:00:00Z) or a duration (48h = the last 48 closed hours)")
	fs.DurationVar(&c.rebuildTimeout, "rebuild-rollups.timeout", 30*time.Minute, "time a -rebuild-rollups run may take")
	fs.DurationVar(&c.retentionRaw, "retention", 0, "drop raw probe_results days older than this (e.g. 2160h = 90 days); 0 keeps them forever")
	fs.DurationVar(&c.retentionRollups, "retention.rollups", 0, "drop rollup months older than this; 0 keeps them forever")
	fs.DurationVar(&c.retentionInterval, "retention.interval", time.Hour, "how often retention runs (first run at start)")
}

func (c *rollupConfig) validate() error {
	var errs []error
	if c.rebuild != "" {
		if _, _, err := c.rebuildRange(time.Now()); err != nil {
			errs = append(errs, err)
		}
	}
	if c.retentionRaw < 0 || c.retentionRollups < 0 {
		errs = append(errs, errors.New("-retention and -retention.rollups must not be negative"))
	}
	if (c.retentionRaw > 0 || c.retentionRollups > 0) && c.retentionInterval <= 0 {
		errs = append(errs, errors.New("-retention.interval must be positive"))
	}
	if c.retentionRaw > 0 && c.retentionRaw < 48*time.Hour {
		errs = append(errs, errors.New("-retention below 48h would drop the raw rows the default 24h window and rebuilds read"))
	}
	return errors.Join(errs...)
}

// rebuildRange parses -rebuild-rollups.
func (c *rollupConfig) rebuildRange(now time.Time) (from, to time.Time, err error) {
	if d, derr := time.ParseDuration(c.rebuild); derr == nil {
		if d <= 0 {
			return from, to, fmt.Errorf("-rebuild-rollups %q: duration must be positive", c.rebuild)
		}
		to = now.UTC().Truncate(time.Hour)
		return to.Add(-d), to, nil
	}
	a, b, ok := strings.Cut(c.rebuild, "/")
	if ok {
		from, err = time.Parse(time.RFC3339, a)
		if err == nil {
			to, err = time.Parse(time.RFC3339, b)
		}
	}
	if !ok || err != nil || !from.Before(to) {
		return from, to, fmt.Errorf("-rebuild-rollups %q: want FROM/TO in RFC 3339 with FROM before TO, or a duration", c.rebuild)
	}
	return from, to, nil
}

// rebuildRollups runs -rebuild-rollups.
func rebuildRollups(ctx context.Context, cfg rollupConfig, st *store.ClickHouse, log *slog.Logger) error {
	from, to, err := cfg.rebuildRange(time.Now())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.rebuildTimeout)
	defer cancel()
	start := time.Now()
	n, err := st.RebuildRollups(ctx, from, to, time.Now())
	if err != nil {
		return fmt.Errorf("rebuild rollups: %w", err)
	}
	log.Info("rollups rebuilt", "from", from.UTC(), "to", to.UTC(), "rows", n, "took", time.Since(start))
	return nil
}

// startRetention runs retention now and every interval until ctx ends or
// the returned stop is called; stop waits for a run in progress.
func startRetention(ctx context.Context, cfg rollupConfig, st *store.ClickHouse, log *slog.Logger) (stop func()) {
	if cfg.retentionRaw <= 0 && cfg.retentionRollups <= 0 {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(cfg.retentionInterval)
		defer t.Stop()
		for {
			rctx, rcancel := context.WithTimeout(ctx, time.Minute)
			dropped, err := st.Retention(rctx, time.Now(), cfg.retentionRaw, cfg.retentionRollups)
			rcancel()
			for _, d := range dropped {
				log.Info("retention dropped partition", "table", d.Table, "partition", d.Partition, "newest", d.Newest)
			}
			if err != nil && ctx.Err() == nil {
				log.Warn("retention failed; retrying next interval", "err", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return func() { cancel(); wg.Wait() }
}
