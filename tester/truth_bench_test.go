package tester

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lpgauge/lpgauge/gateway"
	"github.com/lpgauge/lpgauge/internal/results"
	"github.com/lpgauge/lpgauge/leaderboard/score"
	"github.com/lpgauge/lpgauge/regions"
	"github.com/lpgauge/lpgauge/tester/orchtest"
	"github.com/lpgauge/lpgauge/tester/preparer"
	"github.com/lpgauge/lpgauge/tester/probe"
)

// The truth benchmark: a fleet whose behaviour is known (per-orchestrator
// server time and failure rate), seen from three regions through in-process
// delay links (each region's own network distance to each orchestrator),
// scheduled rounds with the tester's own faults injected. It measures what
// issue 13 asks of the tester: that it ranks the fleet as the truth does
// (Kendall τ per region), times the phases the orchestrator is accountable
// for (error against the injected truth), scores no probe against an
// orchestrator for its own faults, and loses no round.

// delayConn delays each direction of a connection by d (one way), without
// limiting throughput: what a link of RTT 2d does.
type delayConn struct {
	net.Conn
	d      time.Duration
	hold   *atomic.Int64 // extra one-way delay (ns) for what arrives now: a link that stalls
	in     chan chunk
	out    chan chunk
	rbuf   []byte
	rerr   error
	closed chan struct{}
	once   sync.Once
}

type chunk struct {
	b   []byte
	at  time.Time
	err error
}

func newDelayConn(c net.Conn, d time.Duration, hold *atomic.Int64) *delayConn {
	dc := &delayConn{Conn: c, d: d, hold: hold, in: make(chan chunk, 4096), out: make(chan chunk, 4096), closed: make(chan struct{})}
	go dc.readLoop()
	go dc.writeLoop()
	return dc
}

// waitUntil sleeps until at. On a busy machine a timer wakes late; that
// slop is the link's error, and shows in the connect row of the table (a
// connect is nothing but the link's round trip).
func waitUntil(at time.Time, stop <-chan struct{}) bool {
	if d := time.Until(at); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-stop:
			return false
		}
	}
	return true
}

func (c *delayConn) readLoop() {
	for {
		b := make([]byte, 32<<10)
		n, err := c.Conn.Read(b)
		select {
		case c.in <- chunk{b: b[:n], at: time.Now().Add(time.Duration(c.hold.Load())), err: err}:
		case <-c.closed:
			return
		}
		if err != nil {
			return
		}
	}
}

func (c *delayConn) Read(p []byte) (int, error) {
	for len(c.rbuf) == 0 {
		if c.rerr != nil {
			return 0, c.rerr
		}
		var ch chunk
		select {
		case ch = <-c.in:
		case <-c.closed:
			return 0, net.ErrClosed
		}
		if !waitUntil(ch.at.Add(c.d), c.closed) {
			return 0, net.ErrClosed
		}
		c.rbuf, c.rerr = ch.b, ch.err
	}
	n := copy(p, c.rbuf)
	c.rbuf = c.rbuf[n:]
	return n, nil
}

func (c *delayConn) Write(p []byte) (int, error) {
	select {
	case c.out <- chunk{b: append([]byte(nil), p...), at: time.Now()}:
		return len(p), nil
	case <-c.closed:
		return 0, net.ErrClosed
	}
}

func (c *delayConn) writeLoop() {
	for {
		select {
		case ch := <-c.out:
			if !waitUntil(ch.at.Add(c.d), c.closed) {
				return
			}
			if _, err := c.Conn.Write(ch.b); err != nil {
				return
			}
		case <-c.closed:
			return
		}
	}
}

