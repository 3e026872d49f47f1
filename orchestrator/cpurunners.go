package orchestrator

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lpgauge/lpgauge/capability"
	"github.com/lpgauge/lpgauge/orchestrator/runner"
)

// CPURunnerVersion is what the in-process runners report: the ai-runner API
// version they implement, so gateways' -aiMinRunnerVersion filters work.
const CPURunnerVersion = "0.14.1"

// CPURunnersConfig shapes the in-process runners and the external checks.
type CPURunnersConfig struct {
	// Latency is the demo profile every CPU runner simulates.
	Latency runner.Latency
	// DefaultCapacity applies to entries without "capacity" (inline form).
	DefaultCapacity int
	// HealthInterval and HealthTimeout pace /health checks of external
	// runners (go-livepeer: 5 s and 5 s).
	HealthInterval time.Duration
	HealthTimeout  time.Duration
	Logger         *slog.Logger
}

// CPURunners implements Runners with CPU reference runners served on
// loopback ports (capacity runners per model, one job each) and external
// runner URLs from aiModels.json (capacity concurrent jobs, health-checked).
type CPURunners struct {
	cfg    CPURunnersConfig
	log    *slog.Logger
	mu     sync.Mutex
	models []*modelRunners
	stop   chan struct{}
	wg     sync.WaitGroup
	once   sync.Once
}

type modelRunners struct {
	cfg    AIModel
	p      capability.Pipeline
	slots  []*slot
	served atomic.Int64 // jobs that reached a runner
}

// slot is one runner endpoint; guarded by CPURunners.mu.
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
		return s.local.Status() == "OK"
	}
	return s.healthy
}

// NewCPURunners starts every configured runner; Close stops them.
func NewCPURunners(models []AIModel, cfg CPURunnersConfig) (*CPURunners, error) {
	if err := ValidateAIModels(models); err != nil {
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
	c := &CPURunners{cfg: cfg, log: cfg.Logger, stop: make(chan struct{})}
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

func (c *CPURunners) startLocal(m AIModel, served *atomic.Int64) (*slot, error) {
	tok := make([]byte, 16)
	_, _ = rand.Read(tok)
	token := hex.EncodeToString(tok)
	r, err := runner.New(runner.Config{
		Pipeline: m.Pipeline, ModelID: m.ModelID, AuthToken: token, Version: CPURunnerVersion,
		Latency: c.cfg.Latency, Workers: 1, Logger: c.log,
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
	s := &slot{url: "http://" + ln.Addr().String(), token: token, limit: 1, local: r, srv: srv, version: CPURunnerVersion}
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
func (c *CPURunners) watch(s *slot) {
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

func (c *CPURunners) check(s *slot) {
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
func (c *CPURunners) Close() {
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

func (c *CPURunners) find(p capability.Pipeline, model string) *modelRunners {
	for _, m := range c.models {
		if m.p.ID == p.ID && m.cfg.ModelID == model {
			return m
		}
	}
	return nil
}

// Reserve implements Runners: the least busy ready slot, or ErrNoCapacity.
func (c *CPURunners) Reserve(_ context.Context, p capability.Pipeline, model string) (Lease, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.find(p, model)
	if m == nil {
		return nil, ErrUnknownModel
	}
	var best *slot
	for _, s := range m.slots {
		if s.ready() && s.inUse < s.limit && (best == nil || s.inUse < best.inUse) {
			best = s
		}
	}
	if best == nil {
		return nil, ErrNoCapacity
	}
	best.inUse++
	return &lease{c: c, s: best}, nil
}

type lease struct {
	c    *CPURunners
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
func (c *CPURunners) States() []ModelState {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]ModelState, 0, len(c.models))
	for _, m := range c.models {
		st := ModelState{Pipeline: m.p, Model: m.cfg.ModelID, Warm: m.cfg.Warm || m.cfg.URL != ""}
		for _, s := range m.slots {
			if s.ready() {
				st.Capacity += s.limit
			}
			st.InUse += s.inUse
			if s.version != "" && (st.RunnerVersion == "" || s.version < st.RunnerVersion) {
				st.RunnerVersion = s.version // go-livepeer advertises the lowest
			}
		}
		st.PricePerUnit, st.PixelsPerUnit = weiPrice(m.cfg)
		out = append(out, st)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Pipeline.ID < out[j].Pipeline.ID })
	return out
}

// Served is how many jobs reached the runners of (pipeline, model).
func (c *CPURunners) Served(p capability.Pipeline, model string) int64 {
	c.mu.Lock()
	m := c.find(p, model)
	c.mu.Unlock()
	if m == nil {
		return 0
	}
	return m.served.Load()
}

// weiPrice turns price_per_unit/pixels_per_unit into the integer pair the
// wire carries. Prices in a fiat currency need a price feed, which is the
// payment gate's job; they report 0 here.
func weiPrice(m AIModel) (price, pixels int64) {
	if m.PricePerUnit == nil || m.Currency != "" {
		return 0, 1
	}
	r := new(big.Rat).Set(&m.PricePerUnit.Rat)
	if m.PixelsPerUnit != nil {
		r.Quo(r, &m.PixelsPerUnit.Rat)
	}
	if !r.Num().IsInt64() || !r.Denom().IsInt64() {
		return 0, 1
	}
	return r.Num().Int64(), r.Denom().Int64()
}
