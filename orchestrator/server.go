package orchestrator

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"image/jpeg"
	"image/png"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/lpgauge/lpgauge/capability"
	"github.com/lpgauge/lpgauge/media/mp4"
	"github.com/lpgauge/lpgauge/orchestrator/mediastore"
)

// aiWorkerProtocol is the Authorization value URL-mode gateways send;
// without it results go back inline as data URLs (old gateways).
const aiWorkerProtocol = "Livepeer-AI-Worker-1.0"

// ProcessingTimeHeader carries the orchestrator's own time on a request, in
// milliseconds, from arrival to response headers. It is our addition: lets a
// tester split server time from network time without trusting the clock.
const ProcessingTimeHeader = "X-Processing-Time-Ms"

// Config is the AI HTTP server's configuration.
type Config struct {
	EthAddr string // the orchestrator's identity, reported by /status
	// ServiceURI, when set (e.g. https://o.example:8935), is the base of
	// result URLs; otherwise the request's own scheme and host are used.
	ServiceURI       string
	MaxBodyBytes     int64 // request bodies above this get 413
	MaxResponseBytes int64 // runner answers above this are a runner error
	// PipelineBodyBytes bounds one pipeline's bodies below MaxBodyBytes
	// (413 above), by slug; pipelines not named get defaultBodyBytes.
	PipelineBodyBytes ByteSizes
	// MaxBodyBytesInFlight bounds the request-body bytes held at once by
	// all requests together (a body's declared size, or its pipeline's
	// bound when undeclared, is reserved before it is read); a request that
	// finds no room within QueueTimeout gets 503 + Retry-After. Default
	// max(256 MiB, MaxBodyBytes).
	MaxBodyBytesInFlight int64
	// BodyReadTimeout is how long a request body may take to arrive,
	// counted from the end of its headers (408 and the connection closed
	// after). Default 1 min.
	BodyReadTimeout time.Duration
	// SpoolDir holds bodies above 256 KiB while their job runs (unlinked
	// files); default the system temp dir. Put it on disk, not tmpfs.
	SpoolDir string
	// MaxResultBytes bounds the result media kept under /stream/ in all;
	// the oldest requests' media are evicted first. Default 256 MiB.
	MaxResultBytes int64
	MaxQueue       int           // requests that may wait for a slot at once
	QueueTimeout   time.Duration // how long one waits before 503
	RunnerTimeout  time.Duration // deadline on the call to the runner
	ResultTTL      time.Duration // how long /stream/ keeps results
	Logger         *slog.Logger

	// ProgressPoll is how often a streamed job's runner is asked for its
	// progress, ProgressHeartbeat the longest silence of a progress stream
	// (progress.go). Defaults 200 ms and 1 s.
	ProgressPoll, ProgressHeartbeat time.Duration

	// Live, when set, serves live-video-to-video (live.go): the start
	// request, POST /payment and the trickle channels under /ai/trickle/.
	Live *LiveConfig
}

// RegisterFlags binds the config to flags, with the defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.Int64Var(&c.MaxBodyBytes, "max-body-bytes", 100<<20, "largest AI request body accepted (413 above); audio uploads may be 50 MB")
	fs.Int64Var(&c.MaxResponseBytes, "max-response-bytes", 512<<20, "largest runner response accepted")
	fs.Var(&c.PipelineBodyBytes, "pipeline-body-bytes", "per-pipeline body bounds under -max-body-bytes, slug=size,… (sizes in bytes or with KiB/MiB/GiB); default text-to-image and text-to-speech 1MiB, llm 16MiB, uploads -max-body-bytes")
	fs.Int64Var(&c.MaxBodyBytesInFlight, "max-body-bytes-in-flight", 256<<20, "request-body bytes all requests may hold at once (at least -max-body-bytes); past it 503 insufficient capacity + Retry-After")
	fs.DurationVar(&c.BodyReadTimeout, "body-read-timeout", time.Minute, "how long a request body may take to arrive after its headers; past it 408 and the connection closed")
	fs.StringVar(&c.SpoolDir, "body-spool-dir", "", "directory for request bodies above 256 KiB while their job runs (default the system temp dir; on disk, not tmpfs)")
	fs.Int64Var(&c.MaxResultBytes, "max-result-bytes", 256<<20, "result media kept under /stream/ in all; the oldest are evicted first")
	fs.IntVar(&c.MaxQueue, "max-queue", 32, "requests that may wait for a free runner at once; more get 503 at once")
	fs.DurationVar(&c.QueueTimeout, "queue-timeout", 2*time.Second, "how long a request waits for a free runner before 503 insufficient capacity")
	fs.DurationVar(&c.RunnerTimeout, "runner-timeout", 15*time.Minute, "deadline on one runner call (go-livepeer: 15 min)")
	fs.DurationVar(&c.ResultTTL, "result-ttl", 10*time.Minute, "how long result media stay under /stream/")
	fs.DurationVar(&c.ProgressPoll, "progress.poll", defaultProgressPoll, "how often a progress-streamed job's runner is asked how far it is (GET /progress)")
	fs.DurationVar(&c.ProgressHeartbeat, "progress.heartbeat", defaultProgressHeartbeat, "longest silence of a progress stream: the last queue or progress event is repeated after it")
}

