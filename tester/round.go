package tester

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/lpgauge/lpgauge/internal/results"
	"github.com/lpgauge/lpgauge/regions"
	"github.com/lpgauge/lpgauge/tester/probe"
)

// Sink receives each result as soon as its probe ends (the writer). Write
// is called from several probes' goroutines at once.
type Sink interface {
	Write(ctx context.Context, r results.Result) error
}

// Config configures a Tester.
type Config struct {
	Region   regions.Region
	TesterID string // lower-case 0x address of the tester key
	Prober   *probe.Prober
	// Concurrency bounds the probes in flight across all orchestrators
	// (default 8). Each orchestrator has at most one probe in flight anyway:
	// a second would queue behind the first on its GPU and time the queue.
	Concurrency int
	// Spread staggers orchestrators' first probes over this window so they
	// do not all start on the same tick (0: all at once).
	Spread time.Duration
	// Deadline bounds a round; probes not started by then are recorded as
	// excused ("round_deadline") so a skipped orchestrator is visible.
	Deadline time.Duration
	// Timeouts per pipeline slug override the prober's defaults.
	Timeouts map[string]probe.Timeouts
	Log      *slog.Logger
	// Control, if set, is a known-good target (a reference orchestrator
	// near the tester) probed before each round. When it fails, the fault is
	// on our side of the network, so the round's network, TLS, timeout and
	// discovery failures are recorded as excused instead of blamed on
	// orchestrators. Its own result is not stored.
	Control *Planned
	// Observe, if set, sees every result (metrics).
	Observe func(results.Result)
	// PlanTimeout bounds the Planner at the start of each scheduled round
	// (default a minute, at most half the period).
	PlanTimeout time.Duration
}

// Tester runs rounds for one region.
type Tester struct {
	cfg Config
}

// New validates cfg and returns a Tester.
func New(cfg Config) (*Tester, error) {
	if cfg.Region.Code == "" {
		return nil, errors.New("tester: no region")
	}
	if !addressRE.MatchString(cfg.TesterID) {
		return nil, fmt.Errorf("tester: tester id %q is not a 0x address", cfg.TesterID)
	}
	if cfg.Prober == nil {
		return nil, errors.New("tester: no prober")
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 8
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Tester{cfg: cfg}, nil
}

// RoundID names a round: region and scheduled slot.
func RoundID(region string, slot time.Time) string {
	return region + "/" + slot.UTC().Format(time.RFC3339)
}

// ProbeID is the deterministic id of one probe of a round.
func (t *Tester) ProbeID(slot time.Time, p Planned, attempt int) string {
	return results.ProbeID(t.cfg.Region.Code, t.cfg.TesterID, slot.UTC().Format(time.RFC3339),
		p.Target.Address, p.Model.Pipeline.Info().Name, p.Model.Model, fmt.Sprint(attempt))
}

// Summary tells how a round went.
type Summary struct {
	RoundID  string
	Planned  int
	Results  []results.Result // in completion order
	Took     time.Duration
	Stopped  bool // the round was stopped before every probe started
	SinkErrs int  // results the sink refused
	// PlanErr is why this round's plan could not be made (SchedulePlanner);
	// the round then probed the last good plan.
	PlanErr error
}

// Counts returns results per outcome.
func (s Summary) Counts() map[results.Outcome]int {
	c := map[results.Outcome]int{}
	for _, r := range s.Results {
		c[r.Outcome]++
	}
	return c
}

// RunRound runs every planned probe once for the round scheduled at slot.
//
// Cancelling ctx stops the round from starting probes; probes already in
// flight finish (bounded by their own timeouts) and are written, which is
// what a graceful shutdown wants. Probes of one orchestrator run one after
// another; orchestrators run in parallel up to Concurrency.
func (t *Tester) RunRound(ctx context.Context, slot time.Time, plan []Planned, sink Sink) Summary {
	start := time.Now()
	sum := Summary{RoundID: RoundID(t.cfg.Region.Code, slot), Planned: len(plan)}
	// In-flight work must outlive a shutdown signal; the round deadline
	// still bounds it.
	work := context.WithoutCancel(ctx)
	var cancel context.CancelFunc = func() {}
	if t.cfg.Deadline > 0 {
		work, cancel = context.WithTimeout(work, t.cfg.Deadline)
	}
	defer cancel()

	byOrch := map[string][]Planned{}
	var order []string
	for _, p := range plan {
		if _, ok := byOrch[p.Target.Address]; !ok {
			order = append(order, p.Target.Address)
		}
		byOrch[p.Target.Address] = append(byOrch[p.Target.Address], p)
	}

	var (
		mu  sync.Mutex
		wg  sync.WaitGroup
		sem = make(chan struct{}, t.cfg.Concurrency)
	)
	record := func(r results.Result) {
		if t.cfg.Observe != nil {
			t.cfg.Observe(r)
		}
		// Not the round's context: a result measured just before the
		// deadline must still be kept.
		err := sink.Write(context.WithoutCancel(work), r)
		mu.Lock()
		defer mu.Unlock()
		sum.Results = append(sum.Results, r)
		if err != nil {
			sum.SinkErrs++
			t.cfg.Log.Error("result not queued", "probe_id", r.ProbeID, "err", err)
		}
	}
	stopped := func() bool {
		mu.Lock()
		defer mu.Unlock()
		sum.Stopped = true
		return true
	}

	var controlErr string
	if c := t.cfg.Control; c != nil {
		r := t.cfg.Prober.Run(work, probe.Job{Orchestrator: c.Target.Address, ServiceURI: c.Target.ServiceURI,
			Pipeline: c.Model.Pipeline, Model: c.Model.Model, Seed: slot.Unix(), Timeouts: t.cfg.Timeouts[c.Model.Pipeline.Info().Slug]})
		if r.Outcome != results.Success {
			controlErr = r.ErrorClass + "/" + r.ErrorCode
			t.cfg.Log.Warn("control probe failed: network-class failures this round are excused", "class", r.ErrorClass, "code", r.ErrorCode, "err", r.ErrorMessage)
		}
	}
	if controlErr != "" {
		inner := record
		record = func(r results.Result) {
			switch probe.Class(r.ErrorClass) {
			case probe.ClassNetwork, probe.ClassTLS, probe.ClassTimeout, probe.ClassDiscovery:
				r.ErrorMessage = fmt.Sprintf("control probe failed (%s); orchestrator saw %s/%s: %s", controlErr, r.ErrorClass, r.ErrorCode, r.ErrorMessage)
				r.Outcome, r.ErrorClass, r.ErrorCode = results.Excused, string(probe.ClassTester), "control_failed"
			}
			inner(r)
		}
	}

	rng := rand.New(rand.NewPCG(uint64(slot.UnixNano()), uint64(len(plan))))
	for i, addr := range order {
		var delay time.Duration
		if t.cfg.Spread > 0 && len(order) > 1 {
			gap := t.cfg.Spread / time.Duration(len(order))
			// Jitter of up to a tenth of the gap keeps two testers with the
			// same list from locking into step.
			delay = time.Duration(i)*gap + time.Duration(rng.Int64N(int64(gap)/10+1))
		}
		probes := byOrch[addr]
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !sleep(ctx, work, delay) {
				t.skip(ctx, work, slot, probes, record, stopped)
				return
			}
			for j, p := range probes {
				acquired := false
				select {
				case sem <- struct{}{}:
					acquired = true
				case <-ctx.Done():
				case <-work.Done():
				}
				if ctx.Err() != nil || work.Err() != nil {
					if acquired {
						<-sem
					}
					t.skip(ctx, work, slot, probes[j:], record, stopped)
					return
				}
				r := t.runOne(work, slot, p)
				<-sem
				record(r)
			}
		}()
	}
	wg.Wait()
	sum.Took = time.Since(start)
	return sum
}

