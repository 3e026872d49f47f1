package probe

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/lpgauge/lpgauge/internal/results"
)

// The reference orchestrator's progress stream and timing header (issue #19;
// orchestrator/progress.go, the wire described in orchestrator/README.md).
// Both are additions to go-livepeer's exchange: a go-livepeer orchestrator
// sends neither, and is probed exactly as before.
const (
	// ProgressHeader with value ProgressVersion asks for the event stream.
	ProgressHeader  = "Lpgauge-Progress"
	ProgressVersion = "v1"
	// JobTimingHeader carries queue_ms, inference_ms and the offer
	// progress=v1 on every job answer of an orchestrator that has them.
	JobTimingHeader = "Lpgauge-Job-Timing"
)

// DefaultStallAfter is how long a progress stream may go without progress
// before the probe is classified stalled (Config.StallAfter).
const DefaultStallAfter = 30 * time.Second

// jobTiming is a parsed JobTimingHeader.
type jobTiming struct {
	queue, inference time.Duration
	hasQueue         bool
	offered          bool
}

func parseJobTiming(v string) jobTiming {
	var t jobTiming
	for _, part := range strings.Split(v, ",") {
		k, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			continue
		}
		ms, err := strconv.ParseFloat(val, 64)
		ok = err == nil && ms >= 0 && ms < 1e9
		switch {
		case k == "queue_ms" && ok:
			t.queue, t.hasQueue = time.Duration(ms*float64(time.Millisecond)), true
		case k == "inference_ms" && ok:
			t.inference = time.Duration(ms * float64(time.Millisecond))
		case k == "progress":
			t.offered = val == ProgressVersion
		}
	}
	return t
}

// offerKey names where an offer was seen: an orchestrator at a service URI.
func offerKey(job Job) string { return strings.ToLower(job.Orchestrator) + " " + job.ServiceURI }

// progressOffered reports whether the orchestrator's last job answer offered
// the progress stream.
func (p *Prober) progressOffered(job Job) bool {
	_, ok := p.offers.Load(offerKey(job))
	return ok
}

// noteTiming remembers whether the orchestrator offers the progress stream
// (any job answer tells, refusals included) and returns its timing header.
func (p *Prober) noteTiming(job Job, h http.Header) jobTiming {
	t := parseJobTiming(h.Get(JobTimingHeader))
	if t.offered {
		p.offers.Store(offerKey(job), struct{}{})
	} else {
		p.offers.Delete(offerKey(job))
	}
	return t
}

// splitServer fills Queue and Inference, which partition Server when the
// orchestrator reported the split: with the progress stream the queue ends
// when its first progress event arrives (our clock: the network's two
// halves land in the queue, inference is exact); with the header only, the
// queue is the orchestrator's own and inference the rest of Server.
func splitServer(r *results.Result, tr *trace, t jobTiming) {
	tr.mu.Lock()
	runAt, wrote := tr.runAt, tr.wrote
	tr.mu.Unlock()
	switch {
	case !runAt.IsZero() && !wrote.IsZero():
		r.Queue = min(runAt.Sub(wrote), r.Server)
	case t.hasQueue:
		r.Queue = min(t.queue, r.Server)
	default:
		return
	}
	r.Inference = r.Server - r.Queue
}

// sseEvent is one event of a stream; at is when its first line arrived.
type sseEvent struct {
	name string
	data []byte
	at   time.Time
}