// Validate rejects unusable settings, every problem at once.
func (c *Config) Validate() error {
	var errs []error
	if c.MaxBodyBytes <= 0 || c.MaxResponseBytes <= 0 {
		errs = append(errs, errors.New("-max-body-bytes and -max-response-bytes must be positive"))
	}
	if c.MaxQueue < 0 || c.QueueTimeout < 0 {
		errs = append(errs, errors.New("-max-queue and -queue-timeout must not be negative"))
	}
	if c.RunnerTimeout <= 0 || c.ResultTTL <= 0 {
		errs = append(errs, errors.New("-runner-timeout and -result-ttl must be positive"))
	}
	if c.MaxBodyBytesInFlight < 0 || c.BodyReadTimeout < 0 || c.MaxResultBytes < 0 {
		errs = append(errs, errors.New("-max-body-bytes-in-flight, -body-read-timeout and -max-result-bytes must not be negative"))
	}
	if c.MaxBodyBytesInFlight > 0 && c.MaxBodyBytesInFlight < c.MaxBodyBytes {
		errs = append(errs, fmt.Errorf("-max-body-bytes-in-flight %d is below -max-body-bytes %d: a body of the largest accepted size could never be read", c.MaxBodyBytesInFlight, c.MaxBodyBytes))
	}
	for slug, n := range c.PipelineBodyBytes {
		if _, ok := capability.BySlug(slug); !ok {
			errs = append(errs, fmt.Errorf("-pipeline-body-bytes: unknown pipeline %q", slug))
		} else if n <= 0 {
			errs = append(errs, fmt.Errorf("-pipeline-body-bytes: %s must be positive", slug))
		}
	}
	return errors.Join(errs...)
}

// withDefaults fills the zero values New accepts.
func (c Config) withDefaults() Config {
	if c.MaxBodyBytesInFlight == 0 {
		c.MaxBodyBytesInFlight = max(256<<20, c.MaxBodyBytes)
	}
	if c.BodyReadTimeout == 0 {
		c.BodyReadTimeout = time.Minute
	}
	if c.MaxResultBytes == 0 {
		c.MaxResultBytes = 256 << 20
	}
	return c
}

// defaultBodyBytes are the per-pipeline bounds when PipelineBodyBytes does
// not name the pipeline: JSON bodies carry text only; uploads get
// MaxBodyBytes.
var defaultBodyBytes = map[string]int64{
	"text-to-image":  1 << 20,
	"text-to-speech": 1 << 20,
	"llm":            16 << 20, // long conversations, inline images
}

// bodyLimit is the largest body p accepts.
func (c *Config) bodyLimit(p capability.Pipeline) int64 {
	n, ok := c.PipelineBodyBytes[p.Slug]
	if !ok {
		n, ok = defaultBodyBytes[p.Slug]
	}
	if !ok || n > c.MaxBodyBytes {
		n = c.MaxBodyBytes
	}
	return n
}

// ByteSizes is a slug=size,… flag value.
type ByteSizes map[string]int64

