// Package probe runs one probe: one timed AI job against one orchestrator for
// one pipeline and model, with per-phase timings taken from net/http/httptrace
// on the monotonic clock, bounded reads, output validation and a classified
// error. It knows nothing of rounds, schedules or storage.
package probe

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lpgauge/lpgauge/capability"
	"github.com/lpgauge/lpgauge/internal/results"
)

// Phase names a stage of a probe; a timeout's code names the phase reached.
type Phase string

const (
	PhaseDiscovery Phase = "discovery"
	PhaseConnect   Phase = "connect"
	PhaseTLS       Phase = "tls"
	PhaseUpload    Phase = "upload"
	PhaseServer    Phase = "server"
	PhaseDownload  Phase = "download"
	PhaseMedia     Phase = "media"
)

// WorkerAuth is the protocol marker go-livepeer gateways send; with it an
// orchestrator returns result media as URLs to fetch instead of inline data.
const WorkerAuth = "Livepeer-AI-Worker-1.0"

// Preparer is the seam where the Livepeer wire protocol plugs in. Given the
// job about to run, it talks to the orchestrator (GetOrchestrator over gRPC,
// ticket parameters, prices) and returns the headers the AI request must carry
// (Livepeer-Payment, Livepeer-Segment) and how long discovery took.
//
// Implementations must honour ctx's deadline, be safe for concurrent use, and
// wrap their errors with ErrDiscovery, ErrPayment, ErrCredentials or
// ErrTesterSide (or return a *Error) so the failure is classified; anything
// else counts as a discovery failure. A fault on the tester's side (no
// deposit, price above our ceiling, our RPC down) must wrap ErrTesterSide:
// it is then recorded as excused and never scored against the orchestrator.
type Preparer interface {
	Prepare(ctx context.Context, job PrepareJob) (Preparation, error)
}

// PrepareJob is what a Preparer needs to know about the probe.
type PrepareJob struct {
	Orchestrator string              // 0x address
	ServiceURI   string              // https://host:port
	Pipeline     capability.Pipeline // capability id, name, slug
	Model        string
	// Units is what the job will be billed for (pixels, tokens, ms of audio),
	// so a payment can be sized.
	Units float64
}

// Preparation is what a Preparer hands back.
type Preparation struct {
	Header    http.Header   // added to the AI request (nil for off-chain)
	Discovery time.Duration // GetOrchestrator round trip (0 when none)
	Warm      bool          // the orchestrator advertised the model warm
	// Forget, set when the terms came from a cached session, drops that
	// session: a refusal of its credentials or payment is retried once
	// with fresh ones instead of blamed on the orchestrator.
	Forget func()
	// JobURI, when set, is where the job is sent instead of the service
	// URI: the orchestrator's advertised transcoder URI
	// (OrchestratorInfo.transcoder), as go-livepeer gateways send jobs.
	// Result media on its host is the orchestrator's own.
	JobURI string
	// Accepted, when set, is called once the orchestrator answers the job
	// with 200, so the payment's change stays as the gateway's credit.
	Accepted func()
	// Live, for a live-video-to-video job, makes the session's periodic
	// payments (nil: none, as when off-chain or free). Header then holds
	// the start request's initial payment.
	Live LivePayments
}

// OffChain is the Preparer for orchestrators reached without the protocol
// (a static list, the reference orchestrator in its off-chain mode): no
// headers, no discovery.
type OffChain struct{}

// Prepare implements Preparer.
func (OffChain) Prepare(context.Context, PrepareJob) (Preparation, error) {
	return Preparation{}, nil
}

// Pipeline is one AI pipeline's half of a probe: the request to send and the
// judgement of what came back. Each pipeline lives in its own file.
type Pipeline interface {
	// Info names the pipeline (capability id, human name, URL slug).
	Info() capability.Pipeline
	// Build makes the request for model; seed varies prompts and sizes from
	// probe to probe, deterministically.
	Build(model string, seed int64) (*Request, error)
	// Validate judges a 200 response, fetching result media through m, and
	// returns the units produced (pixels, tokens, seconds of audio). A wrong
	// output is an *Error of class invalid_output.
	Validate(ctx context.Context, req *Request, resp *Response, m *Media) (units float64, err error)
}

