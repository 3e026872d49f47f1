// Package rollup is the leaderboard's rollup maintenance: a one-off rebuild
// of the hourly rollups of closed hours from raw rows, and the retention
// schedule that drops old partitions (ClickHouse 18.16 has no TTL).
package rollup

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

// Config holds the rollup maintenance flags.
type Config struct {
	Rebuild           string // -rebuild-rollups: FROM/TO or a duration; "" = serve
	RebuildTimeout    time.Duration
	RetentionRaw      time.Duration // 0 keeps raw rows forever
	RetentionRollups  time.Duration // 0 keeps rollups forever
	RetentionInterval time.Duration
}

// RegisterFlags defines the flags with their defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Rebuild, "rebuild-rollups", "", "rebuild the hourly rollups of closed hours from raw rows, then exit: FROM/TO in RFC 3339 (2026-03-01T00:00:00Z/2026-03-02T00:00:00Z) or a duration (48h = the last 48 closed hours)")
	fs.DurationVar(&c.RebuildTimeout, "rebuild-rollups.timeout", 30*time.Minute, "time a -rebuild-rollups run may take")
	fs.DurationVar(&c.RetentionRaw, "retention", 0, "drop raw probe_results days older than this (e.g. 2160h = 90 days); 0 keeps them forever")
	fs.DurationVar(&c.RetentionRollups, "retention.rollups", 0, "drop rollup months older than this; 0 keeps them forever")
	fs.DurationVar(&c.RetentionInterval, "retention.interval", time.Hour, "how often retention runs (first run at start)")
}

// Validate lists every problem at once.
func (c *Config) Validate() error {
	var errs []error
	if c.Rebuild != "" {
		if _, _, err := c.rebuildRange(time.Now()); err != nil {
			errs = append(errs, err)
		}
	}
	if c.RetentionRaw < 0 || c.RetentionRollups < 0 {
		errs = append(errs, errors.New("-retention and -retention.rollups must not be negative"))
	}
	if (c.RetentionRaw > 0 || c.RetentionRollups > 0) && c.RetentionInterval <= 0 {
		errs = append(errs, errors.New("-retention.interval must be positive"))
	}
	if c.RetentionRaw > 0 && c.RetentionRaw < 48*time.Hour {
		errs = append(errs, errors.New("-retention below 48h would drop the raw rows the default 24h window and rebuilds read"))
	}
	return errors.Join(errs...)
}

// rebuildRange parses -rebuild-rollups.
func (c *Config) rebuildRange(now time.Time) (from, to time.Time, err error) {
	if d, derr := time.ParseDuration(c.Rebuild); derr == nil {
		if d <= 0 {
			return from, to, fmt.Errorf("-rebuild-rollups %q: duration must be positive", c.Rebuild)
		}
		to = now.UTC().Truncate(time.Hour)
		return to.Add(-d), to, nil
	}
	a, b, ok := strings.Cut(c.Rebuild, "/")
	if ok {
		from, err = time.Parse(time.RFC3339, a)
		if err == nil {
			to, err = time.Parse(time.RFC3339, b)
		}
	}
	if !ok || err != nil || !from.Before(to) {
		return from, to, fmt.Errorf("-rebuild-rollups %q: want FROM/TO in RFC 3339 with FROM before TO, or a duration", c.Rebuild)
	}
	return from, to, nil
}

// Rebuild runs -rebuild-rollups.
func Rebuild(ctx context.Context, cfg Config, st *store.ClickHouse, log *slog.Logger) error {
	from, to, err := cfg.rebuildRange(time.Now())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.RebuildTimeout)
	defer cancel()
	start := time.Now()
	n, err := st.RebuildRollups(ctx, from, to, time.Now())
	if err != nil {
		return fmt.Errorf("rebuild rollups: %w", err)
	}
	log.Info("rollups rebuilt", "from", from.UTC(), "to", to.UTC(), "rows", n, "took", time.Since(start))
	return nil
}

// StartRetention runs retention now and every interval until ctx ends or
// the returned stop is called; stop waits for a run in progress.
func StartRetention(ctx context.Context, cfg Config, st *store.ClickHouse, log *slog.Logger) (stop func()) {
	if cfg.RetentionRaw <= 0 && cfg.RetentionRollups <= 0 {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(cfg.RetentionInterval)
		defer t.Stop()
		for {
			rctx, rcancel := context.WithTimeout(ctx, time.Minute)
			dropped, err := st.Retention(rctx, time.Now(), cfg.RetentionRaw, cfg.RetentionRollups)
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