func (c *delayConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// regionNet is one region's network: its faults (tnet) and its one-way
// delay to each orchestrator; a connect costs one round trip. hold stalls
// the answers from one orchestrator on this region's links only (the
// round-deadline overrun): an orchestrator-side slowdown would also hit the
// other regions' probes that overlap it, which the truth does not contain.
type regionNet struct {
	tnet
	oneWay map[string]time.Duration // host:port → one-way delay
	hold   map[string]*atomic.Int64 // host:port → extra delay of answers arriving now (ns)
}

func (n *regionNet) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	d := n.oneWay[addr]
	// The fault applies to the SYN; the handshake costs a round trip.
	c, err := n.tnet.dial(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	if !waitUntil(time.Now().Add(2*d), ctx.Done()) {
		_ = c.Close()
		return nil, ctx.Err()
	}
	return newDelayConn(c, d, n.hold[addr]), nil
}

type truthConfig struct {
	orchs  int
	rounds int // per region
	period time.Duration
	// sessionTTL > 0 sends every probe through the Livepeer protocol, as
	// the tester does by default: GetOrchestrator over gRPC through the
	// region's link (faults included), its answer reused for sessionTTL
	// (the benchmark's stand-in for go-livepeer's 10 minutes, so sessions
	// are renewed in rounds with faults too). 0: plain AI requests.
	sessionTTL time.Duration
	// slack is how far over the truth a success's job may be before it
	// counts as carrying a wait of the tester's (0: 500 ms, the stall
	// threshold). The small test in make test runs beside other jobs on
	// a 2-core machine, where the in-process fakes themselves answer late
	// by a few hundred ms now and then; it allows 800 ms, still below the
	// 1 s freeze it must catch. The benchmark keeps 500 ms.
	slack time.Duration
}

// Faults, by round index within each cycle of 8 rounds.
var truthFaults = map[int]string{1: "refuse", 2: "blackhole", 3: "outage", 4: "freeze", 5: "overrun"}

type phaseErr struct{ median, p99 time.Duration }

type truthReport struct {
	cfg     truthConfig
	tau     map[string]float64
	rates   map[string]string   // region → scored success rate of the failing profiles (injected)
	phases  map[string]phaseErr // connect, server, total
	scored  map[string]int      // per fault: probes scored against orchestrators because of it
	excused map[string]int      // per fault: probes excused in its rounds
	missing int                 // ticks with no round record
	// misjudged: probes in rounds without an injected fault scored
	// against the orchestrator's own decision (a failure it did not
	// inject, a success it refused); excusedNoFault: probes excused there.
	misjudged, excusedNoFault int
	rounds                    int // round records, all regions
	samples                   int // scored probes, all regions
	regionCode                []string
}

func quantile(xs []time.Duration, q float64) time.Duration {
	if len(xs) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), xs...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[int(math.Ceil(q*float64(len(s))))-1]
}

// kendallTau compares two scorings of the same keys (τ-b without ties in
// the truth).
func kendallTau(truth, got map[string]float64) float64 {
	var keys []string
	for k := range truth {
		keys = append(keys, k)
	}
	var c, d float64
	for i := range keys {
		for j := i + 1; j < len(keys); j++ {
			a := truth[keys[i]] - truth[keys[j]]
			b := got[keys[i]] - got[keys[j]]
			switch {
			case a*b > 0:
				c++
			case a*b < 0:
				d++
			}
		}
	}
	n := float64(len(keys) * (len(keys) - 1) / 2)
	return (c - d) / n
}