// readProgress reads a progress stream: queue and progress events are
// watched, not kept; the result event's data becomes the body, and the
// moment its first line arrived ends the server phase (so the stream never
// moves the timing a plain answer would have had); a relayed runner stream
// (LLM tokens, unnamed events) is kept as Events. The probe fails
// orchestrator_error/stalled when for stallAfter no event came, or the
// runner's count (steps, frames…) did not move while it ran; and
// timeout_server when no result came within the server timeout of the
// request being written (the headers came at once, so the transport's own
// header timeout no longer bounds the job).
func readProgress(ctx context.Context, body io.Reader, max int64, tr *trace, out *Response, serverTimeout, stallAfter time.Duration) error {
	events := make(chan sseEvent, 16)
	errc := make(chan error, 1)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { errc <- scanEvents(ctx, body, max, events) }()

	tr.mu.Lock()
	wrote := tr.wrote
	// The stream's headers are not the result: its first byte is the
	// result event's, set when it comes.
	tr.firstByte = time.Time{}
	tr.mu.Unlock()
	if wrote.IsZero() {
		wrote = time.Now()
	}
	deadline := wrote.Add(serverTimeout)
	lastEvent, lastMove := time.Now(), time.Now()
	var (
		running bool
		prog    struct {
			Unit        string `json:"unit"`
			Done, Total int
		}
		got bool
	)
	check := time.NewTicker(min(stallAfter/4, 250*time.Millisecond) + time.Millisecond)
	defer check.Stop()
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				if err := <-errc; err != nil {
					return classifyTransport(err, tr.phase())
				}
				if !got {
					return fail(ClassOrchestrator, "stream_no_result", "progress stream ended without a result or error event")
				}
				return nil
			}
			lastEvent = ev.at
			switch ev.name {
			case "queue", "timing":
			case "progress":
				var p struct {
					Unit        string `json:"unit"`
					Done, Total int
				}
				_ = json.Unmarshal(ev.data, &p)
				if !running {
					running, lastMove = true, ev.at
					tr.mu.Lock()
					tr.runAt = ev.at
					tr.mu.Unlock()
				}
				if p.Total == 0 || p.Done != prog.Done || p.Total != prog.Total || p.Unit != prog.Unit {
					lastMove = ev.at
				}
				prog.Unit, prog.Done, prog.Total = p.Unit, p.Done, p.Total
			case "result":
				tr.mu.Lock()
				tr.firstByte = ev.at
				tr.mu.Unlock()
				out.Body, got = ev.data, true
				// The result event is the job's plain answer, JSON (the
				// stream relays an event-stream answer instead).
				out.Header = out.Header.Clone()
				out.Header.Set("Content-Type", "application/json")
			case "error":
				var e struct {
					Status int    `json:"status"`
					Error  string `json:"error"`
				}
				if err := json.Unmarshal(ev.data, &e); err != nil || e.Status < 400 || e.Status > 599 {
					return invalid("stream_error_event", "unreadable error event %q", bounded(ev.data, 200))
				}
				tr.mu.Lock()
				tr.firstByte = ev.at
				tr.mu.Unlock()
				return classifyStatus(e.Status, string(bounded([]byte(e.Error), 300)))
			default: // the runner's own events, relayed (LLM stream)
				if !got {
					tr.mu.Lock()
					tr.firstByte = ev.at
					tr.mu.Unlock()
					out.FirstEvent = ev.at.Sub(wrote)
					got = true
				}
				lastMove = ev.at
				out.Events = append(out.Events, ev.data)
			}
		case <-check.C:
		}
		if got {
			continue // past the result: the download phase, bounded by Total
		}
		now := time.Now()
		switch {
		case now.After(deadline):
			return &Error{Class: ClassTimeout, Code: "timeout_server", Message: fmt.Sprintf("no result within %s of the request (progress stream)", serverTimeout)}
		case now.Sub(lastEvent) > stallAfter:
			return fail(ClassOrchestrator, "stalled", "progress stream silent for %s (no event, no heartbeat)", now.Sub(lastEvent).Round(time.Millisecond))
		case running && now.Sub(lastMove) > stallAfter:
			return fail(ClassOrchestrator, "stalled", "runner progress stuck at %d/%d %s for %s", prog.Done, prog.Total, prog.Unit, now.Sub(lastMove).Round(time.Millisecond))
		}
	}
}

// scanEvents parses server-sent events into events (closed at the end),
// within max bytes in all.
func scanEvents(ctx context.Context, body io.Reader, max int64, events chan<- sseEvent) error {
	defer close(events)
	sc := bufio.NewScanner(io.LimitReader(body, max+1))
	sc.Buffer(make([]byte, 0, min(64<<10, max+1)), int(max+1))
	var total int64
	var cur sseEvent
	for sc.Scan() {
		line := sc.Bytes()
		total += int64(len(line)) + 1
		if total > max {
			return fmt.Errorf("%w (%d bytes)", errBodyTooLarge, max)
		}
		switch {
		case len(line) == 0:
			if cur.name == "" && cur.data == nil {
				continue
			}
			select {
			case events <- cur:
			case <-ctx.Done():
				return nil
			}
			cur = sseEvent{}
		case bytes.HasPrefix(line, []byte("event:")):
			cur.name = string(bytes.TrimSpace(line[len("event:"):]))
			if cur.at.IsZero() {
				cur.at = time.Now()
			}
		case bytes.HasPrefix(line, []byte("data:")):
			if cur.at.IsZero() {
				cur.at = time.Now()
			}
			d := bytes.TrimPrefix(line[len("data:"):], []byte(" "))
			if cur.data != nil {
				cur.data = append(cur.data, '\n')
			}
			cur.data = append(cur.data, d...)
		}
	}
	return sc.Err()
}
