package orchestrator

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lpgauge/lpgauge/capability"
	"github.com/lpgauge/lpgauge/orchestrator/runner"
)

// Progress and timing, our additions to go-livepeer's AI job exchange
// (issue #19). A go-livepeer gateway sends neither header below (its AI
// client sets Content-Type, Authorization: Livepeer-AI-Worker-1.0,
// Livepeer-Payment and Livepeer-Segment; server/ai_process.go), so the
// exchange it sees is today's, with one more response header it ignores.
const (
	// ProgressRequestHeader opts a job into the progress stream: with value
	// ProgressVersion the answer is text/event-stream (queue, progress,
	// timing, then result or error events) instead of the plain body.
	ProgressRequestHeader = "Lpgauge-Progress"
	// ProgressVersion is the stream's version, the opt-in value and the
	// offer in JobTimingHeader.
	ProgressVersion = "v1"
	// JobTimingHeader is on every answer of a job route: queue_ms (arrival
	// in the runner queue → slot taken), inference_ms (slot taken → result
	// ready), each present once reached, and progress=v1, the offer of the
	// progress stream, e.g. "queue_ms=12.031, inference_ms=150.442, progress=v1".
	JobTimingHeader = "Lpgauge-Job-Timing"
	// RunnerJobHeader names the job on the runner call of a streamed job, so
	// the runner's GET /progress?job= can report it.
	RunnerJobHeader = runner.JobHeader
)

// Default intervals of the progress stream.
const (
	defaultProgressPoll      = 200 * time.Millisecond
	defaultProgressHeartbeat = time.Second
)

// jobClock is one job's queue and inference accounting, stamped on its
// answer's headers (JobTimingHeader) and, for a streamed job, its timing
// event.
type jobClock struct {
	mu                 sync.Mutex
	queuedAt, leasedAt time.Time
	doneAt             time.Time
	key                ModelKey
	line               *fifo
	stream             *progressStream
}

func (c *jobClock) queued(k ModelKey, line *fifo) {
	c.mu.Lock()
	c.queuedAt, c.key, c.line = time.Now(), k, line
	c.mu.Unlock()
}

func (c *jobClock) leased() {
	c.mu.Lock()
	c.leasedAt = time.Now()
	c.mu.Unlock()
}

// timings returns queue and inference time so far; inference ends at the
// first answer header written after the slot was taken.
func (c *jobClock) timings(end bool) (queue, inference time.Duration, hasQ, hasI bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if c.queuedAt.IsZero() {
		return 0, 0, false, false
	}
	if c.leasedAt.IsZero() {
		return now.Sub(c.queuedAt), 0, true, false
	}
	if c.doneAt.IsZero() && end {
		c.doneAt = now
		if c.line != nil {
			c.line.observe(c.key, now.Sub(c.leasedAt))
		}
	}
	if c.doneAt.IsZero() {
		return c.leasedAt.Sub(c.queuedAt), 0, true, false
	}
	return c.leasedAt.Sub(c.queuedAt), c.doneAt.Sub(c.leasedAt), true, true
}

func ms(d time.Duration) string {
	return string(appendMS(nil, d))
}

// appendMS appends ms(d).
func appendMS(dst []byte, d time.Duration) []byte {
	return strconv.AppendFloat(dst, float64(d.Microseconds())/1000, 'f', 3, 64)
}

// stamp sets JobTimingHeader as the answer's headers are written (one
// buffer, one string: it is on every job's answer).
func (c *jobClock) stamp(h http.Header) {
	q, i, hasQ, hasI := c.timings(true)
	v := make([]byte, 0, 64)
	if hasQ {
		v = appendMS(append(v, "queue_ms="...), q)
		v = append(v, ", "...)
	}
	if hasI {
		v = appendMS(append(v, "inference_ms="...), i)
		v = append(v, ", "...)
	}
	v = append(v, "progress="+ProgressVersion...)
	h.Set(JobTimingHeader, string(v))
}

// finish ends a streamed job's stream once the handler returned, and
// gives the outer writer the job's real status for metrics.
func (c *jobClock) finish(out *timedWriter) {
	if c.stream != nil {
		c.stream.finish()
		out.status = c.stream.jobStatus()
	}
}