func runTruth(tb testing.TB, cfg truthConfig) truthReport {
	tb.Helper()
	// The fleet: server times 60, 100, 140 ms… and two failure profiles,
	// decided per probe from its seed (orchtest.Fails), so the truth below
	// can be the injected profile itself.
	type orchTruth struct {
		o     *orchtest.Orch
		delay time.Duration
		fail  float64 // injected failure rate
	}
	var fleet []orchTruth
	index := map[string]int{} // address → position in fleet
	for i := 0; i < cfg.orchs; i++ {
		b := orchtest.Behaviour{Delay: time.Duration(60+40*i) * time.Millisecond}
		switch i {
		case 1:
			b.FailRate = 0.5
		case 3:
			b.FailRate = 0.25
		}
		fleet = append(fleet, orchTruth{o: orchtest.New(tb, b), delay: b.Delay, fail: b.FailRate})
		index[fleet[i].o.Address] = i
	}
	ms, _ := ParseModels("text-to-image:m,text-to-image:n")
	var plan []Planned
	for _, f := range fleet {
		for _, m := range ms {
			plan = append(plan, Planned{Target: Target{Address: f.o.Address, ServiceURI: f.o.URL}, Model: m})
		}
	}

	// Three regions, each its own network distance to each orchestrator
	// (so the three truths differ).
	codes := []string{"FRA", "LAX", "SIN"}
	base := map[string]time.Duration{"FRA": 2 * time.Millisecond, "LAX": 15 * time.Millisecond, "SIN": 35 * time.Millisecond}
	nets := map[string]*regionNet{}
	oneWay := map[string]map[string]time.Duration{} // region → orch → one-way
	for ri, code := range codes {
		n := &regionNet{oneWay: map[string]time.Duration{}, hold: map[string]*atomic.Int64{}}
		oneWay[code] = map[string]time.Duration{}
		for i, f := range fleet {
			// Farther orchestrators differ per region: the ranking is the
			// region's own.
			d := base[code] + time.Duration((i*7+ri*11)%23)*time.Millisecond
			n.oneWay[strings.TrimPrefix(f.o.URL, "http://")] = d
			n.hold[strings.TrimPrefix(f.o.URL, "http://")] = &atomic.Int64{}
			oneWay[code][f.o.Address] = d
		}
		nets[code] = n
	}

	var mu sync.Mutex
	rows := map[string][]results.Result{} // region → results
	recs := map[string][]results.Round{}  // region → round records
	faultOf := map[string]string{}        // round id → fault
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sched, period, err := ParseSchedule("", cfg.period)
	if err != nil {
		tb.Fatal(err)
	}
	// The fakes render each image size once and keep it; a first render
	// (seconds under -race) inside a scheduled round would be server time
	// nobody injected, and cut the first round. Render every size now
	// (text-to-image picks the size from the seed, one of four).
	warm := probe.New(probe.Config{})
	for seed := int64(0); seed < 4; seed++ {
		if r := warm.Run(context.Background(), probe.Job{Orchestrator: fleet[0].o.Address, ServiceURI: fleet[0].o.URL,
			Pipeline: probe.TextToImage{}, Model: "warm-up", Seed: seed}); r.Outcome != results.Success {
			tb.Fatalf("warm-up probe: %s/%s: %s", r.ErrorClass, r.ErrorCode, r.ErrorMessage)
		}
	}
	var wg sync.WaitGroup
	for _, code := range codes {
		region, err := regions.ForTester(code)
		if err != nil {
			tb.Fatal(err)
		}
		n := nets[code]
		k := 0
		planner := func(context.Context) ([]Planned, error) {
			// Each round's fault, set when the round begins.
			n.set("")
			last := n.hold[strings.TrimPrefix(fleet[len(fleet)-1].o.URL, "http://")]
			last.Store(0)
			fault := truthFaults[k%8]
			k++
			slot := time.Now().Add(-time.Duration(region.Offset * float64(period))).Round(time.Second)
			mu.Lock()
			faultOf[RoundID(code, slot)] = fault
			mu.Unlock()
			switch fault {
			case "refuse":
				n.set("refuse")
			case "blackhole":
				n.set("blackhole")
				time.AfterFunc(1500*time.Millisecond, func() { n.set("") })
			case "outage":
				time.AfterFunc(400*time.Millisecond, func() { n.set("refuse") })
			case "freeze":
				if code == "FRA" {
					time.AfterFunc(300*time.Millisecond, func() { freeze(tb, time.Second) })
				}
			case "overrun":
				if code == "FRA" {
					// The last orchestrator's answers reach FRA 5 s late:
					// the round deadline cuts those probes in flight.
					last.Store(int64(5 * time.Second))
				}
			}
			return plan, nil
		}
		var prep probe.Preparer // nil: probe.OffChain
		if cfg.sessionTTL > 0 {
			prep = preparer.Preparer{Gateway: &gateway.Gateway{Dial: n.dial, ReuseSessions: true, SessionTTL: cfg.sessionTTL}}
		}
		tt, err := New(Config{Region: region, TesterID: testerID, Concurrency: len(fleet), Spread: period / 10,
			Prober: probe.New(probe.Config{Dial: n.dial, Timeouts: probe.Timeouts{Connect: 800 * time.Millisecond}, Preparer: prep}),
			Log:    discardLog(),
			Observe: func(r results.Result) {
				mu.Lock()
				rows[code] = append(rows[code], r)
				mu.Unlock()
			},
			Rounds: func(r results.Round) {
				mu.Lock()
				recs[code] = append(recs[code], r)
				mu.Unlock()
			},
		})
		if err != nil {
			tb.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			tt.SchedulePlanner(ctx, sched, period, planner, &collect{}, nil)
		}()
	}
	for deadline := time.Now().Add(time.Duration(cfg.rounds+4) * cfg.period); ; time.Sleep(50 * time.Millisecond) {
		mu.Lock()
		done := true
		for _, code := range codes {
			if len(recs[code]) < cfg.rounds {
				done = false
			}
		}
		mu.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) {
			break
		}
	}
	cancel()
	wg.Wait()

	rep := truthReport{cfg: cfg, tau: map[string]float64{}, rates: map[string]string{}, phases: map[string]phaseErr{}, scored: map[string]int{}, excused: map[string]int{}, regionCode: codes}
	errs := map[string][]time.Duration{}
	for _, code := range codes {
		rs := recs[code]
		rep.rounds += len(rs)
		sort.Slice(rs, func(i, j int) bool { return rs[i].Slot.Before(rs[j].Slot) })
		if len(rs) < cfg.rounds {
			rep.missing += cfg.rounds - len(rs)
		}
		for i := 1; i < len(rs); i++ {
			rep.missing += int(rs[i].Slot.Sub(rs[i-1].Slot)/period) - 1
		}
		// Scored aggregates and timing errors.
		type agg struct {
			ok, n int
			sum   time.Duration
		}
		a := map[string]*agg{}
		for _, f := range fleet {
			a[f.o.Address] = &agg{}
		}
		for _, r := range rows[code] {
			fault := faultOf[r.RoundID]
			f := fleet[index[r.Orchestrator]]
			injectedFail := orchtest.Fails(jobSeed(tb, r), f.fail)
			if os.Getenv("LPGAUGE_TRUTH_DEBUG") != "" {
				tb.Logf("%s %s %q orch %d (fails %v) %s/%s/%s wall %v server %v: %.150s", code, r.RoundID, fault, index[r.Orchestrator],
					injectedFail, r.Outcome, r.ErrorClass, r.ErrorCode, r.Wall, r.Server, r.ErrorMessage)
			}
			if r.Outcome == results.Excused {
				if fault != "" {
					rep.excused[fault]++
				} else if r.ErrorCode != CodeShutdown {
					// (tester/shutdown: the rounds the harness's own
					// cancel cut at the end of the run.)
					rep.excusedNoFault++
				}
				continue
			}
			// Judged against the orchestrator's own decision for this
			// very probe: a failure it did not inject, a success it
			// refused, or a success that carries a wait of the tester's
			// (a blackhole, a freeze): its job more than the tester's
			// stall threshold (500 ms, the error it does not promise to
			// catch) over the truth, or a discovery that waited (a
			// GetOrchestrator is three of the link's round trips, at
			// most 0.35 s here). The wall time is no measure: it holds
			// the round's spread and, with sessions, a discovery.
			truthTotal := f.delay + 4*oneWay[code][r.Orchestrator]
			slack := cfg.slack
			if slack == 0 {
				slack = 500 * time.Millisecond
			}
			wrong := (r.Outcome == results.Success) == injectedFail ||
				r.Outcome == results.Success && (r.Total-truthTotal > slack || r.Discovery > 900*time.Millisecond)
			if wrong {
				if fault != "" {
					rep.scored[fault]++
				} else {
					rep.misjudged++
				}
			}
			rep.samples++
			g := a[r.Orchestrator]
			g.n++
			if r.Outcome != results.Success {
				continue
			}
			g.ok++
			g.sum += r.Total
			if fault != "" {
				continue // timing errors from fault-free rounds
			}
			d := oneWay[code][r.Orchestrator]
			var inj time.Duration
			for _, f := range fleet {
				if f.o.Address == r.Orchestrator {
					inj = f.delay
				}
			}
			errs["connect"] = append(errs["connect"], r.Connect-2*d)
			// Against what the orchestrator reports it spent (whole ms,
			// so +0.5 ms centres the truncation): the tester's own error.
			errs["server"] = append(errs["server"], r.Server-(r.OrchProcessing+time.Millisecond/2+2*d))
			errs["server vs injected"] = append(errs["server vs injected"], r.Server-(inj+2*d))
			// Total: request, server, response, and the media GET's round trip.
			errs["total"] = append(errs["total"], r.Total-(inj+4*d))
		}
		truth, got := map[string]float64{}, map[string]float64{}
		var tmeans, gmeans []float64
		for _, f := range fleet {
			d := oneWay[code][f.o.Address]
			tmeans = append(tmeans, (f.delay + 4*d).Seconds())
			if g := a[f.o.Address]; g.ok > 0 {
				gmeans = append(gmeans, (g.sum / time.Duration(g.ok)).Seconds())
			}
		}
		tmed, gmed := score.Median(tmeans), score.Median(gmeans)
		for _, f := range fleet {
			d := oneWay[code][f.o.Address]
			truth[f.o.Address] = score.AI(1-f.fail, (f.delay + 4*d).Seconds(), tmed).Score
			g := a[f.o.Address]
			if g.n > 0 && g.ok > 0 {
				got[f.o.Address] = score.AI(float64(g.ok)/float64(g.n), (g.sum / time.Duration(g.ok)).Seconds(), gmed).Score
			}
		}
		rep.tau[code] = kendallTau(truth, got)
		var rates []string
		for i, f := range fleet {
			if g := a[f.o.Address]; f.fail > 0 && g.n > 0 {
				rates = append(rates, fmt.Sprintf("#%d %d/%d = %.2f (%.2f)", i, g.ok, g.n, float64(g.ok)/float64(g.n), 1-f.fail))
			}
		}
		rep.rates[code] = strings.Join(rates, ", ")
	}
	for ph, xs := range errs {
		abs := make([]time.Duration, len(xs))
		for i, x := range xs {
			abs[i] = x
			if x < 0 {
				abs[i] = -x
			}
		}
		rep.phases[ph] = phaseErr{median: quantile(abs, 0.5), p99: quantile(abs, 0.99)}
	}
	return rep
}

