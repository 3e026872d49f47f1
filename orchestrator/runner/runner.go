// Package runner is the CPU reference runner: a real program that speaks
// ai-runner's HTTP API (one pipeline + one model per process) without a GPU,
// producing real, seed-deterministic media after a configurable latency.
package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/lpgauge/lpgauge/capability"
)

// Latency is the per-job timing model: how long inference takes, how often it
// fails, and how long the model takes to load before /health says OK.
type Latency struct {
	Mean        time.Duration // mean inference time per job
	Jitter      time.Duration // uniform ± around Mean
	FailureRate float64       // fraction of jobs answered with a 500 pipeline error (spread evenly, not at random)
	LoadTime    time.Duration // /health says LOADING this long after start
}

// Validate rejects a model that cannot be simulated.
func (l Latency) Validate() error {
	switch {
	case l.Mean < 0 || l.Jitter < 0 || l.LoadTime < 0:
		return errors.New("latency durations must not be negative")
	case l.FailureRate < 0 || l.FailureRate > 1:
		return fmt.Errorf("failure rate %v outside [0, 1]", l.FailureRate)
	}
	return nil
}

// Config is one runner process: ai-runner's PIPELINE, MODEL_ID, AUTH_TOKEN
// and VERSION, plus the latency model and worker count.
type Config struct {
	Pipeline  string // pipeline slug, e.g. "text-to-image"
	ModelID   string
	AuthToken string // "" = no bearer check
	Version   string // reported by /version; "" → "undefined" as ai-runner
	Latency   Latency
	// Workers bounds concurrent inference; ai-runner runs one job at a time.
	Workers int
	Logger  *slog.Logger
	// Live is the behaviour of a live-video-to-video runner (live.go);
	// LiveClient the HTTP client of its trickle streams (nil: a fresh one).
	Live       LiveProfile
	LiveClient *http.Client
}

// Runner serves one pipeline. Inference runs on a bounded worker pool, never
// on the request goroutine's critical path, so /health and /hardware/* keep
// answering while jobs run (ai-runner's async routes stall there).
type Runner struct {
	cfg      Config
	pipeline capability.Pipeline
	spec     pipelineSpec
	log      *slog.Logger
	started  time.Time
	loaded   chan struct{}

	jobs chan *job
	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once

	mu       sync.Mutex
	rng      *rand.Rand
	running  int
	failDebt float64 // accumulated FailureRate; a job fails each time it reaches 1

	progress sync.Map // job id → *jobProgress (progress.go)

	live *liveState // live-video-to-video only (live.go)
}

type job struct {
	ctx  context.Context
	run  runFunc
	done chan jobResult
}

type jobResult struct {
	out any
	err error
}

// New validates cfg and starts the worker pool; Close stops it.
func New(cfg Config) (*Runner, error) {
	if cfg.Pipeline == "" || cfg.ModelID == "" {
		return nil, errors.New("runner: PIPELINE and MODEL_ID are both required")
	}
	p, ok := capability.BySlug(cfg.Pipeline)
	spec, served := specs[cfg.Pipeline]
	if cfg.Pipeline == livePipeline {
		spec, served = pipelineSpec{errName: "Live video to video"}, true
		if err := cfg.Live.Validate(); err != nil {
			return nil, fmt.Errorf("runner: %w", err)
		}
	}
	if !ok || !served {
		return nil, fmt.Errorf("runner: pipeline %q is not a pipeline this runner implements", cfg.Pipeline)
	}
	if err := cfg.Latency.Validate(); err != nil {
		return nil, fmt.Errorf("runner: %w", err)
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 1
	}
	if cfg.Version == "" {
		cfg.Version = "undefined"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	r := &Runner{
		cfg: cfg, pipeline: p, spec: spec,
		log:     cfg.Logger.With("pipeline", cfg.Pipeline, "model_id", cfg.ModelID),
		started: time.Now(),
		loaded:  make(chan struct{}),
		jobs:    make(chan *job),
		stop:    make(chan struct{}),
		rng:     rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0x5eed)),
	}
	if cfg.Pipeline == livePipeline {
		client := cfg.LiveClient
		if client == nil {
			client = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
		}
		r.live = &liveState{client: client, profile: cfg.Live}
	}
	r.wg.Add(1)
	go r.load()
	for range cfg.Workers {
		r.wg.Add(1)
		go r.work()
	}
	return r, nil
}

// load simulates weight loading: the pool takes no job until it is done.
func (r *Runner) load() {
	defer r.wg.Done()
	t := time.NewTimer(r.cfg.Latency.LoadTime)
	defer t.Stop()
	select {
	case <-t.C:
		close(r.loaded)
		r.log.Info("model loaded", "load_time", time.Since(r.started))
	case <-r.stop:
	}
}

