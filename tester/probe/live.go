package probe

// The live-video-to-video probe (issue 16): a short live session started as
// go-livepeer's gateway starts one (gateway.StartLive), a synthetic MPEG-TS
// stream published over trickle, the transformed stream read back and
// matched frame by frame, one control update, keepalives, events read,
// periodic live payments, and the session ended by DELETE of the publish
// channel. Facts: conformance/testdata/go-livepeer-live/README.md
// (go-livepeer 176aa415c) and tester/README.md "Live video".

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/lpgauge/lpgauge/capability"
	"github.com/lpgauge/lpgauge/gateway"
	"github.com/lpgauge/lpgauge/gateway/trickle"
	"github.com/lpgauge/lpgauge/internal/results"
	"github.com/lpgauge/lpgauge/media/livets"
)

// LiveConfig shapes the live probe's stream. Zero fields take the defaults.
type LiveConfig struct {
	// Duration is how much stream is published (default 10 s).
	Duration time.Duration
	// FPS, Width and Height are the synthetic stream's (default 30 fps,
	// 128×64: small frames keep a probe's bytes and CPU low; live is billed
	// on a notional 1280×720×30 whatever is sent).
	FPS, Width, Height int
	// Segment is the stream time of one trickle segment (default 1 s, the
	// shortest go-livepeer's WHIP ingest cuts: LIVE_AI_MIN_SEG_DUR,
	// media/whip_server.go:201-207).
	Segment time.Duration
	// StallAfter is the output gap, while input flows, counted as a stall
	// (default 3 segments). go-livepeer's gateway waits 30 s without output
	// before it suspends an orchestrator (server/ai_live_video.go:257-262,
	// 383-405): longer than a whole probe. Its other slow-orchestrator rule
	// is more than 3 input segments in flight (:116-123), so 3 segments of
	// silence is the bound a gateway would already act on.
	StallAfter time.Duration
}

// Bounds of LiveConfig: a probe is short, small and cheap, yet long enough
// for a periodic payment (5 s) and a stall to show.
const (
	LiveMinDuration = 2 * time.Second
	LiveMaxDuration = 2 * time.Minute
	LiveMaxFPS      = 60
	LiveMaxWidth    = 1280
	LiveMaxHeight   = 720
	LiveMinSegment  = 100 * time.Millisecond
	LiveMaxSegment  = 10 * time.Second
)

// DefaultLiveConfig is what a tester probes with unless told otherwise.
func DefaultLiveConfig() LiveConfig {
	return LiveConfig{Duration: 10 * time.Second, FPS: 30, Width: 128, Height: 64, Segment: time.Second}
}

func (c *LiveConfig) defaults() {
	d := DefaultLiveConfig()
	if c.Duration <= 0 {
		c.Duration = d.Duration
	}
	if c.FPS <= 0 {
		c.FPS = d.FPS
	}
	if c.Width <= 0 {
		c.Width = d.Width
	}
	if c.Height <= 0 {
		c.Height = d.Height
	}
	if c.Segment <= 0 {
		c.Segment = d.Segment
	}
	if c.StallAfter <= 0 {
		c.StallAfter = 3 * c.Segment
	}
}

// Check says what is wrong with c (after defaults), for the tester's flags.
func (c LiveConfig) Check() error {
	c.defaults()
	switch {
	case c.Duration < LiveMinDuration || c.Duration > LiveMaxDuration:
		return fmt.Errorf("live stream length %s: want %s to %s", c.Duration, LiveMinDuration, LiveMaxDuration)
	case c.FPS > LiveMaxFPS:
		return fmt.Errorf("live frame rate %d: want 1 to %d", c.FPS, LiveMaxFPS)
	case c.Width%16 != 0 || c.Height%16 != 0 || c.Width > LiveMaxWidth || c.Height > LiveMaxHeight:
		return fmt.Errorf("live frame size %dx%d: want multiples of 16 (whole macroblocks) up to %dx%d", c.Width, c.Height, LiveMaxWidth, LiveMaxHeight)
	case c.Segment < LiveMinSegment || c.Segment > LiveMaxSegment || c.Segment > c.Duration:
		return fmt.Errorf("live segment %s: want %s to %s and at most the stream length", c.Segment, LiveMinSegment, LiveMaxSegment)
	case time.Duration(c.FPS)*c.Segment < time.Second:
		return fmt.Errorf("live segment %s at %d fps holds no frame", c.Segment, c.FPS)
	}
	return nil
}

