package probe

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lpgauge/lpgauge/gateway/trickle"
	"github.com/lpgauge/lpgauge/internal/results"
	"github.com/lpgauge/lpgauge/media/livets"
)

// liveFault is how a fake live orchestrator misbehaves.
type liveFault int

const (
	liveHealthy     liveFault = iota
	liveStall                 // output pauses mid-stream while input flows
	liveDrop                  // every dropEvery-th output segment is not published
	livePassthrough           // input returned untransformed
	liveNoOutput              // nothing is ever published on -out
	liveGarbage               // -out gets bytes that are no MPEG-TS, and keeps getting them
)

// fakeLiveO is a live orchestrator on gateway/trickle's Server: the start
// endpoint creates the four channels as go-livepeer's O does
// (server/ai_http.go:1075-1082) and a runner goroutine reads mid, transforms
// each segment (livets.Transform) and publishes it on mid-out after latency,
// misbehaving as fault says. /payment answers status payStatus.
type fakeLiveO struct {
	t         testing.TB
	ts        *trickle.Server
	hs        *httptest.Server
	fault     liveFault
	latency   time.Duration
	stallAt   int           // liveStall: first input segment held back
	stallFor  time.Duration // liveStall: how long
	dropEvery int
	// runnerURL, when set, is a live runner (ai-runner's API) the start is
	// handed to with the URLs swapped, as go-livepeer's O hands it
	// (server/ai_http.go:1138-1157), instead of the fake's own runner.
	runnerURL string

	payStatus atomic.Int32
	payments  atomic.Int32
	mids      atomic.Int32

	mu       sync.Mutex
	control  []string      // control messages read
	inputEnd error         // how the input channel ended (EOS: the gateway's DELETE)
	ended    chan struct{} // closed when the first session's runner stops
	endOnce  sync.Once
}

func newFakeLiveO(t testing.TB, fault liveFault) *fakeLiveO {
	o := &fakeLiveO{t: t, fault: fault, latency: 40 * time.Millisecond, stallAt: 4, stallFor: 1500 * time.Millisecond,
		dropEvery: 4, ended: make(chan struct{})}
	o.payStatus.Store(http.StatusOK)
	o.ts = trickle.NewServer(trickle.ServerConfig{BasePath: "/ai/trickle/"})
	mux := http.NewServeMux()
	mux.Handle("/ai/trickle/", o.ts)
	mux.HandleFunc("POST /live-video-to-video", o.start)
	mux.HandleFunc("POST /payment", func(w http.ResponseWriter, r *http.Request) {
		o.payments.Add(1)
		if s := int(o.payStatus.Load()); s != http.StatusOK {
			http.Error(w, "insufficient balance", s)
			return
		}
		_, _ = w.Write(nil) // an empty PaymentResult
	})
	o.hs = httptest.NewServer(mux)
	t.Cleanup(func() { o.hs.Close(); o.ts.Stop() })
	return o
}

