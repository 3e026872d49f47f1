// Package runtime runs AI runner containers through the Docker engine and
// serves them to the orchestrator as orchestrator.Runners: placement on GPUs
// by VRAM, a health state machine per container, restarts with backoff, a
// crash-loop state that drops capacity to zero with a reason, exact capacity
// accounting, and cleanup that never touches another instance's containers.
package runtime

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lpgauge/lpgauge/capability"
	"github.com/lpgauge/lpgauge/orchestrator"
	"github.com/lpgauge/lpgauge/orchestrator/gpu"
)

// State is where a runner is in its life. Capacity counts only Ready and
// Busy runners.
type State string

const (
	Creating State = "creating" // placing, creating and starting the container
	Loading  State = "loading"  // started; /health says LOADING or does not answer yet
	Ready    State = "ready"    // serving, with free slots
	Busy     State = "busy"     // serving, every slot taken
	Draining State = "draining" // shutting down; takes no new jobs
	Failed   State = "failed"   // died or unhealthy; waiting to be re-created (or crash-looping)
	Stopped  State = "stopped"  // not running: shut down, or a cold runner stopped while idle
)

type modelKey struct{ pipeline, model string }

// model is one configured (pipeline, model) and its runner records.
type model struct {
	Model
	vram    uint64
	records []*record
	started bool // supervisors running (cold models start on first Reserve)

	restarts int // cumulative, for metrics
	missed   int // reservations refused for lack of capacity
}

// record is one runner: a managed container slot (re-created in place after
// failures) or an external URL. Fields are guarded by Runtime.mu.
type record struct {
	m       *model
	replica int

	state       State
	containerID string
	name        string
	port        int
	url         string
	token       string
	alloc       *gpu.Allocation
	inFlight    int
	concurrency int
	startedAt   time.Time
	readyAt     time.Time
	lastUsed    time.Time
	restarts    int
	failures    int // consecutive, reset after StableAfter ready
	crashLoop   bool
	lastError   string
	logTail     []string
	version     string
	gen         int // bumped for every new container; leases of older ones are void

	events chan dockerEvent // from the event watcher, for the current container
}

func (r *record) serving() bool { return r.state == Ready || r.state == Busy }

// Runtime implements orchestrator.Runners on the Docker engine.
type Runtime struct {
	cfg    Config
	engine Engine
	inv    gpu.Inventory
	placer *gpu.Placer
	ports  *ports
	log    *slog.Logger
	http   *http.Client
	est    gpu.Estimates
	met    *metrics

	mu        sync.Mutex
	models    map[modelKey]*model
	order     []*model
	byCID     map[string]*record
	stopping  bool
	up        bool   // Start succeeded: managed runners may be created
	engineErr string // why Start failed while StartOrRetry retries it

	watchOnce sync.Once // one event watcher, however often Start is tried
	gpuLog    sync.Once
	evReady   chan struct{} // closed once the watcher has subscribed

	ctx    context.Context // lives until Shutdown; parent of every supervisor
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

var _ orchestrator.Runners = (*Runtime)(nil)

// New builds a runtime; Start brings it up. inv may be gpu.CPU{} (no GPUs:
// containers get no device requests). est gives VRAM for models without
// their own estimate. reg may be nil.
func New(cfg Config, engine Engine, inv gpu.Inventory, est gpu.Estimates, log *slog.Logger, reg prometheus.Registerer) (*Runtime, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("runtime config: %w", err)
	}
	if log == nil {
		log = slog.Default()
	}
	if inv == nil {
		inv = gpu.CPU{Reason: "no GPU inventory configured"}
	}
	rt := &Runtime{
		cfg:    cfg,
		engine: engine,
		inv:    inv,
		placer: gpu.NewPlacer(inv, gpu.Policy(cfg.GPUPolicy), cfg.VRAMHeadroom),
		ports:  newPorts(cfg.HostIP, cfg.PortFirst, cfg.PortLast),
		log:    log.With("component", "runtime", "instance", cfg.InstanceID),
		http:   &http.Client{},
		est:    est,
		models: map[modelKey]*model{},
		byCID:  map[string]*record{},
	}
	for _, mc := range cfg.Models {
		if mc.Containers == 0 {
			mc.Containers = 1
		}
		if mc.Concurrency == 0 {
			mc.Concurrency = 1
		}
		m := &model{Model: mc, vram: mc.VRAM}
		if m.vram == 0 {
			m.vram = est.For(mc.Pipeline.Slug, mc.ModelID)
		}
		n := mc.Containers
		if mc.external() {
			n = 1 // one endpoint; its Concurrency is the capacity it takes
		}
		for i := 0; i < n; i++ {
			m.records = append(m.records, &record{m: m, replica: i, state: Stopped, concurrency: mc.Concurrency, url: mc.URL, token: mc.Token})
		}
		rt.models[mc.key()] = m
		rt.order = append(rt.order, m)
	}
	rt.met = newMetrics(rt)
	if reg != nil {
		if err := reg.Register(rt.met); err != nil {
			return nil, fmt.Errorf("register runtime metrics: %w", err)
		}
	}
	rt.ctx, rt.cancel = context.WithCancel(context.Background())
	rt.evReady = make(chan struct{})
	return rt, nil
}

