package runner

import (
	"context"
	"math"
	"net/http"
	"sync/atomic"
	"time"
)

// JobHeader names a job on its request so GET /progress?job= can report how
// far it is. The reference orchestrator sets it on jobs whose client asked
// for a progress stream (orchestrator/progress.go); ai-runner has neither
// the header nor the route (it answers 404 there), so an orchestrator in
// front of it reports elapsed time only.
const JobHeader = "Lpgauge-Job-Id"

// maxProgressTotal bounds the steps counted for one job, whatever
// num_inference_steps a request asks for.
const maxProgressTotal = 10000

// jobProgress is one named job's progress: the inference time the job
// was drawn is cut into total equal steps, counted as they pass.
type jobProgress struct {
	unit  string
	total int

	delay   atomic.Int64 // the job's inference time, ns; set when a worker takes it
	started atomic.Bool
	done    atomic.Int64
	slept   atomic.Int64 // inference time passed so far, ns
}

type progressKey struct{}

// track registers the request's job under its JobHeader, when it has one,
// and returns the context its inference runs with; untrack forgets it.
func (r *Runner) track(req *http.Request, t task) (ctx context.Context, untrack func()) {
	id := req.Header.Get(JobHeader)
	if id == "" || len(id) > 128 {
		return req.Context(), func() {}
	}
	jp := &jobProgress{unit: t.unit, total: min(max(t.total, 0), maxProgressTotal)}
	if jp.total == 0 {
		jp.unit = ""
	}
	r.progress.Store(id, jp)
	return context.WithValue(req.Context(), progressKey{}, jp), func() { r.progress.CompareAndDelete(id, jp) }
}

func progressOf(ctx context.Context) *jobProgress {
	jp, _ := ctx.Value(progressKey{}).(*jobProgress)
	return jp
}

// startProgress marks a tracked job taken by a worker with its drawn
// inference time.
func startProgress(ctx context.Context, delay time.Duration) {
	if jp := progressOf(ctx); jp != nil {
		jp.delay.Store(int64(delay))
		jp.started.Store(true)
	}
}

// sleep is the inference time of a tracked job passing: done advances by
// one each total-th of the job's inference time. A job that sleeps in
// several parts (a failure halfway) counts across them.
func (jp *jobProgress) sleep(ctx context.Context, d time.Duration) error {
	delay := time.Duration(jp.delay.Load())
	if jp.total == 0 || delay <= 0 {
		return timerSleep(ctx, d)
	}
	step := max(delay/time.Duration(jp.total), time.Millisecond)
	for d > 0 {
		chunk := min(d, step)
		if err := timerSleep(ctx, chunk); err != nil {
			return err
		}
		d -= chunk
		slept := jp.slept.Add(int64(chunk))
		jp.done.Store(min(int64(jp.total), int64(math.Floor(float64(slept)*float64(jp.total)/float64(delay)))))
	}
	return ctx.Err()
}

func timerSleep(ctx context.Context, d time.Duration) error {
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

// Progress is the GET /progress?job= answer. State is "unknown" (no such
// job here, or not arrived yet), "queued" (waiting for a worker) or
// "running"; Unit/Done/Total count steps (text-to-image, image-to-image,
// upscale: num_inference_steps), frames (image-to-video), chunks
// (audio-to-text: 30 s windows, as Whisper's) or tokens (llm without
// stream); Total 0 when the pipeline has no count.
type Progress struct {
	State string `json:"state"`
	Unit  string `json:"unit,omitempty"`
	Done  int    `json:"done"`
	Total int    `json:"total"`
}

func (r *Runner) progressRoute(w http.ResponseWriter, req *http.Request) {
	if !r.authorized(req) {
		w.Header().Set("WWW-Authenticate", "Bearer")
		writeError(w, http.StatusUnauthorized, "Invalid bearer token.")
		return
	}
	out := Progress{State: "unknown"}
	if v, ok := r.progress.Load(req.URL.Query().Get("job")); ok {
		jp := v.(*jobProgress)
		out = Progress{State: "queued", Unit: jp.unit, Total: jp.total}
		if jp.started.Load() {
			out.State, out.Done = "running", int(jp.done.Load())
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// audioChunks is how many 30 s windows a transcription of secs goes through.
func audioChunks(secs float64) int {
	return max(1, int(math.Ceil(secs/30)))
}