func (o *fakeLiveO) start(w http.ResponseWriter, r *http.Request) {
	var body struct {
		ModelID *string `json:"model_id"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.ModelID == nil {
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	mid := fmt.Sprintf("%08x", 0xf0e1d2c3+int64(o.mids.Add(1)))
	for _, c := range []struct{ name, mime string }{{mid, "video/MP2T"}, {mid + "-out", "video/MP2T"},
		{mid + "-control", "application/json"}, {mid + "-events", "application/json"}} {
		if err := o.ts.CreateChannel(c.name, c.mime); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
	}
	base := o.hs.URL + "/ai/trickle/" + mid
	if o.runnerURL != "" {
		b, _ := json.Marshal(map[string]any{"control_url": base + "-control", "events_url": base + "-events",
			"gateway_request_id": "5e6f7a8b", "manifest_id": mid, "model_id": *body.ModelID, "params": nil,
			"publish_url": base + "-out", "stream_id": "str_abc123", "subscribe_url": base})
		resp, err := http.Post(o.runnerURL+"/live-video-to-video", "application/json", bytes.NewReader(b))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		msg, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			http.Error(w, fmt.Sprintf("live-video-to-video container returned %d: %s", resp.StatusCode, msg), http.StatusInternalServerError)
			return
		}
		go o.closeWhenInputEnds(mid)
	} else {
		go o.run(mid)
		go o.readControl(mid)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{"control_url": base + "-control", "events_url": base + "-events",
		"manifest_id": mid, "publish_url": base, "subscribe_url": base + "-out"})
}

// run is the runner: input from -1, one output per input from seq 0, a
// status event per segment; on input EOS/404 it closes the session.
func (o *fakeLiveO) run(mid string) {
	base := o.hs.URL + "/ai/trickle/" + mid
	ctx := context.Background()
	in := trickle.NewSubscriber(base, o.hs.Client(), -1)
	out := trickle.NewPublisher(base+"-out", o.hs.Client())
	ev := trickle.NewPublisher(base+"-events", o.hs.Client())
	defer func() {
		in.Close()
		for _, c := range []string{mid, mid + "-out", mid + "-control", mid + "-events"} {
			o.ts.CloseChannel(c)
		}
		o.endOnce.Do(func() { close(o.ended) })
	}()
	stalled := false
	for k := 0; ; k++ {
		seg, err := in.Read(ctx)
		if err != nil {
			var sne *trickle.SequenceNonexistentError
			if errors.As(err, &sne) && sne.Latest >= 0 {
				in.SetSeq(sne.Latest)
				k--
				continue
			}
			o.mu.Lock()
			o.inputEnd = err
			o.mu.Unlock()
			return
		}
		b, _ := io.ReadAll(seg.Body)
		_ = seg.Body.Close()
		if len(b) == 0 {
			k--
			continue
		}
		_, _ = ev.Write(ctx, bytes.NewReader([]byte(`{"type":"status","inference_status":{"last_params":null,"last_restart_logs":null}}`)))
		switch o.fault {
		case liveNoOutput:
			continue
		case liveGarbage:
			if k == 0 {
				go func() {
					for {
						if _, err := out.Write(ctx, bytes.NewReader(bytes.Repeat([]byte("not a transport stream "), 400))); err != nil {
							return
						}
						time.Sleep(100 * time.Millisecond)
					}
				}()
			}
			continue
		case liveDrop:
			if k%o.dropEvery == o.dropEvery-1 {
				continue
			}
		case liveStall:
			if k == o.stallAt && !stalled {
				stalled = true
				time.Sleep(o.stallFor)
			}
		}
		res := b
		if o.fault != livePassthrough {
			if res, err = livets.Transform(b); err != nil {
				o.t.Errorf("fake runner: transform: %v", err)
				return
			}
		}
		time.Sleep(o.latency)
		_, _ = out.Write(ctx, bytes.NewReader(res))
	}
}

// closeWhenInputEnds is O's own reader of mid: when the gateway deletes
// it, the session's other channels close (server/ai_http.go:1117-1128).
func (o *fakeLiveO) closeWhenInputEnds(mid string) {
	in := trickle.NewSubscriber(o.hs.URL+"/ai/trickle/"+mid, o.hs.Client(), -1)
	defer in.Close()
	for {
		seg, err := in.Read(context.Background())
		if err != nil {
			var sne *trickle.SequenceNonexistentError
			if errors.As(err, &sne) && sne.Latest >= 0 {
				in.SetSeq(sne.Latest)
				continue
			}
			break
		}
		_, _ = io.Copy(io.Discard, seg.Body)
		_ = seg.Body.Close()
	}
	for _, c := range []string{mid, mid + "-out", mid + "-control", mid + "-events"} {
		o.ts.CloseChannel(c)
	}
}

func (o *fakeLiveO) readControl(mid string) {
	sub := trickle.NewSubscriber(o.hs.URL+"/ai/trickle/"+mid+"-control", o.hs.Client(), -1)
	defer sub.Close()
	for {
		seg, err := sub.Read(context.Background())
		if err != nil {
			return
		}
		b, _ := io.ReadAll(seg.Body)
		_ = seg.Body.Close()
		o.mu.Lock()
		o.control = append(o.control, string(b))
		o.mu.Unlock()
	}
}

// liveTestConfig is a short stream: 3 s of 20 fps in 250 ms segments (12
// segments of 5 frames), a stall bound of 3 segments.
var liveTestConfig = LiveConfig{Duration: 3 * time.Second, FPS: 20, Width: 64, Height: 32, Segment: 250 * time.Millisecond}

func runLiveProbe(t *testing.T, o *fakeLiveO, prep Preparer) results.Result {
	t.Helper()
	p := New(Config{Live: liveTestConfig, Preparer: prep, Timeouts: Timeouts{Total: 30 * time.Second}})
	return p.Run(context.Background(), Job{Orchestrator: "0x1111111111111111111111111111111111111111", ServiceURI: o.hs.URL,
		Pipeline: LiveVideoToVideo{}, Model: "noop", Seed: 7})
}

// A healthy live orchestrator: the probe succeeds, every frame comes back
// transformed and matched, the frame rate is held, the latency is the
// runner's, the control update went out as params JSON, and the session
// ended with the gateway's DELETE of the publish channel (the runner saw
// its input end with Lp-Trickle-Closed).
func TestLiveProbeHealthy(t *testing.T) {
	o := newFakeLiveO(t, liveHealthy)
	r := runLiveProbe(t, o, nil)
	if r.Outcome != results.Success {
		t.Fatalf("healthy live orchestrator: %s %s/%s: %s", r.Outcome, r.ErrorClass, r.ErrorCode, r.ErrorMessage)
	}
	lv := r.Live
	t.Logf("live: %+v", lv)
	if lv.FramesIn != 60 || lv.FramesOut != 60 {
		t.Fatalf("frames in %d out %d, want 60 and 60", lv.FramesIn, lv.FramesOut)
	}
	if lv.InFPS != 20 || lv.OutFPS < 19.6 || lv.OutFPS > 20.4 {
		t.Fatalf("fps in %.2f out %.2f, want 20 and 20", lv.InFPS, lv.OutFPS)
	}
	if lv.LatencyP50 < o.latency-5*time.Millisecond || lv.LatencyP50 > o.latency+100*time.Millisecond {
		t.Fatalf("median latency %s for a runner that waits %s", lv.LatencyP50, o.latency)
	}
	if lv.FirstSegment <= 0 || lv.FirstFrame < lv.FirstSegment || r.Total != lv.FirstSegment {
		t.Fatalf("first segment %s, first frame %s, total %s", lv.FirstSegment, lv.FirstFrame, r.Total)
	}
	if lv.Stalls != 0 || lv.SegmentsLost != 0 || lv.SegmentsReorder != 0 {
		t.Fatalf("stalls %d lost %d reordered %d on a healthy stream", lv.Stalls, lv.SegmentsLost, lv.SegmentsReorder)
	}
	if lv.Session < liveTestConfig.Duration {
		t.Fatalf("session %s shorter than the stream", lv.Session)
	}
	select {
	case <-o.ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the runner's input never ended: no DELETE of the publish channel")
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if !errors.Is(o.inputEnd, trickle.ErrEOS) && !errors.Is(o.inputEnd, trickle.ErrStreamNotFound) {
		t.Fatalf("runner input ended with %v, want the channel closed", o.inputEnd)
	}
	want, _ := json.Marshal(liveParams(7, true))
	if len(o.control) == 0 || o.control[0] != string(want) {
		t.Fatalf("control messages %q, want the params update %s", o.control, want)
	}
}

// Each way a live orchestrator fails is classified with its own code.
func TestLiveProbeFailures(t *testing.T) {
	for _, tt := range []struct {
		name  string
		fault liveFault
		class Class
		code  string
		check func(t *testing.T, lv results.Live)
	}{
		{"stall", liveStall, ClassOrchestrator, CodeLiveStalled, func(t *testing.T, lv results.Live) {
			if lv.Stalls == 0 || lv.StallMax < time.Second {
				t.Fatalf("stalls %d longest %s for a 1.5 s pause", lv.Stalls, lv.StallMax)
			}
		}},
		{"drop", liveDrop, ClassOrchestrator, CodeLiveDropped, func(t *testing.T, lv results.Live) {
			if lv.SegmentsLost != 3 {
				t.Fatalf("%d segments lost, the runner dropped 3 of 12", lv.SegmentsLost)
			}
		}},
		{"passthrough", livePassthrough, ClassInvalid, CodeLiveUntransformed, func(t *testing.T, lv results.Live) {
			if lv.FramesOut != 0 {
				t.Fatalf("%d untransformed frames counted as transformed", lv.FramesOut)
			}
		}},
		{"no output", liveNoOutput, ClassOrchestrator, CodeLiveNoOutput, func(t *testing.T, lv results.Live) {
			if lv.FirstSegment != 0 || lv.FramesIn != 60 {
				t.Fatalf("first segment %s, frames in %d", lv.FirstSegment, lv.FramesIn)
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := newFakeLiveO(t, tt.fault)
			r := runLiveProbe(t, o, nil)
			t.Logf("%s/%s: %s; %+v", r.ErrorClass, r.ErrorCode, r.ErrorMessage, r.Live)
			if r.Outcome != results.Failure || r.ErrorClass != string(tt.class) || r.ErrorCode != tt.code {
				t.Fatalf("got %s %s/%s (%s), want failure %s/%s", r.Outcome, r.ErrorClass, r.ErrorCode, r.ErrorMessage, tt.class, tt.code)
			}
			tt.check(t, r.Live)
		})
	}
}

// An orchestrator whose output is no video of ours, and which never stops
// sending it, is invalid_output/live_output_undecodable, and cannot hold
// the probe past the bounded wait for output (drainMax).
func TestLiveProbeGarbageOutput(t *testing.T) {
	o := newFakeLiveO(t, liveGarbage)
	r := runLiveProbe(t, o, nil)
	if r.ErrorClass != string(ClassInvalid) || r.ErrorCode != CodeLiveUndecodable {
		t.Fatalf("garbage output: %s %s/%s (%s)", r.Outcome, r.ErrorClass, r.ErrorCode, r.ErrorMessage)
	}
	if limit := liveTestConfig.Duration + drainMax + 2*time.Second; r.Live.Session > limit {
		t.Fatalf("an endless output held the probe %s (bound %s)", r.Live.Session, limit)
	}
}

// A start refused for capacity stays excused, as for batch jobs; other
// refusals are the orchestrator's, with go-livepeer's error text.
func TestLiveProbeStartRefused(t *testing.T) {
	for _, tt := range []struct {
		status  int
		body    string
		class   Class
		code    string
		outcome results.Outcome
	}{
		{503, "insufficient capacity", ClassCapacity, "insufficient_capacity", results.Excused},
		{500, "live-video-to-video container returned 500: boom", ClassOrchestrator, CodeLiveStartRefused, results.Failure},
		{400, "Insufficient balance", ClassPayment, CodeLiveStartPayRefuse, results.Failure},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, tt.body, tt.status) }))
		p := New(Config{Live: liveTestConfig})
		r := p.Run(context.Background(), Job{ServiceURI: srv.URL, Pipeline: LiveVideoToVideo{}, Model: "noop"})
		srv.Close()
		if r.Outcome != tt.outcome || r.ErrorClass != string(tt.class) || r.ErrorCode != tt.code || r.HTTPStatus != tt.status || r.ErrorMessage != tt.body {
			t.Errorf("%d %q: %s %s/%s %d %q", tt.status, tt.body, r.Outcome, r.ErrorClass, r.ErrorCode, r.HTTPStatus, r.ErrorMessage)
		}
	}
}

// A start answer is read up to gateway.MaxLiveStartBody: a hostile
// orchestrator streaming more is invalid_output/body_too_large having cost
// the probe no more than the bound; a 200 that is not a usable answer is
// live_start_invalid.
func TestLiveStartAnswerBound(t *testing.T) {
	for _, tt := range []struct {
		name   string
		answer func(w http.ResponseWriter)
		class  Class
		code   string
	}{
		{"endless", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			chunk := bytes.Repeat([]byte(" "), 64<<10)
			for i := 0; i < 4096; i++ { // 256 MiB
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		}, ClassInvalid, "body_too_large"},
		{"no control_url", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"publish_url":"/p","subscribe_url":"/s","events_url":"/e"}`))
		}, ClassOrchestrator, CodeLiveStartInvalid},
		{"not JSON", func(w http.ResponseWriter) { _, _ = w.Write([]byte("started\n")) }, ClassOrchestrator, CodeLiveStartInvalid},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { tt.answer(w) }))
			defer srv.Close()
			r := New(Config{Live: liveTestConfig}).Run(context.Background(), Job{ServiceURI: srv.URL, Pipeline: LiveVideoToVideo{}, Model: "noop"})
			if r.Outcome != results.Failure || r.ErrorClass != string(tt.class) || r.ErrorCode != tt.code {
				t.Fatalf("%s %s/%s (%s), want %s/%s", r.Outcome, r.ErrorClass, r.ErrorCode, r.ErrorMessage, tt.class, tt.code)
			}
		})
	}
}