// Start removes this instance's leftover containers, checks images, starts
// watching Docker events, and starts warm runners and external watchers. It
// returns once they are started, not loaded: States shows them loading.
// A failed Start may be called again (StartOrRetry does).
func (rt *Runtime) Start(ctx context.Context) error {
	rt.gpuLog.Do(func() { rt.log.Info("gpu inventory", "mode", rt.inv.Mode()) })
	if err := rt.removeOrphans(ctx); err != nil {
		return err
	}
	if err := rt.checkImages(ctx); err != nil {
		return err
	}
	rt.watchOnce.Do(func() {
		rt.wg.Add(1)
		go func() { defer rt.wg.Done(); rt.watchEvents(rt.evReady) }()
	})
	select {
	case <-rt.evReady:
	case <-ctx.Done():
		return fmt.Errorf("subscribe to docker events: %w", ctx.Err())
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.up, rt.engineErr = true, ""
	for _, m := range rt.order {
		if m.Warm || m.external() {
			rt.startModelLocked(m)
		}
	}
	return nil
}

func (rt *Runtime) startModelLocked(m *model) {
	// Before Start has reached the engine only external runners can start.
	if m.started || rt.stopping || (!rt.up && !m.external()) {
		return
	}
	m.started = true
	for _, r := range m.records {
		rt.wg.Add(1)
		if m.external() {
			go func() { defer rt.wg.Done(); rt.superviseExternal(r) }()
		} else {
			go func() { defer rt.wg.Done(); rt.superviseManaged(r) }()
		}
	}
}

// removeOrphans removes containers this instance left behind (a crash, a
// kill -9) and nothing else: other instances' runners keep running.
func (rt *Runtime) removeOrphans(ctx context.Context) error {
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	list, err := rt.engine.ContainerList(lctx, container.ListOptions{All: true, Filters: rt.ownFilter()})
	if err != nil {
		return fmt.Errorf("list leftover containers: %w", err)
	}
	for _, c := range list {
		if c.Labels[LabelCreatorID] != rt.cfg.InstanceID { // the filter already says so; never trust one check with deletion
			continue
		}
		rt.log.Warn("removing leftover runner container of this instance", "container", c.Names, "id", short(c.ID), "state", c.State)
		if err := rt.engine.ContainerRemove(lctx, c.ID, container.RemoveOptions{Force: true}); err != nil {
			return fmt.Errorf("remove leftover container %s: %w", short(c.ID), err)
		}
	}
	return nil
}

// checkImages makes sure each runner image is present, pulling it when not,
// so a missing image fails the boot instead of every container start.
func (rt *Runtime) checkImages(ctx context.Context) error {
	seen := map[string]bool{}
	for _, m := range rt.order {
		if m.external() {
			continue
		}
		img := m.Image
		if img == "" {
			img = rt.cfg.Image
		}
		if seen[img] {
			continue
		}
		seen[img] = true
		ictx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := rt.engine.ImageInspect(ictx, img)
		cancel()
		if err == nil {
			continue
		}
		rt.log.Info("runner image missing, pulling", "image", img, "reason", err)
		if perr := rt.pull(ctx, img); perr != nil {
			return fmt.Errorf("runner image %s is not present and cannot be pulled: %w", img, perr)
		}
	}
	return nil
}

func (rt *Runtime) pull(ctx context.Context, img string) error {
	pctx, cancel := context.WithTimeout(ctx, 30*time.Minute) // multi-GB runner images
	defer cancel()
	rc, err := rt.engine.ImagePull(pctx, img, imagePullOptions())
	if err != nil {
		return fmt.Errorf("pull: %w", err)
	}
	defer rc.Close()
	// The pull only completes if its progress stream is read to the end.
	return drainPull(rc)
}

// Reserve implements orchestrator.Runners: the least-loaded serving runner
// of (pipeline, model) with a free slot.
func (rt *Runtime) Reserve(_ context.Context, p capability.Pipeline, modelID string) (orchestrator.Lease, error) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	m := rt.models[modelKey{p.Slug, modelID}]
	if m == nil {
		return nil, orchestrator.ErrUnknownModel
	}
	if rt.stopping {
		return nil, orchestrator.ErrNoCapacity
	}
	var best *record
	for _, r := range m.records {
		if r.state == Ready && r.inFlight < r.concurrency && (best == nil || r.inFlight < best.inFlight) {
			best = r
		}
	}
	if best == nil {
		m.missed++
		// A cold model starts now; this job goes elsewhere rather than
		// waiting minutes for a load inside a paid request.
		rt.startModelLocked(m)
		return nil, orchestrator.ErrNoCapacity
	}
	best.inFlight++
	best.lastUsed = time.Now()
	if best.inFlight >= best.concurrency {
		best.state = Busy
	}
	return &lease{rt: rt, r: best, gen: best.gen, url: best.url, token: best.token}, nil
}