// Request is a built AI request.
type Request struct {
	Body        []byte
	ContentType string
	Params      map[string]any // stored as input_parameters (JSON); no binary assets
	Units       float64        // billed units, for the Preparer
	Expect      any            // pipeline-private expectations for Validate
	// MaxResponseBytes and MaxMediaBytes bound an honest answer to this
	// very request (its sizes, frames, seconds, max_tokens), with room to
	// spare: the response body, and each media file. Every pipeline sets
	// both. The prober's general caps (16 MiB / 64 MiB, sized for the
	// largest pipeline) still apply on top. Each probe may hold its caps
	// while it reads, so with dozens of hostile orchestrators probed at once
	// these bounds, not the general caps, set the tester's memory.
	MaxResponseBytes int64
	MaxMediaBytes    int64
}

// Response is what the orchestrator answered.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
	// Events holds the data payloads of a text/event-stream answer, in order
	// (Body is then empty); FirstEvent is when the first one arrived.
	Events     [][]byte
	FirstEvent time.Duration // since the request was written; 0 if none
}

// Timeouts bound each phase of a probe.
type Timeouts struct {
	Connect time.Duration // TCP dial (with DNS)
	TLS     time.Duration // TLS handshake
	Server  time.Duration // request written → first response byte (queue + inference)
	Total   time.Duration // the whole probe, discovery to validation
}

// DefaultTimeouts suit a warm GPU orchestrator; cold models need longer Server.
func DefaultTimeouts() Timeouts {
	return Timeouts{Connect: 10 * time.Second, TLS: 10 * time.Second, Server: 2 * time.Minute, Total: 3 * time.Minute}
}

// Config configures a Prober.
type Config struct {
	Preparer Preparer // nil means OffChain
	Timeouts Timeouts
	// MaxResponseBytes caps the AI response body and MaxMediaBytes each media
	// file: a hostile orchestrator's endless body costs us at most this much.
	MaxResponseBytes int64
	MaxMediaBytes    int64
	// Dial replaces the TCP dialer (the tester's simulated-RTT dialer); nil
	// means a plain net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// VerifyTLS checks orchestrator certificates. Off by default because
	// go-livepeer orchestrators serve self-signed certificates and stock
	// gateways do not verify them either.
	VerifyTLS bool
	// StallAfter is how long a job's progress stream (orchestrators that
	// offer one, progress.go) may show no progress before the probe fails
	// as orchestrator_error/stalled. Default DefaultStallAfter.
	StallAfter time.Duration
	// Live shapes the live-video-to-video probe's stream (live.go).
	Live LiveConfig
}

func (c *Config) defaults() {
	if c.Preparer == nil {
		c.Preparer = OffChain{}
	}
	d := DefaultTimeouts()
	if c.Timeouts.Connect <= 0 {
		c.Timeouts.Connect = d.Connect
	}
	if c.Timeouts.TLS <= 0 {
		c.Timeouts.TLS = d.TLS
	}
	if c.Timeouts.Server <= 0 {
		c.Timeouts.Server = d.Server
	}
	if c.Timeouts.Total <= 0 {
		c.Timeouts.Total = d.Total
	}
	if c.MaxResponseBytes <= 0 {
		c.MaxResponseBytes = 16 << 20
	}
	if c.MaxMediaBytes <= 0 {
		c.MaxMediaBytes = 64 << 20
	}
	if c.StallAfter <= 0 {
		c.StallAfter = DefaultStallAfter
	}
	c.Live.defaults()
}

// ignoreResponseLimits is set only in builds with -tags faultinject
// (faultinject.go), so the fault suite can show its memory check catches
// the general caps (Request.MaxResponseBytes and MaxMediaBytes ignored).
var ignoreResponseLimits bool

// Prober runs probes. It is safe for concurrent use.
type Prober struct {
	cfg    Config
	offers sync.Map // orchestrators whose last job answer offered the progress stream (progress.go)
}

// New returns a Prober.
func New(cfg Config) *Prober {
	cfg.defaults()
	return &Prober{cfg: cfg}
}