// Close stops the workers; jobs waiting for one get a 500.
func (r *Runner) Close() {
	r.once.Do(func() { close(r.stop) })
	r.wg.Wait()
	r.closeLive()
}

// Status is what /health reports: LOADING until the model is loaded, then
// OK; a live runner says IDLE when no stream runs (live.go).
func (r *Runner) Status() string {
	select {
	case <-r.loaded:
		if r.live != nil {
			return r.liveStatus()
		}
		return "OK"
	default:
		return "LOADING"
	}
}

// Running is the number of jobs being inferred right now.
func (r *Runner) Running() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.running
}

func (r *Runner) work() {
	defer r.wg.Done()
	select {
	case <-r.loaded:
	case <-r.stop:
		return
	}
	for {
		select {
		case <-r.stop:
			return
		case j := <-r.jobs:
			r.mu.Lock()
			r.running++
			delay, fail := r.draw()
			r.mu.Unlock()
			startProgress(j.ctx, delay)
			var res jobResult
			if fail {
				res.err = r.simulatedFailure(j.ctx, delay)
			} else {
				res.out, res.err = j.run(j.ctx, delay)
			}
			r.mu.Lock()
			r.running--
			r.mu.Unlock()
			j.done <- res // buffered: the handler may have gone
		}
	}
}

// draw picks this job's inference time and whether it fails. Call with mu held.
func (r *Runner) draw() (time.Duration, bool) {
	l := r.cfg.Latency
	d := l.Mean
	if l.Jitter > 0 {
		d += time.Duration((r.rng.Float64()*2 - 1) * float64(l.Jitter))
	}
	// Failures are spread evenly (error diffusion) rather than drawn at
	// random: a rate of 0.35 fails exactly 35 of every 100 jobs, so a demo
	// fleet and the tests that check its ranking behave the same every run.
	fail := false
	if l.FailureRate > 0 {
		r.failDebt += l.FailureRate
		if r.failDebt >= 1-1e-9 {
			r.failDebt--
			fail = true
		}
	}
	return max(d, 0), fail
}

// simulatedFailure fails after part of the work, like a pipeline that raises
// mid-inference, with ai-runner's generic 500 message.
func (r *Runner) simulatedFailure(ctx context.Context, delay time.Duration) error {
	if err := sleep(ctx, delay/2); err != nil {
		return err
	}
	return &statusError{http.StatusInternalServerError, r.spec.errName + " pipeline error."}
}

func sleep(ctx context.Context, d time.Duration) error {
	if jp := progressOf(ctx); jp != nil {
		return jp.sleep(ctx, d)
	}
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// enqueue hands the job to the pool; the result arrives on the channel.
func (r *Runner) enqueue(ctx context.Context, run runFunc) (<-chan jobResult, error) {
	j := &job{ctx: ctx, run: run, done: make(chan jobResult, 1)}
	select {
	case r.jobs <- j:
		return j.done, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-r.stop:
		return nil, &statusError{http.StatusInternalServerError, r.spec.errName + " pipeline error."}
	}
}

// seedOrRandom mirrors ai-runner: a null seed means a random one.
func (r *Runner) seedOrRandom(seed *int) uint64 {
	if seed != nil {
		return uint64(*seed)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return uint64(r.rng.Uint32())
}

// Handler serves ai-runner's routes, each also with a trailing slash.
func (r *Runner) Handler() http.Handler {
	mux := http.NewServeMux()
	both := func(pattern string, h http.HandlerFunc) {
		mux.HandleFunc(pattern, h)
		mux.HandleFunc(pattern+"/", h)
	}
	both("GET /health", r.health)
	both("GET /hardware/info", r.hardware("gpu_info"))
	both("GET /hardware/stats", r.hardware("gpu_stats"))
	both("GET /version", r.version)
	if r.live != nil {
		both("POST /"+r.cfg.Pipeline, r.liveStart)
	} else {
		both("POST /"+r.cfg.Pipeline, r.generate)
	}
	both("GET /progress", r.progressRoute)
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"detail": "Not Found"})
	})
	return mux
}

func (r *Runner) health(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": r.Status()})
}

// hardware reports no GPUs: this runner has none, and an empty map is what a
// tester should see rather than invented devices.
func (r *Runner) hardware(key string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{
			"pipeline": r.cfg.Pipeline, "model_id": r.cfg.ModelID, key: map[string]any{},
		})
	}
}

