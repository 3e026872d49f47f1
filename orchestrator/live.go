package orchestrator

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lpgauge/lpgauge/capability"
)

// livePipeline is capability 35 (core/capabilities.go:89), served at
// POST /live-video-to-video.
var livePipeline, _ = capability.ByID(capability.LiveVideoToVideo)

// LivePixelsPerSecond is what a live stream is billed per second of input:
// a notional 1280×720 at 30 fps, never the real resolution (go-livepeer
// server/live_payment_processor.go:12-16,34-37).
const LivePixelsPerSecond = 1280 * 720 * 30

// TrickleBasePath is where the trickle channels are served
// (go-livepeer server/ai_http.go TrickleHTTPPath).
const TrickleBasePath = "/ai/trickle/"

// LiveChannels is the trickle server the live endpoint needs
// (gateway/trickle.Server): only the orchestrator creates channels.
type LiveChannels interface {
	CreateChannel(name, mimeType string) error
	CloseChannel(name string)
	// LastWrite is when a segment was last written to the channel; false
	// once the channel is gone (closed by its publisher, or swept idle).
	LastWrite(name string) (time.Time, bool)
	ServeHTTP(w http.ResponseWriter, r *http.Request)
}

// LiveAdmission is what a live session needs of a checked payment beyond a
// batch job's Admission: credit to the stream's own manifest id, the
// balance rule, periodic debits and the /payment reply. The payment
// package's admission implements it; so does OffChain's.
type LiveAdmission interface {
	Admission
	// Credit is ProcessPayment(payment, mid): the tickets' EV goes to
	// (sender, mid) (server/ai_http.go:1065-1068, segment_rpc.go:263).
	Credit(ctx context.Context, mid string) error
	// Sufficient is true when the expected price is 0 or the balance of
	// (sender, mid) covers one ticket's EV (ai_http.go:1069-1072).
	Sufficient(mid string) bool
	// Priced is true when the payment's expected price is above 0: only
	// then a payment processor debits the stream (ai_http.go:1096-1114).
	Priced() bool
	// Debit charges units at the payment's expected price against (sender,
	// mid), or fails with "insufficient balance, mid=…, fee=…, balance=…"
	// and charges nothing (server/live_payment.go:156-176).
	Debit(mid string, units int64) error
	// ManifestID is the manifest id of the Livepeer-Segment header: the
	// stream's mid on a periodic payment (server/live_payment.go:72-74).
	ManifestID() string
	// PaymentResult is the body of a /payment reply: a protobuf
	// net.PaymentResult with fresh ticket params and the caller's auth
	// token (segment_rpc.go:247-273).
	PaymentResult(ctx context.Context) ([]byte, error)
}

// LiveConfig turns on live-video-to-video (nil Config.Live: not served).
type LiveConfig struct {
	// Channels is the trickle server, mounted at TrickleBasePath.
	Channels LiveChannels
	// RunnerHost, when set, replaces the host of the channel URLs given to
	// the runner (go-livepeer -liveAITrickleHostForRunner,
	// server/ai_http.go:1139-1142,1367-1378), for runners that cannot reach
	// the service URI (containers).
	RunnerHost string
	// PaymentInterval is how often a stream is debited while input
	// arrives (go-livepeer -livePaymentInterval, default 5 s).
	PaymentInterval time.Duration
	// Poll is how often a session looks at its input channel's last write
	// (debits, teardown); default 100 ms.
	Poll time.Duration
	// InputIdle closes a session whose input channel got no segment for
	// this long; default 5 min, the trickle server's own idle sweep.
	InputIdle time.Duration
	// HealthPoll is how often a borrowed live runner is asked for /health;
	// it goes back to the pool when it answers IDLE (go-livepeer: 5 s,
	// ai/worker/docker.go:44,601-690). Default 1 s.
	HealthPoll time.Duration
	// StartTimeout bounds the call that starts the runner; default 30 s.
	StartTimeout time.Duration
	// MaxBodyBytes bounds the start request's JSON body; default 64 KiB.
	MaxBodyBytes int64
	// NewMID returns a stream's manifest id; default 4 random bytes in
	// hex, as go-livepeer's core.RandomManifestID.
	NewMID func() string
	// Now is the clock of debits; default time.Now.
	Now func() time.Time
}

