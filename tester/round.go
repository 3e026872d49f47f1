package tester

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"strings"
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
	// Deadline bounds a round; probes cut by it or not started by then are
	// recorded as excused ("round_deadline") so a skipped orchestrator is
	// visible and nothing the deadline did is scored.
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
	// StallThreshold is how late the watchdog's tick may come before the
	// tester counts itself stalled (default DefaultStallThreshold).
	StallThreshold time.Duration
	// Rounds, if set, receives the record of every scheduled round, run or
	// skipped (the rounds table).
	Rounds func(results.Round)
	// Skipped, if set, is told of every scheduled round that did not run,
	// with the reason (metrics).
	Skipped func(reason string)
	// Claim, if set, shares the region's probes with other tester instances
	// (tester/shard): a probe runs, or is excused, only once this instance
	// has claimed it; a probe another instance claimed leaves no row here.
	// nil: this instance runs every planned probe (one tester per region).
	Claim Claimer
}

// Claimer decides which probes of a slot this instance runs when several
// testers share a region. Each (slot, orchestrator, pipeline, model) is
// claimed by at most one instance.
type Claimer interface {
	// Claim waits until p may be claimed (this instance's share at once,
	// others' after a sweep delay) and reports whether this instance won
	// it. It returns false at once when ctx ends.
	Claim(ctx context.Context, slot time.Time, p Planned) bool
	// ClaimNow claims without waiting: for the excused row of a probe the
	// round deadline kept from starting.
	ClaimNow(ctx context.Context, slot time.Time, p Planned) bool
	// Stopping is asked, for each probe not yet claimed, by an instance
	// that shuts down mid-round: true means it claimed p and records it
	// excused (its own share, or one the others' sweep may have passed);
	// false leaves p to the instance that owns it.
	Stopping(ctx context.Context, slot time.Time, p Planned) bool
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
	if cfg.StallThreshold <= 0 {
		cfg.StallThreshold = DefaultStallThreshold
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
	Slot     time.Time
	Planned  int
	Started  int              // probes that started
	Results  []results.Result // one per planned probe, in completion order
	Began    time.Time        // when probing began (after the region offset)
	Took     time.Duration
	Stopped  bool // the round was stopped (deadline or shutdown) before every probe ended
	Overran  bool // the round deadline stopped probes
	SinkErrs int  // results the sink refused
	// TesterFaults counts results excused for the tester's own health
	// (stall, clock jump, own network down, control failed).
	TesterFaults int
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

// Record is the round's row for the rounds table.
func (s Summary) Record(region, testerID string) results.Round {
	c := s.Counts()
	rec := results.Round{RoundID: s.RoundID, Region: region, TesterID: testerID, Slot: s.Slot, StartedAt: s.Began,
		Planned: s.Planned, Started: s.Started, Rows: len(s.Results), Excused: c[results.Excused],
		TesterFaults: s.TesterFaults, Overran: s.Overran}
	if !s.Began.IsZero() {
		rec.FinishedAt = s.Began.Add(s.Took)
	}
	return rec
}

// finished is a probe's result with what the round knows about how it ended.
type finished struct {
	r results.Result
	// cut: the round deadline stopped it in flight.
	cut bool
	// down: the tester's own connectivity check failed at the moment of the
	// failure; why says what was dialled.
	down    bool
	control bool
	why     string
}

// RunRound runs every planned probe once for the round scheduled at slot,
// and hands the sink exactly one result per planned probe.
//
// Cancelling ctx stops the round from starting probes (those are recorded
// as excused tester/shutdown); probes already in flight finish (bounded by
// their own timeouts and the round deadline) and are written, which is what
// a graceful shutdown wants. Probes cut by the round deadline, or never
// started before it, are excused tester/round_deadline. Probes of one
// orchestrator run one after another; orchestrators run in parallel up to
// Concurrency.
//
// Each result is judged and handed to the sink as soon as nothing later can
// change its verdict — when no probe still running started before it ended
// and the watchdog has checked up to now — so a tester killed mid-round
// loses no final result. A probe that overlapped a stall of the tester, a
// clock step or a moment its own network was down is excused with the
// precise tester/… code, even when it ended before the fault was known (see
// README, "Whose fault is it?").
func (t *Tester) RunRound(ctx context.Context, slot time.Time, plan []Planned, sink Sink) Summary {
	return t.runRound(ctx, slot, time.Now(), plan, sink)
}

// runRound is RunRound with the moment the round's budget started (the
// scheduler's tick plus offset, before planning).
func (t *Tester) runRound(ctx context.Context, slot, began time.Time, plan []Planned, sink Sink) Summary {
	start := time.Now()
	sum := Summary{RoundID: RoundID(t.cfg.Region.Code, slot), Slot: slot, Planned: len(plan), Began: start}
	dog := startWatchdog(t.cfg.StallThreshold)
	// In-flight work must outlive a shutdown signal; the round deadline
	// still bounds it.
	work := context.WithoutCancel(ctx)
	var cancel context.CancelFunc = func() {}
	var deadline time.Time
	if t.cfg.Deadline > 0 {
		deadline = began.Add(t.cfg.Deadline)
		work, cancel = context.WithDeadline(work, deadline)
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

	var controlHost string
	if t.cfg.Control != nil {
		controlHost = hostPort(t.cfg.Control.Target.ServiceURI)
	}
	conn := newConnectivity(t.cfg.Prober.Dial, controlHost, plan)

	var controlErr string
	var (
		mu       sync.Mutex
		wg       sync.WaitGroup
		sem      = make(chan struct{}, t.cfg.Concurrency)
		done     []finished
		released int                   // done[:released] are judged and written
		inflight = map[int]time.Time{} // probes running now → their start
		nextID   int
		writeMu  sync.Mutex // results reach the sink in the order judged
	)
	// write hands judged results to the sink at once, so a tester killed
	// mid-round loses none that were final (the writer spools them).
	write := func(rs []results.Result) {
		writeMu.Lock()
		defer writeMu.Unlock()
		for _, r := range rs {
			if t.cfg.Observe != nil {
				t.cfg.Observe(r)
			}
			// Not the round's context: a result measured just before the
			// deadline must still be kept.
			if err := sink.Write(context.WithoutCancel(ctx), r); err != nil {
				mu.Lock()
				sum.SinkErrs++
				mu.Unlock()
				t.cfg.Log.Error("result not queued", "probe_id", r.ProbeID, "err", err)
			}
		}
	}
	// release judges every finished probe whose verdict nothing later can
	// change: no probe still running started before it ended (an outage is
	// found by a failing probe and spans from that probe's start), and the
	// watchdog has checked up to now (any stall overlapping it is known).
	// final releases the rest once every probe has ended.
	release := func(final bool) {
		dog.check()
		faults := dog.snapshot()
		mu.Lock()
		var oldest time.Time
		for _, at := range inflight {
			if oldest.IsZero() || at.Before(oldest) {
				oldest = at
			}
		}
		// Keep done[:released] judged: move releasable ones to the front.
		var ready []finished
		rest := done[released:]
		var keepBack []finished
		for _, f := range rest {
			end := f.r.StartedAt.Add(f.r.Wall)
			if final || oldest.IsZero() || end.Before(oldest) {
				ready = append(ready, f)
			} else {
				keepBack = append(keepBack, f)
			}
		}
		done = append(append(done[:released:released], ready...), keepBack...)
		released += len(ready)
		n := len(sum.Results)
		t.judge(&sum, ready, done, faults, controlErr, deadline)
		out := append([]results.Result(nil), sum.Results[n:]...)
		mu.Unlock()
		write(out)
	}
	// keep records a probe that ended; id is its in-flight entry (-1 for
	// probes that never started), dropped only now, after the connectivity
	// check, so no result it could excuse is released before it is known.
	keep := func(id int, f finished) {
		mu.Lock()
		done = append(done, f)
		delete(inflight, id)
		mu.Unlock()
		release(false)
	}

	if c := t.cfg.Control; c != nil {
		r := t.cfg.Prober.Run(work, probe.Job{Orchestrator: c.Target.Address, ServiceURI: c.Target.ServiceURI,
			Pipeline: c.Model.Pipeline, Model: c.Model.Model, Seed: slot.Unix(), Timeouts: t.cfg.Timeouts[c.Model.Pipeline.Info().Slug]})
		if r.Outcome != results.Success {
			controlErr = r.ErrorClass + "/" + r.ErrorCode
			t.cfg.Log.Warn("control probe failed: network-class failures this round are excused", "class", r.ErrorClass, "code", r.ErrorCode, "err", r.ErrorMessage)
		}
	}

	// dropped counts a probe another instance has (Config.Claim): it is not
	// this instance's to run or to record.
	dropped := func() {
		mu.Lock()
		sum.Planned--
		mu.Unlock()
	}
	// skip records probes that never started; claimed says ps[0] is
	// already this instance's (Config.Claim).
	skip := func(ps []Planned, claimed bool) {
		code, msg := CodeRoundDeadline, fmt.Sprintf("round deadline %s passed before the probe started", t.cfg.Deadline)
		if ctx.Err() != nil {
			code, msg = CodeShutdown, "the tester was shutting down before the probe started"
		}
		if t.cfg.Claim != nil {
			// Shared region: past the deadline, whoever claims a probe
			// writes its one excused row; a stopping instance excuses what
			// the claimer gives it and leaves the rest to their owners.
			var mine []Planned
			for i, p := range ps {
				switch {
				case i == 0 && claimed:
					mine = append(mine, p)
				case code == CodeRoundDeadline && t.cfg.Claim.ClaimNow(context.WithoutCancel(ctx), slot, p):
					mine = append(mine, p)
				case code == CodeShutdown && t.cfg.Claim.Stopping(context.WithoutCancel(ctx), slot, p):
					mine = append(mine, p)
				default:
					dropped()
				}
			}
			ps = mine
			if len(ps) == 0 {
				return
			}
		}
		mu.Lock()
		sum.Stopped = true
		if code == CodeRoundDeadline {
			sum.Overran = true
		}
		mu.Unlock()
		for _, p := range ps {
			keep(-1, finished{r: t.identity(slot, p, results.Result{
				Orchestrator: p.Target.Address, ServiceURI: p.Target.ServiceURI,
				Pipeline: p.Model.Pipeline.Info().Name, Model: p.Model.Model, StartedAt: time.Now(),
				Outcome: results.Excused, ErrorClass: string(probe.ClassTester), ErrorCode: code, ErrorMessage: msg,
			})})
		}
	}

	// A claim's wait ends on shutdown or at the deadline.
	stopOrDeadline, stopWait := context.WithCancel(work)
	defer stopWait()
	defer context.AfterFunc(ctx, stopWait)()
	// Order and start times are drawn per round (seeded by slot, region and
	// tester, so a round can be replayed): an orchestrator sees its probe at
	// a different moment of the window every round, not at a fixed place in
	// a fixed list. Each orchestrator starts at a uniform moment of its own
	// 1/n of Spread, so every start stays inside Spread and the round
	// budget is what it was.
	rng := rand.New(rand.NewPCG(uint64(slot.UnixNano()), roundSalt(t.cfg.Region.Code, t.cfg.TesterID, len(plan))))
	rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	for i, addr := range order {
		var delay time.Duration
		if t.cfg.Spread > 0 && len(order) > 1 {
			gap := t.cfg.Spread / time.Duration(len(order))
			delay = time.Duration(i)*gap + time.Duration(rng.Int64N(int64(gap)+1))
		} else if t.cfg.Spread > 0 {
			delay = time.Duration(rng.Int64N(int64(t.cfg.Spread) + 1))
		}
		probes := byOrch[addr]
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !sleep(ctx, work, delay) {
				skip(probes, false)
				return
			}
			for j, p := range probes {
				claimed := false
				if t.cfg.Claim != nil {
					if !t.cfg.Claim.Claim(stopOrDeadline, slot, p) {
						if ctx.Err() != nil || work.Err() != nil {
							skip(probes[j:], false)
							return
						}
						dropped()
						continue
					}
					claimed = true
				}
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
					skip(probes[j:], claimed)
					return
				}
				mu.Lock()
				sum.Started++
				mu.Unlock()
				mu.Lock()
				id := nextID
				nextID++
				inflight[id] = time.Now()
				mu.Unlock()
				r := t.runOne(work, slot, p)
				<-sem
				f := finished{r: r}
				end := r.StartedAt.Add(r.Wall)
				switch {
				case r.Outcome != results.Success && work.Err() != nil && !deadline.IsZero() && !end.Before(deadline) && connectivityClass(r):
					// The round deadline cancelled it: not the orchestrator's.
					f.cut = true
				case connectivityClass(r):
					f.down, f.why = conn.down(work, r.Orchestrator, end)
					f.control = controlHost != ""
				case r.HTTPStatus != 0 || r.Outcome == results.Success:
					conn.saw(r.Orchestrator, end)
				}
				keep(id, f)
			}
		}()
	}
	wg.Wait()
	dog.close()
	sum.Took = time.Since(start)
	release(true)
	return sum
}

// outage is a span during which the tester's own network was found down.
type outage struct {
	from, to time.Time
	control  bool
	why      string
}

// judge turns what the round saw into the stored results: the tester's own
// faults are excused with precise codes, everything else stands.
// judged are the probes to decide now; all is every probe the round has
// seen end, whose failures may show the tester's network was down.
func (t *Tester) judge(sum *Summary, judged, all []finished, faults []fault, controlErr string, deadline time.Time) {
	var outages []outage
	for _, f := range all {
		if f.down {
			outages = append(outages, outage{from: f.r.StartedAt, to: f.r.StartedAt.Add(f.r.Wall).Add(connectivityTimeout), control: f.control, why: f.why})
		}
	}
	for _, f := range judged {
		r := f.r
		from, to := r.StartedAt, r.StartedAt.Add(r.Wall)
		excuse := func(code, msg string) {
			if r.Outcome == results.Excused && r.ErrorClass == string(probe.ClassTester) {
				return // already the tester's (deadline, shutdown, payment setup)
			}
			was := "success"
			if r.Outcome != results.Success {
				was = r.ErrorClass + "/" + r.ErrorCode
				if r.ErrorMessage != "" {
					was += ": " + r.ErrorMessage
				}
			}
			r.ErrorMessage = msg + "; the probe saw " + was
			r.Outcome, r.ErrorClass, r.ErrorCode = results.Excused, string(probe.ClassTester), code
			if code != CodeRoundDeadline {
				sum.TesterFaults++
			}
		}
		if f.cut {
			sum.Overran, sum.Stopped = true, true
			excuse(CodeRoundDeadline, fmt.Sprintf("round deadline %s cut the probe in flight", deadline.Sub(sum.Began).Round(time.Millisecond)))
		}
		if r.StartedAt.IsZero() || r.Outcome == results.Excused && r.ErrorClass == string(probe.ClassTester) {
			sum.Results = append(sum.Results, r)
			continue
		}
		// A tester fault excuses what it can have caused: a success's
		// timing, and a failure to connect or to answer in time. An answer
		// the orchestrator did give (an HTTP error, a wrong output) stands.
		if r.Outcome != results.Success && !connectivityClass(r) {
			sum.Results = append(sum.Results, r)
			continue
		}
		for _, ft := range faults {
			if ft.overlaps(from, to) {
				excuse(ft.code, ft.detail)
				break
			}
		}
		if controlErr != "" && connectivityClass(r) {
			excuse(CodeControlFailed, fmt.Sprintf("control probe failed before the round (%s)", controlErr))
		}
		for _, o := range outages {
			if o.from.Before(to) && !from.After(o.to) {
				code := CodeNetworkDown
				if o.control {
					code = CodeControlFailed
				}
				excuse(code, "the tester's own network was down during the probe: "+o.why)
				break
			}
		}
		sum.Results = append(sum.Results, r)
	}
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

func (t *Tester) runOne(ctx context.Context, slot time.Time, p Planned) results.Result {
	id := t.ProbeID(slot, p, 0)
	job := probe.Job{
		Orchestrator: p.Target.Address,
		ServiceURI:   p.Target.ServiceURI,
		Pipeline:     p.Model.Pipeline,
		Model:        p.Model.Model,
		Seed:         probeSeed(t.cfg.Region.Code, slot, p.Target.Address, p.Model.Pipeline.Info().Slug, p.Model.Model, id),
		Timeouts:     t.cfg.Timeouts[p.Model.Pipeline.Info().Slug],
	}
	r := t.cfg.Prober.Run(ctx, job)
	r = t.identity(slot, p, r)
	t.cfg.Log.Debug("probe done", "probe_id", r.ProbeID, "orchestrator", r.Orchestrator, "pipeline", r.Pipeline,
		"model", r.Model, "outcome", r.Outcome, "class", r.ErrorClass, "total", r.Total)
	return r
}

// CodeClaimUnconfirmed excuses a probe of a shared region whose claim
// reached ZooKeeper while its instance lost the connection: the instance
// learned it held the claim only after the probe's time (tester/shard).
const CodeClaimUnconfirmed = "shard_claim_unconfirmed"

// Excused is the excused tester/<code> row of a probe of slot that did not
// run, with the probe's deterministic identity (tester/shard's late rows).
func (t *Tester) Excused(slot time.Time, p Planned, code, msg string) results.Result {
	return t.identity(slot, p, results.Result{
		Orchestrator: p.Target.Address, ServiceURI: p.Target.ServiceURI,
		Pipeline: p.Model.Pipeline.Info().Name, Model: p.Model.Model, StartedAt: time.Now(),
		Outcome: results.Excused, ErrorClass: string(probe.ClassTester), ErrorCode: code, ErrorMessage: msg,
	})
}

// probeSeed draws a probe's input from the corpus: the slot walks the
// (region, orchestrator, pipeline, model)'s inputs without a repeat for about
// a million rounds, the probe id drives the rest (sizes, pixels); all of it
// is in the row, so the input can be rebuilt (probe.DrawSeed).
func probeSeed(region string, slot time.Time, orch, slug, model, probeID string) int64 {
	raw, _ := hex.DecodeString(probeID)
	return probe.DrawSeed(slot.Unix(), region+"|"+strings.ToLower(orch)+"|"+slug+"|"+model, raw)
}

// roundSalt separates the draws of regions and tester instances that share
// a slot, so two testers never shuffle their lists alike.
func roundSalt(region, tester string, n int) uint64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "%s|%s|%d", region, tester, n)
	return h.Sum64()
}

func (t *Tester) identity(slot time.Time, p Planned, r results.Result) results.Result {
	r.ProbeID = t.ProbeID(slot, p, 0)
	r.RoundID = RoundID(t.cfg.Region.Code, slot)
	r.Region = t.cfg.Region.Code
	r.TesterID = t.cfg.TesterID
	r.Source = "tester"
	return r
}
