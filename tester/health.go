package tester

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"time"

	"github.com/lpgauge/lpgauge/internal/results"
	"github.com/lpgauge/lpgauge/tester/probe"
)

// The tester's own health, judged without configuration. A probe measures
// the orchestrator only while the tester itself is running, on time and
// connected; when it is not, the probe is excused with a precise code and
// never scored. The rules and their bounds are in tester/README.md
// ("Whose fault is it?").
const (
	// DefaultStallThreshold: the watchdog ticks every stallTick; a tick
	// that comes this much later than the previous one means the process
	// did not run (SIGSTOP, a VM pause, a long GC stop, CPU starvation).
	// 500 ms: at 250 ms a 2-core box at load 10 (a CI run of the whole
	// suite) excused ordinary probes as stalls.
	DefaultStallThreshold = 500 * time.Millisecond
	stallTick             = 20 * time.Millisecond
	// clockJumpThreshold: wall time moving this much more or less than the
	// monotonic clock between two ticks is a clock step.
	clockJumpThreshold = time.Second
	// connectivityTimeout bounds each dial of a connectivity check: under
	// Linux's first SYN retransmission (1 s), so a dial counts as reaching
	// an orchestrator only if its first SYN got through.
	connectivityTimeout = 900 * time.Millisecond
	// connectivityTargets is how many other orchestrators a check dials.
	connectivityTargets = 3
)

// Codes of the tester-side faults (class tester, outcome excused).
const (
	CodeStall         = "stall"          // the process did not run for a while during the probe
	CodeClockJump     = "clock_jump"     // the wall clock stepped during the probe
	CodeNetworkDown   = "network_down"   // other orchestrators unreachable at the same moment
	CodeControlFailed = "control_failed" // the control target failed (before the round or at the moment)
	CodeRoundDeadline = "round_deadline" // the round deadline cut the probe or kept it from starting
	CodeShutdown      = "shutdown"       // the tester was stopping; the probe never started
)

// fault is a span of time during which the tester itself was unfit to
// measure.
type fault struct {
	from, to time.Time // monotonic readings
	code     string
	detail   string
}

func (f fault) overlaps(from, to time.Time) bool { return !to.Before(f.from) && !from.After(f.to) }

// watchdog notices the process not running and the wall clock stepping,
// from the monotonic clock: it ticks every stallTick and compares.
type watchdog struct {
	threshold time.Duration
	mu        sync.Mutex
	last      time.Time
	faults    []fault
	stop      chan struct{}
	done      chan struct{}
}

func startWatchdog(threshold time.Duration) *watchdog {
	w := &watchdog{threshold: threshold, last: time.Now(), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		t := time.NewTimer(stallTick)
		defer t.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-t.C:
				w.check()
				t.Reset(stallTick)
			}
		}
	}()
	return w
}

// check compares now with the last tick. The probe goroutines call it too
// before judging a result, so a stall that just ended is seen even when the
// watchdog's own goroutine has not run since.
func (w *watchdog) check() {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := time.Now()
	mono := now.Sub(w.last)
	wall := now.Round(0).Sub(w.last.Round(0))
	if mono > w.threshold {
		w.faults = append(w.faults, fault{from: w.last, to: now, code: CodeStall,
			detail: fmt.Sprintf("the tester did not run for %s (watchdog ticks every %s)", mono.Round(time.Millisecond), stallTick)})
	}
	if d := wall - mono; d > clockJumpThreshold || d < -clockJumpThreshold {
		w.faults = append(w.faults, fault{from: w.last, to: now, code: CodeClockJump,
			detail: fmt.Sprintf("the wall clock moved %s in %s of monotonic time", wall.Round(time.Millisecond), mono.Round(time.Millisecond))})
	}
	w.last = now
}

func (w *watchdog) close() {
	close(w.stop)
	<-w.done
	w.check()
}

func (w *watchdog) snapshot() []fault {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]fault(nil), w.faults...)
}

// connectivityClass says whether a failure could be the tester's own
// network: the orchestrator never answered at the HTTP level.
func connectivityClass(r results.Result) bool {
	if r.Outcome != results.Failure {
		return false
	}
	switch probe.Class(r.ErrorClass) {
	case probe.ClassNetwork, probe.ClassTLS, probe.ClassTimeout, probe.ClassDiscovery:
		return r.ErrorCode != "bad_service_uri"
	}
	return false
}

