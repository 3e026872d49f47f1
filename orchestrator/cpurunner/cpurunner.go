// Package cpurunner hosts runners for the reference orchestrator without a
// container engine: CPU reference runners served in process on loopback
// ports, and external runner URLs from aiModels.json, health-checked.
package cpurunner

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lpgauge/lpgauge/capability"
	"github.com/lpgauge/lpgauge/orchestrator/aimodels"
	"github.com/lpgauge/lpgauge/orchestrator/runner"
	"github.com/lpgauge/lpgauge/orchestrator/slots"
)

// Version is what the in-process runners report: the ai-runner API
// version they implement, so gateways' -aiMinRunnerVersion filters work.
const Version = "0.14.1"

// Config shapes the in-process runners and the external checks.
type Config struct {
	// Latency is the demo profile every CPU runner simulates.
	Latency runner.Latency
	// Live is the profile of in-process live-video-to-video runners
	// (latency, output fps, stalls, drops, passthrough, no output).
	Live runner.LiveProfile
	// DefaultCapacity applies to entries without "capacity" (inline form).
	DefaultCapacity int
	// HealthInterval and HealthTimeout pace /health checks of external
	// runners (go-livepeer: 5 s and 5 s).
	HealthInterval time.Duration
	HealthTimeout  time.Duration
	Logger         *slog.Logger
}

// Runners implements orchestrator.Runners with CPU reference runners served on
// loopback ports (capacity runners per model, one job each) and external
// runner URLs from aiModels.json (capacity concurrent jobs, health-checked).
type Runners struct {
	cfg    Config
	log    *slog.Logger
	mu     sync.Mutex
	models []*modelRunners
	stop   chan struct{}
	wg     sync.WaitGroup
	once   sync.Once
}

type modelRunners struct {
	cfg    aimodels.Model
	p      capability.Pipeline
	slots  []*slot
	served atomic.Int64 // jobs that reached a runner
}

// slot is one runner endpoint; guarded by Runners.mu.
type slot struct {
	url, token string
	limit      int
	inUse      int
	healthy    bool
	version    string
	local      *runner.Runner // nil for external runners
	srv        *http.Server
}

func (s *slot) ready() bool {
	if s.local != nil {
		// A live runner says IDLE between streams; both are ready, as
		// go-livepeer reads /health (ai/worker/container.go:53-106).
		st := s.local.Status()
		return st == "OK" || st == "IDLE"
	}
	return s.healthy
}

// New starts every configured runner; Close stops them.
func New(models []aimodels.Model, cfg Config) (*Runners, error) {
	if err := aimodels.Validate(models); err != nil {
		return nil, err
	}
	if cfg.DefaultCapacity <= 0 {
		cfg.DefaultCapacity = 1
	}
	if cfg.HealthInterval <= 0 {
		cfg.HealthInterval = 5 * time.Second
	}
	if cfg.HealthTimeout <= 0 {
		cfg.HealthTimeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	c := &Runners{cfg: cfg, log: cfg.Logger, stop: make(chan struct{})}
	for _, m := range models {
		p, _ := capability.BySlug(m.Pipeline)
		mr := &modelRunners{cfg: m, p: p}
		c.models = append(c.models, mr)
		capacity := m.Capacity
		if capacity == 0 {
			capacity = cfg.DefaultCapacity
		}
		if m.URL != "" {
			s := &slot{url: m.URL, token: m.Token, limit: capacity}
			mr.slots = append(mr.slots, s)
			c.check(s)
			c.wg.Add(1)
			go c.watch(s)
			continue
		}
		for range capacity {
			s, err := c.startLocal(m, &mr.served)
			if err != nil {
				c.Close()
				return nil, err
			}
			mr.slots = append(mr.slots, s)
		}
	}
	return c, nil
}

// countJobs counts generate requests that reach a runner.
func countJobs(h http.Handler, n *atomic.Int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			n.Add(1)
		}
		h.ServeHTTP(w, r)
	})
}

func (c *Runners) startLocal(m aimodels.Model, served *atomic.Int64) (*slot, error) {
	tok := make([]byte, 16)
	_, _ = rand.Read(tok)
	token := hex.EncodeToString(tok)
	r, err := runner.New(runner.Config{
		Pipeline: m.Pipeline, ModelID: m.ModelID, AuthToken: token, Version: Version,
		Latency: c.cfg.Latency, Workers: 1, Logger: c.log, Live: c.cfg.Live,
		// An in-process live runner reads and writes this orchestrator's
		// own trickle channels, served with its self-signed certificate
		// (as go-livepeer's are): it cannot verify it, any more than
		// go-livepeer's trickle clients do (TrickleInsecureSkipVerify).
		LiveClient: &http.Client{Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // our own self-signed certificate
			ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 16,
		}},
	})
	if err != nil {
		return nil, fmt.Errorf("start cpu runner %s %s: %w", m.Pipeline, m.ModelID, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("listen for cpu runner: %w", err)
	}
	srv := &http.Server{Handler: countJobs(r.Handler(), served), ReadHeaderTimeout: 10 * time.Second}
	s := &slot{url: "http://" + ln.Addr().String(), token: token, limit: 1, local: r, srv: srv, version: Version}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			c.log.Error("cpu runner stopped", "url", s.url, "err", err)
		}
	}()
	return s, nil
}