// LivePayments pays a live session after its start: go-livepeer's periodic
// live payments (gateway.LivePayer). A paying Preparer sets it on the
// Preparation of a live job; nil means nothing to pay (off-chain, or no
// price).
type LivePayments interface {
	// Started gives O's mid and starts the billing clock.
	Started(mid string, now time.Time)
	// Due is the pixels a payment at now would pay; 0 means none is due.
	Due(now time.Time) int64
	// Pay sends one payment (POST <transcoder>/payment).
	Pay(ctx context.Context, client *http.Client, units int64) (int, error)
}

// LiveVideoToVideo probes the live-video-to-video pipeline. It is not one
// request and one answer: Prober.Run runs it as a live session (runLive).
// Build makes the start request; Validate is not used.
type LiveVideoToVideo struct{}

// Info implements Pipeline.
func (LiveVideoToVideo) Info() capability.Pipeline {
	return mustPipeline(capability.LiveVideoToVideo)
}

// livePrompts are the initial and updated params' prompts: the payload is
// opaque pipeline JSON (README section 4), shaped as
// messages/control_params_update.json.
var livePrompts = []string{"a watercolor city", "a charcoal harbour at dusk", "neon rain on glass", "a paper-cut forest"}

// liveIDs are the request and stream ids of a probe: like a gateway's
// (go-livepeer's request ids are 8 hex digits, core.RandomManifestID), from
// the seed, and with no tester marker.
func liveIDs(seed int64) (requestID, streamID string) {
	h := sha256.Sum256([]byte(fmt.Sprintf("live %d", seed)))
	return hex.EncodeToString(h[:4]), "str_" + hex.EncodeToString(h[4:10])
}

// liveParams are the start's params for seed; update are the control
// update's.
func liveParams(seed int64, update bool) map[string]any {
	i := int(uint64(seed) % uint64(len(livePrompts)))
	if update {
		i = (i + 1) % len(livePrompts)
	}
	return map[string]any{"prompt": livePrompts[i], "seed": int(uint64(seed)%1000) + 1}
}

// Build implements Pipeline: the start request's body and the initial
// payment's units (60 s of 1280×720×30, server/ai_process.go:1046).
func (LiveVideoToVideo) Build(model string, seed int64) (*Request, error) {
	rid, sid := liveIDs(seed)
	params := liveParams(seed, false)
	body, err := gateway.LiveStart{ModelID: model, Params: params, GatewayRequestID: rid, StreamID: sid}.Body()
	if err != nil {
		return nil, err
	}
	return &Request{Body: body, ContentType: "application/json", Params: params, Units: float64(gateway.LiveInitialPixels),
		Expect:           gateway.LiveStart{ModelID: model, Params: params, GatewayRequestID: rid, StreamID: sid},
		MaxResponseBytes: gateway.MaxLiveStartBody, MaxMediaBytes: liveMaxSegment}, nil
}

// Validate implements Pipeline; a live session is judged by runLive.
func (LiveVideoToVideo) Validate(context.Context, *Request, *Response, *Media) (float64, error) {
	return 0, errors.New("live-video-to-video is judged by the live session, not one answer")
}

// liveMaxSegment bounds one output segment we read: 1 s of 1280×720 I_PCM
// at 60 fps is ~80 MiB, far beyond; the default stream's is ~0.4 MiB. An
// honest answer to our stream is at most a few times the input.
const liveMaxSegment = 8 << 20

// LiveStartTimeoutSlack is room in a live probe's total for discovery and
// the start request (bounded at 5 s, gateway.LiveStartTimeout) and for
// ending the session.
const LiveStartTimeoutSlack = 10 * time.Second

// drainMax bounds the wait for output after the last input segment (at
// least 3 × StallAfter).
const drainMax = 10 * time.Second

// maxEventBytes bounds one event document.
const maxEventBytes = 64 << 10

// Live error codes (tester/README.md "Live video").
const (
	CodeLiveNoOutput       = "live_no_output"
	CodeLiveStalled        = "live_stalled"
	CodeLiveDropped        = "live_segments_dropped"
	CodeLiveUntransformed  = "live_untransformed"
	CodeLiveUndecodable    = "live_output_undecodable"
	CodeLiveClosed         = "live_session_closed"
	CodeLiveStartRefused   = "live_start_refused"
	CodeLiveStartInvalid   = "live_start_invalid"
	CodeLivePayRefused     = "live_payment_refused"
	CodeLiveStartPayRefuse = "live_start_payment_refused"
)

