package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/lpgauge/lpgauge/gateway/trickle"
	"github.com/lpgauge/lpgauge/media/livets"
)

// livePipeline is go-livepeer's pipeline string (server/ai_http.go:1022).
const livePipeline = "live-video-to-video"

// LiveProfile is how the CPU live runner behaves, so a demo fleet differs and
// each failure class a tester must name can be produced on purpose.
type LiveProfile struct {
	// Latency is the time from an input segment's last byte to the start of
	// its output segment; processing time is taken out of it, not added.
	Latency time.Duration
	// OutFPS drops frames so the output runs at this rate (0 = as input).
	OutFPS int
	// StallAfter and StallFor: StallAfter into the stream, output stops for
	// StallFor; segments due in the stall are not published (released at
	// once they would overrun a reader's ring of 5 anyway), and output
	// resumes with the first segment due after it.
	StallAfter, StallFor time.Duration
	// DropEvery drops every Nth output segment (0 = none).
	DropEvery int
	// Passthrough publishes the input untransformed.
	Passthrough bool
	// NoOutput publishes no output at all (events still flow).
	NoOutput bool
	// EventInterval is how often a status event is published (0 = 5 s;
	// go-livepeer's gateway stops a stream after 30 s without events,
	// server/ai_live_video.go:715-723).
	EventInterval time.Duration
}

// Validate rejects a profile that cannot be run.
func (p LiveProfile) Validate() error {
	switch {
	case p.Latency < 0 || p.StallAfter < 0 || p.StallFor < 0 || p.EventInterval < 0:
		return errors.New("live profile durations must not be negative")
	case p.OutFPS < 0 || p.DropEvery < 0:
		return errors.New("live profile -live-out-fps and -live-drop-every must not be negative")
	case p.EventInterval > 30*time.Second:
		return fmt.Errorf("live event interval %v is over the gateway's 30 s event timeout", p.EventInterval)
	}
	return nil
}

// liveRequest is ai-runner's LiveVideoToVideoParams as O sends it to R, URLs
// already swapped: subscribe_url is the input, publish_url the output
// (server/ai_http.go:1138-1157; conformance http/runner_request_body.json).
type liveRequest struct {
	SubscribeURL     string          `json:"subscribe_url"`
	PublishURL       string          `json:"publish_url"`
	ControlURL       string          `json:"control_url"`
	EventsURL        string          `json:"events_url"`
	ModelID          string          `json:"model_id"`
	Params           json.RawMessage `json:"params"`
	GatewayRequestID string          `json:"gateway_request_id"`
	ManifestID       string          `json:"manifest_id"`
	StreamID         string          `json:"stream_id"`
}

// LiveStats counts what the current (or last) stream did.
type LiveStats struct {
	InputSegments, OutputSegments, DroppedSegments, StalledSegments int
	InputFrames, OutputFrames                                       int
	ControlMessages, ParamsUpdates, Events                          int
	Params                                                          json.RawMessage
}

// liveState is the one stream a live runner serves at a time, as one
// ai-runner live container does.
type liveState struct {
	mu      sync.Mutex
	active  bool
	cancel  context.CancelFunc
	done    chan struct{}
	stats   LiveStats
	client  *http.Client
	profile LiveProfile
}

// LiveStats returns the counters of the current or last stream.
func (r *Runner) LiveStats() LiveStats {
	if r.live == nil {
		return LiveStats{}
	}
	r.live.mu.Lock()
	defer r.live.mu.Unlock()
	return r.live.stats
}

// liveStatus is /health for a live runner: IDLE without a stream, OK while
// one runs (ai-runner; go-livepeer returns an IDLE container to its pool,
// ai/worker/docker.go:601-690).
func (r *Runner) liveStatus() string {
	r.live.mu.Lock()
	defer r.live.mu.Unlock()
	if r.live.active {
		return "OK"
	}
	return "IDLE"
}