func (b *ByteSizes) String() string {
	if b == nil || *b == nil {
		return ""
	}
	var parts []string
	for k, v := range *b {
		parts = append(parts, k+"="+strconv.FormatInt(v, 10))
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// Set parses slug=size,… with sizes in bytes or with a KiB, MiB or GiB suffix.
func (b *ByteSizes) Set(v string) error {
	m := ByteSizes{}
	for _, part := range strings.Split(v, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		slug, size, ok := strings.Cut(part, "=")
		if !ok {
			return fmt.Errorf("%q: want slug=size", part)
		}
		n, err := parseByteSize(strings.TrimSpace(size))
		if err != nil {
			return fmt.Errorf("%q: %w", part, err)
		}
		m[strings.TrimSpace(slug)] = n
	}
	*b = m
	return nil
}

func parseByteSize(s string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}} {
		if t, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = strings.TrimSpace(t), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("size %q: want a positive number of bytes, KiB, MiB or GiB", s)
	}
	return n * mult, nil
}

// Server is the orchestrator's AI HTTP surface: POST /{pipeline},
// GET /stream/… and /healthz (Handler), and /status and /metrics for the
// operator (OperatorHandler).
type Server struct {
	cfg     Config
	runners Runners
	gate    Gate
	log     *slog.Logger
	store   *mediastore.Store
	metrics *metrics
	reg     *prometheus.Registry
	client  *http.Client
	queued  atomic.Int64
	line    *fifo
	budget  *byteBudget
	handler http.Handler
	opHand  http.Handler
	live    *live

	stop chan struct{}
	once sync.Once
	wg   sync.WaitGroup
}

// New builds the server. Close stops its background sweeper.
func New(cfg Config, runners Runners, gate Gate) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("orchestrator config: %w", err)
	}
	if runners == nil || gate == nil {
		return nil, errors.New("orchestrator: runners and gate are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg = cfg.withDefaults()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s := &Server{
		cfg: cfg, runners: runners, gate: gate, log: cfg.Logger,
		store:   mediastore.New(cfg.ResultTTL, cfg.MaxResultBytes),
		budget:  newByteBudget(cfg.MaxBodyBytesInFlight),
		line:    newFIFO(),
		metrics: newMetrics(reg, runners),
		reg:     reg,
		client:  newRunnerClient(),
		stop:    make(chan struct{}),
	}
	mux := http.NewServeMux()
	for _, p := range capability.Batch {
		mux.Handle("POST /"+p.Slug, s.aiHandler(p))
	}
	healthz := func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") }
	mux.HandleFunc("GET /stream/{id}/{name}", s.serveMedia)
	mux.HandleFunc("GET /healthz", healthz)
	if cfg.Live != nil && cfg.Live.Channels != nil {
		s.live = newLive(s, *cfg.Live, reg)
		s.live.mount(mux)
	}
	s.handler = mux
	// /status and /metrics tell anyone who can reach them the load, the
	// models and the refusals: they are for the operator, on its own
	// listener, not on the port the world sends jobs to.
	op := http.NewServeMux()
	op.HandleFunc("GET /healthz", healthz)
	op.HandleFunc("GET /status", s.status)
	op.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	s.opHand = op
	s.store.OnChange = func(bytes int64, evicted int) {
		s.metrics.media.Set(float64(bytes))
		s.metrics.evicted.Add(float64(evicted))
	}
	s.wg.Add(1)
	go s.sweep()
	return s, nil
}

// Handler is the public HTTP surface (jobs, /stream/, /healthz); TLS and
// gRPC wrap it on the same port.
func (s *Server) Handler() http.Handler { return s.handler }

// OperatorHandler serves /status, /metrics and /healthz, for the operator's
// listener.
func (s *Server) OperatorHandler() http.Handler { return s.opHand }

// Close stops the result sweeper.
func (s *Server) Close() {
	s.once.Do(func() {
		close(s.stop)
		if s.live != nil {
			s.live.close()
		}
	})
	s.wg.Wait()
}

func (s *Server) sweep() {
	defer s.wg.Done()
	t := time.NewTicker(max(s.cfg.ResultTTL/10, 100*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.store.Sweep()
		}
	}
}

// timedWriter stamps the processing time on the first header write and
// remembers the status for metrics.
type timedWriter struct {
	http.ResponseWriter
	start  time.Time
	status int
	clock  *jobClock // queue and inference accounting (progress.go)
}