type lease struct {
	rt         *Runtime
	r          *record
	gen        int
	url, token string
	once       sync.Once
}

func (l *lease) URL() string   { return l.url }
func (l *lease) Token() string { return l.token }

// Release implements orchestrator.Lease. A runner re-created meanwhile
// starts from zero in flight, so a late release of a lease on its dead
// predecessor must not free one of the new runner's slots.
func (l *lease) Release() {
	l.once.Do(func() {
		l.rt.mu.Lock()
		defer l.rt.mu.Unlock()
		if l.r.gen != l.gen || l.r.inFlight == 0 {
			return // the runner this lease used is gone
		}
		l.r.inFlight--
		l.r.lastUsed = time.Now()
		if l.r.state == Busy && l.r.inFlight < l.r.concurrency {
			l.r.state = Ready
		}
	})
}

// States implements orchestrator.Runners. Capacity is ready runners × their
// concurrency (ModelState's meaning); the free slots are Capacity − InUse.
func (rt *Runtime) States() []orchestrator.ModelState {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	out := make([]orchestrator.ModelState, 0, len(rt.order))
	for _, m := range rt.order {
		capa, inUse, version := rt.capacityLocked(m)
		out = append(out, orchestrator.ModelState{Pipeline: m.Pipeline, Model: m.ModelID, Warm: m.Warm || m.external(), Capacity: capa, InUse: inUse, RunnerVersion: version})
	}
	return out
}

func (rt *Runtime) capacityLocked(m *model) (capacity, inUse int, version string) {
	for _, r := range m.records {
		if !r.serving() {
			continue
		}
		capacity += r.concurrency
		inUse += r.inFlight
		if r.version != "" && (version == "" || versionLess(r.version, version)) {
			version = r.version // the lowest version is what gateways filter on
		}
	}
	return capacity, inUse, version
}

// Shutdown stops taking jobs, waits up to DrainTimeout for in-flight jobs,
// then stops and removes every container in parallel, and finally sweeps
// anything of this instance still on the engine. ctx bounds the whole call.
func (rt *Runtime) Shutdown(ctx context.Context) error {
	rt.mu.Lock()
	if rt.stopping {
		rt.mu.Unlock()
		return nil
	}
	rt.stopping = true
	for _, m := range rt.order {
		for _, r := range m.records {
			if r.state != Stopped {
				r.state = Draining
			}
		}
	}
	rt.mu.Unlock()

	drain := time.NewTimer(rt.cfg.DrainTimeout)
	defer drain.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
wait:
	for rt.inFlight() > 0 {
		select {
		case <-tick.C:
		case <-drain.C:
			rt.log.Warn("stopping runners with jobs still in flight", "in_flight", rt.inFlight())
			break wait
		case <-ctx.Done():
			break wait
		}
	}

	rt.cancel() // every supervisor stops and removes its own container, in parallel
	done := make(chan struct{})
	go func() { rt.wg.Wait(); close(done) }()
	var errs []error
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("runners still stopping at the shutdown deadline: %w", ctx.Err()))
	}
	rt.mu.Lock()
	up := rt.up
	rt.mu.Unlock()
	if !up {
		return errors.Join(errs...) // never reached the engine: it holds nothing of ours from this run
	}
	// Sweep: a supervisor that missed its deadline, or a container created
	// while we were cancelling, must not outlive the orchestrator.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	list, err := rt.engine.ContainerList(sctx, container.ListOptions{All: true, Filters: rt.ownFilter()})
	if err != nil {
		errs = append(errs, fmt.Errorf("list containers at shutdown: %w", err))
	}
	for _, c := range list {
		if err := rt.engine.ContainerRemove(sctx, c.ID, container.RemoveOptions{Force: true}); err != nil {
			errs = append(errs, fmt.Errorf("remove %s at shutdown: %w", short(c.ID), err))
		}
	}
	return errors.Join(errs...)
}

func (rt *Runtime) inFlight() int {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	n := 0
	for _, m := range rt.order {
		for _, r := range m.records {
			n += r.inFlight
		}
	}
	return n
}

func newToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