func (r *Runner) closeLive() {
	if r.live == nil {
		return
	}
	r.live.mu.Lock()
	cancel, done := r.live.cancel, r.live.done
	r.live.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// liveStart answers POST /live-video-to-video: checks as ai-runner (422
// schema, 401 token, 400 model guard), starts the stream in the background
// and answers 200 at once; the stream outlives the request
// (ai/worker/worker.go:610-611).
func (r *Runner) liveStart(w http.ResponseWriter, req *http.Request) {
	var body liveRequest
	dec := json.NewDecoder(io.LimitReader(req.Body, 1<<20))
	if err := dec.Decode(&body); err != nil {
		writeValidation(w, []validationIssue{{Type: "json_invalid", Loc: []any{"body"}, Msg: "JSON decode error: " + err.Error()}})
		return
	}
	var issues []validationIssue
	for _, f := range []struct{ name, v string }{{"subscribe_url", body.SubscribeURL}, {"publish_url", body.PublishURL}} {
		if f.v == "" {
			issues = append(issues, validationIssue{Type: "missing", Loc: []any{"body", f.name}, Msg: "Field required"})
		}
	}
	if issues != nil {
		writeValidation(w, issues)
		return
	}
	if !r.authorized(req) {
		w.Header().Set("WWW-Authenticate", "Bearer")
		writeError(w, http.StatusUnauthorized, "Invalid bearer token.")
		return
	}
	if body.ModelID != "" && body.ModelID != r.cfg.ModelID {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("pipeline configured with %s but called with %s.", r.cfg.ModelID, body.ModelID))
		return
	}
	// Like a batch job, a start waits for the model to load.
	select {
	case <-r.loaded:
	case <-req.Context().Done():
		return
	case <-r.stop:
		writeError(w, http.StatusInternalServerError, "Live video to video pipeline error.")
		return
	}
	l := r.live
	l.mu.Lock()
	if l.active {
		l.mu.Unlock()
		writeError(w, http.StatusBadRequest, "Runner is already streaming: one stream per live runner; start another runner.")
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	l.active, l.cancel, l.done = true, cancel, make(chan struct{})
	l.stats = LiveStats{Params: body.Params}
	done := l.done
	l.mu.Unlock()
	log := r.log.With("manifest_id", body.ManifestID, "stream_id", body.StreamID, "request_id", body.GatewayRequestID)
	go func() {
		defer close(done)
		defer cancel()
		r.liveStream(ctx, body, log)
		l.mu.Lock()
		l.active = false
		l.mu.Unlock()
		log.Info("live stream ended", "stats", fmt.Sprintf("%+v", r.LiveStats()))
	}()
	log.Info("live stream started", "subscribe_url", body.SubscribeURL, "publish_url", body.PublishURL)
	writeJSON(w, http.StatusOK, map[string]string{
		"subscribe_url": body.SubscribeURL, "publish_url": body.PublishURL,
		"control_url": body.ControlURL, "events_url": body.EventsURL, "manifest_id": body.ManifestID,
	})
}

// maxLiveSegment bounds one input segment read into memory.
const maxLiveSegment = 64 << 20

type outSegment struct {
	due  time.Time
	data []byte
}

// liveStream runs one session: input from -1, one output segment per input
// segment from seq 0, control read, events published, until the input ends
// (EOS or 404) or ctx does.
func (r *Runner) liveStream(ctx context.Context, body liveRequest, log *slog.Logger) {
	l := r.live
	p := l.profile
	in := trickle.NewSubscriber(body.SubscribeURL, l.client, -1)
	defer in.Close()
	out := trickle.NewPublisher(body.PublishURL, l.client)

	var wg sync.WaitGroup
	defer wg.Wait()
	sctx, stop := context.WithCancel(ctx)
	defer stop()

	if body.ControlURL != "" {
		wg.Add(1)
		go func() { defer wg.Done(); r.readControl(sctx, body.ControlURL, log) }()
	}
	if body.EventsURL != "" {
		wg.Add(1)
		go func() { defer wg.Done(); r.publishEvents(sctx, body, p, log) }()
	}

	// Output goes through a queue so that latency and stalls never hold up
	// the input reader; the writer publishes each segment at its due time.
	queue := make(chan outSegment, 256)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for seg := range queue {
			if d := time.Until(seg.due); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
					return
				}
			}
			if _, err := out.Write(ctx, bytes.NewReader(seg.data)); err != nil {
				log.Warn("live output write failed", "err", err)
				if errors.Is(err, trickle.ErrEOS) || errors.Is(err, trickle.ErrStreamNotFound) || ctx.Err() != nil {
					for range queue { // the output is gone: drain
					}
					return
				}
				continue
			}
			l.mu.Lock()
			l.stats.OutputSegments++
			l.mu.Unlock()
		}
	}()
	defer close(queue)

	var started time.Time
	var fpsAcc float64
	failures := 0
	for n := 0; ; {
		seg, err := in.Read(ctx)
		var gone *trickle.SequenceNonexistentError
		switch {
		case err == nil:
		case errors.As(err, &gone):
			in.SetSeq(gone.Latest) // fell behind: jump to the live edge (server/ai_live_video.go:297-301)
			continue
		case errors.Is(err, trickle.ErrEOS), errors.Is(err, trickle.ErrStreamNotFound), ctx.Err() != nil:
			return
		default:
			// go-livepeer retries other read errors 5 times (server/ai_live_video.go:225-381).
			if failures++; failures > 5 {
				log.Warn("live input failed", "err", err)
				return
			}
			select {
			case <-time.After(300 * time.Millisecond):
			case <-ctx.Done():
				return
			}
			continue
		}
		failures = 0
		data, err := io.ReadAll(io.LimitReader(seg.Body, maxLiveSegment))
		_ = seg.Body.Close()
		arrived := time.Now()
		if err != nil || len(data) == 0 {
			continue // dropped or cut segment: nothing to answer
		}
		if started.IsZero() {
			started = arrived
		}
		n++
		outData, inFrames, outFrames := r.process(data, &fpsAcc)
		l.mu.Lock()
		l.stats.InputSegments++
		l.stats.InputFrames += inFrames
		l.mu.Unlock()
		drop := p.NoOutput || (p.DropEvery > 0 && n%p.DropEvery == 0) || outData == nil
		if drop {
			l.mu.Lock()
			l.stats.DroppedSegments++
			l.mu.Unlock()
			continue
		}
		due := arrived.Add(p.Latency)
		if p.StallFor > 0 {
			stallStart := started.Add(p.StallAfter)
			if stallEnd := stallStart.Add(p.StallFor); !due.Before(stallStart) && due.Before(stallEnd) {
				l.mu.Lock()
				l.stats.StalledSegments++
				l.mu.Unlock()
				continue
			}
		}
		l.mu.Lock()
		l.stats.OutputFrames += outFrames
		l.mu.Unlock()
		select {
		case queue <- outSegment{due: due, data: outData}:
		case <-ctx.Done():
			return
		}
	}
}