func (w *timedWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
		ms := float64(time.Since(w.start).Microseconds()) / 1000
		w.Header().Set(ProcessingTimeHeader, strconv.FormatFloat(ms, 'f', 3, 64))
		if w.clock != nil {
			w.clock.stamp(w.Header())
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *timedWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (read deadlines).
func (w *timedWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *timedWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *Server) aiHandler(p capability.Pipeline) http.Handler {
	// The series every answered job touches, looked up once, not per job.
	ok, took := s.metrics.requests.WithLabelValues(p.Slug, "200"), s.metrics.duration.WithLabelValues(p.Slug)
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		w := &timedWriter{ResponseWriter: rw, start: time.Now(), clock: &jobClock{}}
		s.serveAI(w, r, p)
		w.clock.finish(w)
		if w.status == 0 || w.status == http.StatusOK {
			ok.Inc()
		} else {
			s.metrics.requests.WithLabelValues(p.Slug, strconv.Itoa(w.status)).Inc()
		}
		took.Observe(time.Since(w.start).Seconds())
	})
}

// serveAI runs one job. Everything that can refuse it from its headers is
// checked before its body is read — size, payment and credentials, capacity,
// room for the body — so a refused request costs no body bytes; then the
// body is read under a deadline and go-livepeer's order follows: decode →
// gate check → capacity → payment → runner → charge → respond.
func (s *Server) serveAI(w *timedWriter, r *http.Request, p capability.Pipeline) {
	refuse := func(reason string, status int, msg string) {
		s.metrics.refused.WithLabelValues(p.Slug, reason).Inc()
		http.Error(w, msg, status)
	}
	retryAfter := func() { w.Header().Set("Retry-After", strconv.Itoa(max(1, int(s.cfg.QueueTimeout.Seconds())))) }
	limit := s.cfg.bodyLimit(p)
	if r.ContentLength > limit {
		refuse("too_large", http.StatusRequestEntityTooLarge, tooLarge(p, limit))
		return
	}
	var models []string
	room := false
	for _, m := range s.runners.States() {
		if m.Pipeline.ID == p.ID {
			models = append(models, m.Model)
			room = room || m.InUse < m.Capacity
		}
	}
	// Payment and credentials first, as go-livepeer checks them before
	// capacity; a pipeline served by no model is checked as such.
	candidates := models
	if len(candidates) == 0 {
		candidates = []string{""}
	}
	if ref, err := s.checkHeaders(r, p, candidates); err != nil {
		s.log.Error("gate check failed", "pipeline", p.Slug, "err", err)
		refuse("gate", http.StatusInternalServerError, "payment check failed")
		return
	} else if ref != nil {
		refuse("gate", ref.Status, ref.Message)
		return
	}
	if len(models) == 0 {
		refuse("capacity", http.StatusServiceUnavailable, "insufficient capacity")
		return
	}
	if !room && (s.cfg.QueueTimeout == 0 || s.queued.Load() >= int64(s.cfg.MaxQueue)) {
		retryAfter() // gateways match this body to try the next orchestrator
		refuse("capacity", http.StatusServiceUnavailable, "insufficient capacity")
		return
	}
	reserve := r.ContentLength
	if reserve < 0 {
		reserve = limit // undeclared: the most it may be
	}
	if !s.budget.acquire(r.Context(), reserve, s.cfg.QueueTimeout) {
		retryAfter()
		refuse("body_budget", http.StatusServiceUnavailable, fmt.Sprintf(
			"insufficient capacity: request bodies in flight already hold the %d bytes this orchestrator allows; retry later", s.cfg.MaxBodyBytesInFlight))
		return
	}
	s.metrics.bodyBytes.Add(float64(reserve))
	defer func() { s.budget.release(reserve); s.metrics.bodyBytes.Sub(float64(reserve)) }()
	b, err := s.readBody(w, r, limit)
	if err != nil {
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			refuse("too_large", http.StatusRequestEntityTooLarge, tooLarge(p, limit))
		case errors.Is(err, os.ErrDeadlineExceeded):
			refuse("timeout", http.StatusRequestTimeout, fmt.Sprintf("request body not received within %s", s.cfg.BodyReadTimeout))
		case errors.Is(err, errSpool):
			s.log.Error("request body not spooled", "pipeline", p.Slug, "err", err)
			retryAfter()
			refuse("body_budget", http.StatusServiceUnavailable, "insufficient capacity: no room to hold the request body; retry later")
		default:
			refuse("bad_request", http.StatusBadRequest, "could not read request body")
		}
		return
	}
	defer b.close()
	req, err := b.decode(p, r.Header.Get("Content-Type"))
	if err == nil && req.model == "" {
		err = badf("missing model_id")
		if p.ID == capability.LLM {
			err = badf("missing model")
		}
	}
	if err != nil {
		refuse("bad_request", http.StatusBadRequest, err.Error())
		return
	}
	job := Job{Pipeline: p, Model: req.model, Units: req.units}
	adm, err := s.gate.Check(r, job)
	if err != nil {
		var ref *Refusal
		if errors.As(err, &ref) {
			refuse("gate", ref.Status, ref.Message)
			return
		}
		s.log.Error("gate check failed", "pipeline", p.Slug, "err", err)
		refuse("gate", http.StatusInternalServerError, "payment check failed")
		return
	}
	lease, err := s.reserveJob(&w, r, p, req.model)
	if err != nil {
		if errors.Is(err, ErrNoCapacity) {
			retryAfter()
		}
		if errors.Is(err, ErrNoCapacity) || errors.Is(err, ErrUnknownModel) {
			refuse("capacity", http.StatusServiceUnavailable, "insufficient capacity")
			return
		}
		refuse("capacity", http.StatusServiceUnavailable, "request cancelled while waiting for capacity")
		return
	}
	defer lease.Release()
	if err := adm.Pay(r.Context()); err != nil {
		refuse("payment", http.StatusBadRequest, err.Error())
		return
	}
	s.run(w, r, p, req, b, lease, adm)
}