// connectivity checks the tester's own network at the moment of a failure:
// a TCP dial to the control target when there is one, else to up to
// connectivityTargets other orchestrators of the round, those that answered
// most recently first. Every dial failing means failures across
// independent orchestrators at the same moment: the tester's network. One
// dial succeeding means the network works and the failure stands.
type connectivity struct {
	dial    func(ctx context.Context, network, addr string) (net.Conn, error)
	control string // host:port, or empty

	mu       sync.Mutex
	hosts    map[string]string    // orchestrator → host:port
	answered map[string]time.Time // orchestrator → when it last answered at the HTTP level
	order    []string             // orchestrators in plan order
	// last verdict, reused for failures that happened before it was made
	lastAt   time.Time
	lastDown bool
	lastWhy  string
	inflight chan struct{}
}

func newConnectivity(dial func(context.Context, string, string) (net.Conn, error), control string, plan []Planned) *connectivity {
	c := &connectivity{dial: dial, control: control, hosts: map[string]string{}, answered: map[string]time.Time{}}
	for _, p := range plan {
		if _, ok := c.hosts[p.Target.Address]; ok {
			continue
		}
		if hp := hostPort(p.Target.ServiceURI); hp != "" {
			c.hosts[p.Target.Address] = hp
			c.order = append(c.order, p.Target.Address)
		}
	}
	return c
}

func hostPort(uri string) string {
	u, err := url.Parse(uri)
	if err != nil || u.Host == "" {
		return ""
	}
	if u.Port() != "" {
		return u.Host
	}
	if u.Scheme == "https" {
		return net.JoinHostPort(u.Hostname(), "443")
	}
	return net.JoinHostPort(u.Hostname(), "80")
}

// saw records that orch answered (any HTTP status, or a success).
func (c *connectivity) saw(orch string, at time.Time) {
	c.mu.Lock()
	c.answered[orch] = at
	c.mu.Unlock()
}

// down reports whether the tester's network is down for a failure of orch
// that ended at failedAt. Concurrent failures share one check.
func (c *connectivity) down(ctx context.Context, orch string, failedAt time.Time) (bool, string) {
	for {
		c.mu.Lock()
		if !c.lastAt.IsZero() && !c.lastAt.Before(failedAt) && c.lastAt.Sub(failedAt) < connectivityTimeout {
			d, why := c.lastDown, c.lastWhy
			c.mu.Unlock()
			return d, why
		}
		if c.inflight != nil {
			ch := c.inflight
			c.mu.Unlock()
			<-ch
			continue
		}
		ch := make(chan struct{})
		c.inflight = ch
		targets := c.targets(orch)
		c.mu.Unlock()

		d, why := c.probe(ctx, targets)
		c.mu.Lock()
		c.lastAt, c.lastDown, c.lastWhy, c.inflight = time.Now(), d, why, nil
		c.mu.Unlock()
		close(ch)
		// The verdict is from after the failure, so it applies.
		return d, why
	}
}

// targets picks what to dial; under c.mu.
func (c *connectivity) targets(exclude string) []string {
	if c.control != "" {
		return []string{c.control}
	}
	var seen, unseen []string
	for _, o := range c.order {
		if o == exclude || c.hosts[o] == c.hosts[exclude] {
			continue
		}
		if _, ok := c.answered[o]; ok {
			seen = append(seen, o)
		} else {
			unseen = append(unseen, o)
		}
	}
	// Most recent answer first: the likeliest to be up.
	for i := 1; i < len(seen); i++ {
		for j := i; j > 0 && c.answered[seen[j]].After(c.answered[seen[j-1]]); j-- {
			seen[j], seen[j-1] = seen[j-1], seen[j]
		}
	}
	var out []string
	for _, o := range append(seen, unseen...) {
		if len(out) == connectivityTargets {
			break
		}
		out = append(out, c.hosts[o])
	}
	return out
}

func (c *connectivity) probe(ctx context.Context, targets []string) (bool, string) {
	if len(targets) == 0 {
		return false, "" // nothing independent to compare with: the failure stands
	}
	errs := make([]error, len(targets))
	var wg sync.WaitGroup
	for i, hp := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dctx, cancel := context.WithTimeout(ctx, connectivityTimeout)
			defer cancel()
			conn, err := c.dial(dctx, "tcp", hp)
			if err == nil {
				_ = conn.Close()
				return
			}
			errs[i] = fmt.Errorf("%s: %w", hp, err)
		}()
	}
	wg.Wait()
	for _, e := range errs {
		if e == nil {
			return false, ""
		}
	}
	return true, errors.Join(errs...).Error()
}
