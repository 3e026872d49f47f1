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
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/lpgauge/lpgauge/gateway/capability"
	"github.com/lpgauge/lpgauge/orchestrator/mp4"
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
	MaxBodyBytes     int64         // request bodies above this get 413
	MaxResponseBytes int64         // runner answers above this are a runner error
	MaxQueue         int           // requests that may wait for a slot at once
	QueueTimeout     time.Duration // how long one waits before 503
	RunnerTimeout    time.Duration // deadline on the call to the runner
	ResultTTL        time.Duration // how long /stream/ keeps results
	Logger           *slog.Logger
}

// RegisterFlags binds the config to flags, with the defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.Int64Var(&c.MaxBodyBytes, "maxBodyBytes", 100<<20, "largest AI request body accepted (413 above); audio uploads may be 50 MB")
	fs.Int64Var(&c.MaxResponseBytes, "maxResponseBytes", 512<<20, "largest runner response accepted")
	fs.IntVar(&c.MaxQueue, "maxQueue", 32, "requests that may wait for a free runner at once; more get 503 at once")
	fs.DurationVar(&c.QueueTimeout, "queueTimeout", 2*time.Second, "how long a request waits for a free runner before 503 insufficient capacity")
	fs.DurationVar(&c.RunnerTimeout, "runnerTimeout", 15*time.Minute, "deadline on one runner call (go-livepeer: 15 min)")
	fs.DurationVar(&c.ResultTTL, "resultTTL", 10*time.Minute, "how long result media stay under /stream/")
}

// Validate rejects unusable settings.
func (c *Config) Validate() error {
	switch {
	case c.MaxBodyBytes <= 0 || c.MaxResponseBytes <= 0:
		return errors.New("maxBodyBytes and maxResponseBytes must be positive")
	case c.MaxQueue < 0 || c.QueueTimeout < 0:
		return errors.New("maxQueue and queueTimeout must not be negative")
	case c.RunnerTimeout <= 0 || c.ResultTTL <= 0:
		return errors.New("runnerTimeout and resultTTL must be positive")
	}
	return nil
}

// Server is the orchestrator's AI HTTP surface: POST /{pipeline},
// GET /stream/…, /healthz, /status and /metrics.
type Server struct {
	cfg     Config
	runners Runners
	gate    Gate
	log     *slog.Logger
	store   *mediaStore
	metrics *metrics
	reg     *prometheus.Registry
	client  *http.Client
	queued  atomic.Int64
	handler http.Handler

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
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s := &Server{
		cfg: cfg, runners: runners, gate: gate, log: cfg.Logger,
		store:   newMediaStore(cfg.ResultTTL),
		metrics: newMetrics(reg, runners),
		reg:     reg,
		// Runner calls carry their own deadline (RunnerTimeout) per request.
		client: &http.Client{},
		stop:   make(chan struct{}),
	}
	mux := http.NewServeMux()
	for _, p := range capability.Batch {
		mux.Handle("POST /"+p.Slug, s.aiHandler(p))
	}
	mux.HandleFunc("GET /stream/{id}/{name}", s.serveMedia)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /status", s.status)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	s.handler = mux
	s.wg.Add(1)
	go s.sweep()
	return s, nil
}

// Handler is the HTTP surface; TLS and gRPC wrap it on the same port.
func (s *Server) Handler() http.Handler { return s.handler }

// Close stops the result sweeper.
func (s *Server) Close() {
	s.once.Do(func() { close(s.stop) })
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
			s.store.sweep()
		}
	}
}

// timedWriter stamps the processing time on the first header write and
// remembers the status for metrics.
type timedWriter struct {
	http.ResponseWriter
	start  time.Time
	status int
}

func (w *timedWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
		ms := float64(time.Since(w.start).Microseconds()) / 1000
		w.Header().Set(ProcessingTimeHeader, strconv.FormatFloat(ms, 'f', 3, 64))
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *timedWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

func (w *timedWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *Server) aiHandler(p capability.Pipeline) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		w := &timedWriter{ResponseWriter: rw, start: time.Now()}
		s.serveAI(w, r, p)
		if w.status == 0 {
			w.status = http.StatusOK
		}
		s.metrics.requests.WithLabelValues(p.Slug, strconv.Itoa(w.status)).Inc()
		s.metrics.duration.WithLabelValues(p.Slug).Observe(time.Since(w.start).Seconds())
	})
}