// Job is one probe to run.
type Job struct {
	Orchestrator string
	ServiceURI   string
	Pipeline     Pipeline
	Model        string
	Seed         int64
	// Timeouts overrides the prober's for this job where set (per-pipeline timeouts).
	Timeouts Timeouts
}

// trace collects httptrace events; callbacks may fire on transport goroutines.
type trace struct {
	mu                    sync.Mutex
	dialStart, dialDone   time.Time
	tlsStart, tlsDone     time.Time
	gotConn               time.Time
	reused                bool
	wroteHeaders, wrote   time.Time
	firstByte             time.Time
	bodyDone              time.Time
	tlsDoneErr, dialFails int
	runAt                 time.Time // the progress stream's first progress event: the queue ended
}

func (t *trace) clientTrace() *httptrace.ClientTrace {
	now := func(f func(time.Time)) { t.mu.Lock(); f(time.Now()); t.mu.Unlock() }
	return &httptrace.ClientTrace{
		GotConn: func(i httptrace.GotConnInfo) {
			now(func(n time.Time) { t.gotConn, t.reused = n, i.Reused })
		},
		TLSHandshakeStart: func() { now(func(n time.Time) { t.tlsStart = n }) },
		TLSHandshakeDone: func(_ tls.ConnectionState, err error) {
			now(func(n time.Time) {
				t.tlsDone = n
				if err != nil {
					t.tlsDoneErr++
				}
			})
		},
		WroteHeaders: func() { now(func(n time.Time) { t.wroteHeaders = n }) },
		// WroteRequest can fire more than once when the transport retries;
		// the last one is the request that was answered.
		// A failed write (the peer stopped reading) is not a written request.
		WroteRequest: func(i httptrace.WroteRequestInfo) {
			if i.Err == nil {
				now(func(n time.Time) { t.wrote = n })
			}
		},
		GotFirstResponseByte: func() { now(func(n time.Time) { t.firstByte = n }) },
	}
}

// phase reports how far the exchange got, for naming a timeout.
func (t *trace) phase() Phase {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case !t.bodyDone.IsZero():
		return PhaseMedia
	case !t.firstByte.IsZero():
		return PhaseDownload
	case !t.wrote.IsZero():
		return PhaseServer
	case !t.gotConn.IsZero():
		return PhaseUpload
	case !t.tlsStart.IsZero():
		return PhaseTLS
	default:
		return PhaseConnect
	}
}

func span(a, b time.Time) time.Duration {
	if a.IsZero() || b.IsZero() || b.Before(a) {
		return 0
	}
	return b.Sub(a)
}

// Run executes one probe and returns its measurement as a Result carrying
// timings, outcome and error. Identity fields (probe id, round, region,
// tester) are the caller's to set. Run never panics on hostile input and
// returns within the job's total timeout (plus scheduling slack).
func (p *Prober) Run(ctx context.Context, job Job) results.Result {
	to := p.cfg.Timeouts
	if job.Timeouts.Connect > 0 {
		to.Connect = job.Timeouts.Connect
	}
	if job.Timeouts.TLS > 0 {
		to.TLS = job.Timeouts.TLS
	}
	if job.Timeouts.Server > 0 {
		to.Server = job.Timeouts.Server
	}
	if job.Timeouts.Total > 0 {
		to.Total = job.Timeouts.Total
	}
	info := job.Pipeline.Info()
	r := results.Result{
		Orchestrator: strings.ToLower(job.Orchestrator),
		ServiceURI:   job.ServiceURI,
		Pipeline:     info.Name,
		Model:        job.Model,
		StartedAt:    time.Now(),
	}
	_, live := job.Pipeline.(LiveVideoToVideo)
	if need := p.cfg.Live.Duration + drainMax + 2*LiveStartTimeoutSlack; live && to.Total < need {
		// A live probe lasts its stream: a total shorter than the stream
		// and its bounded wait for output would cut every session.
		to.Total = need
	}
	ctx, cancel := context.WithTimeout(ctx, to.Total)
	defer cancel()

	var (
		m   *Media
		err error
	)
	if live {
		err = p.runLive(ctx, job, info, to, &r)
	} else {
		err = p.run(ctx, job, info, to, &r, &m)
	}
	if m != nil {
		r.Media = m.elapsed
		r.ResponseBytes += m.bytes
	}
	// StartedAt keeps the monotonic reading (UTC only when stored); run
	// moves it when it starts over with a fresh session.
	r.Wall = time.Since(r.StartedAt)
	// The job as a gateway with a live session sees it: a go-livepeer
	// gateway pays discovery once per session (the auth token is valid 30
	// minutes, go-livepeer core/orchestrator.go authTokenValidPeriod) and
	// keeps its connection alive, so neither discovery nor connect/TLS is
	// part of the job's round trip; both stay stored in their own columns.
	r.Total = r.Upload + r.Server + r.Download + r.Media
	if live {
		// A live row's round trip is the time to the first output segment
		// (internal/results Live).
		r.Total = r.Live.FirstSegment
	}
	if err != nil {
		var e *Error
		if !errors.As(err, &e) {
			e = &Error{Class: ClassTester, Code: "internal", Message: err.Error(), Err: err}
		}
		r.Outcome = e.Outcome()
		r.ErrorClass, r.ErrorCode, r.ErrorMessage = string(e.Class), e.Code, e.Message
		if e.Status != 0 {
			r.HTTPStatus = e.Status
		}
		return r
	}
	r.Outcome = results.Success
	return r
}