func tooLarge(p capability.Pipeline, limit int64) string {
	return fmt.Sprintf("request body exceeds %d bytes, the most this orchestrator accepts for %s", limit, p.Slug)
}

// checkHeaders asks the gate about the request before its body is read:
// the model is in the body, so each model the pipeline serves is tried and
// the request goes on if any would be admitted. It returns the first
// model's refusal when none would.
func (s *Server) checkHeaders(r *http.Request, p capability.Pipeline, models []string) (*Refusal, error) {
	var first *Refusal
	for _, m := range models {
		_, err := s.gate.Check(r, Job{Pipeline: p, Model: m})
		if err == nil {
			return nil, nil
		}
		var ref *Refusal
		if !errors.As(err, &ref) {
			return nil, err
		}
		if first == nil {
			first = ref
		}
	}
	return first, nil
}

var errSpool = errors.New("spool")

// readBody reads the body, at most limit bytes, within BodyReadTimeout of
// now; the connection's read deadline is lifted again after, so a long job
// is not cut by it.
func (s *Server) readBody(w *timedWriter, r *http.Request, limit int64) (*body, error) {
	rc := http.NewResponseController(w)
	if err := rc.SetReadDeadline(time.Now().Add(s.cfg.BodyReadTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return nil, fmt.Errorf("set read deadline: %w", err)
	}
	b, err := readBody(http.MaxBytesReader(w, r.Body, limit), s.cfg.SpoolDir)
	if err == nil {
		_ = rc.SetReadDeadline(time.Time{})
	}
	return b, err
}

// run forwards the job to the runner and answers with its result.
func (s *Server) run(w *timedWriter, r *http.Request, p capability.Pipeline, req aiRequest, b *body, lease Lease, adm Admission) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RunnerTimeout)
	defer cancel()
	rreq, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(lease.URL(), "/")+"/"+p.Slug, b.send())
	if err != nil {
		http.Error(w, "runner request: "+err.Error(), http.StatusInternalServerError)
		return
	}
	rreq.ContentLength = b.size
	// The body can be read again, so the transport may resend it on a
	// fresh connection when the runner closed an idle one under it.
	rreq.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(b.send()), nil }
	tagRunnerRequest(w, rreq)
	rreq.Header.Set("Content-Type", r.Header.Get("Content-Type"))
	if tok := lease.Token(); tok != "" {
		rreq.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := s.client.Do(rreq)
	if err != nil {
		s.log.Warn("runner call failed", "pipeline", p.Slug, "model", req.model, "err", err)
		msg := "runner call failed"
		if errors.Is(err, context.DeadlineExceeded) {
			msg = "runner timed out"
		}
		http.Error(w, msg, http.StatusInternalServerError)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		http.Error(w, runnerErrorText(resp), resp.StatusCode)
		return
	}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		if s.relayStream(w, resp.Body) {
			adm.Charge(req.units)
		}
		return
	}
	buf := answers.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= maxPooledAnswer {
			answers.Put(buf)
		}
	}()
	raw, err := readRunnerAnswer(resp, s.cfg.MaxResponseBytes, buf)
	if err != nil {
		http.Error(w, "runner response unreadable or too large", http.StatusInternalServerError)
		return
	}
	out, err := s.shapeResult(r, p, req, raw)
	if err != nil {
		s.log.Warn("runner result unusable", "pipeline", p.Slug, "err", err)
		http.Error(w, "runner returned an invalid result: "+err.Error(), http.StatusInternalServerError)
		return
	}
	adm.Charge(req.units)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(out)
}