func (r *Runner) version(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{
		"pipeline": r.cfg.Pipeline, "model_id": r.cfg.ModelID, "version": r.cfg.Version,
	})
}

// generate follows FastAPI's order: schema validation (422) runs before the
// route body, which checks the bearer token (401), the model guard (400),
// then the pipeline's own checks and inference.
func (r *Runner) generate(w http.ResponseWriter, req *http.Request) {
	var p *params
	if r.spec.multipart {
		var err error
		if p, err = parseForm(req); err != nil {
			r.fail(w, err)
			return
		}
	} else {
		var issues []validationIssue
		if p, issues = parseJSON(req); issues != nil {
			writeValidation(w, issues)
			return
		}
	}
	modelField := "model_id"
	if r.cfg.Pipeline == "llm" {
		modelField = "model"
	}
	model := p.str(modelField, "", false)
	t, err := r.spec.parse(r, p)
	if len(p.issues) > 0 {
		writeValidation(w, p.issues)
		return
	}
	if !r.authorized(req) {
		w.Header().Set("WWW-Authenticate", "Bearer")
		writeError(w, http.StatusUnauthorized, "Invalid bearer token.")
		return
	}
	if model != "" && model != r.cfg.ModelID {
		writeError(w, http.StatusBadRequest,
			fmt.Sprintf("pipeline configured with %s but called with %s.", r.cfg.ModelID, model))
		return
	}
	if err != nil {
		r.fail(w, err)
		return
	}
	ctx, untrack := r.track(req, t)
	defer untrack()
	done, err := r.enqueue(ctx, t.run)
	if err != nil {
		r.fail(w, err)
		return
	}
	if t.events != nil {
		r.stream(w, req, t.events, done)
		return
	}
	select {
	case res := <-done:
		if res.err != nil {
			r.fail(w, res.err)
			return
		}
		writeJSON(w, http.StatusOK, res.out)
	case <-req.Context().Done():
	}
}

// stream writes server-sent events as the job produces them. A job that
// fails before its first event gets an ordinary error response; after that
// the status is sent, so the failure becomes an error event, as ai-runner's
// LLM route does.
func (r *Runner) stream(w http.ResponseWriter, req *http.Request, events <-chan []byte, done <-chan jobResult) {
	flusher, _ := w.(http.Flusher)
	started := false
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if !started {
				w.Header().Set("Content-Type", "text/event-stream")
				w.Header().Set("Cache-Control", "no-cache")
				w.WriteHeader(http.StatusOK)
				started = true
			}
			_, _ = w.Write(ev)
			if flusher != nil {
				flusher.Flush()
			}
		case res := <-done:
			if res.err == nil {
				return
			}
			if !started {
				r.fail(w, res.err)
				return
			}
			ev, _ := json.Marshal(map[string]string{"error": res.err.Error()})
			_, _ = fmt.Fprintf(w, "data: %s\n\n", ev)
			return
		case <-req.Context().Done():
			return
		}
	}
}

func (r *Runner) authorized(req *http.Request) bool {
	if r.cfg.AuthToken == "" {
		return true
	}
	scheme, token, ok := strings.Cut(req.Header.Get("Authorization"), " ")
	return ok && strings.EqualFold(scheme, "Bearer") && token == r.cfg.AuthToken
}

func (r *Runner) fail(w http.ResponseWriter, err error) {
	var se *statusError
	switch {
	case errors.As(err, &se):
		writeError(w, se.status, se.msg)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		// The caller is gone; nobody reads this answer.
		writeError(w, http.StatusInternalServerError, r.spec.errName+" pipeline error.")
	default:
		r.log.Error("pipeline failed", "err", err)
		writeError(w, http.StatusInternalServerError, r.spec.errName+" pipeline error.")
	}
}

type runFunc func(ctx context.Context, delay time.Duration) (any, error)

// task is a validated request ready for the pool. A streaming task sends
// complete SSE events on events (unbuffered, so every event is written before
// the job's result arrives) and closes it before run returns.
type task struct {
	run    runFunc
	events chan []byte
	// unit and total are what GET /progress counts for the job (steps,
	// frames, chunks, tokens); total 0 reports elapsed time only.
	unit  string
	total int
}

// pipelineSpec is one pipeline's route: how its body is read and validated,
// and the inference it runs. Adding a pipeline is one file and one entry.
type pipelineSpec struct {
	errName   string // prefix of ai-runner's generic 500 message
	multipart bool
	// parse reads and checks the request; schema violations go to p.issues,
	// other errors are answered after the auth and model checks.
	parse func(r *Runner, p *params) (task, error)
}

var specs = map[string]pipelineSpec{}