func (p *Prober) run(ctx context.Context, job Job, info capability.Pipeline, to Timeouts, r *results.Result, mOut **Media) error {
	req, err := job.Pipeline.Build(job.Model, job.Seed)
	if err != nil {
		return &Error{Class: ClassTester, Code: "build_request", Message: err.Error(), Err: err}
	}
	// The probe's corpus seed is stored with its parameters (never sent):
	// with it the exact input can be rebuilt from the row.
	stored := make(map[string]any, len(req.Params)+1)
	for k, v := range req.Params {
		stored[k] = v
	}
	stored["probe_seed"] = job.Seed
	if params, err := json.Marshal(stored); err == nil {
		r.InputParameters = string(params)
	}
	r.RequestBytes = int64(len(req.Body))

	base, err := url.Parse(strings.TrimRight(job.ServiceURI, "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return fail(ClassDiscovery, "bad_service_uri", "service URI %q is not an http(s) URL", job.ServiceURI)
	}

	sent, err := p.send(ctx, job, info, to, req, base, r)
	// Credentials or payment made from a reused session refused: the
	// orchestrator may have restarted with a new secret since we cached its
	// GetOrchestrator answer. That is our stale state, not its fault: forget
	// the session and send once more with a fresh one, timed from the new
	// start (the refusal came before any inference).
	if err == nil && sent.prep.Forget != nil && (sent.resp.StatusCode == http.StatusUnauthorized ||
		sent.resp.StatusCode == http.StatusPaymentRequired || sent.resp.StatusCode == http.StatusForbidden) {
		_ = sent.resp.Body.Close()
		sent.transport.CloseIdleConnections()
		sent.prep.Forget()
		r.StartedAt = time.Now()
		sent, err = p.send(ctx, job, info, to, req, base, r)
	}
	if err != nil {
		return err
	}
	resp, client, tr := sent.resp, sent.client, sent.tr
	defer sent.transport.CloseIdleConnections()
	defer resp.Body.Close()
	r.HTTPStatus = resp.StatusCode
	if resp.StatusCode == http.StatusOK && sent.prep.Accepted != nil {
		sent.prep.Accepted()
	}
	if ms, err := strconv.ParseFloat(resp.Header.Get("X-Processing-Time-Ms"), 64); err == nil && ms > 0 {
		r.OrchProcessing = time.Duration(ms * float64(time.Millisecond))
	}
	timing := p.noteTiming(job, resp.Header)

	bodyMax, mediaMax := p.cfg.MaxResponseBytes, p.cfg.MaxMediaBytes
	if !ignoreResponseLimits {
		if req.MaxResponseBytes > 0 {
			bodyMax = min(bodyMax, req.MaxResponseBytes)
		}
		if req.MaxMediaBytes > 0 {
			mediaMax = min(mediaMax, req.MaxMediaBytes)
		}
	}
	out := &Response{Status: resp.StatusCode, Header: resp.Header}
	ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if resp.StatusCode == http.StatusOK && ct == "text/event-stream" && sent.progress {
		err = readProgress(ctx, resp.Body, bodyMax, tr, out, to.Server, p.cfg.StallAfter)
	} else if resp.StatusCode == http.StatusOK && ct == "text/event-stream" {
		err = readEvents(resp.Body, bodyMax, tr, out)
	} else {
		out.Body, err = readCapped(resp.Body, bodyMax)
	}
	tr.mu.Lock()
	tr.bodyDone = time.Now()
	tr.mu.Unlock()
	p.fillTimings(tr, r)
	splitServer(r, tr, timing)
	r.ResponseBytes = int64(len(out.Body))
	for _, e := range out.Events {
		r.ResponseBytes += int64(len(e))
	}
	if out.FirstEvent > 0 {
		r.TTFT = out.FirstEvent
	}
	if resp.StatusCode != http.StatusOK {
		// A failed read of an error body still leaves the status to classify.
		return classifyStatus(resp.StatusCode, string(bounded(out.Body, 300)))
	}
	if e := (*Error)(nil); errors.As(err, &e) {
		return e // the progress stream's own verdict: stalled, error event, server timeout
	}
	if err != nil {
		return classifyTransport(err, PhaseDownload)
	}

	m := &Media{client: client, base: sent.base, hosts: []string{sent.base.Host, base.Host}, max: mediaMax}
	*mOut = m
	units, err := job.Pipeline.Validate(ctx, req, out, m)
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			return e
		}
		return &Error{Class: ClassInvalid, Code: "invalid", Message: err.Error(), Err: err}
	}
	r.OutputUnits = units
	return nil
}