// reserveJob is reserve for a job being served on *wp: it accounts the
// queue time and, when the client asked for progress, turns the answer
// into a progress stream (replacing *wp by a writer into it) before the
// job waits, so queue positions reach the client while it does.
func (s *Server) reserveJob(wp **timedWriter, r *http.Request, p capability.Pipeline, model string) (Lease, error) {
	w := *wp
	k := ModelKey{Pipeline: p.Slug, Model: model}
	var onAhead func(int)
	var st *progressStream
	if w.clock != nil && r.Header.Get(ProgressRequestHeader) == ProgressVersion {
		st = s.startProgress(w, k)
		w.clock.stream = st
		*wp = &timedWriter{ResponseWriter: st, start: w.start, clock: w.clock}
		onAhead = st.queuePosition
	}
	if w.clock != nil {
		w.clock.queued(k, s.line)
	}
	lease, err := s.reserveInLine(r.Context(), p, model, onAhead)
	if err != nil {
		return nil, err
	}
	if w.clock != nil {
		w.clock.leased()
	}
	if st != nil {
		st.running(lease)
	}
	return lease, nil
}

// tagRunnerRequest names a streamed job on its runner call.
func tagRunnerRequest(w *timedWriter, rreq *http.Request) {
	if st, ok := w.ResponseWriter.(*progressStream); ok {
		rreq.Header.Set(RunnerJobHeader, st.id)
	}
}

// progressStream is a streamed job's answer: the handler writes the job's
// usual answer into it (captured, then sent as one result or error event)
// while a ticker sends queue and progress events to the client.
type progressStream struct {
	s     *Server
	out   *timedWriter
	id    string
	key   ModelKey
	clock *jobClock
	cap   int

	mu       sync.Mutex
	hdr      http.Header
	status   int
	buf      bytes.Buffer
	relay    bool // the runner answered with its own event stream: passed through
	ended    bool
	lease    Lease
	runStart time.Time
	ahead    int
	prog     runnerProgress
	polled   bool // the runner answers GET /progress
	lastSent time.Time

	stop chan struct{}
	wg   sync.WaitGroup
}

// runnerProgress is the runner's GET /progress?job= answer (orchestrator/runner).
type runnerProgress struct {
	State string `json:"state"` // unknown (not started), running, done
	Unit  string `json:"unit,omitempty"`
	Done  int    `json:"done"`
	Total int    `json:"total"`
}

func newJobID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (s *Server) startProgress(out *timedWriter, k ModelKey) *progressStream {
	st := &progressStream{
		s: s, out: out, id: newJobID(), key: k, clock: out.clock, cap: s.capacityOf(k),
		hdr: http.Header{}, ahead: -1, polled: true, stop: make(chan struct{}),
	}
	out.Header().Set("Content-Type", "text/event-stream")
	out.Header().Set("Cache-Control", "no-cache")
	out.WriteHeader(http.StatusOK)
	out.Flush()
	st.wg.Add(1)
	go st.tick()
	return st
}

// Header, WriteHeader, Write and Flush capture the job's own answer.
func (st *progressStream) Header() http.Header { return st.hdr }

func (st *progressStream) WriteHeader(code int) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.status != 0 {
		return
	}
	st.status = code
	// A streamed LLM answer is already events: they go through as they
	// come, after the timing event, and are the job's progress.
	if code == http.StatusOK && strings.HasPrefix(st.hdr.Get("Content-Type"), "text/event-stream") {
		st.relay = true
		st.writeTimingLocked()
	}
}

func (st *progressStream) Write(b []byte) (int, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.status == 0 {
		st.status = http.StatusOK
	}
	if st.relay {
		return st.out.Write(b)
	}
	return st.buf.Write(b)
}

func (st *progressStream) Flush() {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.relay {
		st.out.Flush()
	}
}

func (st *progressStream) jobStatus() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.status == 0 {
		return http.StatusInternalServerError
	}
	return st.status
}

// event writes one event; data lines are split as SSE requires. Call with mu held.
func (st *progressStream) eventLocked(name string, data []byte) {
	var b bytes.Buffer
	b.WriteString("event: " + name + "\n")
	for _, line := range bytes.Split(data, []byte("\n")) {
		b.WriteString("data: ")
		b.Write(line)
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	_, _ = st.out.Write(b.Bytes())
	st.out.Flush()
	st.lastSent = time.Now()
}

func (st *progressStream) jsonEventLocked(name string, v any) {
	b, _ := json.Marshal(v)
	st.eventLocked(name, b)
}

// QueueEvent is the data of a queue event.
type QueueEvent struct {
	// Position is the job's place in its model's line: 1 starts next,
	// when a running job ends; 2 has one queued job before it; …
	Position int `json:"position"`
	// EstimatedWaitMs is position × the model's mean inference time ÷ its
	// capacity; absent before the first job of the model finished.
	EstimatedWaitMs *int64 `json:"estimated_wait_ms,omitempty"`
}

// ProgressEvent is the data of a progress event: the first one marks the
// start of inference; then one each time the runner's count moves and at
// least every heartbeat.
type ProgressEvent struct {
	Unit      string `json:"unit,omitempty"` // steps, frames, chunks, tokens; absent when the runner reports none
	Done      int    `json:"done"`
	Total     int    `json:"total"`
	ElapsedMs int64  `json:"elapsed_ms"`
}

// TimingEvent is the data of the timing event, sent just before the result.
type TimingEvent struct {
	QueueMs     float64 `json:"queue_ms"`
	InferenceMs float64 `json:"inference_ms"`
}

// ErrorEvent is the data of an error event: the status and message the
// plain answer would have had.
type ErrorEvent struct {
	Status int    `json:"status"`
	Error  string `json:"error"`
}

func (st *progressStream) queuePosition(ahead int) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.ahead = ahead
	st.sendQueueLocked()
}