// runLive is Run for the live pipeline: discovery and the initial payment
// (the Preparer), the start request (timed as upload, server, download),
// then the session.
func (p *Prober) runLive(ctx context.Context, job Job, info capability.Pipeline, to Timeouts, r *results.Result) error {
	req, err := job.Pipeline.Build(job.Model, job.Seed)
	if err != nil {
		return &Error{Class: ClassTester, Code: "build_request", Message: err.Error(), Err: err}
	}
	cfg := p.cfg.Live
	stored := map[string]any{"params": req.Params, "probe_seed": job.Seed, "duration_ms": cfg.Duration.Milliseconds(),
		"fps": cfg.FPS, "width": cfg.Width, "height": cfg.Height, "segment_ms": cfg.Segment.Milliseconds()}
	if b, err := json.Marshal(stored); err == nil {
		r.InputParameters = string(b)
	}
	r.RequestBytes = int64(len(req.Body))
	base, err := url.Parse(strings.TrimRight(job.ServiceURI, "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return fail(ClassDiscovery, "bad_service_uri", "service URI %q is not an http(s) URL", job.ServiceURI)
	}

	var (
		prep    Preparation
		urls    gateway.LiveURLs
		startAt time.Time
		client  *http.Client
	)
	for attempt := 0; ; attempt++ {
		var tr *trace
		var transport *http.Transport
		prep, urls, startAt, tr, transport, err = p.startLive(ctx, job, info, to, req, base, r)
		if transport != nil {
			defer transport.CloseIdleConnections()
			client = &http.Client{Transport: transport, CheckRedirect: func(*http.Request, []*http.Request) error { return errRedirect }}
		}
		if err == nil {
			break
		}
		// Credentials or payment made from a reused session refused: our
		// stale state, not the orchestrator's fault (as for batch jobs in
		// run): forget the session and start once more.
		var se *gateway.LiveStartError
		if attempt == 0 && prep.Forget != nil && errors.As(err, &se) && (se.Status == http.StatusUnauthorized ||
			se.Status == http.StatusPaymentRequired || se.Status == http.StatusForbidden) {
			prep.Forget()
			r.StartedAt = time.Now()
			continue
		}
		if tr == nil {
			return err // classified by startLive
		}
		return classifyLiveStart(err, tr)
	}
	r.HTTPStatus = http.StatusOK
	if prep.Header.Get(gateway.PaymentHeader) != "" {
		r.Live.PaymentsOK++ // O took the initial payment: it answered 200 (server/ai_http.go:1060-1070)
	}
	s := &liveSession{cfg: cfg, client: client, urls: urls, pay: prep.Live, startAt: startAt, seed: job.Seed}
	return s.run(ctx, r)
}

// startLive prepares (discovery, initial payment) and sends the start
// request once. A nil trace means the failure is already classified (the
// Preparer's, a bad transcoder URI); otherwise err is the start's.
func (p *Prober) startLive(ctx context.Context, job Job, info capability.Pipeline, to Timeouts, req *Request, base *url.URL, r *results.Result) (
	prep Preparation, urls gateway.LiveURLs, startAt time.Time, tr *trace, transport *http.Transport, err error) {
	dstart := time.Now()
	prep, err = p.cfg.Preparer.Prepare(ctx, PrepareJob{
		Orchestrator: job.Orchestrator, ServiceURI: job.ServiceURI, Pipeline: info, Model: job.Model, Units: req.Units,
	})
	r.Discovery = prep.Discovery
	if r.Discovery == 0 && err != nil {
		r.Discovery = time.Since(dstart)
	}
	r.Warm = prep.Warm
	if err != nil {
		e := classifyPrepare(err)
		if ctx.Err() != nil && (e.Class == ClassDiscovery || e.Class == ClassNetwork) {
			e = &Error{Class: ClassTimeout, Code: "timeout_discovery", Message: e.Message, Err: err}
		}
		return prep, urls, startAt, nil, nil, e
	}
	transcoder := base.String()
	if prep.JobURI != "" {
		u, perr := url.Parse(strings.TrimRight(prep.JobURI, "/"))
		if perr != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return prep, urls, startAt, nil, nil, fail(ClassDiscovery, "bad_transcoder_uri", "advertised transcoder URI %q is not an http(s) URL", bounded([]byte(prep.JobURI), 100))
		}
		transcoder = u.String()
	}
	tr = &trace{}
	transport = p.transport(tr, to)
	// A session holds about six requests open at once (the publish and
	// control preconnects, the -out and -events GETs and their
	// preconnects, a payment): keep their connections, so no segment pays
	// a new connect (or TLS handshake) that a gateway would not.
	transport.MaxIdleConnsPerHost = 16
	client := &http.Client{Transport: transport, CheckRedirect: func(*http.Request, []*http.Request) error { return errRedirect }}
	// go-livepeer's first-segment clock starts just before the start
	// request is sent (server/ai_process.go:1053).
	startAt = time.Now()
	urls, err = gateway.StartLive(httptrace.WithClientTrace(ctx, tr.clientTrace()), client, transcoder, prep.Header, req.Expect.(gateway.LiveStart))
	tr.mu.Lock()
	tr.bodyDone = time.Now()
	tr.mu.Unlock()
	p.fillTimings(tr, r)
	return prep, urls, startAt, tr, transport, err
}