// RegisterFlags binds the live settings to flags.
func (c *LiveConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.RunnerHost, "liveAITrickleHostForRunner", "", "host[:port] that live runners use to reach this orchestrator's trickle channels, instead of the service URI's (go-livepeer's flag)")
	fs.DurationVar(&c.PaymentInterval, "livePaymentInterval", 5*time.Second, "how often a live stream is debited while its input arrives (go-livepeer's flag)")
	fs.DurationVar(&c.InputIdle, "live.input-idle", 5*time.Minute, "close a live stream whose input got no segment for this long")
	fs.DurationVar(&c.HealthPoll, "live.health-poll", time.Second, "how often a busy live runner is asked for /health; IDLE returns it to the pool")
}

// Validate rejects durations that cannot work, every problem at once.
func (c *LiveConfig) Validate() error {
	var errs []error
	if c.PaymentInterval < 0 || c.InputIdle < 0 || c.HealthPoll < 0 {
		errs = append(errs, errors.New("-livePaymentInterval, -live.input-idle and -live.health-poll must not be negative"))
	}
	if c.RunnerHost != "" && strings.ContainsAny(c.RunnerHost, "/?#@ ") {
		errs = append(errs, fmt.Errorf("-liveAITrickleHostForRunner %q: want host or host:port", c.RunnerHost))
	}
	return errors.Join(errs...)
}

func (c LiveConfig) withDefaults() LiveConfig {
	if c.PaymentInterval <= 0 {
		c.PaymentInterval = 5 * time.Second
	}
	if c.Poll <= 0 {
		c.Poll = 100 * time.Millisecond
	}
	if c.InputIdle <= 0 {
		c.InputIdle = 5 * time.Minute
	}
	if c.HealthPoll <= 0 {
		c.HealthPoll = time.Second
	}
	if c.StartTimeout <= 0 {
		c.StartTimeout = 30 * time.Second
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = 64 << 10
	}
	if c.NewMID == nil {
		c.NewMID = func() string {
			b := make([]byte, 4)
			_, _ = rand.Read(b)
			return hex.EncodeToString(b)
		}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// liveRequest is go-livepeer's LiveVideoToVideoParams
// (ai/worker/runner.gen.go:315-343), field for field; on the O → R hop
// every field is set and params stays null when the gateway sent null.
type liveRequest struct {
	ControlURL       *string         `json:"control_url,omitempty"`
	EventsURL        *string         `json:"events_url,omitempty"`
	GatewayRequestID *string         `json:"gateway_request_id,omitempty"`
	ManifestID       *string         `json:"manifest_id,omitempty"`
	ModelID          *string         `json:"model_id,omitempty"`
	Params           json.RawMessage `json:"params"`
	PublishURL       string          `json:"publish_url"`
	StreamID         *string         `json:"stream_id,omitempty"`
	SubscribeURL     string          `json:"subscribe_url"`
}

// liveResponse is LiveVideoToVideoResponse (runner.gen.go:345-364).
type liveResponse struct {
	ControlURL   *string `json:"control_url,omitempty"`
	EventsURL    *string `json:"events_url,omitempty"`
	ManifestID   *string `json:"manifest_id,omitempty"`
	PublishURL   string  `json:"publish_url"`
	RequestID    *string `json:"request_id,omitempty"`
	SubscribeURL string  `json:"subscribe_url"`
}

// live is the live-video-to-video side of a Server.
type live struct {
	s   *Server
	cfg LiveConfig
	log *slog.Logger

	mu       sync.Mutex
	sessions map[string]*liveSession
	closing  bool // set by close: no new goroutine starts
	wg       sync.WaitGroup
	stop     chan struct{}

	active   prometheus.Gauge
	payments *prometheus.CounterVec
	ended    *prometheus.CounterVec
}

// liveSession is one stream: its four channels, its payment and its runner.
type liveSession struct {
	mid, model string
	adm        LiveAdmission
	ctx        context.Context
	cancel     context.CancelFunc
	once       sync.Once
	closed     chan struct{}
}

func newLive(s *Server, cfg LiveConfig, reg prometheus.Registerer) *live {
	l := &live{
		s: s, cfg: cfg.withDefaults(), log: s.log, sessions: map[string]*liveSession{}, stop: make(chan struct{}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "orchestrator_live_sessions_active",
			Help: "Live-video-to-video streams with open trickle channels.",
		}),
		payments: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orchestrator_live_payments_total",
			Help: "Live payments by outcome: accepted, refused (POST /payment or the start request's payment refused), debited, insufficient (a debit the balance did not cover: the stream was closed).",
		}, []string{"outcome"}),
		ended: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orchestrator_live_sessions_ended_total",
			Help: "Live streams ended, by reason: input_closed, input_idle, insufficient_balance, runner_error, shutdown.",
		}, []string{"reason"}),
	}
	reg.MustRegister(l.active, l.payments, l.ended)
	return l
}