// watch checks an external runner's /health until Close.
func (c *Runners) watch(s *slot) {
	defer c.wg.Done()
	t := time.NewTicker(c.cfg.HealthInterval)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			c.check(s)
		}
	}
}

// CheckExternal checks every external runner's /health now instead of at
// the next HealthInterval tick, so a caller that knows a runner changed sees
// the capacity it advertises follow at once.
func (c *Runners) CheckExternal() {
	c.mu.Lock()
	var external []*slot
	for _, m := range c.models {
		for _, s := range m.slots {
			if s.local == nil {
				external = append(external, s)
			}
		}
	}
	c.mu.Unlock()
	for _, s := range external {
		c.check(s)
	}
}

func (c *Runners) check(s *slot) {
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.HealthTimeout)
	defer cancel()
	var health struct{ Status string }
	err := getJSON(ctx, s.url+"/health", &health)
	ok := err == nil && (health.Status == "OK" || health.Status == "IDLE")
	var version string
	if ok && s.version == "" {
		var v struct{ Version string }
		if getJSON(ctx, s.url+"/version", &v) == nil {
			version = v.Version
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// A busy runner may be slow to answer; a missed check while it serves
	// a job is not evidence that it is down.
	if !ok && err != nil && s.inUse > 0 {
		return
	}
	if ok != s.healthy {
		c.log.Info("external runner health changed", "url", s.url, "healthy", ok, "status", health.Status, "err", err)
	}
	s.healthy = ok
	if version != "" {
		s.version = version
	}
}

func getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("get %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("get %s: status %d", url, resp.StatusCode)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(v); err != nil {
		return fmt.Errorf("decode %s: %w", url, err)
	}
	return nil
}

// Close stops the runners and health checks.
func (c *Runners) Close() {
	c.once.Do(func() {
		close(c.stop)
		ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
		defer cancel()
		for _, m := range c.models {
			for _, s := range m.slots {
				if s.local != nil {
					_ = s.srv.Shutdown(ctx)
					s.local.Close()
				}
			}
		}
	})
	c.wg.Wait()
}

func (c *Runners) find(p capability.Pipeline, model string) *modelRunners {
	for _, m := range c.models {
		if m.p.ID == p.ID && m.cfg.ModelID == model {
			return m
		}
	}
	return nil
}

// Reserve implements Runners: the least busy ready slot, or slots.ErrNoCapacity.
func (c *Runners) Reserve(_ context.Context, p capability.Pipeline, model string) (slots.Lease, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.find(p, model)
	if m == nil {
		return nil, slots.ErrUnknownModel
	}
	var best *slot
	for _, s := range m.slots {
		if s.ready() && s.inUse < s.limit && (best == nil || s.inUse < best.inUse) {
			best = s
		}
	}
	if best == nil {
		return nil, slots.ErrNoCapacity
	}
	best.inUse++
	return &lease{c: c, s: best}, nil
}

type lease struct {
	c    *Runners
	s    *slot
	once sync.Once
}

func (l *lease) URL() string   { return l.s.url }
func (l *lease) Token() string { return l.s.token }
func (l *lease) Release() {
	l.once.Do(func() {
		l.c.mu.Lock()
		l.s.inUse--
		l.c.mu.Unlock()
	})
}

// States implements Runners from the slots' real state.
func (c *Runners) States() []slots.ModelState {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]slots.ModelState, 0, len(c.models))
	for _, m := range c.models {
		st := slots.ModelState{Pipeline: m.p, Model: m.cfg.ModelID, Warm: m.cfg.Warm || m.cfg.URL != ""}
		for _, s := range m.slots {
			if s.ready() {
				st.Capacity += s.limit
			}
			st.InUse += s.inUse
			if s.version != "" && (st.RunnerVersion == "" || s.version < st.RunnerVersion) {
				st.RunnerVersion = s.version // go-livepeer advertises the lowest
			}
		}
		st.PricePerUnit, st.PixelsPerUnit = m.cfg.WeiPrice()
		out = append(out, st)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Pipeline.ID < out[j].Pipeline.ID })
	return out
}

// Served is how many jobs reached the runners of (pipeline, model).
func (c *Runners) Served(p capability.Pipeline, model string) int64 {
	c.mu.Lock()
	m := c.find(p, model)
	c.mu.Unlock()
	if m == nil {
		return 0
	}
	return m.served.Load()
}