// serveAI runs one job in go-livepeer's order: decode → gate check →
// capacity → payment → runner → charge → respond.
func (s *Server) serveAI(w *timedWriter, r *http.Request, p capability.Pipeline) {
	refuse := func(reason string, status int, msg string) {
		s.metrics.refused.WithLabelValues(p.Slug, reason).Inc()
		http.Error(w, msg, status)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			refuse("bad_request", http.StatusRequestEntityTooLarge, fmt.Sprintf("request body exceeds %d bytes", s.cfg.MaxBodyBytes))
			return
		}
		refuse("bad_request", http.StatusBadRequest, "could not read request body")
		return
	}
	req, err := decodeRequest(p, r.Header.Get("Content-Type"), body)
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
	lease, err := s.reserve(r.Context(), p, req.model)
	if err != nil {
		if errors.Is(err, ErrNoCapacity) {
			// Gateways match this exact body to try the next orchestrator.
			w.Header().Set("Retry-After", strconv.Itoa(max(1, int(s.cfg.QueueTimeout.Seconds()))))
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
	s.run(w, r, p, req, body, lease, adm)
}

// reserve takes a slot, waiting in a bounded queue up to QueueTimeout. An
// unknown model is refused at once, as go-livepeer's capacity check does.
func (s *Server) reserve(ctx context.Context, p capability.Pipeline, model string) (Lease, error) {
	lease, err := s.runners.Reserve(ctx, p, model)
	if !errors.Is(err, ErrNoCapacity) || s.cfg.QueueTimeout == 0 {
		return lease, err
	}
	if s.queued.Add(1) > int64(s.cfg.MaxQueue) {
		s.queued.Add(-1)
		return nil, ErrNoCapacity
	}
	s.metrics.queueDepth.Inc()
	defer func() { s.queued.Add(-1); s.metrics.queueDepth.Dec() }()
	deadline := time.NewTimer(s.cfg.QueueTimeout)
	defer deadline.Stop()
	// Runners has no release notification, so poll; 10 ms is far below
	// any inference time and costs nothing measurable.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-deadline.C:
			return nil, ErrNoCapacity
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
			lease, err := s.runners.Reserve(ctx, p, model)
			if !errors.Is(err, ErrNoCapacity) {
				return lease, err
			}
		}
	}
}

// run forwards the job to the runner and answers with its result.
func (s *Server) run(w *timedWriter, r *http.Request, p capability.Pipeline, req aiRequest, body []byte, lease Lease, adm Admission) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RunnerTimeout)
	defer cancel()
	rreq, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(lease.URL(), "/")+"/"+p.Slug, bytes.NewReader(body))
	if err != nil {
		http.Error(w, "runner request: "+err.Error(), http.StatusInternalServerError)
		return
	}
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
	raw, err := io.ReadAll(io.LimitReader(resp.Body, s.cfg.MaxResponseBytes+1))
	if err != nil || int64(len(raw)) > s.cfg.MaxResponseBytes {
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
	if r.Header.Get("Authorization") == aiWorkerProtocol {
		id := newRequestID()
		base := s.cfg.ServiceURI
		if base == "" {
			scheme := "http"
			if r.TLS != nil {
				scheme = "https"
			}
			base = scheme + "://" + r.Host
		}
		if err := s.storeMedia(v, id, strings.TrimRight(base, "/")); err != nil {
			return nil, err
		}
	}
	return json.Marshal(v)
}

var mimeExt = map[string]string{
	"image/png": "png", "image/jpeg": "jpg", "image/gif": "gif", "image/webp": "webp",
	"audio/wav": "wav", "audio/x-wav": "wav", "audio/mpeg": "mp3", "video/mp4": "mp4",
}

// storeMedia replaces every "url" holding a data URL with a stored URL.
func (s *Server) storeMedia(v any, requestID, base string) error {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			if str, ok := e.(string); ok && k == "url" && strings.HasPrefix(str, "data:") {
				mime, data, err := parseDataURL(str)
				if err != nil {
					return err
				}
				ext := mimeExt[mime]
				if ext == "" {
					ext = "bin"
				}
				name := s.store.put(requestID, mime, ext, data)
				t[k] = base + "/stream/" + requestID + "/" + name
				continue
			}
			if err := s.storeMedia(e, requestID, base); err != nil {
				return err
			}
		}
	case []any:
		for _, e := range t {
			if err := s.storeMedia(e, requestID, base); err != nil {
				return err
			}
		}
	}
	return nil
}

func parseDataURL(u string) (mime string, data []byte, err error) {
	meta, payload, ok := strings.Cut(strings.TrimPrefix(u, "data:"), ",")
	if !ok || !strings.HasSuffix(meta, ";base64") {
		return "", nil, errors.New("data URL is not base64")
	}
	data, err = base64.StdEncoding.DecodeString(payload)
	if err != nil {
		return "", nil, fmt.Errorf("data URL: %w", err)
	}
	return strings.TrimSuffix(meta, ";base64"), data, nil
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
			_, data, err := parseDataURL(u)
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
	m, ok := s.store.get(r.PathValue("id"), r.PathValue("name"))
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", m.contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(m.data)))
	_, _ = w.Write(m.data)
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