// process turns one input segment into its output: transformed (inverted
// luma) or passed through, with frames dropped to reach OutFPS.
func (r *Runner) process(data []byte, fpsAcc *float64) (out []byte, inFrames, outFrames int) {
	p := r.live.profile
	pics, _, err := livets.DecodePictures(data)
	if err != nil {
		// Not our stream: pass what came in through, untouched, so the
		// pipeline still answers one output per input.
		return data, 0, 0
	}
	inFrames = len(pics)
	kept := make([]*livets.Picture, 0, len(pics))
	var inFPS int
	if len(pics) >= 2 && pics[0] != nil && pics[1] != nil && pics[1].PTS > pics[0].PTS {
		inFPS = int((time.Second + (pics[1].PTS-pics[0].PTS)/2) / (pics[1].PTS - pics[0].PTS))
	}
	for _, pic := range pics {
		if pic == nil {
			continue
		}
		if p.OutFPS > 0 && inFPS > p.OutFPS {
			*fpsAcc += float64(p.OutFPS) / float64(inFPS)
			if *fpsAcc < 1-1e-9 {
				continue
			}
			*fpsAcc--
		}
		if !p.Passthrough {
			livets.Invert(pic)
		}
		kept = append(kept, pic)
	}
	if len(kept) == 0 {
		return nil, inFrames, 0
	}
	if p.Passthrough && len(kept) == len(pics) {
		return data, inFrames, len(kept)
	}
	fps := inFPS
	if p.OutFPS > 0 && p.OutFPS < fps {
		fps = p.OutFPS
	}
	return livets.Mux(max(fps, 1), kept), inFrames, len(kept)
}