// classifyLiveStart classifies a failed start request: 503 insufficient
// capacity stays excused as for batch jobs; a refused payment (402, or
// 400 from ProcessPayment / "Insufficient balance", server/ai_http.go:
// 1051-1070) is the payment class; other refusals keep their status's
// class with code live_start_refused; a 200 a gateway cannot use is
// live_start_invalid.
func classifyLiveStart(err error, tr *trace) *Error {
	var se *gateway.LiveStartError
	switch {
	case errors.As(err, &se):
		e := classifyStatus(se.Status, string(bounded([]byte(se.Message), 300)))
		low := strings.ToLower(se.Message)
		switch {
		case e.Class == ClassCapacity:
		case se.Status == http.StatusPaymentRequired,
			se.Status == http.StatusBadRequest && (strings.Contains(low, "balance") || strings.Contains(low, "ticket") || strings.Contains(low, "price")):
			e.Class, e.Code = ClassPayment, CodeLiveStartPayRefuse
		case se.Status == http.StatusOK:
			e.Class, e.Code = ClassOrchestrator, CodeLiveStartInvalid
			e.Message = "start answered 200 without JSON: " + e.Message
		default:
			e.Code = CodeLiveStartRefused
		}
		return e
	case errors.Is(err, gateway.ErrLiveStartTooLarge):
		return &Error{Class: ClassInvalid, Code: "body_too_large", Status: http.StatusOK, Message: err.Error(), Err: err}
	case errors.Is(err, gateway.ErrLiveStartAnswer):
		return &Error{Class: ClassOrchestrator, Code: CodeLiveStartInvalid, Status: http.StatusOK, Message: err.Error(), Err: err}
	default:
		return classifyTransport(err, tr.phase())
	}
}

// liveSession is one live session after its start answer.
type liveSession struct {
	cfg     LiveConfig
	client  *http.Client
	urls    gateway.LiveURLs
	pay     LivePayments
	startAt time.Time
	seed    int64

	mu       sync.Mutex
	sentAt   []time.Time // input segment k: its publish began
	inAt     []time.Time // input segment k: published (O answered its POST: it holds every byte)
	outs     []liveOut
	outEnd   error // why the output reader stopped
	events   int
	payOK    uint32
	payNo    uint32
	payErr   string
	notify   chan struct{}
	inputErr error // why publishing stopped early
}

// liveOut is one output segment: when it was read whole, its seq and what
// it decoded to.
type liveOut struct {
	seq    int
	at     time.Time
	bytes  int
	frames []livets.Frame
	err    error
}