// fakeLivePayments counts the probe's periodic payments through the
// LivePayments seam and sends them to the fake's /payment.
type fakeLivePayments struct {
	url     string
	mid     atomic.Value
	started time.Time
	billed  atomic.Int64
}

func (f *fakeLivePayments) Started(mid string, now time.Time) { f.mid.Store(mid); f.started = now }
func (f *fakeLivePayments) Due(now time.Time) int64 {
	if now.Sub(f.started) < time.Second*time.Duration(f.billed.Load()+1) {
		return 0
	}
	return 1
}
func (f *fakeLivePayments) Pay(ctx context.Context, c *http.Client, units int64) (int, error) {
	f.billed.Add(1)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, f.url+"/payment", nil)
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("payment answered %d", resp.StatusCode)
	}
	return 1, nil
}

// Periodic payments are made while the stream flows; refused ones fail the
// probe as payment/live_payment_refused (the stream itself was fine).
func TestLiveProbePayments(t *testing.T) {
	for _, status := range []int{http.StatusOK, http.StatusBadRequest} {
		o := newFakeLiveO(t, liveHealthy)
		o.payStatus.Store(int32(status))
		pay := &fakeLivePayments{url: o.hs.URL}
		prep := preparerFunc(func(context.Context, PrepareJob) (Preparation, error) {
			return Preparation{Header: http.Header{"Livepeer-Payment": {"x"}}, Live: pay}, nil
		})
		r := runLiveProbe(t, o, prep)
		n := o.payments.Load()
		if n < 2 {
			t.Fatalf("%d periodic payments over a 3 s stream due every second", n)
		}
		if pay.mid.Load() == nil || pay.mid.Load().(string) == "" {
			t.Fatal("payments started without O's mid")
		}
		if status == http.StatusOK {
			if r.Outcome != results.Success || r.Live.PaymentsOK != uint32(n)+1 || r.Live.PaymentsRefused != 0 {
				t.Fatalf("paid session: %s %s/%s, payments ok %d refused %d (sent %d + start)", r.Outcome, r.ErrorClass, r.ErrorCode,
					r.Live.PaymentsOK, r.Live.PaymentsRefused, n)
			}
			continue
		}
		if r.ErrorClass != string(ClassPayment) || r.ErrorCode != CodeLivePayRefused || r.Live.PaymentsRefused != uint32(n) {
			t.Fatalf("refused payments: %s %s/%s (%s), refused %d of %d", r.Outcome, r.ErrorClass, r.ErrorCode, r.ErrorMessage, r.Live.PaymentsRefused, n)
		}
	}
}

