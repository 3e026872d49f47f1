package node

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/lpgauge/lpgauge/tester/shard"
)

// shardFlags are the -shard.* flags: several tester instances of one region
// sharing its probes through ZooKeeper (tester/shard). Empty -shard.zookeeper
// is one instance per region, as before.
type shardFlags struct {
	ZooKeeper      string
	ID             string
	SessionTimeout time.Duration
}

func (s *shardFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&s.ZooKeeper, "shard.zookeeper", "", "ZooKeeper servers host:port,... to share the region's probes with its other tester instances (each probe is claimed by exactly one; see README, \"Several testers per region\"); empty: this instance probes everything")
	fs.StringVar(&s.ID, "shard.id", "", "this instance's member name under /lpgauge/testers/<region>/ (default hostname-pid); unique per instance")
	fs.DurationVar(&s.SessionTimeout, "shard.session-timeout", 6*time.Second, "how long ZooKeeper keeps a silent instance a member; keep it below the round period so a dead instance's share moves by the next round")
}

func (s *shardFlags) validate(once bool, period time.Duration) []error {
	if s.ZooKeeper == "" {
		return nil
	}
	var errs []error
	if s.SessionTimeout < time.Second {
		errs = append(errs, fmt.Errorf("-shard.session-timeout %s: want at least 1s (ZooKeeper's minimum is two ticks)", s.SessionTimeout))
	}
	if !once && period > 0 && s.SessionTimeout >= period {
		errs = append(errs, fmt.Errorf("-shard.session-timeout %s must be shorter than the round period %s, or a dead instance's share waits more than a round", s.SessionTimeout, period))
	}
	if strings.Contains(s.ID, "/") {
		errs = append(errs, fmt.Errorf("-shard.id %q: may not contain '/'", s.ID))
	}
	return errs
}

// open joins the region's testers; nil when sharing is off. The sweep
// starts a third of the way into the round's budget, leaving the rest for
// the probes of a dead or cut-off instance.
func (s *shardFlags) open(ctx context.Context, region string, deadline, period time.Duration, log *slog.Logger) (*shard.Shard, error) {
	if s.ZooKeeper == "" {
		return nil, nil
	}
	if deadline <= 0 && period > 0 {
		deadline = period - min(period/20, 5*time.Second) // tester.SchedulePlanner's default
	}
	octx, cancel := context.WithTimeout(ctx, s.SessionTimeout+5*time.Second)
	defer cancel()
	sh, err := shard.Open(octx, shard.Config{Servers: strings.Split(s.ZooKeeper, ","), Region: region, ID: s.ID,
		SessionTimeout: s.SessionTimeout, Sweep: deadline / 3, Log: log})
	if err != nil {
		return nil, fmt.Errorf("-shard.zookeeper: %w", err)
	}
	return sh, nil
}