func (s *liveSession) poke() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// run publishes the stream and reads it back, then measures and judges.
func (s *liveSession) run(ctx context.Context, r *results.Result) error {
	s.notify = make(chan struct{}, 1)
	cfg := s.cfg
	perSeg := max(1, int(time.Duration(cfg.FPS)*cfg.Segment/time.Second))
	nseg := int((cfg.Duration + cfg.Segment - 1) / cfg.Segment)
	s.sentAt = make([]time.Time, nseg)
	s.inAt = make([]time.Time, nseg)
	if s.pay != nil {
		s.pay.Started(s.urls.ManifestID, time.Now())
	}

	rctx, stopReading := context.WithCancel(ctx)
	defer stopReading()
	var wg sync.WaitGroup
	// The output: subscribed from the live edge before any input, as
	// go-livepeer's gateway reads -out (server/ai_live_video.go:225-381).
	out := trickle.NewSubscriber(s.urls.Subscribe, s.client, -1)
	events := trickle.NewSubscriber(s.urls.Events, s.client, -1)
	wg.Add(2)
	go func() { defer wg.Done(); s.readOutput(rctx, out) }()
	go func() { defer wg.Done(); s.readEvents(rctx, events) }()

	// Control: the params update once, half way, and {"keep":"alive"}
	// every 10 s (server/ai_live_video.go:615,676-696).
	control := trickle.NewPublisher(s.urls.Control, s.client)
	update, _ := json.Marshal(liveParams(s.seed, true))
	var payWG sync.WaitGroup
	enc := livets.NewEncoder(livets.Format{Width: cfg.Width, Height: cfg.Height, FPS: cfg.FPS})
	pub := trickle.NewPublisher(s.urls.Publish, s.client)
	t0 := time.Now()
	nextKeepalive := t0.Add(10 * time.Second)
	delivered := 0
	for k := 0; k < nseg; k++ {
		// A segment goes out once its frames are "captured", one segment
		// after the previous, as a live encoder cuts them (go-livepeer's
		// WHIP segmenter cuts at 1 s or more, media/whip_server.go:
		// 201-207); so the runner, which O starts before answering, has a
		// segment's time to subscribe from the live edge.
		if !sleepUntil(ctx, t0.Add(time.Duration(k+1)*cfg.Segment)) {
			break
		}
		now := time.Now()
		// The payment check runs as each input segment starts
		// (server/ai_live_video.go:127-129), in the background.
		if s.pay != nil {
			if units := s.pay.Due(now); units > 0 {
				payWG.Add(1)
				go func() { defer payWG.Done(); s.payOnce(ctx, units) }()
			}
		}
		if k == nseg/2 {
			go s.writeControl(ctx, control, update)
		}
		if now.After(nextKeepalive) {
			nextKeepalive = nextKeepalive.Add(10 * time.Second)
			go s.writeControl(ctx, control, []byte(`{"keep":"alive"}`))
		}
		seg := enc.Segment(uint32(k*perSeg), perSeg)
		s.mu.Lock()
		s.sentAt[k] = now
		s.mu.Unlock()
		_, err := pub.Write(ctx, bytes.NewReader(seg))
		s.mu.Lock()
		if err != nil {
			s.inputErr = err
			s.mu.Unlock()
			break
		}
		s.inAt[k] = time.Now()
		delivered = k + 1
		s.mu.Unlock()
	}
	// Only delivered segments count: a publish error or the probe's
	// deadline may have stopped the stream early.
	s.mu.Lock()
	s.sentAt, s.inAt = s.sentAt[:delivered], s.inAt[:delivered]
	sent := delivered
	s.mu.Unlock()
	if ctx.Err() == nil {
		s.drain(ctx, perSeg, sent)
	}

	// The session ends as a gateway ends it: DELETE of the publish channel
	// (publisher.Close, server/ai_live_video.go:107-114) and of the control
	// channel (cleanupControl, server/ai_mediaserver.go:1258-1282).
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	_ = pub.Close(cctx)
	_ = control.Close(cctx)
	cancel()
	stopReading()
	out.Close()
	events.Close()
	wg.Wait()
	payWG.Wait()
	end := time.Now()

	s.mu.Lock()
	defer s.mu.Unlock()
	r.Live.Session = end.Sub(s.startAt)
	r.Live.PaymentsOK += s.payOK
	r.Live.PaymentsRefused = s.payNo
	err := s.judge(r, perSeg, end)
	if ctx.Err() != nil {
		// The probe's deadline (or the tester's stop) cut the session:
		// measures so far are kept, the verdict is the cut.
		return &Error{Class: ClassTimeout, Code: "timeout_live", Message: fmt.Sprintf(
			"the probe's deadline ended the session after %d of %d input segments", len(s.sentAt), nseg), Err: ctx.Err()}
	}
	return err
}

// sleepUntil waits until t or ctx's end; false if ctx ended.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func (s *liveSession) payOnce(ctx context.Context, units int64) {
	_, err := s.pay.Pay(ctx, s.client, units)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.payNo++
		if s.payErr == "" {
			s.payErr = err.Error()
		}
		return
	}
	s.payOK++
}