// runnerErrorText extracts ai-runner's detail.msg, or the body as text.
func runnerErrorText(resp *http.Response) string {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var e struct {
		Detail json.RawMessage `json:"detail"`
	}
	if json.Unmarshal(b, &e) == nil && e.Detail != nil {
		var msg struct{ Msg string }
		if json.Unmarshal(e.Detail, &msg) == nil && msg.Msg != "" {
			return msg.Msg
		}
		var text string
		if json.Unmarshal(e.Detail, &text) == nil {
			return text
		}
		return string(e.Detail)
	}
	if t := strings.TrimSpace(string(b)); t != "" {
		return t
	}
	return http.StatusText(resp.StatusCode)
}

// relayStream passes server-sent events through, flushing each one; it
// reports whether the stream completed ([DONE] without an error event).
func (s *Server) relayStream(w *timedWriter, body io.Reader) bool {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	done, failed := false, false
	for sc.Scan() {
		line := sc.Text()
		if data, ok := strings.CutPrefix(line, "data: "); ok {
			done = done || data == "[DONE]"
			failed = failed || strings.HasPrefix(data, `{"error"`)
		}
		if _, err := io.WriteString(w, line+"\n"); err != nil {
			return false
		}
		if line == "" {
			w.Flush()
		}
	}
	w.Flush()
	return done && !failed && sc.Err() == nil
}

// shapeResult turns the runner's answer into the gateway's: frames become
// one video per batch, and for URL-mode gateways data URLs become stored
// /stream/ URLs.
func (s *Server) shapeResult(r *http.Request, p capability.Pipeline, req aiRequest, raw []byte) ([]byte, error) {
	var put func(dataURL []byte) (string, error)
	if r.Header.Get("Authorization") == aiWorkerProtocol {
		put = s.mediaPutter(r)
	}
	if p.ID != capability.ImageToVideo {
		if out, ok, err := shapeImages(raw, put); ok {
			return out, err
		}
	}
	return shapeGeneric(p, req, raw, put)
}

// shapeGeneric is shapeResult for any answer: decoded whole, rewritten,
// encoded again.
func shapeGeneric(p capability.Pipeline, req aiRequest, raw []byte, put func([]byte) (string, error)) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	if p.ID == capability.ImageToVideo {
		var err error
		if v, err = framesToVideo(v, req.fps); err != nil {
			return nil, err
		}
	}
	if put != nil {
		if err := storeMedia(v, put); err != nil {
			return nil, err
		}
	}
	return json.Marshal(v)
}

// mediaPutter stores a data URL's bytes under a new request id and returns
// the /stream/ URL that serves them.
func (s *Server) mediaPutter(r *http.Request) func(dataURL []byte) (string, error) {
	id := mediastore.NewRequestID()
	base := s.cfg.ServiceURI
	if base == "" {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		base = scheme + "://" + r.Host
	}
	base = strings.TrimRight(base, "/")
	return func(dataURL []byte) (string, error) {
		mime, data, err := parseDataURL(dataURL)
		if err != nil {
			return "", err
		}
		ext := mimeExt[mime]
		if ext == "" {
			ext = "bin"
		}
		name, err := s.store.Put(id, mime, ext, data)
		if err != nil {
			return "", err
		}
		return base + "/stream/" + id + "/" + name, nil
	}
}

var mimeExt = map[string]string{
	"image/png": "png", "image/jpeg": "jpg", "image/gif": "gif", "image/webp": "webp",
	"audio/wav": "wav", "audio/x-wav": "wav", "audio/mpeg": "mp3", "video/mp4": "mp4",
}