// sent is one sending of the job: the terms it was sent with and the
// response whose body is still to read.
type sent struct {
	prep      Preparation
	tr        *trace
	transport *http.Transport
	client    *http.Client
	resp      *http.Response
	base      *url.URL // where the job went: the job URI, else the service URI
	progress  bool     // the progress stream was asked for
}

// send prepares the protocol terms (timed as discovery) and sends the job
// once, filling r's timings up to the response headers. On error nothing is
// left open.
func (p *Prober) send(ctx context.Context, job Job, info capability.Pipeline, to Timeouts, req *Request, base *url.URL, r *results.Result) (sent, error) {
	var s sent
	dstart := time.Now()
	prep, err := p.cfg.Preparer.Prepare(ctx, PrepareJob{
		Orchestrator: job.Orchestrator, ServiceURI: job.ServiceURI, Pipeline: info, Model: job.Model, Units: req.Units,
	})
	r.Discovery = prep.Discovery
	if r.Discovery == 0 && err != nil {
		r.Discovery = time.Since(dstart)
	}
	r.Warm = prep.Warm
	if err != nil {
		e := classifyPrepare(err)
		// Our deadline ran out while discovery waited: a timeout in the
		// discovery phase, whatever text the protocol layer wrapped it in
		// (a gRPC dial cut short reads "error reading server preface: EOF").
		if ctx.Err() != nil && (e.Class == ClassDiscovery || e.Class == ClassNetwork) {
			e = &Error{Class: ClassTimeout, Code: "timeout_discovery", Message: e.Message, Err: err}
		}
		return s, e
	}
	s.prep = prep
	s.base = base
	if prep.JobURI != "" {
		u, err := url.Parse(strings.TrimRight(prep.JobURI, "/"))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return s, fail(ClassDiscovery, "bad_transcoder_uri", "advertised transcoder URI %q is not an http(s) URL", bounded([]byte(prep.JobURI), 100))
		}
		s.base = u
	}

	s.tr = &trace{}
	s.transport = p.transport(s.tr, to)
	s.client = &http.Client{
		Transport:     s.transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return errRedirect },
	}
	hreq, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, s.tr.clientTrace()), http.MethodPost,
		s.base.String()+"/"+info.Slug, bytes.NewReader(req.Body))
	if err != nil {
		return s, &Error{Class: ClassTester, Code: "build_request", Message: err.Error(), Err: err}
	}
	// The headers of go-livepeer's gateway and nothing else: Content-Type
	// (the generated client, ai/worker/runner.gen.go), Authorization,
	// Livepeer-Segment and Livepeer-Payment (server/ai_process.go:1674-1676),
	// and what Go's transport adds for both of us (Host, User-Agent
	// Go-http-client, Content-Length, Accept-Encoding gzip). No tester
	// marker: an orchestrator must not tell a probe from a user's job.
	hreq.Header.Set("Content-Type", req.ContentType)
	hreq.Header.Set("Authorization", WorkerAuth)
	for k, vs := range prep.Header {
		for _, v := range vs {
			hreq.Header.Add(k, v)
		}
	}
	if p.progressOffered(job) {
		hreq.Header.Set(ProgressHeader, ProgressVersion)
		s.progress = true
	}
	s.resp, err = s.client.Do(hreq)
	p.fillTimings(s.tr, r)
	if err != nil {
		s.transport.CloseIdleConnections()
		return s, classifyTransport(err, s.tr.phase())
	}
	return s, nil
}