func (s *liveSession) writeControl(ctx context.Context, c *trickle.Publisher, msg []byte) {
	// go-livepeer retries a params write 3 times, 100 ms apart
	// (server/ai_live_video.go:658-674); a lost control message is not
	// judged (the output carries no sign of params), only sent.
	for i := 0; i < 3; i++ {
		if _, err := c.Write(ctx, bytes.NewReader(msg)); err == nil || ctx.Err() != nil {
			return
		}
		if !sleepUntil(ctx, time.Now().Add(100*time.Millisecond)) {
			return
		}
	}
}

// readOutput reads -out until it ends: EOS or 404 stop, a 470 jumps to the
// latest seq (server/ai_live_video.go:297-301), other errors are retried
// 300 ms apart while the subscriber allows (it gives up after 5 in a row).
func (s *liveSession) readOutput(ctx context.Context, sub *trickle.Subscriber) {
	for {
		seg, err := sub.Read(ctx)
		if err != nil {
			var sne *trickle.SequenceNonexistentError
			switch {
			case errors.As(err, &sne) && sne.Latest >= 0:
				sub.SetSeq(sne.Latest)
				continue
			case ctx.Err() != nil:
				return
			case errors.Is(err, trickle.ErrEOS), errors.Is(err, trickle.ErrStreamNotFound), strings.Contains(err.Error(), "failed GETs in a row"):
				s.mu.Lock()
				s.outEnd = err
				s.mu.Unlock()
				s.poke()
				return
			}
			if !sleepUntil(ctx, time.Now().Add(300*time.Millisecond)) {
				return
			}
			continue
		}
		b, rerr := readCapped(seg.Body, liveMaxSegment)
		_ = seg.Body.Close()
		at := time.Now()
		if len(b) == 0 && rerr == nil {
			continue // a segment closed before any byte: nothing came
		}
		o := liveOut{seq: seg.Seq, at: at, bytes: len(b), err: rerr}
		if rerr == nil {
			o.frames, o.err = livets.Decode(b)
		}
		s.mu.Lock()
		s.outs = append(s.outs, o)
		s.mu.Unlock()
		s.poke()
	}
}

// readEvents reads -events: one JSON document per segment, the session's
// heartbeat (server/ai_live_video.go:715-723,779-798). They are counted,
// not judged: go-livepeer's 30 s rule is longer than a probe.
func (s *liveSession) readEvents(ctx context.Context, sub *trickle.Subscriber) {
	for {
		seg, err := sub.Read(ctx)
		if err != nil {
			var sne *trickle.SequenceNonexistentError
			if errors.As(err, &sne) && sne.Latest >= 0 {
				sub.SetSeq(sne.Latest)
				continue
			}
			if ctx.Err() != nil || errors.Is(err, trickle.ErrEOS) || errors.Is(err, trickle.ErrStreamNotFound) ||
				!sleepUntil(ctx, time.Now().Add(300*time.Millisecond)) {
				return
			}
			continue
		}
		b, _ := readCapped(seg.Body, maxEventBytes)
		_ = seg.Body.Close()
		if json.Valid(b) {
			s.mu.Lock()
			s.events++
			s.mu.Unlock()
		}
	}
}

// drain waits, after the last input segment, for the output of every
// input segment, until the output ends, or until no output has come for
// StallAfter since the later of the last output and the last input; and
// never past drainMax after the last input (an orchestrator that keeps
// publishing must not hold the probe).
func (s *liveSession) drain(ctx context.Context, perSeg, sent int) {
	s.mu.Lock()
	var hard time.Time
	if n := len(s.sentAt); n > 0 {
		hard = s.sentAt[n-1].Add(max(drainMax, 3*s.cfg.StallAfter))
	}
	s.mu.Unlock()
	for {
		s.mu.Lock()
		answered := answeredSegments(s.outs, perSeg)
		last := time.Time{}
		if n := len(s.sentAt); n > 0 {
			last = s.sentAt[n-1]
		}
		if n := len(s.outs); n > 0 && s.outs[n-1].at.After(last) {
			last = s.outs[n-1].at
		}
		done := len(answered) >= sent || s.outEnd != nil
		s.mu.Unlock()
		if done {
			return
		}
		until := last.Add(s.cfg.StallAfter)
		if !hard.IsZero() && until.After(hard) {
			until = hard
		}
		wait := time.Until(until)
		if wait <= 0 {
			return
		}
		tm := time.NewTimer(wait)
		select {
		case <-s.notify:
		case <-tm.C:
		case <-ctx.Done():
		}
		tm.Stop()
		if ctx.Err() != nil {
			return
		}
	}
}