// storeMedia replaces every "url" holding a data URL with what put returns
// for it (a stored URL).
func storeMedia(v any, put func(dataURL []byte) (string, error)) error {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			if str, ok := e.(string); ok && k == "url" && strings.HasPrefix(str, "data:") {
				u, err := put([]byte(str))
				if err != nil {
					return err
				}
				t[k] = u
				continue
			}
			if err := storeMedia(e, put); err != nil {
				return err
			}
		}
	case []any:
		for _, e := range t {
			if err := storeMedia(e, put); err != nil {
				return err
			}
		}
	}
	return nil
}

func parseDataURL(u []byte) (mime string, data []byte, err error) {
	meta, payload, ok := bytes.Cut(bytes.TrimPrefix(u, []byte("data:")), []byte(","))
	if !ok || !bytes.HasSuffix(meta, []byte(";base64")) {
		return "", nil, errors.New("data URL is not base64")
	}
	data = make([]byte, base64.StdEncoding.DecodedLen(len(payload)))
	n, err := base64.StdEncoding.Decode(data, payload)
	if err != nil {
		return "", nil, fmt.Errorf("data URL: %w", err)
	}
	// The MIME type is a copy: u may be a view of a reused buffer.
	return string(bytes.TrimSuffix(meta, []byte(";base64"))), data[:n], nil
}

// framesToVideo turns the runner's {"frames":[[Media…]]} into the gateway
// schema's {"images":[Media]} with one MP4 per frame list at the requested
// fps. go-livepeer encodes H.264 with ffmpeg; this binary has no ffmpeg (it
// ships FROM scratch), so each frame becomes a JPEG and the MP4 carries
// Motion JPEG, which every player and ffprobe open.
func framesToVideo(v any, fps int) (any, error) {
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("image-to-video result is not an object")
	}
	batches, ok := obj["frames"].([]any)
	if !ok {
		return nil, errors.New("image-to-video result has no frames")
	}
	if fps <= 0 {
		fps = 6
	}
	// Every frame's declared size is checked before any is decoded, so a
	// result whose frames add up past MaxVideoPixels costs no decoding.
	type frameData struct {
		data []byte
		seed any
	}
	var videos [][]frameData
	var pixels int64
	for _, b := range batches {
		frames, _ := b.([]any)
		if len(frames) == 0 {
			continue
		}
		var video []frameData
		var seed any = json.Number("0")
		for _, f := range frames {
			m, _ := f.(map[string]any)
			u, _ := m["url"].(string)
			if sd, ok := m["seed"]; ok {
				seed = sd
			}
			_, data, err := parseDataURL([]byte(u))
			if err != nil {
				return nil, fmt.Errorf("frame: %w", err)
			}
			if err := checkFrame(data, &pixels); err != nil {
				return nil, fmt.Errorf("frame: %w", err)
			}
			video = append(video, frameData{data: data, seed: seed})
		}
		videos = append(videos, video)
	}
	images := []any{}
	for _, video := range videos {
		clip := mp4.Video{FPS: fps}
		for i, f := range video {
			img, err := png.Decode(bytes.NewReader(f.data))
			if err != nil {
				return nil, fmt.Errorf("frame: %w", err)
			}
			size := img.Bounds().Size()
			if i == 0 {
				clip.Width, clip.Height = size.X, size.Y
			} else if size.X != clip.Width || size.Y != clip.Height {
				return nil, fmt.Errorf("frame %d is %dx%d, the clip's first %dx%d", i, size.X, size.Y, clip.Width, clip.Height)
			}
			var jpg bytes.Buffer
			if err := jpeg.Encode(&jpg, img, &jpeg.Options{Quality: videoQuality}); err != nil {
				return nil, fmt.Errorf("encode frame: %w", err)
			}
			clip.Frames = append(clip.Frames, jpg.Bytes())
		}
		var buf bytes.Buffer
		if err := mp4.Write(&buf, clip); err != nil {
			return nil, fmt.Errorf("encode video: %w", err)
		}
		images = append(images, map[string]any{
			"url": "data:video/mp4;base64," + base64.StdEncoding.EncodeToString(buf.Bytes()), "seed": video[len(video)-1].seed, "nsfw": false,
		})
	}
	return map[string]any{"images": images}, nil
}