func (p *Prober) fillTimings(tr *trace, r *results.Result) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	r.Connect = span(tr.dialStart, tr.dialDone)
	r.TLS = span(tr.tlsStart, tr.tlsDone)
	r.ConnReused = tr.reused
	r.Upload = span(tr.wroteHeaders, tr.wrote)
	r.Server = span(tr.wrote, tr.firstByte)
	r.Download = span(tr.firstByte, tr.bodyDone)
}

// Dial connects the way probes do (the tester's own network, with any
// simulated distance), for the tester's connectivity checks.
func (p *Prober) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if p.cfg.Dial != nil {
		return p.cfg.Dial(ctx, network, addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

// transport is per probe: one probe's connections never serve another's, so
// every probe pays (and measures) its own connect and TLS, and a hostile
// orchestrator's half-dead connection cannot poison the next probe.
func (p *Prober) transport(tr *trace, to Timeouts) *http.Transport {
	dial := p.cfg.Dial
	if dial == nil {
		d := &net.Dialer{}
		dial = d.DialContext
	}
	return &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			// The connect phase is timed here rather than with httptrace's
			// ConnectStart/Done so that it includes DNS and any simulated RTT.
			dctx, cancel := context.WithTimeout(ctx, to.Connect)
			defer cancel()
			s := time.Now()
			c, err := dial(dctx, network, addr)
			tr.mu.Lock()
			if tr.dialStart.IsZero() {
				tr.dialStart = s
			}
			tr.dialDone = time.Now()
			tr.mu.Unlock()
			if err != nil && dctx.Err() != nil && ctx.Err() == nil {
				return nil, fmt.Errorf("connect: %w", context.DeadlineExceeded)
			}
			return c, err
		},
		TLSClientConfig:       &tls.Config{InsecureSkipVerify: !p.cfg.VerifyTLS}, //nolint:gosec // see Config.VerifyTLS
		TLSHandshakeTimeout:   to.TLS,
		ResponseHeaderTimeout: to.Server,
		MaxIdleConnsPerHost:   2,
		IdleConnTimeout:       30 * time.Second,
		// As go-livepeer's gateway client (server/segment_rpc.go:51-66):
		// HTTP/2 offered over TLS (ALPN h2, then http/1.1) and gzip
		// accepted, so neither the TLS handshake nor Accept-Encoding tells
		// a probe from a gateway's job. Bodies are decompressed before the
		// caps apply, so a gzip bomb still costs at most the cap.
		ForceAttemptHTTP2: true,
	}
}

// readCapped reads at most max bytes; more is errBodyTooLarge.
//
// It reads into fixed chunks and joins them once at the end instead of
// io.ReadAll's grow-and-copy: ReadAll of an endless body leaves about twice
// the cap in garbage per probe, and a round probing several hostile
// orchestrators at once held hundreds of MiB (faults.TestHostileZoo). An
// over-long body is dropped without the join, so it costs the cap, once.
func readCapped(r io.Reader, max int64) ([]byte, error) {
	const chunk = 64 << 10
	var (
		chunks [][]byte
		n      int64
		err    error
	)
	lr := io.LimitReader(r, max+1)
	for err == nil {
		c := make([]byte, min(chunk, max+1-n))
		var k int
		k, err = io.ReadFull(lr, c)
		if k > 0 {
			chunks = append(chunks, c[:k])
			n += int64(k)
		}
		if n > max {
			// The head is enough for any message; the rest is garbage now.
			return chunks[0], fmt.Errorf("%w (%d bytes)", errBodyTooLarge, max)
		}
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		err = nil
	}
	b := make([]byte, 0, n)
	for _, c := range chunks {
		b = append(b, c...)
	}
	return b, err
}