// A live session cut short (the round's deadline, the tester stopping) is
// timeout/timeout_live, keeping what it measured of the segments it sent;
// and a job timeout shorter than the stream does not cut it: a live
// probe's total covers its stream.
func TestLiveProbeCut(t *testing.T) {
	o := newFakeLiveO(t, liveHealthy)
	ctx, cancel := context.WithTimeout(context.Background(), 1200*time.Millisecond)
	defer cancel()
	p := New(Config{Live: liveTestConfig})
	r := p.Run(ctx, Job{ServiceURI: o.hs.URL, Pipeline: LiveVideoToVideo{}, Model: "noop", Seed: 1})
	if r.ErrorClass != string(ClassTimeout) || r.ErrorCode != "timeout_live" || r.Live.FramesIn == 0 || r.Live.FramesIn >= 60 {
		t.Fatalf("cut session: %s %s/%s (%s), frames in %d", r.Outcome, r.ErrorClass, r.ErrorCode, r.ErrorMessage, r.Live.FramesIn)
	}
	r = New(Config{Live: liveTestConfig, Timeouts: Timeouts{Total: time.Second}}).Run(context.Background(),
		Job{ServiceURI: o.hs.URL, Pipeline: LiveVideoToVideo{}, Model: "noop", Seed: 2})
	if r.Outcome != results.Success {
		t.Fatalf("a 1 s job timeout cut a 3 s stream: %s %s/%s (%s)", r.Outcome, r.ErrorClass, r.ErrorCode, r.ErrorMessage)
	}
}