// MaxFramePixels bounds one image-to-video frame and MaxVideoPixels all the
// frames of one result. A frame's PNG header is read first: a 65-byte PNG can
// declare 2^29×2^29 pixels, and decoding it would allocate that much (a
// runtime panic, or the orchestrator killed for memory) before finding the
// data missing. 25 frames of 1024×576 (the pipeline's default) are 14.7M
// pixels; the bounds leave room for much larger legitimate clips.
const (
	MaxFramePixels = 4096 * 4096
	MaxVideoPixels = 1 << 28
)

// videoQuality is the JPEG quality of a video frame: a clip of 25 frames at
// 1024×576 stays a few MiB, well under the 2 bytes a pixel a tester allows
// an encoded video.
const videoQuality = 85

// checkFrame reads a PNG frame's header and refuses it when it declares more
// than MaxFramePixels, or when with the frames already checked (*pixels,
// updated) the result would hold more than MaxVideoPixels.
func checkFrame(data []byte, pixels *int64) error {
	cfg, err := png.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return err
	}
	n := int64(cfg.Width) * int64(cfg.Height)
	if n > MaxFramePixels {
		return fmt.Errorf("declares %dx%d pixels, more than the %d a frame may have", cfg.Width, cfg.Height, MaxFramePixels)
	}
	if *pixels+n > MaxVideoPixels {
		return fmt.Errorf("frames total more than the %d pixels a video may have", MaxVideoPixels)
	}
	*pixels += n
	return nil
}

func (s *Server) serveMedia(w http.ResponseWriter, r *http.Request) {
	m, ok := s.store.Get(r.PathValue("id"), r.PathValue("name"))
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", m.ContentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(m.Data)))
	_, _ = w.Write(m.Data)
}

// Status is the /status document.
type Status struct {
	EthAddr    string        `json:"eth_address"`
	Models     []ModelStatus `json:"models"`
	QueueDepth int64         `json:"queue_depth"`
	MaxQueue   int           `json:"max_queue"`
	// EngineError is the runners' engine-wide fault (e.g. the Docker engine
	// unreachable), from Runners that implement EngineErrorReporter.
	EngineError string `json:"engine_error,omitempty"`
}

// ModelKey names one served (pipeline slug, model id).
type ModelKey struct {
	Pipeline string
	Model    string
}

// ReasonReporter is implemented by Runners that can say why a model has no
// capacity (Docker-managed runners: engine unreachable, crash loop). /status
// shows the reason beside the zero capacity, so an operator (or a tester
// reading /status) need not know about a second, implementation-specific page.
type ReasonReporter interface {
	// Reasons maps each (pipeline slug, model) without capacity to why.
	Reasons() map[ModelKey]string
}

// EngineErrorReporter is implemented by Runners whose runners all depend on
// one engine; EngineError is "" while it answers.
type EngineErrorReporter interface {
	EngineError() string
}

// ModelStatus is one served (pipeline, model) in /status.
type ModelStatus struct {
	Pipeline      string `json:"pipeline"`
	ModelID       string `json:"model_id"`
	Warm          bool   `json:"warm"`
	Capacity      int    `json:"capacity"`
	InUse         int    `json:"in_use"`
	RunnerVersion string `json:"runner_version,omitempty"`
	// Reason says why Capacity is 0, from Runners that implement
	// ReasonReporter.
	Reason string `json:"reason,omitempty"`
}

func (s *Server) status(w http.ResponseWriter, _ *http.Request) {
	st := Status{EthAddr: s.cfg.EthAddr, Models: []ModelStatus{}, QueueDepth: s.queued.Load(), MaxQueue: s.cfg.MaxQueue}
	var reasons map[ModelKey]string
	if rr, ok := s.runners.(ReasonReporter); ok {
		reasons = rr.Reasons()
	}
	if er, ok := s.runners.(EngineErrorReporter); ok {
		st.EngineError = er.EngineError()
	}
	for _, m := range s.runners.States() {
		ms := ModelStatus{
			Pipeline: m.Pipeline.Slug, ModelID: m.Model, Warm: m.Warm,
			Capacity: m.Capacity, InUse: m.InUse, RunnerVersion: m.RunnerVersion,
		}
		// The two reads are separate snapshots: a model that came up in
		// between has capacity and no reason to show.
		if m.Capacity == 0 {
			ms.Reason = reasons[ModelKey{Pipeline: m.Pipeline.Slug, Model: m.Model}]
		}
		st.Models = append(st.Models, ms)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(st)
}