func (st *progressStream) sendQueueLocked() {
	if st.ended || st.relay {
		return
	}
	ev := QueueEvent{Position: st.ahead + 1}
	if m := st.s.line.meanInference(st.key); m > 0 {
		est := (time.Duration(ev.Position) * m / time.Duration(st.cap)).Milliseconds()
		ev.EstimatedWaitMs = &est
	}
	st.jsonEventLocked("queue", ev)
}

func (st *progressStream) running(l Lease) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.lease, st.runStart = l, time.Now()
	st.sendProgressLocked()
}

func (st *progressStream) sendProgressLocked() {
	if st.ended || st.relay {
		return
	}
	st.jsonEventLocked("progress", ProgressEvent{
		Unit: st.prog.Unit, Done: st.prog.Done, Total: st.prog.Total, ElapsedMs: time.Since(st.runStart).Milliseconds(),
	})
}

func (st *progressStream) writeTimingLocked() {
	q, i, _, _ := st.clock.timings(true)
	st.jsonEventLocked("timing", TimingEvent{
		QueueMs: float64(q.Microseconds()) / 1000, InferenceMs: float64(i.Microseconds()) / 1000,
	})
}

// tick sends heartbeats (the last event again) and the runner's progress.
func (st *progressStream) tick() {
	defer st.wg.Done()
	poll := st.s.cfg.ProgressPoll
	if poll <= 0 {
		poll = defaultProgressPoll
	}
	beat := st.s.cfg.ProgressHeartbeat
	if beat <= 0 {
		beat = defaultProgressHeartbeat
	}
	t := time.NewTicker(min(poll, beat))
	defer t.Stop()
	for {
		select {
		case <-st.stop:
			return
		case <-t.C:
		}
		st.mu.Lock()
		lease, polled := st.lease, st.polled
		st.mu.Unlock()
		var got *runnerProgress
		if lease != nil && polled {
			got = st.pollRunner(lease, poll)
		}
		st.mu.Lock()
		switch {
		case st.ended || st.relay:
		case lease == nil:
			if time.Since(st.lastSent) >= beat {
				st.sendQueueLocked()
			}
		default:
			moved := got != nil && (got.Done != st.prog.Done || got.Total != st.prog.Total || got.Unit != st.prog.Unit)
			if got != nil {
				st.prog = *got
			}
			if moved || time.Since(st.lastSent) >= beat {
				st.sendProgressLocked()
			}
		}
		st.mu.Unlock()
	}
}

// pollRunner asks the runner how far the job is; a runner without the
// route (ai-runner answers 404) is not asked again, and the stream then
// reports elapsed time only.
func (st *progressStream) pollRunner(l Lease, timeout time.Duration) *runnerProgress {
	ctx, cancel := context.WithTimeout(context.Background(), max(timeout, 100*time.Millisecond))
	defer cancel()
	u := strings.TrimRight(l.URL(), "/") + "/progress?job=" + url.QueryEscape(st.id)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil
	}
	if tok := l.Token(); tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := st.s.client.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		st.mu.Lock()
		st.polled = false
		st.mu.Unlock()
		return nil
	}
	var rp runnerProgress
	if resp.StatusCode != http.StatusOK || json.NewDecoder(io.LimitReader(resp.Body, 4<<10)).Decode(&rp) != nil || rp.State != "running" {
		return nil
	}
	return &rp
}

// finish stops the ticker and sends the job's answer: timing then result
// (the same bytes as the plain body) on 200, an error event otherwise.
func (st *progressStream) finish() {
	st.mu.Lock()
	already := st.ended
	st.ended = true
	st.mu.Unlock()
	if already {
		return
	}
	close(st.stop)
	st.wg.Wait()
	st.mu.Lock()
	defer st.mu.Unlock()
	switch {
	case st.relay:
		st.out.Flush()
	case st.status == http.StatusOK:
		st.writeTimingLocked()
		st.eventLocked("result", st.buf.Bytes())
	default:
		status := st.status
		if status == 0 {
			status = http.StatusInternalServerError
		}
		st.jsonEventLocked("error", ErrorEvent{Status: status, Error: strings.TrimSpace(st.buf.String())})
	}
}

var _ http.Flusher = (*progressStream)(nil)