func (l *live) mount(mux *http.ServeMux) {
	mux.HandleFunc("POST /live-video-to-video", l.start)
	mux.HandleFunc("POST /payment", l.payment)
	mux.Handle(TrickleBasePath, l.cfg.Channels)
}

// close ends every stream (orchestrator shutdown) and waits for the
// sessions' goroutines.
func (l *live) close() {
	close(l.stop)
	l.mu.Lock()
	l.closing = true
	all := make([]*liveSession, 0, len(l.sessions))
	for _, ss := range l.sessions {
		all = append(all, ss)
	}
	l.mu.Unlock()
	for _, ss := range all {
		l.end(ss, "shutdown")
	}
	l.wg.Wait()
}

// Sessions is how many live streams are open.
func (s *Server) LiveSessions() int {
	if s.live == nil {
		return 0
	}
	s.live.mu.Lock()
	defer s.live.mu.Unlock()
	return len(s.live.sessions)
}

func (l *live) baseURL(r *http.Request) string {
	base := l.s.cfg.ServiceURI
	if base == "" {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		base = scheme + "://" + r.Host
	}
	return strings.TrimRight(base, "/")
}

// runnerURL is u with its host replaced by RunnerHost, when set.
func (l *live) runnerURL(u string) string {
	if l.cfg.RunnerHost == "" {
		return u
	}
	p, err := url.Parse(u)
	if err != nil {
		return u
	}
	p.Host = l.cfg.RunnerHost
	return p.String()
}

// hasCapacity is CheckAICapacity for a live model: an idle runner exists.
func (l *live) hasCapacity(model string) bool {
	for _, m := range l.s.runners.States() {
		if m.Pipeline.ID == livePipeline.ID && m.Model == model && m.InUse < m.Capacity {
			return true
		}
	}
	return false
}