// jobSeed is the generation seed the tester put in the job of this probe
// (the text-to-image body carries the low 31 bits of the probe's corpus
// seed, tester.probeSeed), which the fakes decide failures from.
func jobSeed(tb testing.TB, r results.Result) int64 {
	region, at, ok := strings.Cut(r.RoundID, "/")
	slot, err := time.Parse(time.RFC3339, at)
	pl, found := probe.Lookup(r.Pipeline)
	if !ok || err != nil || !found {
		tb.Fatalf("row %s: round %q, pipeline %q: %v", r.ProbeID, r.RoundID, r.Pipeline, err)
	}
	return probeSeed(region, slot, r.Orchestrator, pl.Info().Slug, r.Model, r.ProbeID) & 0x7fffffff
}

func discardLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func (r truthReport) table() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d orchestrators, %d rounds per region every %s, 3 regions; %d round records, %d missing; %d scored probes\n",
		r.cfg.orchs, r.cfg.rounds, r.cfg.period, r.rounds, r.missing, r.samples)
	fmt.Fprintf(&b, "\n| region | Kendall τ | scored success rate of the failing orchestrators (injected) |\n|---|---|---|\n")
	for _, c := range r.regionCode {
		fmt.Fprintf(&b, "| %s | %.3f | %s |\n", c, r.tau[c], r.rates[c])
	}
	fmt.Fprintf(&b, "\n| phase | \\|error\\| median | p99 |\n|---|---|---|\n")
	for _, ph := range []string{"connect", "server", "server vs injected", "total"} {
		fmt.Fprintf(&b, "| %s | %.2f ms | %.2f ms |\n", ph, float64(r.phases[ph].median)/1e6, float64(r.phases[ph].p99)/1e6)
	}
	fmt.Fprintf(&b, "\n| fault | scored against orchestrators | excused |\n|---|---|---|\n")
	for _, f := range []string{"refuse", "blackhole", "outage", "freeze", "overrun"} {
		fmt.Fprintf(&b, "| %s | %d | %d |\n", f, r.scored[f], r.excused[f])
	}
	fmt.Fprintf(&b, "| none (misjudged / excused) | %d | %d |\n", r.misjudged, r.excusedNoFault)
	return b.String()
}