// answeredSegments is the set of input segments at least one of whose
// frames came back (transformed or not).
func answeredSegments(outs []liveOut, perSeg int) map[int]bool {
	m := map[int]bool{}
	for _, o := range outs {
		for _, f := range o.frames {
			if f.Intact {
				m[int(f.Number)/perSeg] = true
			}
		}
	}
	return m
}

// judge fills r.Live from what was sent and read, and classifies the
// session. end is when the session ended (the drain's end).
func (s *liveSession) judge(r *results.Result, perSeg int, end time.Time) error {
	cfg := s.cfg
	lv := &r.Live
	sent := len(s.sentAt)
	lv.FramesIn = uint32(sent * perSeg)
	lv.InFPS = float64(cfg.FPS)

	var (
		lat           []time.Duration
		seen          = map[uint32]bool{}
		maxNum        = -1
		minNum        = -1
		untransformed int
		undecodable   int
		outBytes      int64
		decoded       int
		firstFrameAt  time.Time
	)
	for _, o := range s.outs {
		outBytes += int64(o.bytes)
		if o.err != nil && len(o.frames) == 0 {
			undecodable++
		}
		for _, f := range o.frames {
			if !f.Intact {
				continue
			}
			decoded++
			n := int(f.Number)
			k := n / perSeg
			if k >= sent || seen[f.Number] {
				continue // not a frame we sent, or a duplicate
			}
			if !f.Transformed {
				untransformed++
				continue
			}
			seen[f.Number] = true
			if n < maxNum {
				lv.SegmentsReorder++
			}
			if firstFrameAt.IsZero() {
				firstFrameAt = o.at
			}
			maxNum = max(maxNum, n)
			if minNum < 0 || n < minNum {
				minNum = n
			}
			// In: the frame's segment is published (O answered its POST,
			// so it holds every byte, as a runner's latency counts from
			// the input's last byte); out: the transformed frame's segment
			// is read whole. Our own upload is not the orchestrator's.
			lat = append(lat, o.at.Sub(s.inAt[k]))
		}
	}
	r.ResponseBytes = outBytes
	lv.FramesOut = uint32(len(lat))
	if len(s.outs) > 0 {
		lv.FirstSegment = s.outs[0].at.Sub(s.startAt)
	}
	if !firstFrameAt.IsZero() {
		lv.FirstFrame = firstFrameAt.Sub(s.startAt)
	}
	if len(lat) > 1 && maxNum > minNum {
		// Output frames per second of stream time: the frames matched over
		// the span of frame numbers they cover, at the input's rate.
		lv.OutFPS = float64(cfg.FPS) * float64(len(lat)-1) / float64(maxNum-minNum)
	}
	if len(lat) > 0 {
		slices.Sort(lat)
		lv.LatencyP50, lv.LatencyP95, lv.LatencyP99 = quantile(lat, 0.50), quantile(lat, 0.95), quantile(lat, 0.99)
	}

	// Lost: output seq numbers skipped, or input segments none of whose
	// frames came back (a runner that drops a segment publishes the next
	// under the next seq, so only the frames show it).
	answered := answeredSegments(s.outs, perSeg)
	var seqs []int
	for _, o := range s.outs {
		seqs = append(seqs, o.seq)
	}
	sort.Ints(seqs)
	seqs = slices.Compact(seqs)
	seqGaps := 0
	if len(seqs) > 1 {
		seqGaps = seqs[len(seqs)-1] - seqs[0] + 1 - len(seqs)
	}
	unanswered := 0
	lastAnswered := -1
	for k := 0; k < sent; k++ {
		if answered[k] {
			lastAnswered = k
		} else {
			unanswered++
		}
	}
	if len(s.outs) > 0 {
		lv.SegmentsLost = uint32(max(seqGaps, unanswered))
	}

	// Stalls: output gaps over StallAfter while input flowed: between two
	// output segments with an input segment sent in between, and at the
	// end when input went on for over StallAfter after the last output.
	var tailStall bool
	for i := 1; i < len(s.outs); i++ {
		a, b := s.outs[i-1].at, s.outs[i].at
		if gap := b.Sub(a); gap > cfg.StallAfter && s.inputBetween(a, b) {
			lv.Stalls++
			lv.StallTotal += gap
			lv.StallMax = max(lv.StallMax, gap)
		}
	}
	if n := len(s.outs); n > 0 && sent > 0 {
		lastOut := s.outs[n-1].at
		if s.sentAt[sent-1].Sub(lastOut) > cfg.StallAfter && lastAnswered < sent-1 {
			gap := end.Sub(lastOut)
			lv.Stalls++
			lv.StallTotal += gap
			lv.StallMax = max(lv.StallMax, gap)
			tailStall = true
		}
	}

	// The verdict, most telling first.
	closed := s.inputErr != nil && (errors.Is(s.inputErr, trickle.ErrStreamNotFound) || errors.Is(s.inputErr, trickle.ErrEOS))
	switch {
	case s.payNo > 0 && closed:
		return &Error{Class: ClassPayment, Code: CodeLivePayRefused, Message: fmt.Sprintf(
			"the orchestrator refused %d of %d live payments (%s) and closed the session after %d of %d input segments",
			s.payNo, s.payNo+s.payOK, s.payErr, sent, int((cfg.Duration+cfg.Segment-1)/cfg.Segment))}
	case len(s.outs) == 0 && closed:
		return &Error{Class: ClassOrchestrator, Code: CodeLiveClosed, Message: fmt.Sprintf(
			"the orchestrator closed the session after %d input segments with no output: %v", sent, s.inputErr)}
	case len(s.outs) == 0:
		return &Error{Class: ClassOrchestrator, Code: CodeLiveNoOutput, Message: fmt.Sprintf(
			"no output segment on %s within %s of the last of %d input segments (%v)", s.urls.Subscribe, cfg.StallAfter, sent, s.outEndText())}
	case decoded == 0 && undecodable > 0:
		return &Error{Class: ClassInvalid, Code: CodeLiveUndecodable, Message: fmt.Sprintf(
			"%d output segments, none decodes as MPEG-TS H.264 frames of our stream", undecodable)}
	case closed:
		return &Error{Class: ClassOrchestrator, Code: CodeLiveClosed, Message: fmt.Sprintf(
			"the orchestrator closed the session after %d input segments: %v", sent, s.inputErr)}
	case lv.Stalls > 0:
		how := "mid-stream"
		if tailStall {
			how = "and never resumed"
		}
		return &Error{Class: ClassOrchestrator, Code: CodeLiveStalled, Message: fmt.Sprintf(
			"output stopped while input flowed %s: %d stalls over %s, longest %s, %s in all",
			how, lv.Stalls, cfg.StallAfter, lv.StallMax.Round(time.Millisecond), lv.StallTotal.Round(time.Millisecond))}
	case untransformed > 0:
		return &Error{Class: ClassInvalid, Code: CodeLiveUntransformed, Message: fmt.Sprintf(
			"%d output frames are our input frames untransformed (%d transformed)", untransformed, lv.FramesOut)}
	case lv.SegmentsLost > 0:
		return &Error{Class: ClassOrchestrator, Code: CodeLiveDropped, Message: fmt.Sprintf(
			"%d of %d input segments never came back (output seqs %d to %d, %d skipped)", unanswered, sent,
			seqs[0], seqs[len(seqs)-1], seqGaps)}
	case s.payNo > 0:
		return &Error{Class: ClassPayment, Code: CodeLivePayRefused, Message: fmt.Sprintf(
			"the orchestrator refused %d of %d live payments: %s", s.payNo, s.payNo+s.payOK, s.payErr)}
	}
	return nil
}

func (s *liveSession) outEndText() string {
	if s.outEnd != nil {
		return "output channel: " + s.outEnd.Error()
	}
	return "output channel open, silent"
}

// inputBetween says an input segment was sent in (a, b).
func (s *liveSession) inputBetween(a, b time.Time) bool {
	for _, t := range s.sentAt {
		if t.After(a) && t.Before(b) {
			return true
		}
	}
	return false
}

// quantile is the nearest-rank quantile of sorted d.
func quantile(d []time.Duration, q float64) time.Duration {
	i := int(q*float64(len(d))+0.999999) - 1
	return d[min(max(i, 0), len(d)-1)]
}