// sleep waits d unless the round is stopped or past its deadline.
func sleep(stop, work context.Context, d time.Duration) bool {
	if d <= 0 {
		return stop.Err() == nil && work.Err() == nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-stop.Done():
		return false
	case <-work.Done():
		return false
	}
}

// skip accounts for probes that never started: a shutdown is not a
// measurement (no row), but a round deadline is recorded as excused so the
// gap in coverage shows.
func (t *Tester) skip(stop, work context.Context, slot time.Time, ps []Planned, record func(results.Result), stopped func() bool) {
	stopped()
	if stop.Err() != nil {
		return
	}
	for _, p := range ps {
		r := t.identity(slot, p, results.Result{
			Orchestrator: p.Target.Address, ServiceURI: p.Target.ServiceURI,
			Pipeline: p.Model.Pipeline.Info().Name, Model: p.Model.Model, StartedAt: time.Now(),
			Outcome: results.Excused, ErrorClass: string(probe.ClassTester), ErrorCode: "round_deadline",
			ErrorMessage: fmt.Sprintf("round deadline %s passed before the probe started", t.cfg.Deadline),
		})
		record(r)
	}
}

func (t *Tester) runOne(ctx context.Context, slot time.Time, p Planned) results.Result {
	id := t.ProbeID(slot, p, 0)
	raw, _ := hex.DecodeString(id)
	job := probe.Job{
		Orchestrator: p.Target.Address,
		ServiceURI:   p.Target.ServiceURI,
		Pipeline:     p.Model.Pipeline,
		Model:        p.Model.Model,
		// The seed comes from the probe id: it varies prompt and size from
		// round to round yet is reproducible for a given probe.
		Seed:     int64(binary.BigEndian.Uint64(raw[:8]) >> 1),
		Timeouts: t.cfg.Timeouts[p.Model.Pipeline.Info().Slug],
	}
	r := t.cfg.Prober.Run(ctx, job)
	r = t.identity(slot, p, r)
	t.cfg.Log.Debug("probe done", "probe_id", r.ProbeID, "orchestrator", r.Orchestrator, "pipeline", r.Pipeline,
		"model", r.Model, "outcome", r.Outcome, "class", r.ErrorClass, "total", r.Total)
	return r
}

func (t *Tester) identity(slot time.Time, p Planned, r results.Result) results.Result {
	r.ProbeID = t.ProbeID(slot, p, 0)
	r.RoundID = RoundID(t.cfg.Region.Code, slot)
	r.Region = t.cfg.Region.Code
	r.TesterID = t.cfg.TesterID
	r.Source = "tester"
	return r
}