// readEvents reads a text/event-stream answer, keeping each data payload and
// timing the first one (an LLM's time to first token).
func readEvents(r io.Reader, max int64, tr *trace, out *Response) error {
	sc := bufio.NewScanner(io.LimitReader(r, max+1))
	// A line longer than the whole cap is over it; none needs a MiB.
	sc.Buffer(make([]byte, 0, min(64<<10, max+1)), int(min(1<<20, max+1)))
	var total int64
	for sc.Scan() {
		line := sc.Bytes()
		total += int64(len(line)) + 1
		if total > max {
			return fmt.Errorf("%w (%d bytes)", errBodyTooLarge, max)
		}
		data, ok := bytes.CutPrefix(line, []byte("data:"))
		if !ok {
			continue
		}
		data = bytes.TrimSpace(data)
		if len(data) == 0 {
			continue
		}
		if out.FirstEvent == 0 {
			tr.mu.Lock()
			if !tr.wrote.IsZero() {
				out.FirstEvent = time.Since(tr.wrote)
			}
			tr.mu.Unlock()
		}
		out.Events = append(out.Events, append([]byte(nil), data...))
	}
	if errors.Is(sc.Err(), bufio.ErrTooLong) {
		return fmt.Errorf("%w (a line over %d bytes)", errBodyTooLarge, min(1<<20, max))
	}
	return sc.Err()
}

func bounded(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// Media fetches result media for validators: data: URLs inline, and http(s)
// URLs on the orchestrator's own hosts, the one the job went to (its
// advertised transcoder URI) and its service URI's (an orchestrator must not
// make the tester fetch from anywhere else). Fetch time and bytes are
// accounted to the media phase.
type Media struct {
	client  *http.Client
	base    *url.URL
	hosts   []string // base.Host first
	max     int64
	elapsed time.Duration
	bytes   int64
}

// Get returns the content of a result media URL.
func (m *Media) Get(ctx context.Context, raw string) ([]byte, error) {
	if strings.HasPrefix(raw, "data:") {
		// Already in memory as part of the body; still, a file bigger
		// than an honest one is the same failure either way.
		b, err := decodeDataURL(raw)
		if err == nil && int64(len(b)) > m.max {
			return nil, &Error{Class: ClassInvalid, Code: "body_too_large", Message: fmt.Sprintf("media data URL holds %d bytes, over the %d cap", len(b), m.max)}
		}
		return b, err
	}
	u, err := m.base.Parse(raw) // relative URLs resolve against the URI the job went to
	if err != nil {
		return nil, invalid("media_url", "bad media URL %q", bounded([]byte(raw), 100))
	}
	if !slices.Contains(m.hosts, u.Host) && u.Host != m.base.Host || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, invalid("media_foreign_host", "media URL %s is not on the orchestrator's host %s", u.Redacted(), m.base.Host)
	}
	s := time.Now()
	defer func() { m.elapsed += time.Since(s) }()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, invalid("media_url", "bad media URL: %v", err)
	}
	req.Header.Set("Authorization", WorkerAuth)
	resp, err := m.client.Do(req)
	if err != nil {
		e := classifyTransport(err, PhaseMedia)
		if e.Class == ClassTimeout {
			e.Code = "timeout_media"
		}
		return nil, e
	}
	defer resp.Body.Close()
	body, err := readCapped(resp.Body, m.max)
	m.bytes += int64(len(body))
	if resp.StatusCode != http.StatusOK {
		e := classifyStatus(resp.StatusCode, string(bounded(body, 200)))
		e.Class, e.Code = ClassInvalid, fmt.Sprintf("media_http_%d", resp.StatusCode)
		return nil, e
	}
	if err != nil {
		e := classifyTransport(err, PhaseMedia)
		if e.Class == ClassTimeout {
			e.Code = "timeout_media"
		}
		return nil, e
	}
	return body, nil
}