// start is go-livepeer's StartLiveVideoToVideo (server/ai_http.go:996-1185),
// its steps in its order: decode (400) → capacity (503) → payment decode
// (402) → credentials (403) → ProcessPayment (400) → balance (400) → four
// channels → accounting → runner start (500, channels closed) → 200.
// Differences, on purpose: the body is bounded (413) and read under
// Config.BodyReadTimeout; a missing model_id is a 400 (go-livepeer
// dereferences it and panics); the runner is borrowed before the channels
// are made, so a lost race for the last runner is a 503, not a 500.
func (l *live) start(rw http.ResponseWriter, r *http.Request) {
	w := &timedWriter{ResponseWriter: rw, start: time.Now()}
	refuse := func(reason string, status int, msg string) {
		l.s.metrics.refused.WithLabelValues(livePipeline.Slug, reason).Inc()
		http.Error(w, msg, status)
	}
	defer func() {
		if w.status == 0 {
			w.status = http.StatusOK
		}
		l.s.metrics.requests.WithLabelValues(livePipeline.Slug, fmt.Sprint(w.status)).Inc()
		l.s.metrics.duration.WithLabelValues(livePipeline.Slug).Observe(time.Since(w.start).Seconds())
	}()
	limit := l.cfg.MaxBodyBytes
	if r.ContentLength > limit {
		refuse("too_large", http.StatusRequestEntityTooLarge, tooLarge(livePipeline, limit))
		return
	}
	b, err := l.s.readBody(w, r, limit)
	if err != nil {
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			refuse("too_large", http.StatusRequestEntityTooLarge, tooLarge(livePipeline, limit))
		case errors.Is(err, os.ErrDeadlineExceeded):
			refuse("timeout", http.StatusRequestTimeout, fmt.Sprintf("request body not received within %s", l.s.cfg.BodyReadTimeout))
		default:
			refuse("bad_request", http.StatusBadRequest, "could not read request body")
		}
		return
	}
	defer b.close()
	// 1. decode.
	var req liveRequest
	if err := json.NewDecoder(b.reader()).Decode(&req); err != nil {
		refuse("bad_request", http.StatusBadRequest, err.Error())
		return
	}
	if req.ModelID == nil {
		refuse("bad_request", http.StatusBadRequest, `missing model_id: name the live pipeline to run, e.g. "model_id":"noop"`)
		return
	}
	model := *req.ModelID
	streamID, gwReqID := r.Header.Get("streamID"), r.Header.Get("requestID")
	if req.GatewayRequestID != nil && *req.GatewayRequestID != "" {
		gwReqID = *req.GatewayRequestID
	}
	if req.StreamID != nil && *req.StreamID != "" {
		streamID = *req.StreamID
	}
	// 2. storage: this orchestrator keeps no per-stream storage.
	// 3. capacity.
	if !l.hasCapacity(model) {
		refuse("capacity", http.StatusServiceUnavailable, "insufficient capacity")
		return
	}
	// 4, 5. payment decode (402) and credentials (403).
	a, err := l.s.gate.Check(r, Job{Pipeline: livePipeline, Model: model})
	if err != nil {
		l.payments.WithLabelValues("refused").Inc()
		var ref *Refusal
		if errors.As(err, &ref) {
			refuse("gate", ref.Status, ref.Message)
			return
		}
		l.log.Error("live gate check failed", "err", err)
		refuse("gate", http.StatusInternalServerError, "payment check failed")
		return
	}
	adm, ok := a.(LiveAdmission)
	if !ok {
		refuse("gate", http.StatusInternalServerError, "this orchestrator's payment gate cannot take live payments")
		return
	}
	mid := l.cfg.NewMID()
	// 6, 7. ProcessPayment to (sender, mid), then the balance rule.
	if err := adm.Credit(r.Context(), mid); err != nil {
		l.payments.WithLabelValues("refused").Inc()
		var ref *Refusal
		if errors.As(err, &ref) {
			refuse("payment", ref.Status, ref.Message)
			return
		}
		refuse("payment", http.StatusBadRequest, err.Error())
		return
	}
	if !adm.Sufficient(mid) {
		l.payments.WithLabelValues("refused").Inc()
		refuse("payment", http.StatusBadRequest, "Insufficient balance")
		return
	}
	l.payments.WithLabelValues("accepted").Inc()
	lease, err := l.s.runners.Reserve(r.Context(), livePipeline, model)
	if err != nil {
		refuse("capacity", http.StatusServiceUnavailable, "insufficient capacity")
		return
	}
	// 8. four channels (ai_http.go:1075-1082).
	base := l.baseURL(r) + TrickleBasePath + mid
	names := []struct{ name, mime string }{
		{mid, "video/MP2T"}, {mid + "-out", "video/MP2T"},
		{mid + "-control", "application/json"}, {mid + "-events", "application/json"},
	}
	for i, c := range names {
		if err := l.cfg.Channels.CreateChannel(c.name, c.mime); err != nil {
			for _, made := range names[:i] {
				l.cfg.Channels.CloseChannel(made.name)
			}
			lease.Release()
			l.log.Error("live channel not created", "channel", c.name, "err", err)
			http.Error(w, "could not create trickle channels: "+err.Error(), http.StatusInternalServerError)
			return
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	ss := &liveSession{mid: mid, model: model, adm: adm, ctx: ctx, cancel: cancel, closed: make(chan struct{})}
	l.mu.Lock()
	if l.closing {
		l.mu.Unlock()
		cancel()
		for _, c := range names {
			l.cfg.Channels.CloseChannel(c.name)
		}
		lease.Release()
		refuse("capacity", http.StatusServiceUnavailable, "insufficient capacity: the orchestrator is shutting down")
		return
	}
	l.sessions[mid] = ss
	// 9. accounting: watch the input channel.
	l.wg.Add(1)
	l.active.Inc()
	l.mu.Unlock()
	go l.watch(ss)
	// 10. the runner, with the URL roles swapped (ai_http.go:1138-1157).
	pub, sub, ctl, ev := base, base+"-out", base+"-control", base+"-events"
	rctl, rev := l.runnerURL(ctl), l.runnerURL(ev)
	rreq := liveRequest{
		ControlURL: &rctl, EventsURL: &rev, GatewayRequestID: &gwReqID, ManifestID: &mid, ModelID: &model,
		Params: req.Params, PublishURL: l.runnerURL(sub), StreamID: &streamID, SubscribeURL: l.runnerURL(pub),
	}
	if err := l.startRunner(r.Context(), lease, rreq); err != nil {
		l.log.Warn("live runner start failed", "mid", mid, "model", model, "err", err)
		l.end(ss, "runner_error")
		lease.Release()
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	l.mu.Lock()
	if l.closing {
		l.mu.Unlock()
		lease.Release()
		http.Error(w, "the orchestrator is shutting down", http.StatusServiceUnavailable)
		return
	}
	l.wg.Add(1)
	l.mu.Unlock()
	go l.watchRunner(ss, lease)
	// 11. the gateway's URLs.
	out, _ := json.Marshal(liveResponse{PublishURL: pub, SubscribeURL: sub, ControlURL: &ctl, EventsURL: &ev, ManifestID: &mid})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(out)
	l.log.Info("live stream started", "mid", mid, "model", model, "stream_id", streamID, "took", time.Since(w.start))
}

// startRunner is worker.LiveVideoToVideo (ai/worker/worker.go:609-658):
// a 400/401/500 reply's detail.msg becomes "live-video-to-video container
// returned <code>: <msg>"; 422 carries the whole body. Any other non-200
// is an error too (go-livepeer's generated client would let it pass).
func (l *live) startRunner(ctx context.Context, lease Lease, req liveRequest) error {
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("live-video-to-video request: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, l.cfg.StartTimeout)
	defer cancel()
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(lease.URL(), "/")+"/"+livePipeline.Slug, strings.NewReader(string(body)))
	if err != nil {
		return fmt.Errorf("live-video-to-video request: %w", err)
	}
	hr.Header.Set("Content-Type", "application/json")
	if tok := lease.Token(); tok != "" {
		hr.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := l.s.client.Do(hr)
	if err != nil {
		return fmt.Errorf("live-video-to-video container unreachable: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		return nil
	}
	if resp.StatusCode == http.StatusUnprocessableEntity {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return fmt.Errorf("live-video-to-video container returned 422: %s", strings.TrimSpace(string(raw)))
	}
	return fmt.Errorf("live-video-to-video container returned %d: %s", resp.StatusCode, runnerErrorText(resp))
}

// watch is go-livepeer's in-process reader of the input channel
// (ai_http.go:1117-1136) and its LivePaymentProcessor
// (live_payment_processor.go:70-120): each new input segment runs the
// payment check, which debits at most once per PaymentInterval the pixels
// of the wall-clock time since the last billed instant (truncated; the
// instant advances by what was billed, so rounding carries forward). The
// session closes when the input channel is gone (the gateway's DELETE),
// idle past InputIdle, or a debit finds the balance short.
func (l *live) watch(ss *liveSession) {
	defer l.wg.Done()
	t := time.NewTicker(l.cfg.Poll)
	defer t.Stop()
	billed := l.cfg.Now()
	// seenAt is when, on the session's clock, the input last moved.
	seenAt := billed
	var seen time.Time
	for {
		select {
		case <-ss.closed:
			return
		case <-t.C:
		}
		lw, ok := l.cfg.Channels.LastWrite(ss.mid)
		if !ok {
			l.end(ss, "input_closed")
			return
		}
		now := l.cfg.Now()
		if lw.After(seen) {
			seen, seenAt = lw, now
			if ss.adm.Priced() && !billed.Add(l.cfg.PaymentInterval).After(now) {
				units := int64(float64(LivePixelsPerSecond) * now.Sub(billed).Seconds())
				if err := ss.adm.Debit(ss.mid, units); err != nil {
					l.payments.WithLabelValues("insufficient").Inc()
					l.log.Info("live stream closed", "mid", ss.mid, "err", err)
					l.end(ss, "insufficient_balance")
					return
				}
				l.payments.WithLabelValues("debited").Inc()
				billed = billed.Add(time.Duration(float64(units) / LivePixelsPerSecond * float64(time.Second)))
			}
		}
		if now.Sub(seenAt) > l.cfg.InputIdle {
			l.end(ss, "input_idle")
			return
		}
	}
}

// end is go-livepeer's closeSession: all four channels closed (waiting
// readers and writers get Lp-Trickle-Closed, later requests 404) and the
// session forgotten. The runner sees the end on its own subscriptions.
func (l *live) end(ss *liveSession, reason string) {
	ss.once.Do(func() {
		for _, n := range []string{ss.mid, ss.mid + "-out", ss.mid + "-control", ss.mid + "-events"} {
			l.cfg.Channels.CloseChannel(n)
		}
		ss.cancel()
		close(ss.closed)
		l.mu.Lock()
		delete(l.sessions, ss.mid)
		l.mu.Unlock()
		l.active.Dec()
		l.ended.WithLabelValues(reason).Inc()
	})
}

// watchRunner keeps the runner borrowed until its /health says IDLE, or
// fails twice in a row (go-livepeer destroys such a container), as
// go-livepeer returns a live container to its pool (docker.go:601-690).
func (l *live) watchRunner(ss *liveSession, lease Lease) {
	defer l.wg.Done()
	defer lease.Release()
	t := time.NewTicker(l.cfg.HealthPoll)
	defer t.Stop()
	fails := 0
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		st, err := l.health(lease)
		switch {
		case err != nil:
			if fails++; fails >= 2 {
				l.log.Warn("live runner health failed twice: returned to the pool", "mid", ss.mid, "err", err)
				return
			}
		case st == "IDLE":
			return
		default:
			fails = 0
		}
	}
}

func (l *live) health(lease Lease) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(lease.URL(), "/")+"/health", nil)
	if err != nil {
		return "", err
	}
	if tok := lease.Token(); tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := l.s.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var h struct {
		Status string `json:"status"`
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("health: %s", resp.Status)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&h); err != nil {
		return "", fmt.Errorf("health: %w", err)
	}
	return h.Status, nil
}

// payment is go-livepeer's Payment handler (server/segment_rpc.go:241-313):
// payment decode (402), credentials (403), ProcessPayment to the SegData's
// manifest id (400), then 200 with a protobuf net.PaymentResult. No body
// is read.
func (l *live) payment(w http.ResponseWriter, r *http.Request) {
	a, err := l.s.gate.Check(r, Job{Pipeline: livePipeline})
	if err != nil {
		l.payments.WithLabelValues("refused").Inc()
		var ref *Refusal
		if errors.As(err, &ref) {
			http.Error(w, ref.Message, ref.Status)
			return
		}
		l.log.Error("live payment check failed", "err", err)
		http.Error(w, "payment check failed", http.StatusInternalServerError)
		return
	}
	adm, ok := a.(LiveAdmission)
	if !ok {
		http.Error(w, "this orchestrator's payment gate cannot take live payments", http.StatusInternalServerError)
		return
	}
	out, err := adm.PaymentResult(r.Context())
	if err != nil {
		l.log.Error("payment result", "err", err)
		http.Error(w, "Internal Server Error", http.StatusInternalServerError)
		return
	}
	if err := adm.Credit(r.Context(), adm.ManifestID()); err != nil {
		l.payments.WithLabelValues("refused").Inc()
		var ref *Refusal
		if errors.As(err, &ref) {
			http.Error(w, ref.Message, ref.Status)
			return
		}
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	l.payments.WithLabelValues("accepted").Inc()
	_, _ = w.Write(out)
}

// Off-chain admissions take live streams for free, as go-livepeer without
// a price runs no payment processor.
func (offChainAdmission) Credit(context.Context, string) error          { return nil }
func (offChainAdmission) Sufficient(string) bool                        { return true }
func (offChainAdmission) Priced() bool                                  { return false }
func (offChainAdmission) Debit(string, int64) error                     { return nil }
func (offChainAdmission) ManifestID() string                            { return "" }
func (offChainAdmission) PaymentResult(context.Context) ([]byte, error) { return []byte{}, nil }