// TestTruthSmall is the truth benchmark's small version: one cycle of the
// faults, 8 rounds a region.
func TestTruthSmall(t *testing.T) {
	rep := runTruth(t, truthConfig{orchs: 6, rounds: 8, period: 2 * time.Second, slack: 800 * time.Millisecond})
	t.Log("\n" + rep.table())
	for f, n := range rep.scored {
		if n > 0 {
			t.Errorf("fault %s: %d probes scored against orchestrators", f, n)
		}
	}
	if rep.missing > 0 {
		t.Errorf("%d rounds missing", rep.missing)
	}
	if rep.misjudged > 0 {
		t.Errorf("%d probes in fault-free rounds scored against the orchestrator's own decision", rep.misjudged)
	}
	for _, f := range []string{"refuse", "blackhole", "outage", "freeze"} {
		if rep.excused[f] == 0 {
			t.Errorf("fault %s excused nothing: was it injected?", f)
		}
	}
}

// BenchmarkTruth is the full truth benchmark (BENCHMARKS.md, "Measurement
// truth"): LPGAUGE_TRUTH_ROUNDS rounds per region (default 24: three cycles
// of the faults) over 10 orchestrators.
//
//	go test -run '^$' -bench Truth -benchtime 1x ./tester/
func BenchmarkTruth(b *testing.B) {
	rounds := 24
	if v, err := strconv.Atoi(os.Getenv("LPGAUGE_TRUTH_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	var ttl time.Duration
	if v, err := time.ParseDuration(os.Getenv("LPGAUGE_TRUTH_SESSION_TTL")); err == nil {
		ttl = v
	}
	for i := 0; i < b.N; i++ {
		rep := runTruth(b, truthConfig{orchs: 10, rounds: rounds, period: 2 * time.Second, sessionTTL: ttl})
		// On stdout, each line prefixed, for scripts/bench.sh to copy into
		// BENCHMARKS.md (a benchmark's b.Log is cut to 10 lines).
		for _, line := range strings.Split(strings.TrimRight(rep.table(), "\n"), "\n") {
			fmt.Println("truth: " + line)
		}
		minTau := 1.0
		for _, v := range rep.tau {
			minTau = min(minTau, v)
		}
		scored := 0
		for _, n := range rep.scored {
			scored += n
		}
		b.ReportMetric(minTau, "min-tau")
		b.ReportMetric(float64(scored), "scored-own-faults")
		b.ReportMetric(float64(rep.missing), "missing-rounds")
		b.ReportMetric(float64(rep.phases["server"].median)/1e6, "server-err-p50-ms")
		b.ReportMetric(float64(rep.phases["server"].p99)/1e6, "server-err-p99-ms")
	}
}