// readControl reads the control channel: {"keep":"alive"} is ignored, any
// other JSON object is the pipeline's new params (server/ai_live_video.go:
// 615,658-696; the payload is opaque pipeline JSON).
func (r *Runner) readControl(ctx context.Context, url string, log *slog.Logger) {
	l := r.live
	sub := trickle.NewSubscriber(url, l.client, -1)
	defer sub.Close()
	for {
		seg, err := sub.Read(ctx)
		var gone *trickle.SequenceNonexistentError
		switch {
		case err == nil:
		case errors.As(err, &gone):
			sub.SetSeq(gone.Latest)
			continue
		default:
			return
		}
		data, _ := io.ReadAll(io.LimitReader(seg.Body, 1<<20))
		_ = seg.Body.Close()
		var msg map[string]json.RawMessage
		if err := json.Unmarshal(data, &msg); err != nil {
			log.Warn("live control message is not a JSON object; ignored", "err", err)
			continue
		}
		l.mu.Lock()
		l.stats.ControlMessages++
		if keep, ok := msg["keep"]; ok && len(msg) == 1 && string(keep) == `"alive"` {
			l.mu.Unlock()
			continue
		}
		l.stats.ParamsUpdates++
		l.stats.Params = json.RawMessage(data)
		l.mu.Unlock()
		log.Info("live params updated", "params", string(data))
	}
}

// statusEvent is the runner's status event (messages/events_status_bare.json
// shape; go-livepeer looks only at type and inference_status.last_*).
type statusEvent struct {
	Type            string `json:"type"`
	Timestamp       int64  `json:"timestamp"`
	StreamID        string `json:"stream_id,omitempty"`
	InferenceStatus struct {
		LastParams      json.RawMessage `json:"last_params"`
		LastRestartLogs json.RawMessage `json:"last_restart_logs"`
		InputSegments   int             `json:"input_segments"`
		OutputSegments  int             `json:"output_segments"`
		ParamsUpdates   int             `json:"params_updates"`
	} `json:"inference_status"`
}

// publishEvents writes a status event at once, then every EventInterval and
// after each params update, until ctx ends.
func (r *Runner) publishEvents(ctx context.Context, body liveRequest, p LiveProfile, log *slog.Logger) {
	l := r.live
	interval := p.EventInterval
	if interval <= 0 {
		interval = 5 * time.Second
	}
	pub := trickle.NewPublisher(body.EventsURL, l.client)
	tick := time.NewTicker(min(interval, 100*time.Millisecond))
	defer tick.Stop()
	var last time.Time
	lastUpdates := -1
	for {
		l.mu.Lock()
		st := l.stats
		l.mu.Unlock()
		if time.Since(last) >= interval || st.ParamsUpdates != lastUpdates {
			var ev statusEvent
			ev.Type, ev.Timestamp, ev.StreamID = "status", time.Now().UnixMilli(), body.StreamID
			ev.InferenceStatus.LastParams = st.Params
			if len(ev.InferenceStatus.LastParams) == 0 {
				ev.InferenceStatus.LastParams = json.RawMessage("null")
			}
			ev.InferenceStatus.LastRestartLogs = json.RawMessage("null")
			ev.InferenceStatus.InputSegments = st.InputSegments
			ev.InferenceStatus.OutputSegments = st.OutputSegments
			ev.InferenceStatus.ParamsUpdates = st.ParamsUpdates
			b, _ := json.Marshal(ev)
			if _, err := pub.Write(ctx, bytes.NewReader(b)); err != nil {
				if ctx.Err() == nil {
					log.Warn("live event write failed", "err", err)
				}
				if errors.Is(err, trickle.ErrEOS) || errors.Is(err, trickle.ErrStreamNotFound) || ctx.Err() != nil {
					return
				}
			} else {
				l.mu.Lock()
				l.stats.Events++
				l.mu.Unlock()
			}
			last, lastUpdates = time.Now(), st.ParamsUpdates
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
	}
}
